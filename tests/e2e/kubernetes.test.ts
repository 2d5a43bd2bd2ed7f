/**
 * Seed flows 2 and 3 end to end with the compiled executable. There is no Kubernetes
 * cluster on the test machines: the upstream API server is the fake one the test
 * starts (TLS, pods, Secrets), which records the impersonation headers it gets.
 *
 * Flow 2: `ctl create -f role-kube.yaml`, `ctl bots add example`, tbot-v1.yaml with the
 * printed token and pin, `start --oneshot` writes kubeconfig.yaml, and the real kubectl
 * lists pods through the auth service's proxy as alice/example; what the roles refuse
 * is a 403 that never reaches the cluster.
 * Flow 3: token-kubernetes.yaml with a JWKS, tbot-kubernetes.yaml as written, the pod's
 * environment from k8s-deployment.yaml: the identity lands in Secret identity-output;
 * tokens for another service account, audience or key, or expired, are refused and
 * audited.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { has, isRoot, requirePrereqs } from "../_prereq.ts";
import { clusterKey, serviceAccountToken, tokenYaml, type ClusterKey } from "../_support/kube_jwt.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake_apiserver.ts";
import { ensureBinary, run, sh, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

import { SCENARIOS } from "../_scenarios.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
const scenario = (name: string) => join(SCENARIOS, name);

/** A v7 role for the denial case: pods in demo only, read-only. */
const PODS_ONLY = `kind: role
version: v7
metadata:
  name: kube-pods-only
spec:
  allow:
    kubernetes_labels: {env: prod}
    kubernetes_resources:
      - {kind: pod, namespace: demo, name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers]
`;

let work: ReturnType<typeof tempDir>;
let api: FakeApiServer;
let auth: AuthProcess;
let pin = "";

async function tool(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: work.path, ...env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: out + err };
}

const kubectl = (kubeconfig: string, ...args: string[]) => tool(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(work.path, "kube-cache"), ...args]);

async function events(type: string): Promise<{ type: string; fields: Record<string, any> }[]> {
  return JSON.parse(await auth.ctlOk("events", "ls", "--type", type, "--format", "json"));
}

beforeAll(async () => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"], openssl: [has("openssl"), "apt-get install openssl"] });
  ensureBinary();
  work = tempDir("mid-kube-e2e-");
  api = await startFakeApiServer({ token: "cluster-sa-token" });
  api.pods.push({ namespace: "demo", name: "web-1" }, { namespace: "demo", name: "web-2" }, { namespace: "kube-system", name: "coredns" });
  await writeFile(join(work.path, "k8s-ca.crt"), api.caPem);
  await writeFile(join(work.path, "k8s-token"), "cluster-sa-token\n");
  const authYaml = join(work.path, "auth.yaml");
  await writeFile(
    authYaml,
    [
      "version: v1",
      "cluster_name: example.teleport.sh",
      "kubernetes_clusters:",
      "  - name: example-k8s-cluster",
      `    server: ${api.url}`,
      `    ca_path: ${join(work.path, "k8s-ca.crt")}`,
      `    token_path: ${join(work.path, "k8s-token")}`,
      "    labels: {env: prod}",
      "",
    ].join("\n"),
  );
  auth = await startAuth(join(work.path, "auth"), { args: ["-c", authYaml] });
  pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  await api?.close();
  work?.[Symbol.dispose]();
});

