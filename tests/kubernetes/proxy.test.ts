// The auth service's Kubernetes proxy in process, in front of a fake API server:
// impersonation from the roles, refusals that never reach the cluster, filtered
// lists, a watch streamed as it happens, and the audit trail.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "../agent/harness.ts";
import { ADMIN, scenario, startKubeAuth, type Identity, type KubeAuth } from "./_auth.ts";
import { startFakeApiServer, type FakeApiServer } from "./fake_apiserver.ts";

const READER_ROLE = `kind: role
version: v7
metadata: {name: pods-reader}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: "*", name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers, auditors]
  deny:
    kubernetes_resources:
      - {kind: pod, namespace: demo, name: secret-pod}
`;
const MULTI_ROLE = `kind: role
version: v7
metadata: {name: multi}
spec:
  allow:
    kubernetes_labels: {'*': '*'}
    kubernetes_users: [deployer, auditor]
    kubernetes_groups: [ops]
`;

let api: FakeApiServer;
let auth: KubeAuth;
let work: Awaited<ReturnType<typeof tempDir>>;
let example: Identity; // seed 002's bot with machine-id-kube-role, certificate for example-k8s-cluster
let exampleRenewable: Identity;
let reader: Identity;
let multi: Identity;

const PREFIX = "/v1/kubernetes/example-k8s-cluster";

beforeAll(async () => {
  work = await tempDir("kube-proxy-");
  api = await startFakeApiServer({ token: "proxy-sa-token" });
  api.pods.push(
    { namespace: "demo", name: "web-1" },
    { namespace: "demo", name: "web-2" },
    { namespace: "demo", name: "secret-pod" },
    { namespace: "kube-system", name: "dns" },
  );
  const ca = join(work.path, "k8s-ca.crt");
  const token = join(work.path, "k8s-token");
  await writeFile(ca, api.caPem);
  await writeFile(token, "proxy-sa-token\n");
  auth = await startKubeAuth([
    { name: "example-k8s-cluster", server: api.url, caPath: ca, tokenPath: token, insecureSkipTlsVerify: false, labels: { env: "prod" } },
    { name: "dev-cluster", server: api.url, caPath: ca, tokenPath: token, insecureSkipTlsVerify: false, labels: { env: "dev" } },
  ]);
  await auth.create([scenario("role-kube.yaml"), READER_ROLE, MULTI_ROLE].join("---\n"));
  exampleRenewable = await auth.joinWithToken(await auth.addBot("example", ["machine-id-kube-role"]));
  example = await auth.kubeCerts(exampleRenewable, "example-k8s-cluster");
  reader = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("reader", ["pods-reader"])), "example-k8s-cluster");
  multi = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("multi", ["multi"])), "example-k8s-cluster");
});

afterAll(async () => {
  await auth?.close();
  await api?.close();
  await work?.[Symbol.asyncDispose]();
});

