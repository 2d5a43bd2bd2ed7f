/**
 * The `token` kind (v2): how a bot may join. For join method `token` the name itself
 * is the secret; `bound_keypair` and `kubernetes` tokens hold the rules the auth
 * service checks a joining bot against.
 */

import { createHash } from "node:crypto";
import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { expecting } from "./_issues.ts";
import { raise, resourceName, timeString } from "./_fields.ts";
import { metadataExpires, metadataSchema } from "./_metadata.ts";
import { CI_JOIN_METHODS, circleciSpec, githubSpec, gitlabSpec } from "./_ci_token.ts";

export const TOKEN_VERSIONS = ["v2"] as const;

/** How a bot proves it may join. */
export const JOIN_METHODS = ["token", "bound_keypair", "kubernetes", ...CI_JOIN_METHODS] as const;
export type JoinMethod = (typeof JOIN_METHODS)[number];

/** What a bound-keypair bot may do after its credentials lapse. */
export const RECOVERY_MODES = ["standard", "relaxed", "insecure"] as const;
export type RecoveryMode = (typeof RECOVERY_MODES)[number];

/** How the auth service checks a Kubernetes service-account token. */
const KUBERNETES_JOIN_TYPES = ["in_cluster", "static_jwks", "oidc"] as const;

/**
 * A `token`-method token's name is a bearer secret, so it must be long enough not to
 * be guessed by trying names against the join endpoint.
 */
export const MIN_SECRET_TOKEN_NAME_LENGTH = 16;

const MAX_TOKEN_NAME_LENGTH = 253;

// Printable ASCII without spaces; "/" is refused because names become storage keys.
const TOKEN_NAME = /^[\x21-\x2e\x30-\x7e]+$/;

const tokenName = () =>
  z.string().superRefine((s, ctx) => {
    if (s.length === 0) raise(ctx, [], "invalid", "must not be empty", "name");
    else if (s.length > MAX_TOKEN_NAME_LENGTH) raise(ctx, [], "invalid", `must be at most ${MAX_TOKEN_NAME_LENGTH} characters long`, "name");
    else if (!TOKEN_NAME.test(s)) raise(ctx, [], "invalid", `expected printable characters without spaces or "/"`, "name");
  });

// Only the shape is checked here: the auth service parses the key when the bot joins.
// Placeholders such as "ssh-ed25519 AAAA... (the public key)" must still load.
const SSH_KEY_LINE = /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) \S+/;
const PEM_PUBLIC_KEY = /^-----BEGIN PUBLIC KEY-----\r?\n[\s\S]*\n-----END PUBLIC KEY-----\s*$/;
const PUBLIC_KEY_HINT = `expected an SSH public key line such as "ssh-ed25519 AAAA..." or a PEM "PUBLIC KEY" block`;

const publicKeyText = () =>
  expecting(
    z.string().superRefine((s, ctx) => {
      const t = s.trim();
      const ok = (SSH_KEY_LINE.test(t) && !t.includes("\n")) || PEM_PUBLIC_KEY.test(t);
      if (!ok) raise(ctx, [], "invalid", PUBLIC_KEY_HINT, "public key");
    }),
    "an SSH public key line",
  );

const serviceAccount = () =>
  expecting(
    z.string().superRefine((s, ctx) => {
      if (!/^[^:\s]+:[^:\s]+$/.test(s)) raise(ctx, [], "invalid", `expected "namespace:name", such as "default:tbot"`);
    }),
    `a "namespace:name" string`,
  );

const boundKeypairSpec = lazy(() => z.strictObject({
  onboarding: z
    .strictObject({
      /** The bot's public key, when the key was made beforehand (`keypair create`). */
      initial_public_key: publicKeyText().optional(),
      /** A one-time secret the bot registers its own key with. */
      registration_secret: z.string().min(1).optional(),
      must_register_before: timeString().optional(),
    })
    .prefault({}),
  recovery: z.strictObject({
    limit: z.int().min(0),
    mode: z.enum(RECOVERY_MODES).default("standard"),
  }),
  /** Ask the bot to rotate its key on its next renewal after this time. */
  rotate_after: timeString().optional(),
}));

