// The Kubernetes API path parser: what the API server would route each request to,
// table-driven, and property tests with hostile paths.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { isAppError } from "../../src/lib/errors.ts";
import { parseKubeApiRequest, type KubeApiRequest } from "../../src/auth/kubernetes/index.ts";

const parse = (method: string, target: string): KubeApiRequest => {
  const u = new URL(target, "https://k");
  return parseKubeApiRequest(method, u.pathname, u.searchParams);
};

type Expect = Partial<Record<keyof Extract<KubeApiRequest, { type: "resource" }>, unknown>> & { type?: string; discovery?: boolean };

const cases: [method: string, target: string, expected: Expect][] = [
  // discovery and other non-resource paths
  ["GET", "/api", { type: "nonresource", verb: "get", discovery: true, path: "/api" }],
  ["GET", "/api/v1", { type: "nonresource", discovery: true, path: "/api/v1" }],
  ["GET", "/apis", { type: "nonresource", discovery: true }],
  ["GET", "/apis/apps", { type: "nonresource", discovery: true }],
  ["GET", "/apis/apps/v1", { type: "nonresource", discovery: true, path: "/apis/apps/v1" }],
  ["GET", "/version", { type: "nonresource", discovery: true }],
  ["GET", "/openapi/v3/api/v1", { type: "nonresource", discovery: true }],
  ["GET", "/healthz", { type: "nonresource", discovery: true }],
  ["GET", "/metrics", { type: "nonresource", discovery: false }],
  ["GET", "/logs/syslog", { type: "nonresource", discovery: false }],
  ["POST", "/api", { type: "nonresource", verb: "create", discovery: true }],
  ["GET", "/", { type: "nonresource", discovery: false, path: "/" }],
  // core group, namespaced
  ["GET", "/api/v1/namespaces/demo/pods", { type: "resource", verb: "list", apiGroup: "", resource: "pods", kind: "pod", namespace: "demo", name: undefined, namespaced: true }],
  ["GET", "/api/v1/namespaces/demo/pods?limit=500", { verb: "list", namespace: "demo" }],
  ["GET", "/api/v1/namespaces/demo/pods?watch=true", { verb: "watch", namespace: "demo" }],
  ["GET", "/api/v1/namespaces/demo/pods?watch=1&resourceVersion=5", { verb: "watch" }],
  ["GET", "/api/v1/namespaces/demo/pods?watch=false", { verb: "list" }],
  ["GET", "/api/v1/namespaces/demo/pods/web-1", { verb: "get", name: "web-1", namespace: "demo", kind: "pod" }],
  ["HEAD", "/api/v1/namespaces/demo/pods/web-1", { verb: "get", name: "web-1" }],
  ["POST", "/api/v1/namespaces/demo/pods", { verb: "create", name: undefined, namespace: "demo" }],
  ["PUT", "/api/v1/namespaces/demo/pods/web-1", { verb: "update", name: "web-1" }],
  ["PATCH", "/api/v1/namespaces/demo/pods/web-1", { verb: "patch", name: "web-1" }],
  ["DELETE", "/api/v1/namespaces/demo/pods/web-1", { verb: "delete", name: "web-1" }],
  ["DELETE", "/api/v1/namespaces/demo/pods", { verb: "deletecollection", name: undefined }],
  ["GET", "/api/v1/namespaces/demo/pods/web-1/log", { verb: "get", subresource: "log", name: "web-1" }],
  ["POST", "/api/v1/namespaces/demo/pods/web-1/exec?command=sh", { verb: "exec", subresource: "exec" }],
  ["GET", "/api/v1/namespaces/demo/pods/web-1/attach", { verb: "exec", subresource: "attach" }],
  ["POST", "/api/v1/namespaces/demo/pods/web-1/portforward", { verb: "portforward", subresource: "portforward" }],
  ["PUT", "/api/v1/namespaces/demo/pods/web-1/status", { verb: "update", subresource: "status" }],
  ["GET", "/api/v1/namespaces/demo/secrets/db", { kind: "secret", name: "db", namespace: "demo" }],
  ["GET", "/api/v1/namespaces/demo/configmaps", { kind: "configmap", verb: "list" }],
  ["GET", "/api/v1/namespaces/demo/serviceaccounts/default", { kind: "serviceaccount" }],
  // a field selector on the name narrows a list to one object
  ["GET", "/api/v1/namespaces/demo/pods?fieldSelector=metadata.name%3Dweb-1&watch=true", { verb: "watch", name: "web-1" }],
  ["GET", "/api/v1/namespaces/demo/pods?fieldSelector=status.phase%3DRunning", { verb: "list", name: undefined }],
  // across all namespaces, and cluster-scoped
  ["GET", "/api/v1/pods", { verb: "list", namespace: undefined, namespaced: true, kind: "pod" }],
  ["GET", "/api/v1/nodes", { verb: "list", kind: "kube_node", namespaced: false }],
  ["GET", "/api/v1/nodes/n1", { verb: "get", kind: "kube_node", name: "n1", namespaced: false }],
  ["GET", "/api/v1/persistentvolumes/pv1", { kind: "persistentvolume", namespaced: false }],
  // namespaces themselves: the namespace of a namespace object is its own name
  ["GET", "/api/v1/namespaces", { verb: "list", kind: "namespace", namespace: undefined, namespaced: false }],
  ["GET", "/api/v1/namespaces/demo", { verb: "get", kind: "namespace", name: "demo", namespace: "demo" }],
  ["DELETE", "/api/v1/namespaces/demo", { verb: "delete", kind: "namespace", name: "demo" }],
  ["PUT", "/api/v1/namespaces/demo/finalize", { verb: "update", kind: "namespace", name: "demo", subresource: "finalize" }],
  ["GET", "/api/v1/namespaces/demo/status", { kind: "namespace", subresource: "status" }],
  // named groups
  ["GET", "/apis/apps/v1/namespaces/demo/deployments", { apiGroup: "apps", apiVersion: "v1", resource: "deployments", kind: "deployment", verb: "list" }],
  ["PATCH", "/apis/apps/v1/namespaces/demo/deployments/web/scale", { kind: "deployment", subresource: "scale", verb: "patch" }],
  ["GET", "/apis/batch/v1/namespaces/demo/cronjobs/nightly", { kind: "cronjob", name: "nightly" }],
  ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", { kind: "clusterrole", namespaced: false }],
  ["GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/demo/roles/r", { kind: "kube_role", namespace: "demo" }],
  ["GET", "/apis/networking.k8s.io/v1/namespaces/demo/ingresses", { kind: "ingress" }],
  ["GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests", { kind: "certificatesigningrequest", namespaced: false }],
  ["GET", "/apis/example.com/v1/namespaces/demo/widgets/w", { kind: "widgets.example.com", apiGroup: "example.com", namespace: "demo" }],
  ["GET", "/apis/example.com/v1/clusterwidgets/w", { kind: "clusterwidgets.example.com", namespaced: false }],
  ["GET", "/api/v1/events", { kind: "events", verb: "list" }],
  // the older watch and proxy paths
  ["GET", "/api/v1/watch/namespaces/demo/pods", { verb: "watch", namespace: "demo", kind: "pod" }],
  ["GET", "/api/v1/watch/namespaces/demo/pods/web-1", { verb: "watch", name: "web-1" }],
  ["GET", "/api/v1/proxy/namespaces/demo/pods/web-1/some/path", { verb: "proxy", name: "web-1", subresource: undefined }],
  ["GET", "/api/v1/namespaces/demo/pods/web-1:8080/proxy/metrics/x", { verb: "proxy", subresource: "proxy" }],
  // canonical forms: slashes trimmed, percent-encoding normalised
  ["GET", "/api/v1/namespaces/demo/pods/", { verb: "list", path: "/api/v1/namespaces/demo/pods" }],
  ["GET", "/api/v1/namespaces/d%65mo/pods", { namespace: "demo", path: "/api/v1/namespaces/demo/pods" }],
];

