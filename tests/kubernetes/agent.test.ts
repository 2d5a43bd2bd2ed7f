// The agent's Kubernetes pieces together, in process, with the real kubectl and
// openssl checking what it writes: seed 002's v1 config writing kubeconfig.yaml that
// kubectl uses through the auth service's proxy, and seed 000's pod joining with a
// service-account token and writing its identity into a Secret.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { Agent, loadStartConfig, registerDestination, registerJoinMethod } from "../../src/agent/index.ts";
import { KubernetesSecretDestination, kubernetesJoin } from "../../src/agent/kubernetes/index.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { tempDir } from "../agent/harness.ts";
import { scenario, startKubeAuth, type KubeAuth } from "./_auth.ts";
import { clusterKey, serviceAccountToken, tokenYaml } from "../_support/kube_jwt.ts";
import { startFakeApiServer, type FakeApiServer } from "./fake_apiserver.ts";
import { SCENARIOS } from "../_scenarios.ts";

let api: FakeApiServer;
let auth: KubeAuth;
let work: Awaited<ReturnType<typeof tempDir>>;
let podEnv: Record<string, string>;

beforeAll(async () => {
  work = await tempDir("kube-agent-");
  api = await startFakeApiServer({ token: "sa-token" });
  api.pods.push({ namespace: "demo", name: "web-1" }, { namespace: "demo", name: "web-2" });
  await writeFile(join(work.path, "k8s-ca.crt"), api.caPem);
  await writeFile(join(work.path, "k8s-token"), "sa-token");
  auth = await startKubeAuth([
    { name: "example-k8s-cluster", server: api.url, caPath: join(work.path, "k8s-ca.crt"), tokenPath: join(work.path, "k8s-token"), insecureSkipTlsVerify: false, labels: {} },
  ]);
  podEnv = { ...(await api.serviceAccountDir("default", "sa-token")).env, POD_NAMESPACE: "default" };
});
afterAll(async () => {
  await auth?.close();
  await api?.close();
  await work?.[Symbol.asyncDispose]();
});

const pin = () => auth.running.ctx.authorities.caPin;

/** Runs a tool without blocking this process (the auth service under test lives in it). */
async function tool(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: work.path, ...env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: out + err };
}

const kubectl = (kubeconfig: string, ...args: string[]) => tool(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(work.path, "kube-cache"), ...args]);