const kubernetesSpec = lazy(() => z.strictObject({
  type: z.enum(KUBERNETES_JOIN_TYPES).default("in_cluster"),
  static_jwks: z.strictObject({ jwks: z.string().min(1) }).optional(),
  /** The cluster's service-account issuer, whose discovery document names its JWKS. */
  oidc: z.strictObject({ issuer: z.string().min(1) }).optional(),
  allow: z.array(z.strictObject({ service_account: serviceAccount() })).min(1),
}));

const boundKeypairStatus = lazy(() => z.strictObject({
  /**
   * This creation of the token: a new random id each time the token is created (or its
   * binding reset), never kept across a delete. Join states carry it, so a state from an
   * earlier token or bot of the same name, or from a sibling token, never validates.
   */
  incarnation: z.string().optional(),
  bound_public_key: z.string().optional(),
  bound_bot_instance_id: z.string().optional(),
  recovery_count: z.int().min(0).optional(),
  last_recovered_at: timeString().optional(),
  last_rotated_at: timeString().optional(),
  registration_secret: z.string().optional(),
}));

const tokenSchemaBase = lazy(() => z.strictObject({
  kind: z.literal("token"),
  version: z.enum(TOKEN_VERSIONS),
  metadata: metadataSchema(tokenName()),
  spec: z.strictObject({
    /** Always `[Bot]`: the only tokens machine-id issues join bots. */
    roles: z.array(z.string()),
    bot_name: resourceName(),
    join_method: z.enum(JOIN_METHODS),
    bound_keypair: boundKeypairSpec.optional(),
    kubernetes: kubernetesSpec.optional(),
    github: githubSpec.optional(),
    gitlab: gitlabSpec.optional(),
    circleci: circleciSpec.optional(),
  }),
  /** Kept by the auth service; accepted on input so `get` output can be created again. */
  status: z.strictObject({ bound_keypair: boundKeypairStatus.optional() }).optional(),
}));

/** A validated token with its defaults applied. */
export type TokenResource = z.output<typeof tokenSchemaBase>;
export type BoundKeypairSpec = z.output<typeof boundKeypairSpec>;
export type KubernetesJoinSpec = z.output<typeof kubernetesSpec>;
export type BoundKeypairStatus = z.output<typeof boundKeypairStatus>;

/** The token schema: shape, then the rules that tie fields together. */
export const tokenSchema = lazy(() => tokenSchemaBase.superRefine(checkTokenRules));

// Each join method's sub-spec, keyed by method.
const SUB_SPECS = { bound_keypair: "bound_keypair", kubernetes: "kubernetes", github: "github", gitlab: "gitlab", circleci: "circleci" } as const;

