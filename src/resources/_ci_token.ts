/**
 * The sub-specs of tokens for CI platforms that sign an OIDC ID token for each job
 * (`github`, `gitlab`, `circleci`), with the field names of Teleport's token reference.
 * Each allow rule lists claim values; a job may join when every field of one rule
 * matches. What each field is checked against lives with the auth service's platform
 * tables (src/auth/oidc/).
 */

import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { raise } from "./_fields.ts";

/** The join methods of CI platforms: one list the token, protocol, agent, auth and ctl share. */
export const CI_JOIN_METHODS = ["github", "gitlab", "circleci"] as const;
export type CiJoinMethod = (typeof CI_JOIN_METHODS)[number];

/** The allow-rule fields each CI join method accepts, in Teleport's order. */
export const CI_RULE_FIELDS = {
  github: ["sub", "repository", "repository_owner", "workflow", "environment", "actor", "ref", "ref_type"],
  gitlab: [
    "sub",
    "project_path",
    "namespace_path",
    "pipeline_source",
    "environment",
    "ref",
    "ref_type",
    "ref_protected",
    "environment_protected",
    "user_login",
    "user_email",
    "ci_config_ref_uri",
    "deployment_tier",
    "project_visibility",
  ],
  circleci: ["project_id", "context_id"],
} as const satisfies Record<CiJoinMethod, readonly string[]>;

/**
 * Fields of which a rule must name at least one: without them a rule would let every
 * repository or project on the public service join (github.com and gitlab.com issue
 * tokens to anyone's jobs). A CircleCI issuer is one organization's, so any field will do.
 */
const SCOPING_FIELDS: Record<CiJoinMethod, readonly string[]> = {
  github: ["sub", "repository", "repository_owner"],
  gitlab: ["sub", "project_path", "namespace_path"],
  circleci: CI_RULE_FIELDS.circleci,
};

/**
 * Scoping fields the auth service compares as globs (src/auth/join/gitlab.ts, as in
 * Teleport), where `*` also crosses `/`: `project_path: "*"` or `"acme*"` would name
 * every project on gitlab.com, or `acme-evil`'s. Such a field scopes a rule only when
 * its owner part (see ownerPart) is written out. GitHub's and CircleCI's fields are
 * compared exactly, so naming one is enough.
 */
const GLOB_SCOPING_FIELDS: ReadonlySet<string> = new Set(["gitlab.sub", "gitlab.project_path", "gitlab.namespace_path"]);
const GLOB_CHARS = /[*?[]/;
const GITLAB_SUB_PREFIX = "project_path:";

/**
 * The owner a glob scoping value names: the group before the first `/` (the whole
 * value without one); for `sub` ("project_path:group/project:ref_type:…") the group
 * after "project_path:", or undefined when the value does not start so.
 */
function ownerPart(field: string, value: string): string | undefined {
  let path = value;
  if (field === "sub") {
    if (!value.startsWith(GITLAB_SUB_PREFIX)) return undefined;
    path = value.slice(GITLAB_SUB_PREFIX.length);
  }
  return path.split("/")[0];
}

/** Whether `value` of `field` limits a rule to one owner's repositories or projects. */
function scopes(method: string, field: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (!GLOB_SCOPING_FIELDS.has(`${method}.${field}`)) return true;
  const owner = ownerPart(field, String(value));
  return owner !== undefined && owner !== "" && !GLOB_CHARS.test(owner);
}

/** What to write instead of a glob scoping value that names no owner. */
const OWNER_EXAMPLE: Record<string, string> = {
  sub: `"sub: project_path:my-group/my-project:ref_type:branch:ref:main"`,
  project_path: `"project_path: my-group/*"`,
  namespace_path: `"namespace_path: my-group" (or "my-group/*" for its subgroups)`,
};

const BOOLEAN_FIELDS = new Set(["ref_protected", "environment_protected"]);

const ruleSchema = (method: CiJoinMethod) =>
  z.strictObject(Object.fromEntries(CI_RULE_FIELDS[method].map((f) => [f, BOOLEAN_FIELDS.has(f) ? z.boolean().optional() : z.string().min(1).optional()]))).superRefine(
    (rule, ctx) => {
      const scoping = SCOPING_FIELDS[method];
      const present = scoping.filter((f) => rule[f] !== undefined);
      if (present.length === 0) {
        raise(ctx, [], "invalid", `each allow rule must name at least one of ${scoping.map((f) => `"${f}"`).join(", ")}, or it would admit any ${method === "circleci" ? "project of the organization" : "repository on the service"}`);
      } else if (!present.some((f) => scopes(method, f, rule[f]))) {
        const f = present[0]!;
        const where = f === "sub" ? `must start with "${GITLAB_SUB_PREFIX}" and the group written out` : `must write out the group before the first "/"`;
        raise(ctx, [f], "invalid", `${where}: a "*", "?" or "[" there also matches "/" and other groups' names, so any project on the service could join; name the group, such as ${OWNER_EXAMPLE[f]}`);
      }
    },
  );

// host or host:port, no scheme or path: the issuer URL is built from it
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

const host = (example: string) =>
  z.string().superRefine((s, ctx) => {
    if (!HOST.test(s)) raise(ctx, [], "invalid", `expected a host name with an optional port, such as "${example}", without "https://" or a path`);
  });

/** A JWKS as JSON text, for an auth service that cannot reach the issuer; checked to be a JSON object with `keys`. */
const staticJwks = () =>
  z.string().superRefine((s, ctx) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      raise(ctx, [], "invalid", `expected the issuer's JWKS as JSON text`);
      return;
    }
    const keys = typeof parsed === "object" && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
    if (!Array.isArray(keys) || keys.length === 0) raise(ctx, [], "invalid", `expected a JWKS: a JSON object with a non-empty "keys" list`);
  });

