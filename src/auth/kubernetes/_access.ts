/**
 * What the proxy lets through, in terms of the resources layer's rules: the cluster
 * must be reachable by the bot's roles, a request for one object is decided by
 * `kubernetesAccess`, and a list or watch is let through only when some rule can
 * allow part of it, its answer then filtered object by object.
 */

import {
  globMatch,
  kubernetesAccess,
  matchLabels,
  type AccessDecision,
  type KubernetesResourceRule,
  type RoleResource,
} from "../../resources/index.ts";
import type { KubeApiRequest, ResourceRequest } from "./_apipath.ts";

type Labels = Readonly<Record<string, string>>;

/** A decision on one proxied request. */
export interface ProxyDecision extends AccessDecision {
  /** The answer is a list or a watch: each object in it must pass `allowObject` before the client sees it. */
  filter: boolean;
}

const allow = (reason: string, filter = false): ProxyDecision => ({ allowed: true, reason, filter });
const deny = (reason: string): ProxyDecision => ({ allowed: false, reason, filter: false });

/**
 * Whether the roles reach a cluster with `labels` at all: a role whose deny labels
 * match it and that names no deny resources closes it; otherwise some role's allow
 * labels must match.
 */
export function clusterAccess(roles: readonly RoleResource[], labels: Labels): AccessDecision {
  for (const role of roles) {
    const d = role.spec.deny;
    if (Object.keys(d.kubernetes_labels ?? {}).length > 0 && matchLabels(d.kubernetes_labels, labels) && !d.kubernetes_resources?.length) {
      return { allowed: false, reason: `role "${role.metadata.name}" denies access to this Kubernetes cluster` };
    }
  }
  const role = roles.find((r) => matchLabels(r.spec.allow.kubernetes_labels, labels));
  return role
    ? { allowed: true, reason: `role "${role.metadata.name}" allows access to this Kubernetes cluster` }
    : { allowed: false, reason: "no role's kubernetes_labels match this Kubernetes cluster" };
}

/**
 * Whether `rule` can match some object of `kind` with `verb` in `namespace` (any
 * namespace when undefined), whatever its name. Same reading of versions as the
 * resources layer: before v7 a rule is about pods and every verb.
 */
function ruleMayMatch(role: RoleResource, rule: KubernetesResourceRule, kind: string, verb: string, namespace: string | undefined): boolean {
  if (role.version === "v7") {
    if (rule.kind !== "*" && rule.kind !== kind) return false;
    const verbs = rule.verbs ?? ["*"];
    if (!verbs.includes("*") && !verbs.includes(verb)) return false;
  } else if (rule.kind !== kind) {
    return false;
  }
  return namespace === undefined || globMatch(rule.namespace, namespace);
}

/** Whether a role governs `kind` with its resource rules (v6 rules are about pods only; v5 has none). */
const governs = (role: RoleResource, kind: string) => role.version === "v7" || (role.version === "v6" && kind === "pod");

/** Some role may allow some object of the collection. */
function mayAllowSome(roles: readonly RoleResource[], labels: Labels, kind: string, verb: string, namespace: string | undefined): boolean {
  return roles.some(
    (role) =>
      matchLabels(role.spec.allow.kubernetes_labels, labels) &&
      (!governs(role, kind) || (role.spec.allow.kubernetes_resources ?? []).some((r) => ruleMayMatch(role, r, kind, verb, namespace))),
  );
}

/** Some deny rule may match some object of the collection. */
function mayDenySome(roles: readonly RoleResource[], labels: Labels, kind: string, verb: string, namespace: string | undefined): boolean {
  return roles.some((role) => {
    const d = role.spec.deny;
    const hasLabels = Object.keys(d.kubernetes_labels ?? {}).length > 0;
    if (hasLabels && !matchLabels(d.kubernetes_labels, labels)) return false;
    return (d.kubernetes_resources ?? []).some((r) => ruleMayMatch(role, r, kind, verb, namespace));
  });
}

function where(req: ResourceRequest): string {
  if (!req.namespaced) return "";
  return req.namespace === undefined ? " in any namespace" : ` in namespace "${req.namespace}"`;
}

/** The namespace the resources layer matches rules against: none for cluster-scoped objects, its own name for a namespace. */
function accessNamespace(req: ResourceRequest, object: { name: string; namespace?: string | undefined }): string | undefined {
  if (req.kind === "namespace") return object.name;
  return req.namespaced ? object.namespace : undefined;
}

/**
 * Decides one request. `createName` is the object name a create request's body
 * carries (the path has none). Discovery and health paths are open to anyone the
 * cluster admits; other non-resource paths are refused.
 */
export function authorizeRequest(roles: readonly RoleResource[], labels: Labels, req: KubeApiRequest, createName?: string): ProxyDecision {
  const cluster = clusterAccess(roles, labels);
  if (!cluster.allowed) return deny(cluster.reason);
  if (req.type === "nonresource") {
    if (req.discovery && req.verb === "get") return allow(`${cluster.reason} (discovery)`);
    return deny(`the proxy forwards only discovery among non-resource paths, not ${req.verb} on "${req.path}"`);
  }
  const name = req.name ?? (req.verb === "create" ? createName : undefined);
  if (req.verb === "list" || req.verb === "watch") {
    if (name !== undefined) {
      const d = kubernetesAccess(roles, { clusterLabels: labels, kind: req.kind, ...nsField(req, name), name, verb: req.verb });
      return d.allowed ? allow(d.reason, true) : deny(d.reason);
    }
    const ns = req.namespaced ? req.namespace : "";
    if (!mayAllowSome(roles, labels, req.kind, req.verb, ns)) return deny(`no role allows ${req.verb} on ${req.kind}${where(req)}`);
    return allow(`a role allows ${req.verb} on some ${req.kind}${where(req)}; the answer is filtered`, true);
  }
  if (name === undefined) {
    // deletecollection, or a create whose name the server will generate: the request
    // may touch any name, so every name must be allowed and none denied.
    const ns = req.namespaced ? req.namespace : "";
    const d = kubernetesAccess(roles, { clusterLabels: labels, kind: req.kind, ...(ns !== undefined && ns !== "" ? { namespace: ns } : {}), name: "*", verb: req.verb });
    if (!d.allowed) return deny(d.reason);
    if (mayDenySome(roles, labels, req.kind, req.verb, ns)) return deny(`a role denies ${req.verb} on some ${req.kind}${where(req)}, and this request may reach any of them`);
    return allow(d.reason);
  }
  const d = kubernetesAccess(roles, { clusterLabels: labels, kind: req.kind, ...nsField(req, name), name, verb: req.verb });
  return d.allowed ? allow(d.reason) : deny(d.reason);
}

function nsField(req: ResourceRequest, name: string): { namespace?: string } {
  const ns = accessNamespace(req, { name, namespace: req.namespace });
  return ns === undefined ? {} : { namespace: ns };
}

/** Whether an object in the answer to a list or watch may be shown. */
export function allowObject(roles: readonly RoleResource[], labels: Labels, req: ResourceRequest, object: { name: string; namespace?: string | undefined }): boolean {
  const ns = accessNamespace(req, object);
  return kubernetesAccess(roles, { clusterLabels: labels, kind: req.kind, ...(ns === undefined ? {} : { namespace: ns }), name: object.name, verb: req.verb }).allowed;
}
