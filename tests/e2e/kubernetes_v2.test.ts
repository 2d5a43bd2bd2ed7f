/**
 * The kubernetes/v2 output end to end with the compiled executable: an auth service
 * proxying three clusters (each a fake API server of its own, with its own pods), an
 * agent whose output selects clusters by label writes one kubeconfig with a context per
 * selected cluster, and the real kubectl reaches each through the proxy. A cluster
 * added to auth.yaml (the service restarted on the same port and data directory) shows
 * in the kubeconfig after the agent's next renewal; the certificate never opens a
 * cluster it was not issued for.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { AUTH_SERVER_NAME } from "../../src/protocol/index.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { Proc } from "../agent/procs.ts";
import { waitFor } from "../_support/wait.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake_apiserver.ts";
import { ensureBinary, startAuth, tempDir, type AuthProcess } from "./_harness.ts";
import { clusterYaml, kubeconfigContexts, kubeTools, v2AgentYaml } from "./_kube.ts";

const ROLE = `kind: role
version: v7
metadata: {name: kube-everywhere}
spec:
  allow:
    kubernetes_labels: {'*': '*'}
    kubernetes_resources:
      - {kind: pod, namespace: "*", name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers]
`;

/** The clusters: name, labels, and the pod only its API server has. */
const CLUSTERS = [
  { name: "alpha", labels: { env: "prod" }, pod: "alpha-web" },
  { name: "beta", labels: { env: "prod", region: "eu" }, pod: "beta-web" },
  { name: "gamma", labels: { env: "dev" }, pod: "gamma-web" },
  { name: "delta", labels: { env: "prod" }, pod: "delta-web" },
] as const;
const PREFIX = "example.teleport.sh-";

let work: ReturnType<typeof tempDir>;
const apis = new Map<string, FakeApiServer>();
let auth: AuthProcess;
let agent: Proc | undefined;
let authYaml = "";

const { tool, kubectl } = kubeTools(() => work.path);

/** auth.yaml proxying the clusters `names`. */
async function writeAuthYaml(names: string[]): Promise<void> {
  const lines = ["version: v1", "cluster_name: example.teleport.sh", "kubernetes_clusters:"];
  for (const c of CLUSTERS.filter((c) => names.includes(c.name))) {
    lines.push(...clusterYaml({ name: c.name, server: apis.get(c.name)!.url, caPath: join(work.path, `${c.name}-ca.crt`), tokenPath: join(work.path, "k8s-token"), labels: c.labels }));
  }
  await writeFile(authYaml, lines.join("\n") + "\n");
}

const kubeconfigPath = () => join(work.path, "kube-out", "kubeconfig.yaml");
const contexts = () => kubeconfigContexts(kubeconfigPath());

/** Stops the auth service, rewrites auth.yaml with `names`, and starts it again on the same port and data directory. */
async function restartAuthWith(names: string[]): Promise<void> {
  const port = auth.port;
  expect(await auth.stop()).toBe(0);
  await writeAuthYaml(names);
  auth = await startAuth(join(work.path, "auth"), { port, args: ["-c", authYaml] });
}

beforeAll(async () => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"], curl: [has("curl"), "apt-get install curl"] });
  ensureBinary();
  work = tempDir("mid-kube-v2-");
  await writeFile(join(work.path, "k8s-token"), "v2-sa-token\n");
  for (const c of CLUSTERS) {
    const api = await startFakeApiServer({ token: "v2-sa-token" });
    api.pods.push({ namespace: "demo", name: c.pod });
    apis.set(c.name, api);
    await writeFile(join(work.path, `${c.name}-ca.crt`), api.caPem);
  }
  authYaml = join(work.path, "auth.yaml");
  await writeAuthYaml(["alpha", "beta", "gamma"]); // delta comes later
  auth = await startAuth(join(work.path, "auth"), { args: ["-c", authYaml] });
}, 120_000);

afterAll(async () => {
  await agent?.[Symbol.asyncDispose]();
  await auth?.[Symbol.asyncDispose]();
  for (const api of apis.values()) await api.close();
  work?.[Symbol.dispose]();
});

