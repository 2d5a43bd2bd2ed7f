/**
 * Reads a Kubernetes API request (method, path, query) the way the API server does:
 * which resource, namespace, object and subresource it is about and which verb it
 * is, so the proxy decides on the same facts the cluster will act on.
 */

import { AppError } from "../../lib/errors.ts";

/** A request for API discovery, version, OpenAPI or health: no resource involved. */
export interface NonResourceRequest {
  type: "nonresource";
  verb: string;
  /** The canonical path, percent-encoded, as forwarded upstream. */
  path: string;
  /** Whether this is a read-only discovery or health path every client of the cluster needs. */
  discovery: boolean;
}

/** A request about a resource: a collection, one object, or one object's subresource. */
export interface ResourceRequest {
  type: "resource";
  /** In role vocabulary: get, list, watch, create, update, patch, delete, deletecollection, exec, portforward, proxy. */
  verb: string;
  /** "" for the core group. */
  apiGroup: string;
  apiVersion: string;
  /** Plural resource name as in the path: "pods". */
  resource: string;
  subresource?: string;
  /** Absent for cluster-scoped resources and for lists across all namespaces. */
  namespace?: string;
  /** Absent for collections (and for a create, whose name is in the body). */
  name?: string;
  /** The role kind this resource is ("pod", "deployment"…), or `<resource>.<group>` for kinds roles cannot name. */
  kind: string;
  /** Whether objects of this kind live in namespaces (from the path, and the known kinds when the path cannot tell). */
  namespaced: boolean;
  /** The canonical path, percent-encoded, as forwarded upstream. */
  path: string;
}

export type KubeApiRequest = NonResourceRequest | ResourceRequest;

/** Longest API path the proxy reads; real ones are far shorter. */
const MAX_PATH_LENGTH = 4096;

/** group/resource → the kind name roles use (`kubernetes_resources[].kind`). */
const ROLE_KINDS: Record<string, string> = {
  "/pods": "pod",
  "/secrets": "secret",
  "/configmaps": "configmap",
  "/namespaces": "namespace",
  "/services": "service",
  "/serviceaccounts": "serviceaccount",
  "/nodes": "kube_node",
  "/persistentvolumes": "persistentvolume",
  "/persistentvolumeclaims": "persistentvolumeclaim",
  "apps/deployments": "deployment",
  "apps/replicasets": "replicaset",
  "apps/statefulsets": "statefulset",
  "apps/daemonsets": "daemonset",
  "rbac.authorization.k8s.io/clusterroles": "clusterrole",
  "rbac.authorization.k8s.io/roles": "kube_role",
  "rbac.authorization.k8s.io/clusterrolebindings": "clusterrolebinding",
  "rbac.authorization.k8s.io/rolebindings": "rolebinding",
  "batch/cronjobs": "cronjob",
  "batch/jobs": "job",
  "certificates.k8s.io/certificatesigningrequests": "certificatesigningrequest",
  "networking.k8s.io/ingresses": "ingress",
};

/** Built-in kinds that are not namespaced, for the one shape a path leaves ambiguous (`/api/v1/<resource>/<name>`). */
const CLUSTER_SCOPED = new Set([
  "/nodes",
  "/namespaces",
  "/persistentvolumes",
  "/componentstatuses",
  "rbac.authorization.k8s.io/clusterroles",
  "rbac.authorization.k8s.io/clusterrolebindings",
  "certificates.k8s.io/certificatesigningrequests",
  "apiextensions.k8s.io/customresourcedefinitions",
  "storage.k8s.io/storageclasses",
  "storage.k8s.io/csidrivers",
  "storage.k8s.io/csinodes",
  "storage.k8s.io/volumeattachments",
  "scheduling.k8s.io/priorityclasses",
  "admissionregistration.k8s.io/mutatingwebhookconfigurations",
  "admissionregistration.k8s.io/validatingwebhookconfigurations",
  "apiregistration.k8s.io/apiservices",
  "node.k8s.io/runtimeclasses",
  "networking.k8s.io/ingressclasses",
]);

/** Paths under a namespace object that are its own subresources, not resources inside it (as the API server defines them). */
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);

/** Non-resource paths every client of a cluster reads: discovery, version, OpenAPI, health. */
const DISCOVERY_ROOTS = new Set(["api", "apis", "version", "openapi", "healthz", "livez", "readyz"]);

const METHOD_VERBS: Record<string, string> = {
  GET: "get",
  HEAD: "get",
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  DELETE: "delete",
};

/** The role kind of `resource` in `apiGroup`. */
export function roleKind(apiGroup: string, resource: string): string {
  return ROLE_KINDS[`${apiGroup}/${resource}`] ?? (apiGroup ? `${resource}.${apiGroup}` : resource);
}

function badPath(path: string, why: string): AppError {
  return new AppError("BAD_PARAMETER", `Invalid Kubernetes API path "${path.length > 200 ? path.slice(0, 197) + "..." : path}": ${why}`);
}

/**
 * Splits and decodes the path. Every segment is percent-decoded here and encoded again
 * for the upstream, so the API server (which decodes before it routes) sees exactly
 * the segments this proxy decided on: an encoded "/" or an empty segment is refused
 * rather than left for the two sides to read differently.
 */
