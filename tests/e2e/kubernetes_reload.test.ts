/**
 * Reloading the auth service's kubernetes_clusters on SIGHUP, end to end with the
 * compiled executable: an agent with a kubernetes/v2 output selecting env=prod keeps
 * running while auth.yaml changes under the service (never restarted). A reload whose
 * new cluster has a missing CA file changes nothing and says why; one that swaps
 * cluster alpha for beta serves beta (listed to the agent, reached by kubectl) and
 * answers NOT_FOUND for alpha; a label change takes beta out of what the role reaches,
 * at once for the proxy and for the output's listing. systemd hears RELOADING=1, then
 * READY=1 with a status saying whether the reload worked.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { has, requirePrereqs } from "../_prereq.ts";
import { Proc } from "../agent/procs.ts";
import { receiver } from "../_support/notify.ts";
import { waitFor } from "../_support/wait.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake_apiserver.ts";
import { ensureBinary, startAuth, tempDir, type AuthProcess } from "./_harness.ts";
import { clusterYaml, kubeconfigContexts, kubeTools, v2AgentYaml } from "./_kube.ts";

const ROLE = `kind: role
version: v7
metadata: {name: kube-prod}
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: "*", name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers]
`;
const PREFIX = "example.teleport.sh-";

let work: ReturnType<typeof tempDir>;
const apis = new Map<string, FakeApiServer>();
let auth: AuthProcess;
let agent: Proc | undefined;
let authYaml = "";
/** What the service tells systemd ($NOTIFY_SOCKET), in order. */
let notify: Awaited<ReturnType<typeof receiver>>;

const { kubectl } = kubeTools(() => work.path);

interface ClusterEntry {
  name: "alpha" | "beta";
  labels: Record<string, string>;
  caPath?: string;
}

/** Writes auth.yaml proxying `clusters` (plus any top-level `extra` lines). */
async function writeAuthYaml(clusters: ClusterEntry[], extra: string[] = []): Promise<void> {
  const lines = ["version: v1", "cluster_name: example.teleport.sh", ...extra, "kubernetes_clusters:"];
  for (const c of clusters) {
    lines.push(...clusterYaml({ name: c.name, server: apis.get(c.name)!.url, caPath: c.caPath ?? join(work.path, `${c.name}-ca.crt`), tokenPath: join(work.path, "k8s-token"), labels: c.labels }));
  }
  await writeFile(authYaml, lines.join("\n") + "\n");
}

const count = (text: string, what: string) => text.split(what).length - 1;

/** Sends SIGHUP and waits until the service logged the outcome of this reload (`what`: its message). */
async function reload(what: string): Promise<void> {
  const before = count(auth.logs(), what);
  auth.proc.kill("SIGHUP");
  await waitFor(`"${what}" in the auth service's log`, () => count(auth.logs(), what) > before, 30_000);
}

const kubeconfigPath = () => join(work.path, "kube-out", "kubeconfig.yaml");
const contexts = () => kubeconfigContexts(kubeconfigPath());
async function events(type: string): Promise<{ fields: Record<string, any> }[]> {
  return JSON.parse(await auth.ctlOk("events", "ls", "--type", type, "--format", "json"));
}

beforeAll(async () => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"], python3: [has("python3"), "apt-get install python3"] });
  ensureBinary();
  work = tempDir("mid-kube-reload-");
  await writeFile(join(work.path, "k8s-token"), "reload-sa-token\n");
  for (const name of ["alpha", "beta"]) {
    const api = await startFakeApiServer({ token: "reload-sa-token" });
    api.pods.push({ namespace: "demo", name: `${name}-web` });
    apis.set(name, api);
    await writeFile(join(work.path, `${name}-ca.crt`), api.caPem);
  }
  authYaml = join(work.path, "auth.yaml");
  await writeAuthYaml([{ name: "alpha", labels: { env: "prod" } }]);
  const notifySocket = join(work.path, "notify.sock");
  notify = await receiver(notifySocket, 10);
  auth = await startAuth(join(work.path, "auth"), { args: ["-c", authYaml], env: { NOTIFY_SOCKET: notifySocket } });
  expect(await notify.next()).toStartWith("READY=1\nSTATUS=Listening on ");
  await writeFile(join(work.path, "role.yaml"), ROLE);
  await auth.ctlOk("create", "-f", join(work.path, "role.yaml"));
  const bot = JSON.parse(await auth.ctlOk("bots", "add", "kube-reload", "--roles=kube-prod", "--format", "json")) as { token: string; ca_pins: string[] };
  const cfg = join(work.path, "tbot.yaml");
  await writeFile(
    cfg,
    v2AgentYaml({ authAddr: auth.addr, token: bot.token, caPin: bot.ca_pins[0]!, outDir: join(work.path, "kube-out"), credentialTtl: "30m", selectors: ["labels: {env: prod}"] }),
  );
  agent = new Proc(["start", "-c", cfg]);
  await waitFor("alpha in the kubeconfig", async () => (await contexts()).join() === `${PREFIX}alpha`, 60_000);
}, 120_000);

