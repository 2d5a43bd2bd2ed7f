/**
 * Seed 000 from the pod's point of view, with what the user runs: `ctl bots add example
 * --format kubernetes --jwks jwks.json --out-dir overlay` creates the bot and token and
 * writes the overlay; `kubectl kustomize overlay` renders the manifests; the pod is then
 * reproduced from them without a cluster. The image's root filesystem (assembled as
 * `npm run image` does) is the container; the rendered volumes are written where the
 * kubelet would mount them (the ConfigMap's file, the projected token signed by a key
 * whose JWKS the token holds, the default service-account directory); the env is the
 * Deployment's, plus the KUBERNETES_SERVICE_* the kubelet adds. The agent runs chrooted
 * as 65532 on a root filesystem it cannot write, started exactly with the image's
 * entrypoint and the Deployment's args, against a fake API server (Secrets, TLS) and
 * the auth service from dist/machine-id. It must join, write the Secret with only the
 * verbs the Role grants, and turn /readyz ready.
 *
 * One value differs from the manifests: diag_addr's port. Tests run in parallel on
 * shared machines, where a fixed port may be taken; the test picks a free one instead.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, relative } from "node:path";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { JWKS_PLACEHOLDER } from "../../src/ctl/kubernetes.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { assembleRootfs, IMAGE_ENTRYPOINT, IMAGE_UID } from "../../scripts/image.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { kustomize, one, type K8sObject } from "../_support/kustomize.ts";
import { requireChroot, spawnInRootfs, type RootfsProcess } from "../_support/rootfs.ts";
import { clusterKey, serviceAccountToken, type ClusterKey } from "../_support/kube_jwt.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake_apiserver.ts";
import { ensureBinary, ROOT, sh, startAuth, tempDir, waitFor, type AuthProcess } from "./_harness.ts";

const CLUSTER = "example.teleport.sh";
const POD_TOKEN = "pod-default-sa-token";

let work: ReturnType<typeof tempDir>;
let auth: AuthProcess;
let api: FakeApiServer;
let key: ClusterKey;
let rendered: K8sObject[];
let ctlOut = "";

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Writes `text` at `path` inside the rootfs, owned by root (the kubelet's files), readable as `mode` says. */
function mount(rootfs: string, path: string, text: string, mode = 0o644, gid = 0): void {
  const dest = join(rootfs, path);
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  writeFileSync(dest, text, { mode });
  chownSync(dest, 0, gid);
  chmodSync(dest, mode);
}

beforeAll(async () => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"], openssl: [has("openssl"), "apt-get install openssl"] });
  requireChroot();
  ensureBinary();
  work = tempDir("mid-kube-deploy-");
  const authYaml = join(work.path, "auth.yaml");
  writeFileSync(authYaml, `version: v1\ncluster_name: ${CLUSTER}\n`);
  auth = await startAuth(join(work.path, "auth"), { args: ["-c", authYaml] });
  api = await startFakeApiServer({ token: POD_TOKEN });
  key = await clusterKey();

  // the user's two commands: the cluster's JWKS, then ctl bots add … --format kubernetes
  writeFileSync(join(work.path, "jwks.json"), key.jwks);
  const overlay = join(work.path, "overlay");
  ctlOut = await auth.ctlOk(
    "bots", "add", "example", "--format", "kubernetes", "--jwks", join(work.path, "jwks.json"),
    "--out-dir", overlay, "--base", relative(overlay, join(ROOT, "deploy/kubernetes/base")),
  );
  rendered = kustomize(overlay);
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  await api?.close();
  work?.[Symbol.dispose]();
});

