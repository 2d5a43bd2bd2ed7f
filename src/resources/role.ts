/**
 * The `role` kind (versions v5, v6, v7): what a bot may do — SSH logins, which nodes
 * and Kubernetes clusters it may reach, and which Kubernetes resources within them.
 */

import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { parseDuration } from "../lib/duration.ts";
import { expecting } from "./_issues.ts";
import { durationString, raise, stringList } from "./_fields.ts";
import { patternProblem } from "./_glob.ts";
import { metadataSchema } from "./_metadata.ts";

/** Role versions accepted; v7 is the newest. */
export const ROLE_VERSIONS = ["v5", "v6", "v7"] as const;
export type RoleVersion = (typeof ROLE_VERSIONS)[number];

/** Kubernetes resource kinds a v7 role may name (`*` is every kind). v5 and v6 know only `pod`. */
export const KUBERNETES_KINDS = [
  "*",
  "pod",
  "secret",
  "configmap",
  "namespace",
  "service",
  "serviceaccount",
  "kube_node",
  "persistentvolume",
  "persistentvolumeclaim",
  "deployment",
  "replicaset",
  "statefulset",
  "daemonset",
  "clusterrole",
  "kube_role",
  "clusterrolebinding",
  "rolebinding",
  "cronjob",
  "job",
  "certificatesigningrequest",
  "ingress",
] as const;

/** Kubernetes verbs a v7 role may name (`*` is every verb). */
export const KUBERNETES_VERBS = [
  "*",
  "get",
  "list",
  "watch",
  "create",
  "update",
  "patch",
  "delete",
  "deletecollection",
  "exec",
  "portforward",
] as const;

/** Teleport's default maximum certificate lifetime for a role. */
export const DEFAULT_MAX_SESSION_TTL = "30h";

const labelValues = lazy(() => expecting(z.union([z.string(), z.array(z.string())]), "a string or a list of strings"));
const labelSelector = lazy(() => expecting(z.record(z.string(), labelValues), "a mapping of label names to values"));

const kubernetesResource = lazy(() => z.strictObject({
  kind: z.string(),
  namespace: z.string().min(1),
  name: z.string().min(1),
  verbs: stringList().optional(),
}));

const conditions = lazy(() => z.strictObject({
  logins: stringList().optional(),
  node_labels: labelSelector.optional(),
  kubernetes_labels: labelSelector.optional(),
  kubernetes_groups: stringList().optional(),
  kubernetes_users: stringList().optional(),
  kubernetes_resources: z.array(kubernetesResource).optional(),
}));

const roleSchemaBase = lazy(() => z.strictObject({
  kind: z.literal("role"),
  version: z.enum(ROLE_VERSIONS),
  metadata: metadataSchema(),
  spec: z.strictObject({
    allow: conditions.prefault({}),
    deny: conditions.prefault({}),
    options: z
      .strictObject({
        max_session_ttl: durationString({ positive: true }).default(DEFAULT_MAX_SESSION_TTL),
      })
      .prefault({}),
  }),
}));

/** A label selector: label name → allowed value(s); `'*': '*'` matches everything. */
export type LabelSelector = z.output<typeof labelSelector>;
/** One Kubernetes resource rule in a role. */
export type KubernetesResourceRule = z.output<typeof kubernetesResource>;
/** The `allow` or `deny` half of a role. */
export type RoleConditions = z.output<typeof conditions>;
/** A validated role with its defaults applied. */
export type RoleResource = z.output<typeof roleSchemaBase>;

/** The role schema: shape, version rules, then version defaults. */
export const roleSchema = lazy(() => roleSchemaBase.superRefine(checkVersionRules).transform(applyRoleDefaults));

function checkVersionRules(role: RoleResource, ctx: z.RefinementCtx): void {
  for (const side of ["allow", "deny"] as const) {
    const c = role.spec[side];
    for (const field of ["node_labels", "kubernetes_labels"] as const) {
      for (const [label, values] of Object.entries(c[field] ?? {})) {
        const list = Array.isArray(values) ? values : [values];
        if (label === "*" && (list.length !== 1 || list[0] !== "*")) {
          raise(ctx, ["spec", side, field, label], "invalid", `the wildcard label "*" only takes the value "*"`);
        }
        list.forEach((v, i) => {
          const p = patternProblem(v);
          const at = Array.isArray(values) ? ["spec", side, field, label, i] : ["spec", side, field, label];
          if (p) raise(ctx, at, "invalid", p);
        });
      }
    }
    const resources = c.kubernetes_resources;
    if (resources === undefined) continue;
    const base = ["spec", side, "kubernetes_resources"];
    if (role.version === "v5") {
      raise(ctx, base, "forbidden", "needs role version v6 or v7");
      continue;
    }
    resources.forEach((r, i) => {
      if (role.version === "v6") {
        if (r.kind !== "pod") {
          raise(ctx, [...base, i, "kind"], "invalid", `role version v6 allows only "pod" (use version v7 for other kinds)`);
        }
        if (r.verbs !== undefined) raise(ctx, [...base, i, "verbs"], "forbidden", "needs role version v7");
      } else {
        if (!(KUBERNETES_KINDS as readonly string[]).includes(r.kind)) {
          raise(ctx, [...base, i, "kind"], "invalid", `allowed values are ${KUBERNETES_KINDS.map((k) => `"${k}"`).join(", ")}`);
        }
        r.verbs?.forEach((verb, j) => {
          if (!(KUBERNETES_VERBS as readonly string[]).includes(verb)) {
            raise(ctx, [...base, i, "verbs", j], "invalid", `allowed values are ${KUBERNETES_VERBS.map((k) => `"${k}"`).join(", ")}`);
          }
        });
      }
      for (const f of ["namespace", "name"] as const) {
        const p = patternProblem(r[f]);
        if (p) raise(ctx, [...base, i, f], "invalid", p);
      }
    });
  }
}

/**
 * Version defaults, as Teleport documents them: a v6 role that reaches Kubernetes
 * clusters but names no resources may reach every pod; a v7 role every resource with
 * every verb. v7 rules without verbs get every verb, so a role moved from v6 to v7
 * keeps the pod access it had.
 */
function applyRoleDefaults(role: RoleResource): RoleResource {
  if (role.version === "v5") return role;
  const allow = { ...role.spec.allow };
  const reachesKubernetes = Object.keys(allow.kubernetes_labels ?? {}).length > 0;
  if (allow.kubernetes_resources === undefined && reachesKubernetes) {
    allow.kubernetes_resources =
      role.version === "v6" ? [{ kind: "pod", namespace: "*", name: "*" }] : [{ kind: "*", namespace: "*", name: "*", verbs: ["*"] }];
  }
  const withVerbs = (rules: KubernetesResourceRule[] | undefined) =>
    role.version === "v7" && rules ? rules.map((r) => (r.verbs === undefined ? { ...r, verbs: ["*"] } : r)) : rules;
  const deny = { ...role.spec.deny };
  if (allow.kubernetes_resources) allow.kubernetes_resources = withVerbs(allow.kubernetes_resources);
  if (deny.kubernetes_resources) deny.kubernetes_resources = withVerbs(deny.kubernetes_resources);
  return { ...role, spec: { ...role.spec, allow, deny } };
}

/** The role's `max_session_ttl` in milliseconds. */
export function roleMaxSessionTtlMs(role: RoleResource): number {
  return parseDuration(role.spec.options.max_session_ttl);
}