describe("flow 2: kubectl through the auth service's Kubernetes proxy (seed 002)", () => {
  let kubeconfig = "";

  test("ctl create role-kube.yaml, bots add, init with ACLs, start --oneshot with tbot-v1.yaml writes kubeconfig.yaml", async () => {
    requirePrereqs({ root: [isRoot, "run as root"], "setfacl and getfacl": [has("setfacl") && has("getfacl"), "apt-get install acl"], setpriv: [has("setpriv"), "apt-get install util-linux"] });
    expect(await auth.ctlOk("create", "-f", scenario("role-kube.yaml"))).toContain("machine-id-kube-role");
    const bot = JSON.parse(await auth.ctlOk("bots", "add", "example", "--roles=machine-id-kube-role", "--format", "json")) as { token: string; ca_pins: string[] };
    expect(bot.ca_pins).toEqual([pin]);
    const out = join(work.path, "machine-id");
    const cfg = join(work.path, "tbot.yaml");
    // tbot-v1.yaml as written, with what `bots add` printed, this auth service's address and writable paths
    await writeFile(
      cfg,
      (await readFile(scenario("tbot-v1.yaml"), "utf8"))
        .replace("teleport.example.com:443", auth.addr)
        .replace("abcd123-insecure-do-not-use-this", bot.token)
        .replace(/sha256:abdc\w+/, bot.ca_pins[0]!)
        .replace("/var/lib/teleport/bot", join(work.path, "bot-state"))
        .replace("/opt/machine-id", out),
    );
    // seed 002: init prepares the directory so the app user (here: nobody) reads what the agent writes
    await chmod(work.path, 0o711);
    const init = await run(["init", "-c", cfg, "--bot-user", "root", "--owner", "root:root", "--reader-user", "nobody"]);
    expect(init.code).toBe(0);
    const r = await run(["start", "-c", cfg, "--oneshot"]);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("Generated identity for Kubernetes cluster");
    expect(r.stderr).not.toContain(bot.token);
    kubeconfig = join(out, "kubeconfig.yaml");
    const doc = parseYaml(await readFile(kubeconfig, "utf8"));
    expect(doc.contexts).toEqual([{ name: "example-k8s-cluster", context: { cluster: "example-k8s-cluster", user: "example-k8s-cluster" } }]);
    expect(sh(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")]).stdout).toContain(": OK");
  }, 60_000);

  test("kubectl get pods -n demo, run as the reader user, succeeds, and the cluster saw Impersonate-User alice and Impersonate-Group example", async () => {
    const before = api.requests.length;
    const cache = join(work.path, "nobody-cache");
    await mkdir(cache, { mode: 0o777 });
    await chmod(cache, 0o777);
    const r = await tool(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "kubectl", "--kubeconfig", kubeconfig, "--cache-dir", cache, "get", "pods", "-n", "demo"], { HOME: cache });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb-1\s+1\/1\s+Running\s+0\s+1d\nweb-2\s/);
    const podsCalls = api.requests.slice(before).filter((q) => q.path === "/api/v1/namespaces/demo/pods");
    expect(podsCalls).toHaveLength(1);
    expect(api.header(podsCalls[0]!, "impersonate-user")).toEqual(["alice"]);
    expect(api.header(podsCalls[0]!, "impersonate-group")).toEqual(["example"]);
    expect(api.header(podsCalls[0]!, "authorization")).toEqual(["Bearer cluster-sa-token"]);
    const allowed = (await events("kube.request")).filter((e) => e.fields.allowed && e.fields.path === "/api/v1/namespaces/demo/pods");
    expect(allowed.at(-1)!.fields).toMatchObject({ bot: "example", verb: "list", kubernetes_user: "alice", status: 200 });
  }, 60_000);

  test("what the roles do not allow is 403 from the proxy, audited, and never reaches the cluster", async () => {
    await writeFile(join(work.path, "pods-only.yaml"), PODS_ONLY);
    await auth.ctlOk("create", "-f", join(work.path, "pods-only.yaml"));
    const bot = JSON.parse(await auth.ctlOk("bots", "add", "viewer", "--roles=kube-pods-only", "--format", "json")) as { token: string };
    const out = join(work.path, "viewer");
    const r = await run(["start", "--oneshot", "--auth-server", auth.addr, "--token", bot.token, "--ca-pin", pin, "--storage", "memory://", "-c", await v2Kube(out)]);
    expect(r.code).toBe(0);
    const viewerConfig = join(out, "kubeconfig.yaml");

    const before = api.requests.length;
    const secrets = await kubectl(viewerConfig, "get", "secrets", "-n", "demo");
    expect(secrets.code).toBe(1);
    expect(secrets.out).toContain(`Error from server (Forbidden): Access denied to Kubernetes cluster "example-k8s-cluster": no role allows list on secret in namespace "demo"`);
    const otherNs = await kubectl(viewerConfig, "get", "pods", "-n", "kube-system");
    expect(otherNs.out).toContain(`no role allows list on pod in namespace "kube-system"`);
    const asAdmin = await kubectl(kubeconfig, "get", "pods", "-n", "demo", "--as", "system:admin");
    expect(asAdmin.out).toContain(`Error from server (Forbidden): The bot may not act as Kubernetes user "system:admin"`);
    // discovery (/api, /apis, /version) is open to the bot; no resource request got through
    expect(api.requests.slice(before).filter((q) => q.path.startsWith("/api/v1/namespaces/"))).toEqual([]);

    const allPods = await kubectl(viewerConfig, "get", "pods", "-A", "-o", "name");
    expect(allPods).toEqual({ code: 0, out: "pod/web-1\npod/web-2\n" }); // coredns filtered out

    const denied = (await events("kube.request")).filter((e) => !e.fields.allowed);
    expect(denied.map((e) => [e.fields.bot, e.fields.kind ?? "", e.fields.namespace ?? ""])).toEqual([
      ["viewer", "secret", "demo"],
      ["viewer", "pod", "kube-system"],
      ["example", "pod", "demo"],
    ]);
  }, 60_000);
});