// What k8s.io/apimachinery's Convert_Slice_string_To_bool makes of `watch` (the API
// server's request-info resolver and list handler both use it): the first value counts;
// "0" and case-insensitive "false" (Go's EqualFold, so "falſe" too) are a list; every
// other value, the empty one included, is a watch.
describe("the watch flag of a collection GET, as the API server reads it", () => {
  const table: [query: string, verb: "watch" | "list"][] = [
    ["", "list"],
    ["limit=5", "list"],
    ["watch=false", "list"],
    ["watch=FALSE", "list"],
    ["watch=False", "list"],
    ["watch=fAlSe", "list"],
    ["watch=fal%C5%BFe", "list"], // U+017F folds onto s under Go's EqualFold
    ["watch=0", "list"],
    ["watch=false&watch=true", "list"],
    ["watch=0&watch=1", "list"],
    ["wAtch=true", "list"], // parameter names are case-sensitive
    ["watch=true", "watch"],
    ["watch=1", "watch"],
    ["watch=t", "watch"],
    ["watch=True", "watch"],
    ["watch=yes", "watch"],
    ["watch=no", "watch"],
    ["watch=off", "watch"],
    ["watch=f", "watch"],
    ["watch=00", "watch"],
    ["watch=-0", "watch"],
    ["watch=%200", "watch"],
    ["watch=false%20", "watch"],
    ["watch=+false", "watch"],
    ["watch=fals", "watch"],
    ["watch=false%00", "watch"],
    ["watch=", "watch"],
    ["watch", "watch"],
    ["watch=&watch=false", "watch"],
    ["watch=true&watch=false", "watch"],
    ["watch=%", "watch"],
    ["watch=false;x", "watch"], // the proxy forwards it re-encoded as false%3Bx, which Go reads back as "false;x"
  ];
  for (const [query, verb] of table) {
    test(`?${query} is ${verb}`, () => {
      expect(parse("GET", `/api/v1/namespaces/demo/pods?${query}`)).toMatchObject({ type: "resource", verb });
    });
  }
  test("a named GET stays a get whatever watch says", () => {
    expect(parse("GET", "/api/v1/namespaces/demo/pods/web-1?watch=yes")).toMatchObject({ verb: "get", name: "web-1" });
  });
});

