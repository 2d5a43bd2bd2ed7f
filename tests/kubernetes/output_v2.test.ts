// The kubernetes/v2 output's pieces: selectors resolved as tbot resolves them, the
// multi-cluster kubeconfig, the auth service's list of clusters a bot's roles reach,
// and certificates for several clusters that open those and no other.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { Agent, loadStartConfig } from "../../src/agent/index.ts";
import { kubeContextName, renderMultiKubeconfig, resolveSelectors } from "../../src/agent/kubernetes/index.ts";
import { silentLogger } from "../../src/lib/log.ts";
import type { KubernetesClusterInfo } from "../../src/protocol/index.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { AppError } from "../../src/lib/errors.ts";
import { memoryLogger, tempDir } from "../agent/harness.ts";
import { keyRequest } from "../auth/harness.ts";
import { startKubeAuth, type Identity, type KubeAuth } from "./_auth.ts";
import { startFakeApiServer, type FakeApiServer } from "./fake_apiserver.ts";

const REACHABLE: KubernetesClusterInfo[] = [
  { name: "dev", labels: { env: "dev", team: "a" } },
  { name: "prod-eu", labels: { env: "prod", region: "eu" } },
  { name: "prod-us", labels: { env: "prod", region: "us" } },
];

describe("resolveSelectors()", () => {
  test("picks a cluster by name", () => {
    expect(resolveSelectors([{ name: "prod-us" }], REACHABLE)).toEqual({ names: ["prod-us"], unmatched: [] });
  });
  test("picks every cluster whose labels include all of the selector's, exactly", () => {
    expect(resolveSelectors([{ labels: { env: "prod" } }], REACHABLE).names).toEqual(["prod-eu", "prod-us"]);
    expect(resolveSelectors([{ labels: { env: "prod", region: "eu" } }], REACHABLE).names).toEqual(["prod-eu"]);
    expect(resolveSelectors([{ labels: { env: "pro*" } }], REACHABLE).names).toEqual([]);
  });
  test("name and labels together keep the selectors' order, each cluster once", () => {
    expect(resolveSelectors([{ name: "prod-us" }, { labels: { env: "prod" } }, { name: "dev" }], REACHABLE).names).toEqual(["prod-us", "prod-eu", "dev"]);
  });
  test("a label selector that matches nothing is reported, not an error", () => {
    expect(resolveSelectors([{ name: "dev" }, { labels: { env: "staging" } }], REACHABLE)).toEqual({ names: ["dev"], unmatched: [1] });
    expect(resolveSelectors([{ labels: { env: "prod" } }], [])).toEqual({ names: [], unmatched: [0] });
  });
  test("a named cluster the bot cannot reach is NOT_FOUND naming what it reaches", () => {
    let err: unknown;
    try {
      resolveSelectors([{ labels: { env: "prod" } }, { name: "staging" }], REACHABLE);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("NOT_FOUND");
    expect((err as AppError).details).toEqual({ reason: "cluster_not_reachable", cluster: "staging" });
    expect((err as AppError).message).toBe(
      `Kubernetes cluster "staging" (selectors[1]) is not served by the auth service or the bot's roles do not reach it: it reaches "dev", "prod-eu", "prod-us"`,
    );
    expect(() => resolveSelectors([{ name: "x" }], [])).toThrow(`Kubernetes cluster "x" (selectors[0]) is not served by the auth service or the bot's roles do not reach it: it reaches none`);
  });
});

describe("renderMultiKubeconfig()", () => {
  const base = { clusterName: "example.teleport.sh", authAddr: "127.0.0.1:3025", caPem: "CA\n" };
  test("one user named after the cluster; per Kubernetes cluster a cluster and a context named as tbot names them; the first is current", () => {
    const doc = parseYaml(renderMultiKubeconfig({ ...base, kubeClusters: ["prod-us", "dev"], credentials: { certPath: "/o/tlscert", keyPath: "/o/key" } }));
    expect(kubeContextName("example.teleport.sh", "dev")).toBe("example.teleport.sh-dev");
    expect(doc["current-context"]).toBe("example.teleport.sh-prod-us");
    expect(doc.users).toEqual([{ name: "example.teleport.sh", user: { "client-certificate": "/o/tlscert", "client-key": "/o/key" } }]);
    expect(doc.contexts).toEqual([
      { name: "example.teleport.sh-prod-us", context: { cluster: "example.teleport.sh-prod-us", user: "example.teleport.sh" } },
      { name: "example.teleport.sh-dev", context: { cluster: "example.teleport.sh-dev", user: "example.teleport.sh" } },
    ]);
    expect(doc.clusters.map((c: any) => c.cluster.server)).toEqual(["https://127.0.0.1:3025/v1/kubernetes/prod-us", "https://127.0.0.1:3025/v1/kubernetes/dev"]);
    expect(Buffer.from(doc.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toBe("CA\n");
  });
  test("inline credentials, and no contexts when nothing matched", () => {
    const doc = parseYaml(renderMultiKubeconfig({ ...base, kubeClusters: [], credentials: { certPem: "C", keyPem: "K" } }));
    expect(doc.users[0].user).toEqual({ "client-certificate-data": "Qw==", "client-key-data": "Sw==" });
    expect(doc.contexts).toEqual([]);
    expect(doc.clusters).toEqual([]);
    expect(doc["current-context"]).toBe("");
  });
});

const PROD_ROLE = `kind: role
version: v7
metadata: {name: prod-pods}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: "*", name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers]
  deny:
    kubernetes_labels: {region: us}
`;

describe("the auth service and kubernetes/v2 certificates", () => {
  let api: FakeApiServer;
  let auth: KubeAuth;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let bot: Identity;

  beforeAll(async () => {
    work = await tempDir("kube-v2-");
    api = await startFakeApiServer({ token: "v2-token" });
    api.pods.push({ namespace: "demo", name: "web-1" });
    const ca = join(work.path, "k8s-ca.crt");
    const token = join(work.path, "k8s-token");
    await writeFile(ca, api.caPem);
    await writeFile(token, "v2-token\n");
    const cluster = (name: string, labels: Record<string, string>) => ({ name, server: api.url, caPath: ca, tokenPath: token, insecureSkipTlsVerify: false, labels });
    auth = await startKubeAuth([cluster("prod-eu", { env: "prod", region: "eu" }), cluster("prod-asia", { env: "prod", region: "asia" }), cluster("prod-us", { env: "prod", region: "us" }), cluster("dev", { env: "dev" })]);
    await auth.create(PROD_ROLE);
    bot = await auth.joinWithToken(await auth.addBot("v2bot", ["prod-pods"]));
  });
  afterAll(async () => {
    await auth?.close();
    await api?.close();
    await work?.[Symbol.asyncDispose]();
  });

  test("GET /v1/bot/kubernetes-clusters lists the clusters the roles reach, with labels: not dev (no allow), not prod-us (deny labels)", async () => {
    const r = await auth.call("GET", "/v1/bot/kubernetes-clusters", { who: bot.conn });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({
      clusters: [
        { name: "prod-asia", labels: { env: "prod", region: "asia" } },
        { name: "prod-eu", labels: { env: "prod", region: "eu" } },
      ],
    });
  });

  test("the list needs the bot's renewable identity", async () => {
    expect((await auth.call("GET", "/v1/bot/kubernetes-clusters")).status).toBe(403);
    const output = await auth.kubeCertsMany(bot, ["prod-eu"]);
    expect((await auth.call("GET", "/v1/bot/kubernetes-clusters", { who: output.conn })).status).toBe(403);
  });

  test("a certificate for several clusters opens each of them", async () => {
    const id = await auth.kubeCertsMany(bot, ["prod-eu", "prod-asia"]);
    for (const c of ["prod-eu", "prod-asia"]) {
      const r = await auth.call("GET", `/v1/kubernetes/${c}/api/v1/namespaces/demo/pods`, { who: id.conn });
      expect(r.status).toBe(200);
    }
  });

  test("attack: a kubernetes/v2 certificate used on a cluster it was not issued for is refused and never reaches the cluster", async () => {
    const id = await auth.kubeCertsMany(bot, ["prod-eu", "prod-asia"]);
    await auth.create(PROD_ROLE.replace("deny:\n    kubernetes_labels: {region: us}\n", "").replace("{env: prod}", "{'*': '*'}"));
    try {
      const before = api.requests.length;
      const r = await auth.call("GET", "/v1/kubernetes/dev/api/v1/namespaces/demo/pods", { who: id.conn });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { message: string }).message).toBe(`The client certificate was issued for Kubernetes clusters "prod-eu", "prod-asia", not "dev"`);
      expect(api.requests.length).toBe(before);
    } finally {
      await auth.create(PROD_ROLE);
    }
  });

  test("an agent's output: a name and a label selector, one matching nothing (warned), disable_exec_plugin inlines credentials kubectl uses", async () => {
    requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"] });
    const token = await auth.addBot("v2agent", ["prod-pods"]);
    const out = join(work.path, "v2-out");
    const cfgPath = join(work.path, "v2.yaml");
    await writeFile(
      cfgPath,
      `version: v2\nauth_server: ${auth.addr}\nonboarding: {join_method: token, token: ${token}, ca_pins: ["${auth.running.ctx.authorities.caPin}"]}\nstorage: {type: memory}\n` +
        `outputs:\n  - type: kubernetes/v2\n    destination: {type: directory, path: ${out}}\n    disable_exec_plugin: true\n` +
        `    selectors:\n      - name: prod-asia\n      - labels: {env: prod}\n      - labels: {env: staging}\n`,
    );
    const { log, lines } = memoryLogger("info");
    const agent = new Agent({ config: await loadStartConfig({ config: cfgPath, oneshot: true }), log });
    expect(agent.outputNames).toEqual([`kubernetes/v2:${out}`]);
    await agent.oneshot();
    const kubeconfig = join(out, "kubeconfig.yaml");
    const doc = parseYaml(await readFile(kubeconfig, "utf8"));
    expect(doc.contexts.map((c: { name: string }) => c.name)).toEqual(["example.teleport.sh-prod-asia", "example.teleport.sh-prod-eu"]);
    expect(doc["current-context"]).toBe("example.teleport.sh-prod-asia");
    expect(Object.keys(doc.users[0].user).sort()).toEqual(["client-certificate-data", "client-key-data"]);
    const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    expect(warned).toEqual([expect.objectContaining({ msg: "A selector matches no Kubernetes cluster the bot's roles reach", selector: "selectors[2]", labels: "env=staging" })]);
    const tool = Bun.spawn(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(work.path, "cache"), "--context", "example.teleport.sh-prod-eu", "get", "pods", "-n", "demo", "-o", "name"], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, HOME: work.path },
    });
    const [stdout, stderr, code] = await Promise.all([new Response(tool.stdout).text(), new Response(tool.stderr).text(), tool.exited]);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: "pod/web-1\n", stderr: "" });
  });

  test("an agent's output naming a cluster its roles do not reach fails the write, naming what it reaches", async () => {
    const token = await auth.addBot("v2named", ["prod-pods"]);
    const cfgPath = join(work.path, "v2-named.yaml");
    await writeFile(
      cfgPath,
      `version: v2\nauth_server: ${auth.addr}\nonboarding: {join_method: token, token: ${token}, ca_pins: ["${auth.running.ctx.authorities.caPin}"]}\nstorage: {type: memory}\n` +
        `outputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors:\n      - name: prod-us\n`,
    );
    const agent = new Agent({ config: await loadStartConfig({ config: cfgPath, oneshot: true }), log: silentLogger });
    await expect(agent.oneshot()).rejects.toThrow(`Kubernetes cluster "prod-us" (selectors[0]) is not served by the auth service or the bot's roles do not reach it: it reaches "prod-asia", "prod-eu"`);
  });

  test("certificates are not issued for a cluster the roles do not reach, nor with both kubernetes_cluster and kubernetes_clusters", async () => {
    await expect(auth.kubeCertsMany(bot, ["prod-eu", "prod-us"])).rejects.toThrow(`HTTP 403`);
    await expect(auth.kubeCertsMany(bot, ["prod-eu", "nowhere"])).rejects.toThrow(`Kubernetes cluster \\"nowhere\\" is not served by this auth service`);
    const r = await auth.call("POST", "/v1/bot/certs", { who: bot.conn, body: { ...keyRequest().body, kubernetes_cluster: "prod-eu", kubernetes_clusters: ["prod-eu"] } });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { message: string } }).error.message).toBe("A certificate request names kubernetes_cluster or kubernetes_clusters, not both");
  });
});