// a GitHub enterprise's slug, as in github.com/enterprises/<slug>: the issuer's last path segment
const SLUG = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const githubSpec = lazy(() =>
  z
    .strictObject({
      /** GitHub Enterprise Server host: tokens issued by https://<host>/_services/token instead of github.com's. */
      enterprise_server_host: host("ghes.example.com").optional(),
      /**
       * GitHub Enterprise Cloud with `include_enterprise_slug` on: its jobs' tokens are issued by
       * https://token.actions.githubusercontent.com/<slug>, so only that enterprise's jobs can join.
       */
      enterprise_slug: z
        .string()
        .superRefine((s, ctx) => {
          if (!SLUG.test(s)) raise(ctx, [], "invalid", `expected the enterprise's slug as in github.com/enterprises/<slug>, such as "octo-enterprise": lowercase letters, digits and "-"`);
        })
        .optional(),
      static_jwks: staticJwks().optional(),
      allow: z.array(ruleSchema("github")).min(1),
    })
    .superRefine((spec, ctx) => {
      if (spec.enterprise_server_host !== undefined && spec.enterprise_slug !== undefined) {
        raise(ctx, ["enterprise_slug"], "invalid", `cannot be combined with enterprise_server_host: a slug names an enterprise on github.com; a GitHub Enterprise Server issues its own tokens`);
      }
    }),
);

export const gitlabSpec = lazy(() => z.strictObject({
  /** A self-managed GitLab's host; gitlab.com when absent. */
  domain: host("gitlab.example.com").optional(),
  static_jwks: staticJwks().optional(),
  allow: z.array(ruleSchema("gitlab")).min(1),
}));

export const circleciSpec = lazy(() => z.strictObject({
  organization_id: z.string().superRefine((s, ctx) => {
    if (!/^[A-Za-z0-9-]+$/.test(s)) raise(ctx, [], "invalid", `expected the CircleCI organization ID (a UUID, from Organization Settings > Overview)`);
  }),
  static_jwks: staticJwks().optional(),
  allow: z.array(ruleSchema("circleci")).min(1),
}));

export type GithubJoinSpec = z.output<typeof githubSpec>;
export type GitlabJoinSpec = z.output<typeof gitlabSpec>;
export type CircleciJoinSpec = z.output<typeof circleciSpec>;
/** An allow rule of any CI join method: claim field → expected value. */
export type CiAllowRule = Partial<Record<string, string | boolean>>;