/** A v2 config with one kubernetes output to `dir` (address, token and pin come as flags). */
async function v2Kube(dir: string): Promise<string> {
  const path = join(work.path, `kube-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(path, `version: v2\noutputs:\n  - type: kubernetes\n    kubernetes_cluster: example-k8s-cluster\n    destination:\n      type: directory\n      path: ${dir}\n`);
  return path;
}

describe("flow 3: a pod joins with its service-account token into Secret identity-output (seed 000)", () => {
  let key: ClusterKey;
  let podEnv: Record<string, string>;
  const tokensDir = () => join(work.path, "var-run-secrets-tokens");

  /** `start -c tbot-kubernetes.yaml --oneshot` in the pod environment k8s-deployment.yaml sets up, with `jwt` as the projected token. */
  async function startInPod(jwt: string) {
    await mkdir(tokensDir(), { recursive: true });
    await writeFile(join(tokensDir(), "join-sa-token"), jwt);
    return run(["start", "-c", scenario("tbot-kubernetes.yaml"), "--proxy-server", auth.addr, "--ca-pin", pin, "--oneshot"], {
      env: { ...podEnv, KUBERNETES_TOKEN_PATH: join(tokensDir(), "join-sa-token") },
    });
  }

  beforeAll(async () => {
    key = await clusterKey();
    const sa = await api.serviceAccountDir("default", "cluster-sa-token");
    podEnv = { ...sa.env, POD_NAMESPACE: "default" };
  });

  test("the token file as written loads; its placeholder JWKS refuses the join naming the token", async () => {
    // flow 2 made bot "example" with `bots add`; seed 000 makes it from bot.yaml
    expect(await auth.ctlOk("create", "-f", scenario("bot.yaml"), "--force")).toContain("example");
    expect(await auth.ctlOk("create", "-f", scenario("token-kubernetes.yaml"))).toContain("example-bot");
    const r = await startInPod(await serviceAccountToken(key));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the JWKS of join token "example-bot" is not valid JSON`);
  }, 60_000);

  test("with the cluster's JWKS the identity lands in Secret identity-output, and openssl verifies it", async () => {
    const token = join(work.path, "bot-token.yaml");
    await writeFile(token, tokenYaml(key.jwks));
    await auth.ctlOk("create", "-f", token, "--force");
    const r = await startInPod(await serviceAccountToken(key));
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    const secret = api.secrets.get("default/identity-output")!;
    expect(secret.labels).toEqual({ "app.kubernetes.io/managed-by": "machine-id" });
    const files = join(work.path, "identity-output");
    await mkdir(files, { recursive: true });
    for (const f of ["tlscert", "tlscacerts", "identity"]) await writeFile(join(files, f), Buffer.from(secret.data[f]!, "base64"));
    expect(sh(["openssl", "verify", "-CAfile", join(files, "tlscacerts"), join(files, "tlscert")]).stdout).toBe(`${join(files, "tlscert")}: OK\n`);
    expect(sh(["openssl", "x509", "-noout", "-subject", "-in", join(files, "tlscert")]).stdout).toBe("subject=O = example.teleport.sh, CN = bot-example\n");
    const joined = (await events("bot.join")).filter((e) => e.fields.join_method === "kubernetes");
    expect(joined.at(-1)!.fields).toMatchObject({ bot: "example", token: tokenFingerprint("example-bot"), service_account: "default:tbot", remote_addr: "127.0.0.1" });
  }, 60_000);

  test("tokens for another service account, another audience, another key, or expired are refused and audited", async () => {
    const before = (await events("join.failed")).length;
    const cases: [string, string, string][] = [
      [await serviceAccountToken(key, { serviceAccount: "intruder" }), `Service account "default:intruder" may not join with token "example-bot"`, "service account default:intruder matches no allow rule"],
      [await serviceAccountToken(key, { audience: "vault" }), `The service account token is for audience "vault", not this cluster`, `audience "vault" is not "example.teleport.sh"`],
      [await serviceAccountToken(await clusterKey("stolen-key")), `The service account token is not signed by a key in the JWKS of join token "example-bot"`, "signature does not verify with the static JWKS"],
      [await serviceAccountToken(key, { now: new Date(Date.now() - 7_200_000) }), "The service account token expired at", "service account token expired"],
    ];
    for (const [jwt, message] of cases) {
      const r = await startInPod(jwt);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    }
    const failed = (await events("join.failed")).slice(before);
    expect(failed.map((e) => e.fields.reason)).toEqual(cases.map((c) => c[2]));
    for (const e of failed) expect(e.fields).toMatchObject({ join_method: "kubernetes", token: tokenFingerprint("example-bot"), bot: "example", remote_addr: "127.0.0.1" });
  }, 120_000);
});
