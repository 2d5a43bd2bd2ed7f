// What the Kubernetes proxy lets through for a set of roles (table-driven), and how
// list, table and watch answers are filtered down to the allowed objects.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { allowObject, authorizeRequest, filterListText, filterObject, filterWatchStream, parseKubeApiRequest, type ResourceRequest } from "../../src/auth/kubernetes/index.ts";
import { parseResources, type RoleResource } from "../../src/resources/index.ts";
import { scenario } from "./_auth.ts";

const roles = (text: string) => parseResources(text, "roles.yaml") as RoleResource[];

/** seed 002's role: v6, every cluster, pods everywhere. */
const KUBE_ROLE = roles(scenario("role-kube.yaml"));

/** v7: get/list/watch pods in demo, except pod "secret-pod"; nothing else. */
const PODS_V7 = roles(`kind: role
version: v7
metadata: {name: pods-reader}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: demo, name: "*", verbs: [get, list, watch]}
      - {kind: pod, namespace: "team-*", name: "web-*", verbs: ["*"]}
      - {kind: namespace, namespace: demo, name: demo, verbs: [get]}
    kubernetes_groups: [viewers]
  deny:
    kubernetes_resources:
      - {kind: pod, namespace: demo, name: secret-pod, verbs: ["*"]}
`);

/** v7 with every kind in one namespace. */
const ALL_IN_OPS = roles(`kind: role
version: v7
metadata: {name: ops}
spec:
  allow:
    kubernetes_labels: {'*': '*'}
    kubernetes_resources:
      - {kind: "*", namespace: ops, name: "*"}
`);

/** Denies a whole cluster by label. */
const NO_PROD = roles(`kind: role
version: v7
metadata: {name: no-prod}
spec:
  deny:
    kubernetes_labels: {env: prod}
`);

const PROD = { env: "prod" };
const DEV = { env: "dev" };

const req = (method: string, target: string) => {
  const u = new URL(target, "https://k");
  return parseKubeApiRequest(method, u.pathname, u.searchParams);
};

type Row = [name: string, roles: RoleResource[], labels: Record<string, string>, method: string, target: string, allowed: boolean, filter?: boolean, createName?: string];