describe("kubernetes/v2: one kubeconfig for the clusters selected by labels", () => {
  test("the agent writes a context per cluster labelled env=prod, named as tbot names them, the first current", async () => {
    await writeFile(join(work.path, "role.yaml"), ROLE);
    await auth.ctlOk("create", "-f", join(work.path, "role.yaml"));
    const bot = JSON.parse(await auth.ctlOk("bots", "add", "kube-v2", "--roles=kube-everywhere", "--format", "json")) as { token: string; ca_pins: string[] };
    const cfg = join(work.path, "tbot.yaml");
    await writeFile(
      cfg,
      v2AgentYaml({ authAddr: auth.addr, token: bot.token, caPin: bot.ca_pins[0]!, outDir: join(work.path, "kube-out"), credentialTtl: "1m", selectors: ["labels: {env: prod}"] }),
    );
    agent = new Proc(["start", "-c", cfg, "--log-format", "json"]);
    await waitFor("the kubeconfig with alpha and beta", async () => (await contexts()).length === 2, 60_000);
    const doc = parseYaml(await readFile(kubeconfigPath(), "utf8"));
    expect(doc.contexts).toEqual([
      { name: `${PREFIX}alpha`, context: { cluster: `${PREFIX}alpha`, user: "example.teleport.sh" } },
      { name: `${PREFIX}beta`, context: { cluster: `${PREFIX}beta`, user: "example.teleport.sh" } },
    ]);
    expect(doc["current-context"]).toBe(`${PREFIX}alpha`);
    expect(doc.users).toEqual([{ name: "example.teleport.sh", user: { "client-certificate": join(work.path, "kube-out", "tlscert"), "client-key": join(work.path, "kube-out", "key") } }]);
    expect(doc.clusters.map((c: { cluster: { server: string } }) => c.cluster.server)).toEqual([`https://${auth.addr}/v1/kubernetes/alpha`, `https://${auth.addr}/v1/kubernetes/beta`]);
    await agent.waitForStderr(/"msg":"Generated identity for Kubernetes clusters".*"kubernetes_clusters":"alpha,beta"/);
  }, 90_000);

  test("kubectl --context reaches each selected cluster through the proxy", async () => {
    for (const name of ["alpha", "beta"]) {
      const api = apis.get(name)!;
      const before = api.requests.length;
      const r = await kubectl(kubeconfigPath(), "--context", `${PREFIX}${name}`, "get", "pods", "-n", "demo", "-o", "name");
      expect(r).toEqual({ code: 0, out: `pod/${name}-web\n` });
      const call = api.requests.slice(before).find((q) => q.path === "/api/v1/namespaces/demo/pods")!;
      expect(api.header(call, "impersonate-group")).toEqual(["viewers"]);
    }
    // without --context: the current one, alpha
    expect(await kubectl(kubeconfigPath(), "get", "pods", "-n", "demo", "-o", "name")).toEqual({ code: 0, out: "pod/alpha-web\n" });
  }, 60_000);

  test("attack: the output's certificate pointed at gamma (not selected, though the roles reach it) is refused and never reaches gamma", async () => {
    const gamma = apis.get("gamma")!;
    const before = gamma.requests.length;
    const r = await kubectl(kubeconfigPath(), "--context", `${PREFIX}alpha`, "--server", `https://${auth.addr}/v1/kubernetes/gamma`, "get", "pods", "-n", "demo");
    expect(r.code).toBe(1);
    expect(r.out).toContain("Error from server (Forbidden)");
    // the proxy's reason, as a client that shows the body sees it
    const ca = join(work.path, "auth-ca.pem");
    await writeFile(ca, Buffer.from(parseYaml(await readFile(kubeconfigPath(), "utf8")).clusters[0].cluster["certificate-authority-data"], "base64"));
    const out = join(work.path, "kube-out");
    const port = auth.port;
    const curl = await tool([
      "curl", "-sS", "--cacert", ca, "--cert", join(out, "tlscert"), "--key", join(out, "key"),
      "--connect-to", `${AUTH_SERVER_NAME}:${port}:127.0.0.1:${port}`,
      `https://${AUTH_SERVER_NAME}:${port}/v1/kubernetes/gamma/api/v1/namespaces/demo/pods`,
    ]);
    expect(JSON.parse(curl.out)).toMatchObject({ kind: "Status", code: 403, message: `The client certificate was issued for Kubernetes clusters "alpha", "beta", not "gamma"` });
    expect(gamma.requests.length).toBe(before);
  }, 60_000);

  test("a cluster added to auth.yaml shows in the kubeconfig after the next renewal, and kubectl reaches it", async () => {
    await restartAuthWith(["alpha", "beta", "gamma", "delta"]); // + delta, env=prod
    await waitFor("delta in the kubeconfig", async () => (await contexts()).includes(`${PREFIX}delta`), 90_000);
    expect(await contexts()).toEqual([`${PREFIX}alpha`, `${PREFIX}beta`, `${PREFIX}delta`]);
    await agent!.waitForStderr(/"msg":"The selected Kubernetes clusters changed; kubeconfig rewritten".*"added":"delta"/);
    const r = await kubectl(kubeconfigPath(), "--context", `${PREFIX}delta`, "get", "pods", "-n", "demo", "-o", "name");
    expect(r).toEqual({ code: 0, out: "pod/delta-web\n" });
  }, 150_000);

  test("a cluster removed from auth.yaml leaves the kubeconfig after the next renewal", async () => {
    await restartAuthWith(["alpha", "gamma", "delta"]);
    await waitFor("beta gone from the kubeconfig", async () => !(await contexts()).includes(`${PREFIX}beta`), 90_000);
    expect(await contexts()).toEqual([`${PREFIX}alpha`, `${PREFIX}delta`]);
    await agent!.waitForStderr(/"msg":"The selected Kubernetes clusters changed; kubeconfig rewritten".*"removed":"beta"/);
    expect(await agent!.stop()).toBe(0);
  }, 150_000);
});