describe("ctl bots add --format kubernetes", () => {
  test("creates the bot and its kubernetes token for default:tbot with the cluster's JWKS, and says what to apply", async () => {
    expect(ctlOut).toContain(`Bot "example" created, with join token "example-bot".`);
    expect(ctlOut).toContain(`Next: kubectl apply -k ${join(work.path, "overlay")}`);
    const token = parseYaml(await auth.ctlOk("get", "token/example-bot"));
    expect(token.spec).toMatchObject({ bot_name: "example", join_method: "kubernetes", kubernetes: { type: "static_jwks", allow: [{ service_account: "default:tbot" }] } });
    expect(JSON.parse(token.spec.kubernetes.static_jwks.jwks)).toEqual(JSON.parse(key.jwks));
    // the file it wrote for the record is the same token, loadable as is
    const written = parseYaml(readFileSync(join(work.path, "overlay/bot-token.yaml"), "utf8"));
    expect(written.metadata.name).toBe("example-bot");
  });

  test("the overlay carries this auth service's address, CA pin, token name and cluster name", async () => {
    const pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
    const deployment = one(rendered, "Deployment", "tbot");
    const cm = one(rendered, "ConfigMap", deployment.spec.template.spec.volumes.find((v: { name: string }) => v.name === "config").configMap.name);
    const config = parseYaml(cm.data["tbot.yaml"]);
    expect(config).toMatchObject({ auth_server: auth.addr, onboarding: { join_method: "kubernetes", token: "example-bot", ca_pins: [pin] } });
    // the probes' port is the one the config's diag listener binds
    const diag = deployment.spec.template.spec.containers[0].ports.find((p: { name: string }) => p.name === "diag");
    expect(config.diag_addr).toBe(`0.0.0.0:${diag.containerPort}`);
    const source = deployment.spec.template.spec.volumes.find((v: { name: string }) => v.name === "join-sa-token").projected.sources[0].serviceAccountToken;
    expect(source.audience).toBe(CLUSTER);
  });
});

