/**
 * Access decisions from a set of roles: SSH logins, label selectors and Kubernetes
 * resources. Deny always wins over allow; the auth service calls these.
 */

import { globMatch } from "./_glob.ts";
import type { KubernetesResourceRule, LabelSelector, RoleResource } from "./role.ts";

export { globMatch } from "./_glob.ts";

/** Trait name → values, from the bot (`botTraits`). */
export type Traits = Readonly<Record<string, readonly string[]>>;

const TEMPLATE = /^(.*?)\{\{\s*(?:internal|external)\.([A-Za-z0-9_-]+)\s*\}\}(.*)$/s;

/**
 * Expands role values that refer to traits: `{{internal.logins}}` becomes each of the
 * trait's values (with any text around the braces kept on each). A template whose
 * trait is missing expands to nothing, so it never grants a literal "{{…}}".
 */
export function applyTraits(values: readonly string[] | undefined, traits: Traits = {}): string[] {
  const out: string[] = [];
  for (const v of values ?? []) {
    const m = TEMPLATE.exec(v);
    if (!m) {
      out.push(v);
      continue;
    }
    const name = m[2]!;
    const traitValues = Object.prototype.hasOwnProperty.call(traits, name) ? traits[name]! : [];
    for (const t of traitValues) out.push(`${m[1]}${t}${m[3]}`);
  }
  return out;
}

function unique(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

/**
 * The SSH logins the roles grant: every allowed login (traits expanded), minus any a
 * deny rule names (deny entries may be globs, so `'*'` denies every login).
 */
export function roleLogins(roles: readonly RoleResource[], traits?: Traits): string[] {
  const denied = roles.flatMap((r) => applyTraits(r.spec.deny.logins, traits));
  const allowed = roles.flatMap((r) => applyTraits(r.spec.allow.logins, traits));
  return unique(allowed.filter((login) => !denied.some((d) => globMatch(d, login))));
}

/**
 * Whether a resource with `labels` matches `selector`. An empty or missing selector
 * matches nothing; `'*': '*'` matches everything, even a resource without labels;
 * otherwise every selector key must be present with a value matching one of the
 * selector's values (globs or `^…$` expressions).
 */
export function matchLabels(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  const entries = Object.entries(selector ?? {});
  if (entries.length === 0) return false;
  return entries.every(([key, values]) => {
    const list = Array.isArray(values) ? values : [values];
    if (key === "*") return list.includes("*");
    if (!Object.prototype.hasOwnProperty.call(labels, key)) return false;
    const actual = labels[key]!;
    return list.some((pattern) => globMatch(pattern, actual));
  });
}

/** One request to a Kubernetes cluster, as the auth service's proxy sees it. */
export interface KubernetesRequest {
  /** The labels of the Kubernetes cluster being reached. */
  clusterLabels: Readonly<Record<string, string>>;
  /** Role kind name: "pod", "deployment", "namespace"… */
  kind: string;
  /** Absent for cluster-wide objects; for a `namespace` object, its own name. */
  namespace?: string;
  name: string;
  /** "get", "list", "create", "exec"… */
  verb: string;
}

/** An access decision and why, for logs and audit events. */
export interface AccessDecision {
  allowed: boolean;
  reason: string;
}

// Whether a rule covers the request. Before v7 rules govern pods only and every verb.
function ruleMatches(version: RoleResource["version"], rule: KubernetesResourceRule, req: KubernetesRequest): boolean {
  if (version === "v7") {
    if (rule.kind !== "*" && rule.kind !== req.kind) return false;
    const verbs = rule.verbs ?? ["*"];
    if (!verbs.includes("*") && !verbs.includes(req.verb)) return false;
  } else if (req.kind !== "pod" || rule.kind !== "pod") {
    return false;
  }
  // A cluster-wide object has no namespace: only a pattern matching "" (such as "*") covers it.
  return globMatch(rule.namespace, req.namespace ?? "") && globMatch(rule.name, req.name);
}

function describeRequest(req: KubernetesRequest): string {
  const target = req.namespace ? `${req.namespace}/${req.name}` : req.name;
  return `${req.verb} on ${req.kind} "${target}"`;
}

/**
 * Decides a Kubernetes request. Deny first: a role whose deny labels match the cluster
 * and that names no deny resources denies the whole cluster; deny resources deny what
 * they match on clusters their deny labels match (on every cluster when the deny side
 * has no labels). Then some role must allow it: its allow labels match the cluster and
 * one of its resource rules matches. v5 roles have no resource rules and v6 rules
 * govern pods only, so such a role allows what it does not govern.
 */
export function kubernetesAccess(roles: readonly RoleResource[], req: KubernetesRequest): AccessDecision {
  for (const role of roles) {
    const deny = role.spec.deny;
    const hasLabels = Object.keys(deny.kubernetes_labels ?? {}).length > 0;
    const labelsMatch = hasLabels && matchLabels(deny.kubernetes_labels, req.clusterLabels);
    const rules = deny.kubernetes_resources ?? [];
    if (labelsMatch && rules.length === 0) {
      return { allowed: false, reason: `role "${role.metadata.name}" denies access to this Kubernetes cluster` };
    }
    if ((labelsMatch || !hasLabels) && rules.some((r) => ruleMatches(role.version, r, req))) {
      return { allowed: false, reason: `role "${role.metadata.name}" denies ${describeRequest(req)}` };
    }
  }
  for (const role of roles) {
    const allow = role.spec.allow;
    if (!matchLabels(allow.kubernetes_labels, req.clusterLabels)) continue;
    const governed = role.version === "v7" || (role.version === "v6" && req.kind === "pod");
    if (!governed || (allow.kubernetes_resources ?? []).some((r) => ruleMatches(role.version, r, req))) {
      return { allowed: true, reason: `role "${role.metadata.name}" allows ${describeRequest(req)}` };
    }
  }
  return { allowed: false, reason: `no role allows ${describeRequest(req)}` };
}

/**
 * The Kubernetes users and groups to impersonate on a cluster: those of every role
 * whose allow labels match it, traits expanded, minus what deny rules name. When the
 * roles name groups but no user, callers use the bot's own user name (as Teleport does).
 */
export function kubernetesPrincipals(
  roles: readonly RoleResource[],
  clusterLabels: Readonly<Record<string, string>>,
  traits?: Traits,
): { users: string[]; groups: string[] } {
  const matching = roles.filter((r) => matchLabels(r.spec.allow.kubernetes_labels, clusterLabels));
  const deniedUsers = roles.flatMap((r) => applyTraits(r.spec.deny.kubernetes_users, traits));
  const deniedGroups = roles.flatMap((r) => applyTraits(r.spec.deny.kubernetes_groups, traits));
  const users = matching.flatMap((r) => applyTraits(r.spec.allow.kubernetes_users, traits));
  const groups = matching.flatMap((r) => applyTraits(r.spec.allow.kubernetes_groups, traits));
  return {
    users: unique(users.filter((u) => !deniedUsers.includes(u))),
    groups: unique(groups.filter((g) => !deniedGroups.includes(g))),
  };
}