function checkTokenRules(token: TokenResource, ctx: z.RefinementCtx): void {
  const { spec } = token;
  if (spec.roles.length === 0) raise(ctx, ["spec", "roles"], "invalid", `expected [Bot]: only bot tokens are supported`);
  spec.roles.forEach((r, i) => {
    if (r !== "Bot") raise(ctx, ["spec", "roles", i], "invalid", `only "Bot" is supported: machine-id tokens join bots`);
  });

  if (spec.join_method === "token" && token.metadata.name.length < MIN_SECRET_TOKEN_NAME_LENGTH) {
    raise(
      ctx,
      ["metadata", "name"],
      "invalid",
      `the name of a "token" join token is its secret and must be at least ${MIN_SECRET_TOKEN_NAME_LENGTH} characters long`,
      "name",
    );
  }

  for (const [method, field] of Object.entries(SUB_SPECS)) {
    const present = spec[field] !== undefined;
    if (spec.join_method === method && !present) {
      raise(ctx, ["spec", field], "missing", `required when spec.join_method is "${method}"`);
    } else if (spec.join_method !== method && present) {
      raise(ctx, ["spec", field], "forbidden", `only allowed when spec.join_method is "${method}"`);
    }
  }

  const k = spec.kubernetes;
  if (k) {
    // each type with settings has its own field, present exactly when it is the type
    for (const type of ["static_jwks", "oidc"] as const) {
      if (k.type === type && !k[type]) {
        raise(ctx, ["spec", "kubernetes", type], "missing", `required when spec.kubernetes.type is "${type}"`);
      } else if (k.type !== type && k[type]) {
        raise(ctx, ["spec", "kubernetes", type], "forbidden", `only allowed when spec.kubernetes.type is "${type}"`);
      }
    }
    const jwksProblem = k.static_jwks ? checkJwksText(k.static_jwks.jwks) : undefined;
    if (jwksProblem) raise(ctx, ["spec", "kubernetes", "static_jwks", "jwks"], "invalid", jwksProblem);
    const issuerProblem = k.oidc ? checkIssuerUrl(k.oidc.issuer) : undefined;
    if (issuerProblem) raise(ctx, ["spec", "kubernetes", "oidc", "issuer"], "invalid", issuerProblem);
  }

  if (token.status?.bound_keypair && spec.join_method !== "bound_keypair") {
    raise(ctx, ["status", "bound_keypair"], "forbidden", `only allowed when spec.join_method is "bound_keypair"`);
  }
}

/**
 * Checks a JWKS only when it is JSON: text that does not parse (the documented
 * placeholder `{"keys":[ ...the data... ]}`, say) is accepted here and refused by the
 * auth service when a bot tries to join with it, so example files load unchanged.
 */
function checkJwksText(text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const keys = typeof parsed === "object" && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  return Array.isArray(keys) ? undefined : `expected a JWKS: a JSON object with a "keys" list`;
}

/**
 * An OIDC issuer as Kubernetes publishes it (`kubectl get --raw
 * /.well-known/openid-configuration` names it): an https URL, since the keys that
 * decide who joins must not be fetched over a connection anyone could alter.
 */
function checkIssuerUrl(text: string): string | undefined {
  const expected = `expected the cluster's service-account issuer, an https:// URL such as "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return expected;
  }
  if (url.protocol !== "https:") return `${expected}: the issuer's keys are only fetched over https`;
  if (url.search || url.hash || url.username || url.password) return `${expected}, without query, fragment or credentials`;
  return undefined;
}

/** Whether the path holds a secret that messages must not echo. */
export function isTokenSecretPath(path: readonly PropertyKey[], joinMethod: unknown): boolean {
  const p = path.join(".");
  if (p === "metadata.name") return joinMethod === "token";
  return p === "spec.bound_keypair.onboarding.registration_secret" || p === "status.bound_keypair.registration_secret";
}

/**
 * When the token stops being usable, or undefined when it never expires: the one
 * reading of `metadata.expires` every join method and the janitor use.
 */
export function tokenExpires(token: TokenResource): Date | undefined {
  return metadataExpires(token.metadata);
}

/** Whether the token's `metadata.expires` is at or before `now`. */
export function tokenExpired(token: TokenResource, now: Date): boolean {
  const at = tokenExpires(token);
  return at !== undefined && at.getTime() <= now.getTime();
}

/**
 * A short, non-reversible reference to a join token, for audit events, logs and the
 * agent's record of the token it joined with: a token's name may be its secret, so it
 * is never written in clear.
 */
export function tokenFingerprint(name: string): string {
  return "sha256:" + createHash("sha256").update(name).digest("hex").slice(0, 16);
}

/** Shortens a secret for messages and logs: the first four characters and an ellipsis. */
export function maskSecret(secret: string): string {
  return secret.length <= 8 ? "********" : `${secret.slice(0, 4)}...`;
}