describe("seed 002: tbot-v1.yaml with a kubernetes_cluster destination", () => {
  test("oneshot writes kubeconfig.yaml; kubectl get pods -n demo goes through the proxy as alice/example", async () => {
    requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"], openssl: [has("openssl"), "apt-get install openssl"] });
    await auth.create(scenario("role-kube.yaml"));
    const token = await auth.addBot("example", ["machine-id-kube-role"]);
    const out = join(work.path, "machine-id");
    const cfgPath = join(work.path, "tbot.yaml");
    await writeFile(
      cfgPath,
      scenario("tbot-v1.yaml")
        .replace("teleport.example.com:443", auth.addr)
        .replace("abcd123-insecure-do-not-use-this", token)
        .replace(/sha256:abdc\w+/, pin())
        .replace("/var/lib/teleport/bot", join(work.path, "bot"))
        .replace("/opt/machine-id", out),
    );
    const agent = new Agent({ config: await loadStartConfig({ config: cfgPath, oneshot: true }), log: silentLogger });
    expect(agent.outputNames).toEqual([`kubernetes:${out}`]);
    await agent.oneshot();

    const kubeconfig = join(out, "kubeconfig.yaml");
    const doc = parseYaml(await readFile(kubeconfig, "utf8"));
    expect(doc["current-context"]).toBe("example-k8s-cluster");
    expect(doc.clusters[0].cluster.server).toBe(`https://${auth.addr}/v1/kubernetes/example-k8s-cluster`);
    expect(doc.users[0].user).toEqual({ "client-certificate": join(out, "tlscert"), "client-key": join(out, "key") });
    expect((await tool(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")])).out).toContain(": OK");

    const before = api.requests.length;
    const r = await kubectl(kubeconfig, "get", "pods", "-n", "demo", "-o", "name");
    expect(r).toEqual({ code: 0, out: "pod/web-1\npod/web-2\n" });
    const podsCall = api.requests.slice(before).find((q) => q.path === "/api/v1/namespaces/demo/pods")!;
    expect(api.header(podsCall, "impersonate-user")).toEqual(["alice"]);
    expect(api.header(podsCall, "impersonate-group")).toEqual(["example"]);

    // kubectl reads the proxy's refusals as the API server's own
    const denied = await kubectl(kubeconfig, "get", "pods", "-n", "demo", "--as", "system:admin");
    expect(denied).toEqual({ code: 1, out: `Error from server (Forbidden): The bot may not act as Kubernetes user "system:admin": its roles allow "alice"\n` });
  });
});

describe("seed 000: a pod joins with its service-account token and writes a Secret", () => {
  test("tbot-kubernetes.yaml: memory storage, kubernetes join, identity in Secret identity-output that openssl verifies", async () => {
    requirePrereqs({ openssl: [has("openssl"), "apt-get install openssl"] });
    const key = await clusterKey();
    await auth.create(scenario("bot.yaml"));
    await auth.create(tokenYaml(key.jwks));
    const jwtPath = join(work.path, "join-sa-token");
    await writeFile(jwtPath, await serviceAccountToken(key));
    const env = { ...podEnv, KUBERNETES_TOKEN_PATH: jwtPath };
    // the process's own environment is not a pod's: hand these two their pod environment
    const undo = [
      registerJoinMethod(kubernetesJoin(env)),
      registerDestination("kubernetes_secret", (c, deps) => {
        if (c.type !== "kubernetes_secret") throw new TypeError(c.type);
        return new KubernetesSecretDestination({ name: c.name, ...(c.namespace ? { namespace: c.namespace } : {}), log: deps.log, env });
      }),
    ];
    try {
      const cfg = await loadStartConfig({ config: join(SCENARIOS, "tbot-kubernetes.yaml"), proxyServer: auth.addr, caPins: [pin()], oneshot: true });
      await new Agent({ config: cfg, log: silentLogger }).oneshot();
      // a restarted pod (memory storage) joins again: a second instance
      await new Agent({ config: cfg, log: silentLogger }).oneshot();
    } finally {
      for (const u of undo) u();
    }
    const s = api.secrets.get("default/identity-output")!;
    expect(Object.keys(s.data).sort()).toEqual(["identity", "key", "key-cert.pub", "key.pub", "known_hosts", "ssh_config", "sshcacerts", "tlscacerts", "tlscert"]);
    const files = join(work.path, "from-secret");
    await Bun.write(join(files, "tlscert"), Buffer.from(s.data.tlscert!, "base64"));
    await Bun.write(join(files, "tlscacerts"), Buffer.from(s.data.tlscacerts!, "base64"));
    expect((await tool(["openssl", "verify", "-CAfile", join(files, "tlscacerts"), join(files, "tlscert")])).out).toBe(`${join(files, "tlscert")}: OK\n`);
    const subject = (await tool(["openssl", "x509", "-noout", "-subject", "-in", join(files, "tlscert")])).out;
    expect(subject).toBe("subject=O = example.teleport.sh, CN = bot-example\n");
    const joins = (await auth.events("bot.join")).filter((e) => e.fields.join_method === "kubernetes");
    expect(joins.map((e) => e.fields.service_account)).toEqual(["default:tbot", "default:tbot"]);
    expect(new Set(joins.map((e) => e.fields.bot_instance_id)).size).toBe(2);
  });

  test("a kubernetes output into a Secret carries inline credentials kubectl can use from anywhere", async () => {
    requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"] });
    const env = podEnv;
    const undo = registerDestination("kubernetes_secret", (c, deps) => {
      if (c.type !== "kubernetes_secret") throw new TypeError(c.type);
      return new KubernetesSecretDestination({ name: c.name, log: deps.log, env });
    });
    try {
      await auth.create(scenario("role-kube.yaml"));
      const token = await auth.addBot("kube-secret-bot", ["machine-id-kube-role"]);
      const cfgPath = join(work.path, "kube-secret.yaml");
      await writeFile(
        cfgPath,
        `version: v2\nauth_server: ${auth.addr}\nonboarding: {join_method: token, token: ${token}, ca_pins: ["${pin()}"]}\nstorage: {type: memory}\n` +
          `outputs:\n  - type: kubernetes\n    kubernetes_cluster: example-k8s-cluster\n    destination: {type: kubernetes_secret, name: kube-creds}\n`,
      );
      await new Agent({ config: await loadStartConfig({ config: cfgPath, oneshot: true }), log: silentLogger }).oneshot();
    } finally {
      undo();
    }
    const kubeconfig = join(work.path, "mounted-kubeconfig.yaml");
    await writeFile(kubeconfig, Buffer.from(api.secrets.get("default/kube-creds")!.data["kubeconfig.yaml"]!, "base64"));
    const doc = parseYaml(await readFile(kubeconfig, "utf8"));
    expect(Object.keys(doc.users[0].user).sort()).toEqual(["client-certificate-data", "client-key-data"]);
    expect(await kubectl(kubeconfig, "get", "pod", "web-2", "-n", "demo", "-o", "name")).toEqual({ code: 0, out: "pod/web-2\n" });
  });
});