afterAll(async () => {
  await agent?.[Symbol.asyncDispose]();
  await auth?.[Symbol.asyncDispose]();
  for (const api of apis.values()) await api.close();
  await notify?.[Symbol.asyncDispose]();
  work?.[Symbol.dispose]();
});

describe("auth start: SIGHUP reloads kubernetes_clusters", () => {
  test("a reload with a missing ca_path changes nothing: the error names the file, alpha stays served", async () => {
    const missing = join(work.path, "no-such-ca.crt");
    await writeAuthYaml([
      { name: "alpha", labels: { env: "prod" } },
      { name: "beta", labels: { env: "prod" }, caPath: missing },
    ]);
    await reload("Cannot reload the configuration");
    const line = auth.logs().split("\n").find((l) => l.includes("Cannot reload the configuration"))!;
    expect(line).toContain(authYaml);
    expect(line).toContain(missing);
    expect(line).toContain("send SIGHUP again");
    expect(await notify.next()).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(await notify.next()).toBe("READY=1\nSTATUS=Reload failed; running with the previous configuration");
    expect(await kubectl(kubeconfigPath(), "--context", `${PREFIX}alpha`, "get", "pods", "-n", "demo", "-o", "name")).toEqual({ code: 0, out: "pod/alpha-web\n" });
    expect(await events("auth.config.reload")).toEqual([]);
    expect(auth.proc.exitCode).toBeNull();
  }, 60_000);

  test("adding beta and removing alpha: beta is listed and served, alpha answers NOT_FOUND; a setting that needs a restart is named", async () => {
    await writeAuthYaml([{ name: "beta", labels: { env: "prod" } }], ["ca_key_algorithm: ed25519"]);
    await reload("Configuration reloaded");
    expect(await notify.next()).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(await notify.next()).toBe("READY=1\nSTATUS=Configuration reloaded; serving Kubernetes clusters: beta");
    expect(auth.logs()).toContain(`"ca_key_algorithm" changed in "${authYaml}" but a reload does not apply it: restart the auth service`);
    expect((await events("auth.config.reload")).at(-1)!.fields).toMatchObject({ added: ["beta"], removed: ["alpha"], changed: [], clusters: ["beta"], needs_restart: ["ca_key_algorithm"] });
    // the agent's next renewal lists the clusters again
    await waitFor("beta alone in the kubeconfig", async () => (await contexts()).join() === `${PREFIX}beta`, 60_000);
    expect(await kubectl(kubeconfigPath(), "--context", `${PREFIX}beta`, "get", "pods", "-n", "demo", "-o", "name")).toEqual({ code: 0, out: "pod/beta-web\n" });
    const alpha = apis.get("alpha")!;
    const before = alpha.requests.length;
    const gone = await kubectl(kubeconfigPath(), "--context", `${PREFIX}beta`, "--server", `https://${auth.addr}/v1/kubernetes/alpha`, "get", "pods", "-n", "demo");
    expect(gone.code).not.toBe(0);
    expect(gone.out).toContain("NotFound");
    expect(gone.out).toContain(`Kubernetes cluster "alpha" is not served by this auth service: it serves "beta"`);
    expect(alpha.requests.length).toBe(before);
  }, 120_000);

  test("a changed label takes beta out of what the role reaches, for the proxy and for the output's listing", async () => {
    // a copy of the output made while beta was reachable: its certificate names beta
    const snap = join(work.path, "kube-snap");
    await cp(join(work.path, "kube-out"), snap, { recursive: true });
    const snapConfig = join(snap, "kubeconfig.yaml");
    await writeFile(snapConfig, (await readFile(snapConfig, "utf8")).replaceAll(join(work.path, "kube-out"), snap));
    expect((await kubectl(snapConfig, "--context", `${PREFIX}beta`, "get", "pods", "-n", "demo", "-o", "name")).code).toBe(0);

    await writeAuthYaml([{ name: "beta", labels: { env: "dev" } }], ["ca_key_algorithm: ed25519"]);
    await reload("Configuration reloaded");
    expect((await events("auth.config.reload")).at(-1)!.fields).toMatchObject({ added: [], removed: [], changed: ["beta"], clusters: ["beta"] });
    const denied = await kubectl(snapConfig, "--context", `${PREFIX}beta`, "get", "pods", "-n", "demo");
    expect(denied.code).not.toBe(0);
    expect(denied.out).toContain("Forbidden");
    expect(denied.out).toContain(`Access denied to Kubernetes cluster "beta": no role's kubernetes_labels match this Kubernetes cluster`);
    await waitFor("no context left in the kubeconfig", async () => (await contexts()).length === 0, 60_000);
    expect(await agent!.stop()).toBe(0);
    expect(await auth.stop()).toBe(0);
  }, 120_000);
});