const kube = (who: Identity | undefined, method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
  auth.call(method, PREFIX + path, { ...(who ? { who: who.conn } : {}), headers, ...(body !== undefined ? { body } : {}) });

/** Runs `fn` and returns the requests the fake API server received meanwhile. */
async function upstreamDuring(fn: () => Promise<unknown>) {
  const before = api.requests.length;
  await fn();
  return api.requests.slice(before);
}

async function lastKubeEvent() {
  const evs = await auth.events("kube.request"); // oldest first
  return evs[evs.length - 1]!;
}

describe("allowed requests", () => {
  test("seed 002: pods in demo as user alice and group example, with the proxy's own token upstream", async () => {
    let res!: Response;
    const seen = await upstreamDuring(async () => {
      res = await kube(example, "GET", "/api/v1/namespaces/demo/pods?limit=500", { authorization: "Bearer the-callers-own", accept: "application/json" });
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: { metadata: { name: string } }[] };
    expect(body.items.map((p) => p.metadata.name)).toEqual(["web-1", "web-2", "secret-pod"]);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.path).toBe("/api/v1/namespaces/demo/pods");
    expect(seen[0]!.query.get("limit")).toBe("500");
    expect(api.header(seen[0]!, "impersonate-user")).toEqual(["alice"]);
    expect(api.header(seen[0]!, "impersonate-group")).toEqual(["example"]);
    expect(api.header(seen[0]!, "authorization")).toEqual(["Bearer proxy-sa-token"]);
    expect(await lastKubeEvent()).toMatchObject({
      fields: { bot: "example", kubernetes_cluster: "example-k8s-cluster", verb: "list", kind: "pod", namespace: "demo", allowed: true, kubernetes_user: "alice", kubernetes_groups: ["example"], status: 200 },
    });
  });

  test("roles that grant only groups act as the bot's own user; each group is its own header line", async () => {
    const seen = await upstreamDuring(() => kube(reader, "GET", "/api/v1/namespaces/demo/pods/web-1"));
    expect(api.header(seen[0]!, "impersonate-user")).toEqual(["bot-reader"]);
    expect(api.header(seen[0]!, "impersonate-group")).toEqual(["auditors", "viewers"]);
  });

  test("kubectl --as picks one of several granted users; --as-group narrows the groups", async () => {
    const none = await kube(multi, "GET", "/api/v1/namespaces/demo/pods/web-1");
    expect(none.status).toBe(403);
    expect(((await none.json()) as { message: string }).message).toBe(`The bot's roles grant several Kubernetes users ("auditor", "deployer"): choose one with kubectl --as`);
    const seen = await upstreamDuring(() => kube(multi, "GET", "/api/v1/namespaces/demo/pods/web-1", { "impersonate-user": "deployer", "impersonate-group": "ops" }));
    expect(api.header(seen[0]!, "impersonate-user")).toEqual(["deployer"]);
    expect(api.header(seen[0]!, "impersonate-group")).toEqual(["ops"]);
  });

  test("a list across namespaces comes back without what the roles deny", async () => {
    const res = await kube(reader, "GET", "/api/v1/pods", { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" });
    const table = (await res.json()) as { kind: string; rows: { cells: string[] }[] };
    expect(table.kind).toBe("Table");
    expect(table.rows.map((r) => r.cells[0])).toEqual(["web-1", "web-2", "dns"]);
  });

  test("protobuf is never asked for when the answer must be filtered", async () => {
    const seen = await upstreamDuring(() => kube(reader, "GET", "/api/v1/namespaces/demo/pods", { accept: "application/vnd.kubernetes.protobuf,application/json" }));
    expect(api.header(seen[0]!, "accept")).toEqual(["application/json"]);
  });

  test("a watch is streamed as events happen, without the events the roles hide", async () => {
    const res = await kube(reader, "GET", "/api/v1/namespaces/demo/pods?watch=true");
    expect(res.status).toBe(200);
    const reader_ = res.body!.getReader();
    const dec = new TextDecoder();
    let buffered = "";
    const nextEvent = async () => {
      for (;;) {
        const nl = buffered.indexOf("\n");
        if (nl >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const ev = JSON.parse(line) as { type: string; object: { metadata: { name: string } } };
          return `${ev.type} ${ev.object.metadata.name}`;
        }
        const { value, done } = await reader_.read();
        if (done) return "end";
        buffered += dec.decode(value, { stream: true });
      }
    };
    expect(await nextEvent()).toBe("ADDED web-1");
    expect(await nextEvent()).toBe("ADDED web-2");
    // the stream is live: this event is sent only now, and arrives
    api.emitPod("ADDED", { namespace: "demo", name: "web-3" });
    expect(await nextEvent()).toBe("ADDED web-3");
    api.emitPod("MODIFIED", { namespace: "demo", name: "secret-pod" });
    api.emitPod("DELETED", { namespace: "demo", name: "web-3" });
    expect(await nextEvent()).toBe("DELETED web-3");
    api.endWatches();
    expect(await nextEvent()).toBe("end");
  });
});

describe("refused requests never reach the cluster", () => {
  const refusals: [name: string, who: () => Identity | undefined, method: string, path: string, headers: Record<string, string>, status: number, message: string][] = [
    ["a kind the role does not grant", () => reader, "GET", "/api/v1/namespaces/demo/secrets", {}, 403, `Access denied to Kubernetes cluster "example-k8s-cluster": no role allows list on secret in namespace "demo"`],
    ["a denied object", () => reader, "GET", "/api/v1/namespaces/demo/pods/secret-pod", {}, 403, `Access denied to Kubernetes cluster "example-k8s-cluster": role "pods-reader" denies get on pod "demo/secret-pod"`],
    ["a verb the role does not grant", () => reader, "DELETE", "/api/v1/namespaces/demo/pods/web-1", {}, 403, `Access denied to Kubernetes cluster "example-k8s-cluster": no role allows delete on pod "demo/web-1"`],
    ["impersonating a user the roles do not grant", () => example, "GET", "/api/v1/namespaces/demo/pods", { "impersonate-user": "system:admin" }, 403, `The bot may not act as Kubernetes user "system:admin": its roles allow "alice"`],
    ["impersonating a group the roles do not grant", () => example, "GET", "/api/v1/namespaces/demo/pods", { "impersonate-group": "system:masters" }, 403, `The bot may not act as Kubernetes group "system:masters": its roles allow "example"`],
    ["impersonation extras", () => example, "GET", "/api/v1/namespaces/demo/pods", { "impersonate-extra-scopes": "x" }, 403, `The Kubernetes proxy does not forward the "impersonate-extra-scopes" header`],
    ["the renewable identity (issued for no cluster)", () => exampleRenewable, "GET", "/api/v1/namespaces/demo/pods", {}, 403, `The client certificate was issued for no Kubernetes cluster, not "example-k8s-cluster"`],
    ["no client certificate", () => undefined, "GET", "/api/v1/namespaces/demo/pods", {}, 403, "The Kubernetes proxy needs a client certificate: use the kubeconfig a machine-id kubernetes output writes"],
    ["exec without an HTTP/1.1 upgrade (h2, or no Upgrade header)", () => example, "POST", "/api/v1/namespaces/demo/pods/web-1/exec?command=sh", {}, 400, "exec, attach and portforward need an HTTP/1.1 connection upgrade (WebSocket or SPDY): connect with HTTP/1.1"],
    ["a non-resource path", () => example, "GET", "/logs/", {}, 403, `Access denied to Kubernetes cluster "example-k8s-cluster": the proxy forwards only discovery among non-resource paths, not get on "/logs"`],
  ];
  for (const [name, who, method, path, headers, status, message] of refusals) {
    test(name, async () => {
      let res!: Response;
      const seen = await upstreamDuring(async () => {
        res = await kube(who(), method, path, headers);
      });
      expect(seen).toEqual([]);
      expect(res.status).toBe(status);
      expect(res.headers.get("content-type")).toBe("application/json");
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code: status, message });
    });
  }

  test("denials are audited as kube.request with allowed false and the reason", async () => {
    await kube(reader, "GET", "/api/v1/namespaces/demo/secrets/db");
    expect(await lastKubeEvent()).toMatchObject({
      type: "kube.request",
      fields: { bot: "reader", kubernetes_cluster: "example-k8s-cluster", verb: "get", kind: "secret", namespace: "demo", name: "db", allowed: false, reason: `no role allows get on secret "demo/db"`, remote_addr: "10.1.2.3" },
    });
  });

  test("a certificate for one cluster does not open another", async () => {
    const seen = await upstreamDuring(async () => {
      const res = await auth.call("GET", "/v1/kubernetes/dev-cluster/api/v1/namespaces/demo/pods", { who: example.conn });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { message: string }).message).toBe(`The client certificate was issued for Kubernetes cluster "example-k8s-cluster", not "dev-cluster"`);
    });
    expect(seen).toEqual([]);
  });

  test("an unknown cluster is 404 naming the served ones", async () => {
    const res = await auth.call("GET", "/v1/kubernetes/nope/api", { who: example.conn });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { reason: string; message: string })).toMatchObject({
      reason: "NotFound",
      message: `Kubernetes cluster "nope" is not served by this auth service: it serves "dev-cluster", "example-k8s-cluster"`,
    });
  });

  test("an answer to HEAD carries no body, allowed or refused", async () => {
    const refused = await auth.call("HEAD", "/v1/kubernetes/nope/api", { who: example.conn });
    expect(refused.status).toBe(404);
    expect(refused.body).toBeNull();
    const allowed = await kube(example, "HEAD", "/version");
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toBe("");
  });

  test("a lock on the bot cuts its Kubernetes access at once", async () => {
    const bot = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("soon-locked", ["machine-id-kube-role"])), "example-k8s-cluster");
    expect((await kube(bot, "GET", "/api/v1/namespaces/demo/pods/web-1")).status).toBe(200);
    await auth.admin.lock({ bot: "soon-locked", message: "leaked" }, ADMIN);
    const res = await kube(bot, "GET", "/api/v1/namespaces/demo/pods/web-1");
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toContain("leaked");
  });

  test("an output certificate of a deleted bot stays refused once a bot of the same name is created again", async () => {
    const old = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("phoenix", ["machine-id-kube-role"])), "example-k8s-cluster");
    expect((await kube(old, "GET", "/api/v1/namespaces/demo/pods/web-1")).status).toBe(200);
    await auth.admin.deleteBot("phoenix", ADMIN);
    // same name, same roles, a new instance joined: the old instance stays gone
    const fresh = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("phoenix", ["machine-id-kube-role"])), "example-k8s-cluster");
    let res!: Response;
    const seen = await upstreamDuring(async () => {
      res = await kube(old, "GET", "/api/v1/namespaces/demo/pods/web-1");
    });
    expect(seen).toEqual([]);
    expect(res.status).toBe(403);
    const instance = (await lastKubeEvent()).fields.bot_instance_id as string;
    expect(((await res.json()) as { message: string }).message).toBe(
      `Bot instance "${instance}" of bot "phoenix" no longer exists: the certificate was issued to a deleted instance`,
    );
    expect(await lastKubeEvent()).toMatchObject({ fields: { bot: "phoenix", allowed: false } });
    expect((await kube(fresh, "GET", "/api/v1/namespaces/demo/pods/web-1")).status).toBe(200);
  });
});