describe("ctl bots add --format kubernetes without the JWKS", () => {
  test("creates only the bot and prints the token with the seed's placeholder explained, then the overlay", async () => {
    const out = await auth.ctlOk("bots", "add", "later", "--format", "kubernetes");
    const [token, overlay] = parseAllDocuments(out).map((d) => d.toJS());
    expect(out).toContain("replace the JWKS placeholder with the output of\n#   kubectl get --raw /openid/v1/jwks");
    expect(token.spec.kubernetes.static_jwks.jwks).toBe(`${JWKS_PLACEHOLDER}\n`);
    expect(overlay.kind).toBe("Kustomization");
    expect((await auth.ctl("get", "token/later-bot")).code).not.toBe(0);
    expect(await auth.ctlOk("get", "bot/later")).toContain("later");
    // the printed token, once the placeholder is replaced, is what `ctl create -f` takes
    writeFileSync(join(work.path, "later-token.yaml"), stringify(token).replace(JWKS_PLACEHOLDER, key.jwks));
    expect(await auth.ctlOk("create", "-f", join(work.path, "later-token.yaml"))).toContain("later-bot");
  });

  test("a --jwks file that is not a JWKS is refused naming the file, and nothing is created", async () => {
    writeFileSync(join(work.path, "not-jwks.json"), "<html>Unauthorized</html>");
    const r = await auth.ctl("bots", "add", "broken", "--format", "kubernetes", "--jwks", join(work.path, "not-jwks.json"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Cannot use --jwks "${join(work.path, "not-jwks.json")}": it is not a JWKS with keys`);
    expect((await auth.ctl("get", "bot/broken")).code).not.toBe(0);
  });
});

describe("the pod the rendered manifests describe", () => {
  let agent: RootfsProcess | undefined;
  let diagPort = 0;

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
  });

  test("started with the image's entrypoint and the Deployment's args, the agent joins, writes Secret identity-output and turns ready", async () => {
    const deployment = one(rendered, "Deployment", "tbot");
    const namespace = deployment.metadata.namespace!;
    const spec = deployment.spec.template.spec;
    const container = spec.containers[0];
    const secret = one(rendered, "Secret");
    // the manifests create the Secret empty (the Role cannot grant create by name)
    api.secrets.set(`${secret.metadata.namespace}/${secret.metadata.name}`, { resourceVersion: 1, data: {}, labels: secret.metadata.labels ?? {} });

    const rootfs = join(work.path, "rootfs");
    assembleRootfs(realpathSync(ensureBinary()), rootfs);
    // readOnlyRootFilesystem: nothing in the image is writable by the pod's user
    chmodSync(join(rootfs, "tmp"), 0o755);

    // the kubelet's mounts, from the rendered volumes
    diagPort = await freePort();
    for (const m of container.volumeMounts as { name: string; mountPath: string }[]) {
      const volume = spec.volumes.find((v: { name: string }) => v.name === m.name);
      if (volume.configMap) {
        const cm = one(rendered, "ConfigMap", volume.configMap.name);
        for (const [file, text] of Object.entries(cm.data as Record<string, string>)) {
          const config = parseYaml(text);
          config.diag_addr = config.diag_addr.replace(/:\d+$/, `:${diagPort}`);
          mount(rootfs, `${m.mountPath}/${file}`, stringify(config));
        }
      } else {
        for (const { serviceAccountToken: t } of volume.projected.sources) {
          const jwt = await serviceAccountToken(key, { namespace, serviceAccount: spec.serviceAccountName, audience: t.audience, ttlSeconds: t.expirationSeconds });
          // projected tokens are 0600, group-readable with fsGroup (0640)
          mount(rootfs, `${m.mountPath}/${t.path}`, jwt, spec.securityContext.fsGroup ? 0o640 : 0o600, spec.securityContext.fsGroup ?? 0);
        }
      }
    }
    // automountServiceAccountToken: the pod's default service account, for the Secret API
    const sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    mount(rootfs, `${sa}/token`, POD_TOKEN);
    mount(rootfs, `${sa}/ca.crt`, api.caPem);
    mount(rootfs, `${sa}/namespace`, namespace);

    // the Deployment's env (fieldRef metadata.namespace resolved), plus what the kubelet injects
    const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: api.host, KUBERNETES_SERVICE_PORT: String(api.port), HOSTNAME: "tbot-5d9c7b9f4-abcde" };
    for (const e of container.env as { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.fieldRef.fieldPath === "metadata.namespace") env[e.name] = namespace;
      else throw new Error(`The test does not know how to resolve env ${e.name}`);
    }
    expect(container.command).toBeUndefined();
    expect(spec.securityContext.runAsUser).toBe(IMAGE_UID);

    agent = spawnInRootfs(rootfs, [IMAGE_ENTRYPOINT, ...container.args], env);
    const ready = await waitFor(
      async () => {
        if (agent!.proc.exitCode !== null) throw new Error(`the agent exited ${agent!.proc.exitCode}:\n${agent!.output()}`);
        const r = await fetch(`http://127.0.0.1:${diagPort}${container.readinessProbe.httpGet.path}`).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      },
      "the readiness probe to pass",
      90_000,
    );
    expect(((await ready.json()) as { status: string }).status).toBe("healthy");
    expect((await fetch(`http://127.0.0.1:${diagPort}${container.livenessProbe.httpGet.path}`)).status).toBe(200);

    const stored = api.secrets.get("default/identity-output")!;
    const files = join(work.path, "identity-output");
    mkdirSync(files);
    for (const f of ["tlscert", "tlscacerts", "identity"]) writeFileSync(join(files, f), Buffer.from(stored.data[f]!, "base64"));
    expect(sh(["openssl", "verify", "-CAfile", join(files, "tlscacerts"), join(files, "tlscert")]).stdout).toBe(`${join(files, "tlscert")}: OK\n`);
    expect(sh(["openssl", "x509", "-noout", "-subject", "-in", join(files, "tlscert")]).stdout).toContain("CN = bot-example");

    // only the verbs the Role grants, on the one Secret it names, as the pod's service account
    const role = one(rendered, "Role");
    const secretCalls = api.requests.filter((q) => q.path.includes("/secrets"));
    expect(secretCalls.length).toBeGreaterThan(0);
    for (const q of secretCalls) {
      expect(q.path).toBe(`/api/v1/namespaces/default/secrets/${role.rules[0].resourceNames[0]}`);
      expect({ GET: "get", PUT: "update" }[q.method]).toBeOneOf(role.rules[0].verbs);
      expect(api.header(q, "authorization")).toEqual([`Bearer ${POD_TOKEN}`]);
    }
    const joined = JSON.parse(await auth.ctlOk("events", "ls", "--type", "bot.join", "--format", "json")) as { fields: Record<string, string> }[];
    expect(joined.at(-1)!.fields).toMatchObject({ bot: "example", join_method: "kubernetes", token: tokenFingerprint("example-bot"), service_account: "default:tbot" });
  }, 120_000);

  test("its peak memory stays under the Deployment's limit, and it stops cleanly on SIGTERM", async () => {
    const container = one(rendered, "Deployment", "tbot").spec.template.spec.containers[0];
    const limitMi = Number(/^(\d+)Mi$/.exec(container.resources.limits.memory)![1]);
    const pid = agent!.pid();
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const peakKb = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]);
    console.log(`agent in the pod: peak RSS ${(peakKb / 1024).toFixed(1)} MiB (limit ${limitMi} MiB)`);
    expect(peakKb / 1024).toBeLessThan(limitMi);
    process.kill(pid, "SIGTERM");
    expect(await agent!.proc.exited).toBe(0);
  }, 60_000);
});