describe("parseKubeApiRequest()", () => {
  for (const [method, target, expected] of cases) {
    test(`${method} ${target}`, () => {
      const got = parse(method, target) as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(expected)) expect([k, got[k]]).toEqual([k, v]);
    });
  }

  const refused: [string, string, string][] = [
    ["GET", "/api/v1/namespaces/demo/pods/a%2Fb", `a segment holds an encoded "/"`],
    ["GET", "/api/v1/namespaces//pods", "it has an empty segment"],
    ["GET", "/api/v1/namespaces/demo/pods/%E0%A4%A", "it has a malformed percent-encoding"],
    ["GET", "/api/v1/namespaces/demo/pods/x%00y", "a segment holds a control character"],
    ["GET", "/api/v1/namespaces/demo/pods/web-1/log/extra", "it has segments after the subresource"],
    ["POST", "/api/v1/watch/namespaces/demo/pods", "a watch path takes GET, not POST"],
    ["GET", "/api/v1/watch", `"watch" names no resource`],
    ["TRACE", "/api/v1/pods", `method "TRACE" is not part of the Kubernetes API`],
    ["GET", "api/v1/pods", `expected it to start with "/"`],
  ];
  for (const [method, path, why] of refused) {
    test(`refuses ${method} ${path}`, () => {
      let err: unknown;
      try {
        parseKubeApiRequest(method, path, new URLSearchParams());
      } catch (e) {
        err = e;
      }
      expect(isAppError(err, "BAD_PARAMETER")).toBe(true);
      expect((err as Error).message).toBe(`Invalid Kubernetes API path "${path}": ${why}`);
    });
  }
});

describe("parseKubeApiRequest() with hostile input", () => {
  const segment = fc.oneof(
    fc.constantFrom("api", "apis", "v1", "namespaces", "pods", "watch", "proxy", "status", "finalize", "log", "exec", "..", ".", "%2F", "%2e%2e", "%", "", "apps", "demo"),
    fc.string({ maxLength: 12 }),
  );
  const pathArb = fc.array(segment, { maxLength: 9 }).map((parts) => "/" + parts.join("/"));
  const method = fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get");
  const query = fc.constantFrom("", "watch=true", "watch=1", "fieldSelector=metadata.name%3Dx", "fieldSelector=metadata.name%3D%3D");

  test("only ever returns a request or throws BAD_PARAMETER", () => {
    fc.assert(
      fc.property(method, pathArb, query, (m, p, q) => {
        try {
          const r = parseKubeApiRequest(m, p, new URLSearchParams(q));
          expect(["resource", "nonresource"]).toContain(r.type);
        } catch (e) {
          expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });

  test("the forwarded path reads back as the same request, and the API server splits it into the same segments", () => {
    fc.assert(
      fc.property(method, pathArb, query, (m, p, q) => {
        let r: KubeApiRequest;
        try {
          r = parseKubeApiRequest(m, p, new URLSearchParams(q));
        } catch {
          return;
        }
        expect(parseKubeApiRequest(m, r.path, new URLSearchParams(q))).toEqual(r);
        // what a server that decodes before it splits sees: no segment gains or loses a "/"
        const decoded = r.path.split("/").slice(1).map(decodeURIComponent);
        expect(decoded.every((s) => s !== "" && !s.includes("/") && s !== "." && s !== "..") || r.path === "/").toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