function segments(path: string): string[] {
  if (path.length > MAX_PATH_LENGTH) throw badPath(path, `longer than ${MAX_PATH_LENGTH} characters`);
  if (!path.startsWith("/")) throw badPath(path, `expected it to start with "/"`);
  const trimmed = path.replace(/^\/+|\/+$/g, "");
  if (trimmed === "") return [];
  return trimmed.split("/").map((raw) => {
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      throw badPath(path, "it has a malformed percent-encoding");
    }
    if (s === "") throw badPath(path, "it has an empty segment");
    if (s === "." || s === "..") throw badPath(path, `it has a "${s}" segment`);
    if (s.includes("/")) throw badPath(path, `a segment holds an encoded "/"`);
    if (/[\x00-\x1f\x7f]/.test(s)) throw badPath(path, "a segment holds a control character");
    return s;
  });
}

const canonical = (parts: string[]) => "/" + parts.map(encodeURIComponent).join("/");

/**
 * A boolean query parameter read as the API server reads it (k8s.io/apimachinery
 * `Convert_Slice_string_To_bool`, which both the request-info resolver and the list
 * handler use): absent is false; otherwise only the FIRST value counts, and it is
 * false when it is "0" or equals "false" under Go's `strings.EqualFold`; anything
 * else, the empty value included, is true. So `?watch=yes`, `?watch` and
 * `?watch=&watch=false` are watches, `?watch=FALSE&watch=true` is not.
 */
function queryFlag(values: readonly string[]): boolean {
  const v = values[0];
  if (v === undefined) return false;
  return !(v === "0" || goEqualFold(v, "false"));
}

/**
 * Go's `strings.EqualFold` against a lower-case ASCII word: rune by rune under Unicode
 * simple case folding. Beyond ASCII case, the only folds onto the letters of "false"
 * are U+017F LATIN SMALL LETTER LONG S (onto s) and U+212A KELVIN SIGN (onto k), so a
 * `toLowerCase()` comparison alone would disagree with the API server on "falſe".
 */
function goEqualFold(value: string, word: string): boolean {
  const runes = [...value];
  if (runes.length !== word.length) return false;
  return runes.every((r, i) => {
    const w = word[i]!;
    return r.toLowerCase() === w || (r === "\u017f" && w === "s") || (r === "\u212a" && w === "k");
  });
}

/** `metadata.name=x` (or `==x`) in a field selector: a list narrowed to one object. */
function nameFromFieldSelector(selector: string | null): string | undefined {
  if (!selector) return undefined;
  for (const term of selector.split(",")) {
    const m = /^\s*metadata\.name\s*==?\s*(.+?)\s*$/.exec(term);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Parses one request. `path` is the API path after the proxy's prefix (`/api/v1/…`),
 * as it appears in the URL (percent-encoded). Throws BAD_PARAMETER for a path the
 * API server could not route either, or one the proxy will not risk forwarding.
 */
export function parseKubeApiRequest(method: string, path: string, query: URLSearchParams): KubeApiRequest {
  const parts = segments(path);
  const methodVerb = METHOD_VERBS[method.toUpperCase()];
  if (methodVerb === undefined) throw badPath(path, `method "${method}" is not part of the Kubernetes API`);
  const root = parts[0];
  const prefixLength = root === "api" ? 2 : root === "apis" ? 3 : undefined;
  if (prefixLength === undefined || parts.length <= prefixLength) {
    return { type: "nonresource", verb: methodVerb, path: canonical(parts), discovery: root !== undefined && DISCOVERY_ROOTS.has(root) };
  }
  const apiGroup = root === "api" ? "" : parts[1]!;
  const apiVersion = parts[prefixLength - 1]!;
  let rest = parts.slice(prefixLength);

  let verb = methodVerb;
  // The older watch and proxy forms: /api/v1/watch/namespaces/ns/pods
  if (rest[0] === "watch" || rest[0] === "proxy") {
    if (methodVerb !== "get" && rest[0] === "watch") throw badPath(path, `a watch path takes GET, not ${method}`);
    verb = rest[0];
    rest = rest.slice(1);
    if (rest.length === 0) throw badPath(path, `"${verb}" names no resource`);
  }

  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length > 1) {
    namespace = rest[1]!;
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) rest = rest.slice(2);
  }
  const resource = rest[0]!;
  const name = rest.length >= 2 ? rest[1] : undefined;
  const subresource = rest.length >= 3 && verb !== "proxy" ? rest[2] : undefined;
  // Only pods' proxy subresource carries a path of its own after it.
  if (rest.length > 3 && subresource !== "proxy" && verb !== "proxy") throw badPath(path, "it has segments after the subresource");

  const isNamespaceObject = apiGroup === "" && resource === "namespaces";
  // An object path without a namespace is a cluster-scoped object; only a collection
  // path leaves it open (a cluster-scoped list, or a list across all namespaces).
  const namespaced =
    !isNamespaceObject && (namespace !== undefined || (name === undefined && !CLUSTER_SCOPED.has(`${apiGroup}/${resource}`)));
  const named = name ?? (verb === "get" || verb === "watch" ? nameFromFieldSelector(query.get("fieldSelector")) : undefined);

  if (verb === "get" && name === undefined) verb = queryFlag(query.getAll("watch")) ? "watch" : "list";
  else if (verb === "delete" && name === undefined) verb = "deletecollection";
  if (subresource === "exec" || subresource === "attach") verb = "exec";
  else if (subresource === "portforward") verb = "portforward";
  else if (subresource === "proxy") verb = "proxy";

  return {
    type: "resource",
    verb,
    apiGroup,
    apiVersion,
    resource,
    ...(subresource !== undefined ? { subresource } : {}),
    ...(isNamespaceObject && name !== undefined ? { namespace: name } : namespace !== undefined ? { namespace } : {}),
    ...(named !== undefined ? { name: named } : {}),
    kind: roleKind(apiGroup, resource),
    namespaced,
    path: canonical(parts),
  };
}