const rows: Row[] = [
  // seed 002's role: pods anywhere, and (v6) everything it does not govern
  ["v6 role: list pods in demo", KUBE_ROLE, PROD, "GET", "/api/v1/namespaces/demo/pods", true, true],
  ["v6 role: get one pod", KUBE_ROLE, DEV, "GET", "/api/v1/namespaces/demo/pods/web-1", true, false],
  ["v6 role: delete a pod", KUBE_ROLE, DEV, "DELETE", "/api/v1/namespaces/demo/pods/web-1", true],
  ["v6 role: secrets are not governed by a v6 role", KUBE_ROLE, DEV, "GET", "/api/v1/namespaces/demo/secrets", true, true],
  ["v6 role: discovery", KUBE_ROLE, DEV, "GET", "/api", true, false],
  ["v6 role: other non-resource paths are not proxied", KUBE_ROLE, DEV, "GET", "/metrics", false],
  ["v6 role: discovery is read-only", KUBE_ROLE, DEV, "POST", "/apis", false],
  // v7 pods reader, on a prod cluster
  ["v7: list pods in demo (filtered)", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/pods", true, true],
  ["v7: watch pods in demo", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/pods?watch=true", true, true],
  ["v7: get a pod in demo", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/pods/web-1", true, false],
  ["v7: the denied pod", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/pods/secret-pod", false],
  ["v7: watching the denied pod by field selector", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/pods?watch=1&fieldSelector=metadata.name%3Dsecret-pod", false],
  ["v7: delete is not a granted verb in demo", PODS_V7, PROD, "DELETE", "/api/v1/namespaces/demo/pods/web-1", false],
  ["v7: secrets are not granted", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/secrets", false],
  ["v7: one secret is not granted", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo/secrets/db", false],
  ["v7: pods in another namespace", PODS_V7, PROD, "GET", "/api/v1/namespaces/kube-system/pods", false],
  ["v7: pods across namespaces (some allowed: filtered)", PODS_V7, PROD, "GET", "/api/v1/pods", true, true],
  ["v7: the namespace object demo", PODS_V7, PROD, "GET", "/api/v1/namespaces/demo", true],
  ["v7: the namespace object kube-system", PODS_V7, PROD, "GET", "/api/v1/namespaces/kube-system", false],
  ["v7: create web-2 in team-a (name from the body)", PODS_V7, PROD, "POST", "/api/v1/namespaces/team-a/pods", true, false, "web-2"],
  ["v7: create db-1 in team-a", PODS_V7, PROD, "POST", "/api/v1/namespaces/team-a/pods", false, false, "db-1"],
  ["v7: create with a generated name needs every name", PODS_V7, PROD, "POST", "/api/v1/namespaces/team-a/pods", false],
  ["v7: delete collection in team-a needs every name", PODS_V7, PROD, "DELETE", "/api/v1/namespaces/team-a/pods", false],
  ["v7: exec in team-a on web-1", PODS_V7, PROD, "POST", "/api/v1/namespaces/team-a/pods/web-1/exec", true],
  ["v7: exec in demo is not granted", PODS_V7, PROD, "POST", "/api/v1/namespaces/demo/pods/web-1/exec", false],
  ["v7: a cluster whose labels no role matches", PODS_V7, DEV, "GET", "/api/v1/namespaces/demo/pods", false],
  ["v7: discovery needs the cluster too", PODS_V7, DEV, "GET", "/api", false],
  // every kind in ops
  ["ops: deployments in ops", ALL_IN_OPS, DEV, "GET", "/apis/apps/v1/namespaces/ops/deployments/web", true],
  ["ops: a custom resource in ops", ALL_IN_OPS, DEV, "PATCH", "/apis/example.com/v1/namespaces/ops/widgets/w", true],
  ["ops: delete collection in ops (every name, nothing denied)", ALL_IN_OPS, DEV, "DELETE", "/api/v1/namespaces/ops/configmaps", true],
  ["ops: create with a generated name in ops", ALL_IN_OPS, DEV, "POST", "/api/v1/namespaces/ops/pods", true],
  ["ops: nodes are cluster-scoped, outside ops", ALL_IN_OPS, DEV, "GET", "/api/v1/nodes", false],
  // a deny on the cluster's labels closes it whatever else allows
  ["deny labels close the cluster", [...KUBE_ROLE, ...NO_PROD], PROD, "GET", "/api/v1/namespaces/demo/pods", false],
  ["deny labels close discovery too", [...KUBE_ROLE, ...NO_PROD], PROD, "GET", "/api", false],
  ["deny labels leave other clusters open", [...KUBE_ROLE, ...NO_PROD], DEV, "GET", "/api/v1/namespaces/demo/pods", true, true],
  ["no roles, no access", [], DEV, "GET", "/api", false],
];

describe("authorizeRequest()", () => {
  for (const [name, rs, labels, method, target, allowed, filter, createName] of rows) {
    test(name, () => {
      const d = authorizeRequest(rs, labels, req(method, target), createName);
      expect({ allowed: d.allowed, reason: d.reason }).toMatchObject({ allowed });
      if (filter !== undefined) expect(d.filter).toBe(filter);
      expect(d.reason.length).toBeGreaterThan(0);
    });
  }

  test("reasons name the role or what is missing", () => {
    expect(authorizeRequest(PODS_V7, PROD, req("GET", "/api/v1/namespaces/demo/secrets")).reason).toBe(`no role allows list on secret in namespace "demo"`);
    expect(authorizeRequest(PODS_V7, PROD, req("GET", "/api/v1/namespaces/demo/pods/secret-pod")).reason).toBe(`role "pods-reader" denies get on pod "demo/secret-pod"`);
    expect(authorizeRequest(PODS_V7, DEV, req("GET", "/api")).reason).toBe("no role's kubernetes_labels match this Kubernetes cluster");
    expect(authorizeRequest([...KUBE_ROLE, ...NO_PROD], PROD, req("GET", "/api")).reason).toBe(`role "no-prod" denies access to this Kubernetes cluster`);
  });
});

describe("filtering answers", () => {
  const list = req("GET", "/api/v1/pods") as ResourceRequest;
  const check = (o: { name: string; namespace?: string }) => allowObject(PODS_V7, PROD, list, o);
  const pod = (namespace: string, name: string) => ({ kind: "Pod", metadata: { namespace, name } });

  test("a list keeps the allowed items and drops remainingItemCount", () => {
    const body = JSON.stringify({
      kind: "PodList",
      metadata: { resourceVersion: "9", remainingItemCount: 40 },
      items: [pod("demo", "web-1"), pod("demo", "secret-pod"), pod("kube-system", "dns"), pod("team-a", "web-3"), pod("team-a", "db"), { metadata: {} }],
    });
    const out = JSON.parse(filterListText(body, check));
    expect(out.items.map((p: any) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual(["demo/web-1", "team-a/web-3"]);
    expect(out.metadata).toEqual({ resourceVersion: "9" });
  });

  test("a Table keeps the allowed rows (kubectl get asks for tables)", () => {
    const table = {
      kind: "Table",
      apiVersion: "meta.k8s.io/v1",
      rows: [
        { cells: ["web-1"], object: { metadata: { namespace: "demo", name: "web-1" } } },
        { cells: ["secret-pod"], object: { metadata: { namespace: "demo", name: "secret-pod" } } },
        { cells: ["no-object"] },
      ],
    };
    const out = filterObject(table, check) as { rows: { cells: string[] }[] };
    expect(out.rows.map((r) => r.cells[0])).toEqual(["web-1"]);
  });

  test("a Status passes, an answer that is not JSON is refused", () => {
    expect(filterObject({ kind: "Status", code: 410 }, check)).toEqual({ kind: "Status", code: 410 });
    expect(() => filterListText("<html>", check)).toThrow("something other than JSON");
  });

  test("a watch stream drops events about hidden objects and passes the others as they come", async () => {
    const events = [
      { type: "ADDED", object: pod("demo", "web-1") },
      { type: "ADDED", object: pod("demo", "secret-pod") },
      { type: "BOOKMARK", object: { kind: "Pod", metadata: { resourceVersion: "12" } } },
      { type: "MODIFIED", object: { kind: "Table", rows: [{ cells: [], object: { metadata: { namespace: "kube-system", name: "dns" } } }] } },
      { type: "DELETED", object: pod("team-a", "web-9") },
      { type: "ERROR", object: { kind: "Status", code: 410 } },
    ];
    const text = events.map((e) => JSON.stringify(e) + "\n").join("") + "{not json}\n";
    // split the stream at awkward places: inside a line, and inside a multi-byte character
    const bytes = new TextEncoder().encode(text.replace("web-1", "wéb-1"));
    const chunks = [bytes.slice(0, 7), bytes.slice(7, 50), bytes.slice(50, 51), bytes.slice(51)];
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const ch of chunks) c.enqueue(ch);
        c.close();
      },
    });
    const allowAll = (o: { name: string; namespace?: string }) => o.name === "wéb-1" || check(o);
    const out = await new Response(filterWatchStream(body, allowAll)).text();
    const types = out.trim().split("\n").map((l) => JSON.parse(l).type + ":" + (JSON.parse(l).object.metadata?.name ?? ""));
    expect(types).toEqual(["ADDED:wéb-1", "BOOKMARK:", "DELETED:web-9", "ERROR:"]);
  });

  test("filterObject never lets through an object without a readable name (fast-check)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const out = filterObject(v, () => true);
        if (out === undefined) return;
        const o = out as Record<string, unknown>;
        if (o.kind === "Status") return;
        if (Array.isArray(o.items)) {
          for (const item of o.items) expect(typeof (item as any)?.metadata?.name).toBe("string");
        } else if (o.kind === "Table" && Array.isArray(o.rows)) {
          for (const row of o.rows) expect(typeof (row as any)?.object?.metadata?.name).toBe("string");
        } else {
          expect(typeof (o as any).metadata?.name).toBe("string");
        }
      }),
      { numRuns: 2000 },
    );
  });
});