describe("the verb of a collection GET is decided as the API server decides it", () => {
  // k8s.io/apimachinery Convert_Slice_string_To_bool: the first `watch` value is a
  // watch unless it is "0" or case-insensitively "false"; an empty value is a watch.
  test("?watch=yes is authorized and audited as watch, and upstream runs a watch", async () => {
    let res!: Response;
    const seen = await upstreamDuring(async () => {
      res = await kube(reader, "GET", "/api/v1/namespaces/demo/pods?watch=yes");
      expect(res.status).toBe(200);
      expect(await lastKubeEvent()).toMatchObject({ fields: { bot: "reader", verb: "watch", allowed: true } });
      api.endWatches();
      await res.text();
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.query.getAll("watch")).toEqual(["yes"]);
  });

  test("a role that allows list but not watch cannot watch with ?watch=yes", async () => {
    await auth.create(`kind: role
version: v7
metadata: {name: list-only}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: "*", name: "*", verbs: [get, list]}
    kubernetes_groups: [viewers]
`);
    const lister = await auth.kubeCerts(await auth.joinWithToken(await auth.addBot("lister", ["list-only"])), "example-k8s-cluster");
    for (const q of ["watch=yes", "watch=", "watch", "watch=on&watch=false", "watch=False%00"]) {
      let res!: Response;
      const seen = await upstreamDuring(async () => {
        res = await kube(lister, "GET", `/api/v1/namespaces/demo/pods?${q}`);
      });
      expect({ q, status: res.status, seen: seen.length }).toEqual({ q, status: 403, seen: 0 });
      expect(await lastKubeEvent()).toMatchObject({ fields: { bot: "lister", verb: "watch", allowed: false } });
    }
    for (const q of ["watch=false", "watch=FALSE", "watch=0", "watch=false&watch=true"]) {
      const res = await kube(lister, "GET", `/api/v1/namespaces/demo/pods?${q}`);
      expect({ q, status: res.status }).toEqual({ q, status: 200 });
      await res.text();
    }
  });

  test("the query upstream is the one the proxy decided on, re-encoded", async () => {
    // a semicolon is no separator for the API server (Go drops the pair), nor for the proxy
    const seen = await upstreamDuring(async () => {
      const res = await kube(reader, "GET", "/api/v1/namespaces/demo/pods?limit=5&watch=false;x");
      expect(await lastKubeEvent()).toMatchObject({ fields: { verb: "watch" } });
      api.endWatches();
      await res.text();
    });
    expect(seen[0]!.search).toBe("?limit=5&watch=false%3Bx");
  });
});

describe("client headers reaching the API server", () => {
  test("only the allowlisted headers are forwarded, next to the proxy's own credentials and impersonation", async () => {
    const seen = await upstreamDuring(() =>
      kube(example, "GET", "/api/v1/namespaces/demo/pods/web-1", {
        accept: "application/json",
        "user-agent": "kubectl/v1.31",
        authorization: "Bearer the-callers-own",
        "x-remote-user": "system:admin",
        "x-remote-group": "system:masters",
        "x-remote-extra-scopes": "all",
        "audit-id": "forged",
        "x-forwarded-for": "10.0.0.1",
        "kubectl-command": "kubectl get",
        cookie: "session=1",
      }),
    );
    expect(seen).toHaveLength(1);
    const names = [...new Set(seen[0]!.headerLines.map(([k]) => k.toLowerCase()))].sort();
    // host and connection are the proxy's own HTTP client's
    expect(names).toEqual(["accept", "authorization", "connection", "host", "impersonate-group", "impersonate-user", "user-agent"]);
    expect(api.header(seen[0]!, "connection")).toEqual(["keep-alive"]);
    expect(api.header(seen[0]!, "authorization")).toEqual(["Bearer proxy-sa-token"]);
    expect(api.header(seen[0]!, "user-agent")).toEqual(["kubectl/v1.31"]);
  });

  test("a patch keeps its content type", async () => {
    const seen = await upstreamDuring(() =>
      kube(example, "PATCH", "/api/v1/namespaces/demo/pods/web-1", { "content-type": "application/merge-patch+json", "x-remote-user": "system:admin" }, { metadata: { labels: { a: "b" } } }),
    );
    expect(seen).toHaveLength(1);
    expect(api.header(seen[0]!, "content-type")).toEqual(["application/merge-patch+json"]);
    expect(api.header(seen[0]!, "x-remote-user")).toEqual([]);
  });
});

describe("certificates and discovery", () => {
  test("ping lists the proxied clusters", async () => {
    const r = await auth.call("GET", "/webapi/ping");
    expect(((await r.json()) as { kubernetes_clusters: string[] }).kubernetes_clusters).toEqual(["dev-cluster", "example-k8s-cluster"]);
  });

  test("output certificates name the cluster and carry the principals its labels give", async () => {
    const { parseCertificate } = await import("../../src/crypto/index.ts");
    expect(parseCertificate(reader.certs.tls_cert).identity).toMatchObject({ kubernetesCluster: "example-k8s-cluster", kubernetesGroups: ["auditors", "viewers"] });
  });

  test("certificates for an unknown cluster, or one the roles' labels do not reach, are refused", async () => {
    const bot = await auth.joinWithToken(await auth.addBot("reader2", ["pods-reader"]));
    await expect(auth.kubeCerts(bot, "nope")).rejects.toThrow(`HTTP 404: {"error":{"code":"NOT_FOUND","message":"Kubernetes cluster \\"nope\\" is not served by this auth service: it serves \\"dev-cluster\\", \\"example-k8s-cluster\\""}}`);
    await expect(auth.kubeCerts(bot, "dev-cluster")).rejects.toThrow(`The roles of bot \\"reader2\\" do not reach Kubernetes cluster \\"dev-cluster\\"`);
  });
});

describe("upstream credentials and failures", () => {
  test("a client certificate instead of a token, checked by the API server", async () => {
    const strict = await startFakeApiServer({}); // only its CA is used: it issues the proxy's client certificate
    const certApi = await startFakeApiServer({ clientCaPem: strict.caPem });
    const client = await strict.issueClientCert("machine-id-proxy");
    const dir = work.path;
    await writeFile(join(dir, "cert-ca.crt"), certApi.caPem);
    await writeFile(join(dir, "client.crt"), client.certPem);
    await writeFile(join(dir, "client.key"), client.keyPem);
    const a = await startKubeAuth([
      { name: "c", server: certApi.url, caPath: join(dir, "cert-ca.crt"), clientCertPath: join(dir, "client.crt"), clientKeyPath: join(dir, "client.key"), insecureSkipTlsVerify: false, labels: {} },
    ]);
    try {
      await a.create(scenario("role-kube.yaml"));
      const bot = await a.kubeCerts(await a.joinWithToken(await a.addBot("example", ["machine-id-kube-role"])), "c");
      const res = await a.call("GET", "/v1/kubernetes/c/api/v1/namespaces/demo/pods", { who: bot.conn });
      expect(res.status).toBe(200);
      expect(certApi.header(certApi.requests[0]!, "authorization")).toEqual([]);
    } finally {
      await a.close();
      await certApi.close();
      await strict.close();
    }
  });

  test("an API server that cannot be reached is a 502 Status, audited", async () => {
    const gone = await startFakeApiServer({});
    const url = gone.url;
    await gone.close();
    await writeFile(join(work.path, "gone-ca.crt"), gone.caPem);
    await writeFile(join(work.path, "gone-token"), "t");
    const a = await startKubeAuth([{ name: "gone", server: url, caPath: join(work.path, "gone-ca.crt"), tokenPath: join(work.path, "gone-token"), insecureSkipTlsVerify: false, labels: {} }]);
    try {
      await a.create(scenario("role-kube.yaml"));
      const bot = await a.kubeCerts(await a.joinWithToken(await a.addBot("example", ["machine-id-kube-role"])), "gone");
      const res = await a.call("GET", "/v1/kubernetes/gone/api", { who: bot.conn });
      expect(res.status).toBe(502);
      expect(((await res.json()) as { message: string }).message).toBe(`Cannot reach Kubernetes cluster "gone" at "${url}": connection refused`);
      expect((await a.events("kube.request"))[0]!.fields).toMatchObject({ allowed: true, status: 502 });
    } finally {
      await a.close();
    }
  });

  test("an API server whose certificate does not chain to ca_path is refused", async () => {
    const other = await startFakeApiServer({});
    await writeFile(join(work.path, "wrong-ca.crt"), api.caPem);
    const a = await startKubeAuth([{ name: "w", server: other.url, caPath: join(work.path, "wrong-ca.crt"), tokenPath: join(work.path, "k8s-token"), insecureSkipTlsVerify: false, labels: {} }]);
    try {
      await a.create(scenario("role-kube.yaml"));
      const bot = await a.kubeCerts(await a.joinWithToken(await a.addBot("example", ["machine-id-kube-role"])), "w");
      const res = await a.call("GET", "/v1/kubernetes/w/api", { who: bot.conn });
      expect(res.status).toBe(502);
      expect(other.requests).toEqual([]);
    } finally {
      await a.close();
      await other.close();
    }
  });

  test("a missing CA or token file stops the service at start-up, naming the file", async () => {
    await expect(
      startKubeAuth([{ name: "x", server: api.url, caPath: join(work.path, "missing.crt"), tokenPath: join(work.path, "k8s-token"), insecureSkipTlsVerify: false, labels: {} }]),
    ).rejects.toThrow(`Cannot read the CA of Kubernetes cluster "x" "${join(work.path, "missing.crt")}": no such file or directory`);
  });
});
