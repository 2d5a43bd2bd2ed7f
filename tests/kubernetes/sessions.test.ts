// kubectl 1.32's streaming commands through the auth service's Kubernetes proxy, end
// to end: exec (with and without -i), cp both ways, attach and port-forward are
// connection upgrades the proxy authorizes, forwards as the bot's Kubernetes user and
// groups, and splices; locks end them; caps refuse past a limit. exec and cp run over
// both of kubectl's transports (WebSocket, and the legacy SPDY it falls back to), as
// port-forward does. The upstream is the fake API server with the WebSocket and SPDY
// double of _streams.ts.

import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import tls from "node:tls";
import { join } from "node:path";
import { renderKubeconfig } from "../../src/agent/kubernetes/index.ts";
import { KEYS, type LockRecord } from "../../src/auth/keys.ts";
import { privateKeyToPem } from "../../src/crypto/index.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { tempDir } from "../agent/harness.ts";
import { ADMIN, scenario, startKubeAuth, type KubeAuth } from "./_auth.ts";
import { startFakeApiServer, type FakeApiServer, type SeenRequest } from "./fake_apiserver.ts";
import { SpdyClient, spdyData } from "./_spdy_client.ts";

const CLUSTER = "example-k8s-cluster";
let api: FakeApiServer;
let auth: KubeAuth;
let work: Awaited<ReturnType<typeof tempDir>>;
/** Kubeconfigs of bots: `example` (seed 002's role), `viewer` (a v7 role with get/list/watch only). */
const kubeconfigs: Record<string, string> = {};
/** The bots' output certificates and keys, for clients other than kubectl. */
const creds: Record<string, { certPem: string; keyPem: string }> = {};

const VIEWER_ROLE = `
kind: role
version: v7
metadata: {name: pod-viewer}
spec:
  allow:
    kubernetes_labels: {'*': '*'}
    kubernetes_resources:
      - {kind: pod, namespace: demo, name: "*", verbs: [get, list, watch]}
    kubernetes_groups: [viewers]
`;

async function botKubeconfig(name: string, roles: string[]): Promise<string> {
  const token = await auth.addBot(name, roles);
  const bot = await auth.joinWithToken(token);
  const out = await auth.kubeCerts(bot, CLUSTER);
  creds[name] = { certPem: out.certs.tls_cert, keyPem: privateKeyToPem(out.key.privateKey) };
  const path = join(work.path, `${name}.kubeconfig`);
  await writeFile(
    path,
    renderKubeconfig({
      cluster: CLUSTER,
      authAddr: auth.addr,
      caPem: auth.running.ctx.authorities.host.tlsCertPem,
      credentials: { certPem: out.certs.tls_cert, keyPem: privateKeyToPem(out.key.privateKey) },
    }),
  );
  return path;
}

beforeAll(async () => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"] });
  work = await tempDir("kube-sessions-");
  api = await startFakeApiServer({ token: "sa-token" });
  api.pods.push({ namespace: "demo", name: "web-1" });
  await writeFile(join(work.path, "k8s-ca.crt"), api.caPem);
  await writeFile(join(work.path, "k8s-token"), "sa-token");
  // one session per bot instance: the limit test reaches it, the others run one at a time anyway
  auth = await startKubeAuth(
    [{ name: CLUSTER, server: api.url, caPath: join(work.path, "k8s-ca.crt"), tokenPath: join(work.path, "k8s-token"), insecureSkipTlsVerify: false, labels: {} }],
    {},
    { limits: { maxKubernetesSessionsPerInstance: 1, maxKubernetesSessions: 8 } },
  );
  await auth.create(scenario("role-kube.yaml"));
  await auth.create(VIEWER_ROLE);
  kubeconfigs.example = await botKubeconfig("example", ["machine-id-kube-role"]);
  kubeconfigs.viewer = await botKubeconfig("viewer", ["pod-viewer"]);
  kubeconfigs.locked = await botKubeconfig("locked", ["machine-id-kube-role"]);
  kubeconfigs.watcher = await botKubeconfig("watcher", ["machine-id-kube-role"]);
  kubeconfigs.replica = await botKubeconfig("replica", ["machine-id-kube-role"]);
});
afterAll(async () => {
  await auth?.close();
  await api?.close();
  await work?.[Symbol.asyncDispose]();
});

interface Run {
  proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  /** Everything on stdout so far. */
  out(): string;
  /** Resolves once stdout contains `text`. */
  waitFor(text: string): Promise<void>;
  done: Promise<{ code: number; out: string; err: string }>;
}

/** Starts kubectl (never blocking this process: the auth service under test lives in it). */
function kubectl(bot: string, args: string[], env: Record<string, string> = {}): Run {
  const proc = Bun.spawn(["kubectl", "--kubeconfig", kubeconfigs[bot]!, "--cache-dir", join(work.path, "kube-cache"), ...args], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, HOME: work.path, ...env },
  });
  let out = "";
  const waiters: { text: string; resolve: () => void }[] = [];
  const pump = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stdout) {
      out += dec.decode(chunk, { stream: true });
      for (const w of [...waiters]) if (out.includes(w.text)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
    }
  })();
  const errText = new Response(proc.stderr).text();
  return {
    proc,
    out: () => out,
    waitFor: (text) => (out.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ text, resolve }))),
    done: (async () => {
      const code = await proc.exited;
      await pump;
      return { code, out, err: await errText };
    })(),
  };
}

/** Waits until `cond` holds (no fixed sleeps: polls, for as long as the test's timeout allows). */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await Bun.sleep(20);
}

/** Every session that started has ended (the per-instance cap is 1: a test must not meet the last one's session). */
async function allSessionsEnded(): Promise<boolean> {
  const ended = new Set((await auth.events("kube.session.end")).map((e) => e.fields.session_id));
  return (await auth.events("kube.session.start")).every((e) => ended.has(e.fields.session_id));
}
beforeEach(() => until(allSessionsEnded));

const upgradesSeen = (sub: string) => api.requests.filter((r) => r.path.endsWith(`/${sub}`));
const sessionEvents = async (type: string, sub: string) => (await auth.events(type)).filter((e) => e.fields.subresource === sub);

/** kubectl 1.32's two transports for exec, attach and cp: the environment that picks each. */
const EXEC_TRANSPORTS = [
  ["over WebSocket (kubectl 1.32's default)", {}],
  ["over legacy SPDY (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false)", { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" }],
] as const;
type Transport = (typeof EXEC_TRANSPORTS)[number][1];
const overSpdy = (env: Transport) => "KUBECTL_REMOTE_COMMAND_WEBSOCKETS" in env;

/**
 * The exec or attach upgrade reached the API server on the transport `env` chose: a channel
 * WebSocket, or SPDY/3.1 offering the remote-command versions one line each (and, if
 * given, kubectl opened `spdyStreams`, by their `streamtype`, in the double's latest
 * SPDY session).
 */
function expectTransport(seen: SeenRequest, env: Transport, spdyStreams?: string[]): void {
  if (overSpdy(env)) {
    expect(api.header(seen, "upgrade")).toEqual(["SPDY/3.1"]);
    expect(api.header(seen, "x-stream-protocol-version")).toEqual(expect.arrayContaining(["v5.channel.k8s.io", "v4.channel.k8s.io"]));
    expect(api.header(seen, "sec-websocket-protocol")).toEqual([]);
    if (spdyStreams) expect(api.spdyExecStreams.at(-1)).toEqual(spdyStreams);
  } else {
    expect(api.header(seen, "upgrade").map((u) => u.toLowerCase())).toEqual(["websocket"]);
    expect(api.header(seen, "sec-websocket-protocol").join(",")).toContain("v5.channel.k8s.io");
  }
}

describe("kubectl exec", () => {
  for (const [label, env] of EXEC_TRANSPORTS) {
    describe(label, () => {
      test("without -i: the command's output and exit status come back; upstream saw the bot's Kubernetes user and groups", async () => {
        const before = upgradesSeen("exec").length;
        const r = await kubectl("example", ["exec", "-n", "demo", "web-1", "--", "echo", "hello", "from", "the", "pod"], env).done;
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect(r.out).toBe("hello from the pod\n");
        const seen = upgradesSeen("exec").slice(before);
        expect(seen).toHaveLength(1);
        expect(api.header(seen[0]!, "impersonate-user")).toEqual(["alice"]);
        expect(api.header(seen[0]!, "impersonate-group")).toEqual(["example"]);
        expect(api.header(seen[0]!, "authorization")).toEqual(["Bearer sa-token"]);
        expectTransport(seen[0]!, env, ["error", "stdout", "stderr"]);
        expect(seen[0]!.query.getAll("command")).toEqual(["echo", "hello", "from", "the", "pod"]);

        const start = (await sessionEvents("kube.session.start", "exec")).at(-1)!;
        expect(start.fields).toMatchObject({ bot: "example", kubernetes_cluster: CLUSTER, namespace: "demo", pod: "web-1", container: "main", command: ["echo", "hello", "from", "the", "pod"], kubernetes_user: "alice", kubernetes_groups: ["example"], protocol: "v5.channel.k8s.io" });
        expect(start.fields.bot_instance_id).toBeString();
        await until(async () => (await sessionEvents("kube.session.end", "exec")).some((e) => e.fields.session_id === start.fields.session_id));
        const end = (await sessionEvents("kube.session.end", "exec")).find((e) => e.fields.session_id === start.fields.session_id)!;
        expect(end.fields.bytes_from_upstream).toBeGreaterThan("hello from the pod\n".length);
        expect(end.fields.bytes_from_client).toBeGreaterThan(0);
        expect(end.fields.duration_ms).toBeGreaterThanOrEqual(0);
        expect(["client_closed", "upstream_closed"]).toContain(end.fields.ended);
      }, 60_000);

      test("a non-zero exit code of the command is kubectl's exit code", async () => {
        const before = upgradesSeen("exec").length;
        const r = await kubectl("example", ["exec", "-n", "demo", "web-1", "--", "false"], env).done;
        expect(r.code).toBe(1);
        // the code came in the Status on the error channel (or stream), reason NonZeroExitCode
        expect(r.err).toContain("command terminated with exit code 1");
        expectTransport(upgradesSeen("exec").slice(before)[0]!, env, ["error", "stdout", "stderr"]);
      }, 60_000);

      test("with -i: stdin reaches the pod and its echo comes back; the first output arrives while the session is open", async () => {
        const before = upgradesSeen("exec").length;
        const run = kubectl("example", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"], env);
        run.proc.stdin.write("line one\n");
        await run.proc.stdin.flush();
        await run.waitFor("line one\n");
        // the pod still holds the session open: stdin has not ended
        expect(api.world.openSessions).toBeGreaterThan(0);
        run.proc.stdin.write("line two\n");
        await run.proc.stdin.end();
        const r = await run.done;
        expect(r.code).toBe(0);
        expect(r.out).toBe("line one\nline two\n");
        await until(() => api.world.openSessions === 0);
        expectTransport(upgradesSeen("exec").slice(before)[0]!, env, ["error", "stdin", "stdout", "stderr"]);
      }, 60_000);
    });
  }

  test("--as a Kubernetes user the roles do not grant is refused before upstream", async () => {
    const before = upgradesSeen("exec").length;
    const r = await kubectl("example", ["exec", "--as", "root", "-n", "demo", "web-1", "--", "echo", "hi"]).done;
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`may not act as Kubernetes user "root"`);
    expect(upgradesSeen("exec").length).toBe(before);
  }, 60_000);

  test("a role without exec is refused before anything reaches upstream, and the refusal is audited", async () => {
    const before = api.requests.length;
    const r = await kubectl("viewer", ["exec", "-n", "demo", "web-1", "--", "echo", "hi"]).done;
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("no role allows exec on pod");
    // kubectl may read the pod first (allowed), but no exec request reaches the API server
    expect(api.requests.slice(before).filter((q) => q.path.endsWith("/exec"))).toEqual([]);
    const refused = (await auth.events("kube.request")).filter((e) => e.fields.bot === "viewer" && e.fields.subresource === "exec");
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((e) => e.fields.allowed === false)).toBe(true);
  }, 60_000);
});

describe("answers of the API server other than 101", () => {
  test("are relayed as they are: an API server refusing WebSockets and SPDY exec fails kubectl with its message", async () => {
    api.refuseWebSockets = true;
    api.refuseSpdyExec = true;
    try {
      const before = upgradesSeen("exec").length;
      const r = await kubectl("example", ["exec", "-n", "demo", "web-1", "--", "echo", "hi"]).done;
      expect(r.code).not.toBe(0);
      // kubectl tried WebSocket, then fell back to SPDY: both reached the API server, both refused there
      const seen = upgradesSeen("exec").slice(before);
      expect(seen.map((q) => (api.header(q, "upgrade")[0] ?? "").toLowerCase())).toEqual(["websocket", "spdy/3.1"]);
      expect(r.err).toContain("SPDY exec is not served here");
      const relayed = (await auth.events("kube.request")).filter((e) => e.fields.bot === "example" && e.fields.subresource === "exec").slice(-2);
      expect(relayed.map((e) => [e.fields.allowed, e.fields.status])).toEqual([
        [true, 400],
        [true, 400],
      ]);
    } finally {
      api.refuseWebSockets = false;
      api.refuseSpdyExec = false;
    }
  }, 60_000);
});

describe("kubectl cp (tar through exec)", () => {
  for (const [label, env] of EXEC_TRANSPORTS) {
    describe(label, () => {
      // every file name differs per transport: a file left by the other one cannot pass for this one's
      const tag = overSpdy(env) ? "spdy" : "ws";

      test("from the pod: the file comes out whole", async () => {
        // 4 MiB: more than the sockets buffer, so the splice pauses a side while the other catches up
        const content = Array.from({ length: 1 << 16 }, (_, i) => `report line ${String(i).padStart(8, "0")}\n`.padEnd(64, ".")).join("");
        api.world.files.set(`/tmp/report-${tag}.txt`, Buffer.from(content));
        const dest = join(work.path, `report-${tag}.txt`);
        const before = upgradesSeen("exec").length;
        const r = await kubectl("example", ["cp", `demo/web-1:/tmp/report-${tag}.txt`, dest], env).done;
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect(await readFile(dest, "utf8")).toBe(content);
        const start = (await sessionEvents("kube.session.start", "exec")).at(-1)!;
        expect(start.fields.command).toEqual(["tar", "cf", "-", `/tmp/report-${tag}.txt`]);
        const seen = upgradesSeen("exec").slice(before);
        expect(seen).toHaveLength(1);
        expectTransport(seen[0]!, env, ["error", "stdout", "stderr"]);
      }, 60_000);

      test("to the pod: the file arrives through stdin", async () => {
        const src = join(work.path, `config-${tag}.ini`);
        // 1.1 MB: past SPDY's initial 64 KiB stream window and the sockets' buffers
        const content = "[main]\nkey = value\n".repeat(60000);
        await writeFile(src, content);
        const before = upgradesSeen("exec").length;
        const r = await kubectl("example", ["cp", src, `demo/web-1:/tmp/config-${tag}.ini`], env).done;
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect(api.world.files.get(`/tmp/config-${tag}.ini`)?.toString("utf8")).toBe(content);
        const seen = upgradesSeen("exec").slice(before);
        expect(seen.length).toBeGreaterThan(0);
        // the last exec is the tar reading stdin; each one went over the transport asked for
        expect(seen.at(-1)!.query.getAll("command")[0]).toBe("tar");
        for (const q of seen.slice(0, -1)) expectTransport(q, env);
        expectTransport(seen.at(-1)!, env, ["error", "stdin", "stdout", "stderr"]);
      }, 60_000);
    });
  }
});

describe("kubectl attach", () => {
  for (const [label, env] of EXEC_TRANSPORTS) {
    test(`${label}: the container's output comes back, and with -i its stdin goes in`, async () => {
      const plain = await kubectl("example", ["attach", "-n", "demo", "web-1"], env).done;
      expect(plain.code).toBe(0);
      expect(plain.out).toContain("attached to main\n");
      expectTransport(upgradesSeen("attach").at(-1)!, env, ["error", "stdout", "stderr"]);

      const run = kubectl("example", ["attach", "-i", "-n", "demo", "web-1"], env);
      await run.waitFor("attached to main\n");
      run.proc.stdin.write("typed in\n");
      await run.proc.stdin.end();
      const r = await run.done;
      expect(r.code).toBe(0);
      expect(r.out).toContain("typed in\n");
      const seen = upgradesSeen("attach").at(-1)!;
      expect(api.header(seen, "impersonate-user")).toEqual(["alice"]);
      expectTransport(seen, env, ["error", "stdin", "stdout", "stderr"]);
      expect((await sessionEvents("kube.session.start", "attach")).at(-1)!.fields).toMatchObject({ pod: "web-1", stdin: true, kubernetes_user: "alice" });
    }, 60_000);
  }
});

/** A free local port, for kubectl port-forward to listen on. */
async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** Sends `text` to 127.0.0.1:`port` and reads until `expect` came back. */
async function roundTrip(port: number, text: string, expected: string): Promise<string> {
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  let got = "";
  const sock = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(s, d) {
        got += Buffer.from(d).toString("utf8");
        if (got.includes(expected)) {
          resolve(got); // before end(): Bun may run close() within it
          s.end();
        }
      },
      close() {
        reject(new Error(`connection closed with only "${got}"`));
      },
      error(_s, e) {
        reject(e);
      },
    },
  });
  sock.write(text);
  return promise;
}

describe("kubectl port-forward", () => {
  for (const [label, env] of [
    ["over WebSocket-tunnelled SPDY (kubectl 1.32's default)", {}],
    ["over legacy SPDY (KUBECTL_PORT_FORWARD_WEBSOCKETS=false)", { KUBECTL_PORT_FORWARD_WEBSOCKETS: "false" }],
  ] as const) {
    test(label, async () => {
      const [local, local2] = [await freePort(), await freePort()];
      const pfBefore = api.portForwards.length;
      const run = kubectl("example", ["port-forward", "-n", "demo", "pod/web-1", `${local}:5432`, `${local2}:8080`], env);
      await run.waitFor(`Forwarding from 127.0.0.1:${local2}`);
      expect(await roundTrip(local, "ping-1", "pong:ping-1")).toBe("pong:ping-1");
      expect(await roundTrip(local2, "ping-2", "pong:ping-2")).toBe("pong:ping-2");
      expect(await roundTrip(local, "ping-3", "pong:ping-3")).toBe("pong:ping-3");
      run.proc.kill();
      await run.done;
      expect(api.portForwards.length).toBe(pfBefore + 1);
      expect(api.portForwards.at(-1)!.received).toEqual(["ping-1", "ping-2", "ping-3"]);
      const seen = upgradesSeen("portforward").at(-1)!;
      expect(api.header(seen, "impersonate-user")).toEqual(["alice"]);
      if ("KUBECTL_PORT_FORWARD_WEBSOCKETS" in env) expect(api.header(seen, "upgrade")).toEqual(["SPDY/3.1"]);
      else expect(api.header(seen, "sec-websocket-protocol").join(",")).toContain("SPDY/3.1+portforward.k8s.io");
      const start = (await sessionEvents("kube.session.start", "portforward")).at(-1)!;
      // kubectl names the port inside the stream (a SPDY header), not in the URL
      expect(start.fields).toMatchObject({ pod: "web-1", ports: [], kubernetes_user: "alice" });
      await until(async () => (await sessionEvents("kube.session.end", "portforward")).some((e) => e.fields.session_id === start.fields.session_id));
      const end = (await sessionEvents("kube.session.end", "portforward")).find((e) => e.fields.session_id === start.fields.session_id)!;
      // a killed kubectl's connection ends with a FIN or a reset, as the kernel sends it
      expect(["client_closed", "client_error"]).toContain(end.fields.ended);
      // the proxy read them from kubectl's streams: two connections to 5432, one to 8080
      expect(end.fields).toMatchObject({ ports: [5432, 8080], ports_observed: "complete" });
      const forwarded = (await auth.events("kube.portforward")).filter((e) => e.fields.session_id === start.fields.session_id);
      expect(forwarded.map((e) => e.fields)).toEqual(
        [5432, 8080].map((port) => ({
          session_id: start.fields.session_id,
          bot: "example",
          bot_instance_id: start.fields.bot_instance_id,
          kubernetes_cluster: CLUSTER,
          namespace: "demo",
          pod: "web-1",
          port,
          remote_addr: start.fields.remote_addr,
        })),
      );
      // the upstream connection went with kubectl
      await until(() => api.openUpgrades() === 0);
    }, 60_000);
  }

  test("a role without portforward is refused before anything reaches upstream", async () => {
    const local = await freePort();
    const before = api.requests.length;
    const run = kubectl("viewer", ["port-forward", "-n", "demo", "pod/web-1", `${local}:5432`]);
    const r = await run.done;
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("no role allows portforward on pod");
    expect(api.requests.slice(before).filter((q) => q.path.endsWith("/portforward"))).toEqual([]);
  }, 60_000);
});

describe("live sessions", () => {
  test("killing kubectl mid-session closes the upstream connection; output arrived while the pod still held it open", async () => {
    const run = kubectl("example", ["exec", "-n", "demo", "web-1", "--", "hold"]);
    await run.waitFor("started\n");
    // the pod has not finished: the first output came through while upstream held the session
    expect(api.world.openSessions).toBe(1);
    expect(api.openUpgrades()).toBe(1);
    run.proc.kill("SIGKILL");
    await run.done;
    await until(() => api.openUpgrades() === 0);
    await until(() => api.world.openSessions === 0);
    const start = (await sessionEvents("kube.session.start", "exec")).at(-1)!;
    expect(start.fields.command).toEqual(["hold"]);
    await until(async () => (await sessionEvents("kube.session.end", "exec")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await sessionEvents("kube.session.end", "exec")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(["client_closed", "client_error"]).toContain(end.fields.ended);
  }, 60_000);

  test("past the per-instance cap an exec is refused with a 429 Status before reaching upstream; a slot frees when a session ends", async () => {
    const first = kubectl("example", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"]);
    first.proc.stdin.write("holding\n");
    await first.proc.stdin.flush();
    await first.waitFor("holding\n");
    const before = upgradesSeen("exec").length;
    const second = await kubectl("example", ["exec", "-n", "demo", "web-1", "--", "echo", "second"]).done;
    expect(second.code).not.toBe(0);
    expect(second.err).toContain("Too many Kubernetes sessions of bot instance");
    expect(upgradesSeen("exec").length).toBe(before);
    const refused = (await auth.events("kube.request")).filter((e) => e.fields.bot === "example" && e.fields.subresource === "exec").at(-1)!;
    expect(refused.fields).toMatchObject({ allowed: false, reason: "session limit reached (bot instance)" });
    await first.proc.stdin.end();
    expect((await first.done).code).toBe(0);
    await until(async () => (await kubectl("example", ["exec", "-n", "demo", "web-1", "--", "echo", "third"]).done).out === "third\n");
  }, 60_000);

  test("locking the bot ends its open exec session within seconds, audited; new sessions are refused", async () => {
    const run = kubectl("locked", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"]);
    run.proc.stdin.write("before the lock\n");
    await run.proc.stdin.flush();
    await run.waitFor("before the lock\n");
    const lockedAt = Date.now();
    await auth.admin.lock({ bot: "locked", message: "compromised runner" }, ADMIN);
    const r = await run.done;
    const tookMs = Date.now() - lockedAt;
    expect(r.code).not.toBe(0);
    // the registry looks locks up every 2 s: well within seconds, whatever the machine's load
    expect(tookMs).toBeLessThan(20_000);
    await until(() => api.openUpgrades() === 0);
    const start = (await auth.events("kube.session.start")).filter((e) => e.fields.bot === "locked").at(-1)!;
    await until(async () => (await auth.events("kube.session.end")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await auth.events("kube.session.end")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(end.fields).toMatchObject({ ended: "locked", detail: "bot/locked" });
    const again = await kubectl("locked", ["exec", "-n", "demo", "web-1", "--", "echo", "hi"]).done;
    expect(again.code).not.toBe(0);
    expect(again.err).toContain("locked");
  }, 60_000);

  test("a lock on the bot instance written by another replica (straight into the shared storage) ends the session too", async () => {
    const run = kubectl("replica", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"]);
    run.proc.stdin.write("open\n");
    await run.proc.stdin.flush();
    await run.waitFor("open\n");
    const start = (await auth.events("kube.session.start")).filter((e) => e.fields.bot === "replica").at(-1)!;
    const instance = start.fields.bot_instance_id as string;
    // no admin call in this process: only the periodic look-up can see it
    const lock: LockRecord = { target: { kind: "bot_instance", name: instance }, created_at: new Date().toISOString() };
    await auth.running.ctx.backend.atomicWrite([{ key: KEYS.lock(lock.target), condition: { kind: "whatever" }, action: { kind: "put", value: lock } }], []);
    const r = await run.done;
    expect(r.code).not.toBe(0);
    await until(async () => (await auth.events("kube.session.end")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await auth.events("kube.session.end")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(end.fields).toMatchObject({ ended: "locked", detail: `bot_instance/${instance}` });
  }, 60_000);

  test("locking the bot ends its open watch within seconds, audited", async () => {
    const run = kubectl("watcher", ["get", "pods", "-n", "demo", "-w"]);
    await run.waitFor("web-1");
    // kubectl prints the list, then opens the watch: lock only once the watch is open upstream
    await until(() => api.openWatches() === 1);
    await auth.admin.lock({ bot: "watcher" }, ADMIN);
    await run.done;
    await until(() => api.openWatches() === 0);
    await until(async () => (await auth.events("kube.stream.end")).some((e) => e.fields.bot === "watcher"));
    const end = (await auth.events("kube.stream.end")).find((e) => e.fields.bot === "watcher")!;
    expect(end.fields).toMatchObject({ ended: "locked", verb: "watch", kind: "pod" });
  }, 60_000);
});

describe("watches through the listener, with kubectl", () => {
  test("kubectl rollout status follows the deployment's events as they come, and ends when it is rolled out", async () => {
    api.updateDeployment({ namespace: "demo", name: "web", replicas: 3, updated: 1, available: 1 });
    const run = kubectl("example", ["rollout", "status", "deployment/web", "-n", "demo"]);
    await run.waitFor("1 out of 3 new replicas have been updated");
    await until(() => api.openWatches() > 0);
    api.updateDeployment({ namespace: "demo", name: "web", replicas: 3, updated: 2, available: 1 });
    // this event reached kubectl while the API server still held the watch open
    await run.waitFor("2 out of 3 new replicas have been updated");
    expect(api.openWatches()).toBeGreaterThan(0);
    api.updateDeployment({ namespace: "demo", name: "web", replicas: 3, updated: 3, available: 3 });
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.out).toContain(`deployment "web" successfully rolled out`);
    const watch = api.requests.filter((q) => q.path === "/apis/apps/v1/namespaces/demo/deployments" && q.query.get("watch") === "true").at(-1)!;
    expect(api.header(watch, "impersonate-user")).toEqual(["alice"]);
    await until(() => api.openWatches() === 0);
  }, 60_000);

  test("kubectl wait --for=condition=Ready returns when the pod's event says so", async () => {
    api.pods.push({ namespace: "demo", name: "job-1", ready: false });
    const before = api.requests.length;
    const run = kubectl("example", ["wait", "--for=condition=Ready", "pod/job-1", "-n", "demo", "--timeout=60s"]);
    await until(() => api.requests.slice(before).some((q) => q.query.get("watch") === "true") && api.openWatches() > 0);
    expect(run.proc.exitCode).toBeNull();
    api.emitPod("MODIFIED", { namespace: "demo", name: "job-1", ready: true });
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.out).toContain("pod/job-1 condition met");
    await until(() => api.openWatches() === 0);
  }, 60_000);

  test("kubectl logs -f prints each line as the API server sends it", async () => {
    const run = kubectl("example", ["logs", "-f", "-n", "demo", "web-1"]);
    await run.waitFor("log line 1 of web-1\n");
    await until(() => api.openWatches() === 1);
    api.logLine("log line 2");
    // arrived while the API server still holds the stream open
    await run.waitFor("log line 2\n");
    expect(api.openWatches()).toBe(1);
    api.logLine("log line 3", true);
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.out).toBe("log line 1 of web-1\nlog line 2\nlog line 3\n");
  }, 60_000);

  test("killing kubectl get -w closes the upstream watch", async () => {
    const run = kubectl("example", ["get", "pods", "-n", "demo", "-w"]);
    await run.waitFor("web-1");
    await until(() => api.openWatches() === 1);
    run.proc.kill("SIGKILL");
    await run.done;
    await until(() => api.openWatches() === 0);
  }, 60_000);
});

describe("the listener's upgrade path", () => {
  const [host, port] = [() => auth.addr.split(":")[0]!, () => Number(auth.addr.split(":")[1])];
  const caPem = () => auth.running.ctx.authorities.host.tlsCertPem;

  /**
   * A raw TLS connection to the listener as bot "example", the request `head` sent: what
   * it received so far, its end (the proxy's) and its close. `halfOpen` keeps it writable
   * after the proxy's end, as kubectl does (tls.connect takes net.Socket's option; its type
   * does not list it).
   */
  async function rawUpgrade(head: string, halfOpen = false) {
    const opts = { allowHalfOpen: halfOpen } as tls.ConnectionOptions;
    const sock = tls.connect({ host: host(), port: port(), ca: caPem(), servername: "auth.machine-id.cluster.local", ALPNProtocols: ["http/1.1"], cert: creds.example!.certPem, key: creds.example!.keyPem, ...opts });
    sock.on("error", () => {});
    await new Promise<void>((resolve) => sock.once("secureConnect", () => resolve()));
    let got = "";
    sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
    const upstreamEnded = new Promise<void>((resolve) => sock.once("end", () => resolve()));
    const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
    sock.write(head);
    return { sock, got: () => got, upstreamEnded, closed };
  }

  /** The head of a legacy SPDY port-forward of pod demo/web-1, as kubectl sends it. */
  const SPDY_PORT_FORWARD =
    `POST /v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods/web-1/portforward HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
    "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n";

  /** Sends raw HTTP/1.1 over TLS with the example bot's certificate; resolves with all the server wrote before closing. */
  function rawRequest(text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = tls.connect({ host: host(), port: port(), ca: caPem(), servername: "auth.machine-id.cluster.local", ALPNProtocols: ["http/1.1"], cert: creds.example!.certPem, key: creds.example!.keyPem }, () => sock.write(text));
      let got = "";
      sock.on("data", (d: Buffer) => (got += d.toString("utf8")));
      sock.on("close", () => resolve(got));
      sock.on("error", reject);
    });
  }

  test("an upgrade outside the Kubernetes proxy is refused with 400 and closed", async () => {
    const got = await rawRequest("GET /v1/ping HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect(got).toStartWith("HTTP/1.1 400 ");
    expect(got).toContain("Connection upgrades are served only for the Kubernetes proxy");
  });

  test("an upgrade of a request other than exec, attach or portforward is refused before upstream", async () => {
    const before = api.requests.length;
    const got = await rawRequest(`GET /v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    expect(got).toStartWith("HTTP/1.1 400 ");
    expect(got).toContain("Only exec, attach and portforward are served as connection upgrades");
    expect(api.requests.length).toBe(before);
  });

  test("bytes behind a refused upgrade never reach the API server (no request smuggling past authorization)", async () => {
    // The attack: an exec upgrade the API server will refuse (no such pod), with a second
    // request in the same write, carrying its own Impersonate-Group. Go's server keeps a
    // connection open after a 404 and serves what follows as the next request, unauthorized
    // by the proxy, unaudited, with the service's credentials. The double keeps refused
    // upgrades open the same way and records every byte that came after the headers.
    api.keepRefusedUpgradesOpen = true;
    try {
      const before = api.requests.length;
      const smuggled = "GET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: a\r\nImpersonate-Group: system:masters\r\n\r\n";
      const got = await rawRequest(
        `GET /v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods/ghost/exec?command=echo&stdout=true HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n" +
          smuggled,
      );
      // the API server's refusal is relayed, and the connection closed
      expect(got).toStartWith("HTTP/1.1 404 ");
      expect(got).toContain('pods \\"ghost\\" not found');
      // the upgrade reached the API server (authorized: the role allows exec on any pod) ...
      const seen = api.requests.slice(before).filter((q) => q.path === "/api/v1/namespaces/demo/pods/ghost/exec");
      expect(seen.length).toBe(1);
      // ... and once its connection is closed, nothing had followed its headers on it
      await until(() => api.openUpgrades() === 0);
      expect(Buffer.concat(seen[0]!.afterHeaders ?? []).toString("latin1")).toBe("");
      expect(api.requests.slice(before).some((q) => q.path.includes("secrets"))).toBe(false);
    } finally {
      api.keepRefusedUpgradesOpen = false;
    }
  }, 60_000);

  test("a client that hangs up right after asking leaves no session and no upstream connection behind", async () => {
    const before = (await auth.events("kube.session.start")).length;
    const sock = tls.connect({ host: host(), port: port(), ca: caPem(), servername: "auth.machine-id.cluster.local", ALPNProtocols: ["http/1.1"], cert: creds.example!.certPem, key: creds.example!.keyPem });
    await new Promise<void>((resolve) => sock.once("secureConnect", () => resolve()));
    sock.on("error", () => {});
    sock.write(
      `GET /v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods/web-1/exec?command=hold&stdout=true HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
    );
    sock.destroy();
    await until(async () => (await auth.events("kube.session.start")).length > before);
    await until(allSessionsEnded);
    await until(() => api.openUpgrades() === 0 && api.world.openSessions === 0);
  }, 60_000);

  test("a client still writing after the API server closed the session is read to its end: the session ends with the client, not after the linger", async () => {
    // kubectl over SPDY does this: it reads the pod's Status and the API server's close,
    // then writes its GOAWAY and closes later. What it writes has nowhere to go; it must
    // not stop the proxy from reading on to the client's close (the session, and its slot
    // of the per-instance cap, would stay open until the proxy's 10 s linger cut it).
    const before = (await auth.events("kube.session.start")).length;
    // half-open, to write on after the proxy's end as kubectl does
    const { sock, got, upstreamEnded, closed } = await rawUpgrade(
      `GET /v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods/web-1/exec?command=echo&command=bye&stdout=true HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
      true,
    );
    // the pod ran the command; the API server sent its Status and close frame and closed
    await upstreamEnded;
    expect(got()).toStartWith("HTTP/1.1 101 ");
    expect(got()).toContain("bye\n");
    // the client goes on writing, more than any socket buffer holds, then closes
    const late = 32 << 20;
    sock.end(Buffer.alloc(late));
    await closed;
    const start = (await auth.events("kube.session.start")).slice(before).find((e) => (e.fields.command as string[])[1] === "bye")!;
    await until(async () => (await auth.events("kube.session.end")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await auth.events("kube.session.end")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(end.fields.ended).toBe("upstream_closed");
    // all of it was read (and dropped), up to the client's close
    expect(end.fields.bytes_from_client).toBeGreaterThanOrEqual(late);
  }, 60_000);

  test("a port-forward whose streams the proxy cannot read on is spliced unchanged; the audit says unparsed, with the ports seen before", async () => {
    const pfBefore = api.portForwards.length;
    const { sock, got, closed } = await rawUpgrade(SPDY_PORT_FORWARD);
    await until(() => got().includes("\r\n\r\n"));
    expect(got()).toStartWith("HTTP/1.1 101 ");
    const c = new SpdyClient();
    sock.write(Buffer.concat([await c.forward(1, 5432, 0), spdyData(3, Buffer.from("ping-a"))]));
    await until(() => got().includes("pong:ping-a"));
    // valid SPDY, but a SYN_STREAM of 32 KiB (an incompressible header): past what the proxy buffers to read one
    const big = await c.synStream(5, [["streamtype", "error"], ["port", "7000"], ["requestid", "1"], ["x-padding", randomBytes(24 << 10).toString("base64")]]);
    expect(big.length).toBeGreaterThan(16 << 10);
    sock.write(Buffer.concat([big, await c.forward(9, 6000, 2), spdyData(11, Buffer.from("ping-b"))]));
    // the session goes on: what followed reached the API server, and its answer came back
    await until(() => got().includes("pong:ping-b"));
    c.close();
    sock.end();
    await closed;
    expect(api.portForwards.at(-1)!.received).toEqual(["ping-a", "ping-b"]);
    expect(api.portForwards.length).toBe(pfBefore + 1);
    const start = (await sessionEvents("kube.session.start", "portforward")).at(-1)!;
    expect(start.fields.protocol).toBe("portforward.k8s.io");
    await until(async () => (await sessionEvents("kube.session.end", "portforward")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await sessionEvents("kube.session.end", "portforward")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(end.fields).toMatchObject({ ports: [5432], ports_observed: "unparsed", ports_unparsed_reason: "control_frame_too_large" });
    const forwarded = (await auth.events("kube.portforward")).filter((e) => e.fields.session_id === start.fields.session_id);
    expect(forwarded.map((e) => e.fields.port)).toEqual([5432]);
  }, 60_000);

  test("a stream a port-forward client opens after the API server closed is not audited: it was dropped, never forwarded", async () => {
    // half-open, to write on after the API server's end
    // ports named in the URL too: kube.session.start lists them as the API server reads them
    const { sock, got, upstreamEnded, closed } = await rawUpgrade(SPDY_PORT_FORWARD.replace("/portforward ", "/portforward?ports=0080,22 "), true);
    await until(() => got().includes("\r\n\r\n"));
    expect(got()).toStartWith("HTTP/1.1 101 ");
    const c = new SpdyClient();
    sock.write(Buffer.concat([await c.forward(1, 5432, 0), spdyData(3, Buffer.from("hang-up"))]));
    await upstreamEnded;
    expect(got()).toContain("pong:hang-up");
    // the API server is gone: these streams reach nobody
    sock.end(await c.forward(5, 22, 1));
    c.close();
    await closed;
    const start = (await sessionEvents("kube.session.start", "portforward")).at(-1)!;
    expect(start.fields.ports).toEqual([80, 22]);
    await until(async () => (await sessionEvents("kube.session.end", "portforward")).some((e) => e.fields.session_id === start.fields.session_id));
    const end = (await sessionEvents("kube.session.end", "portforward")).find((e) => e.fields.session_id === start.fields.session_id)!;
    expect(end.fields).toMatchObject({ ended: "upstream_closed", ports: [5432], ports_observed: "complete" });
    const forwarded = (await auth.events("kube.portforward")).filter((e) => e.fields.session_id === start.fields.session_id);
    expect(forwarded.map((e) => e.fields.port)).toEqual([5432]);
  }, 60_000);

  test("exec over h2 (no Upgrade there) gets a 400 Status saying to use HTTP/1.1", async () => {
    const client = http2.connect(`https://${auth.addr}`, { ca: caPem(), servername: "auth.machine-id.cluster.local", cert: creds.example!.certPem, key: creds.example!.keyPem });
    try {
      const req = client.request({ ":method": "POST", ":path": `/v1/kubernetes/${CLUSTER}/api/v1/namespaces/demo/pods/web-1/exec?command=sh&stdout=true` });
      req.end();
      const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
        let s = 0;
        let b = "";
        req.on("response", (h) => (s = Number(h[":status"])));
        req.on("data", (d: Buffer) => (b += d.toString("utf8")));
        req.on("end", () => resolve([s, b]));
        req.on("error", reject);
      });
      expect(status).toBe(400);
      expect(JSON.parse(body)).toMatchObject({ kind: "Status", code: 400, message: expect.stringContaining("need an HTTP/1.1 connection upgrade") });
    } finally {
      client.close();
    }
  });
});

describe("a config reload", () => {
  const original = () => ({ name: CLUSTER, server: api.url, caPath: join(work.path, "k8s-ca.crt"), tokenPath: join(work.path, "k8s-token"), insecureSkipTlsVerify: false, labels: {} });

  test("one that removes the cluster ends its open exec session and watch, audited as cluster_removed; the cluster is then NOT_FOUND", async () => {
    kubeconfigs.reloaded = await botKubeconfig("reloaded", ["machine-id-kube-role"]);
    const exec = kubectl("reloaded", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"]);
    exec.proc.stdin.write("before the reload\n");
    await exec.proc.stdin.flush();
    await exec.waitFor("before the reload\n");
    const watch = kubectl("reloaded", ["get", "pods", "-n", "demo", "-w"]);
    await watch.waitFor("web-1");
    // the watch is registered right after its request is audited: reload only then
    await until(async () => (await auth.events("kube.request")).some((e) => e.fields.bot === "reloaded" && e.fields.verb === "watch"));
    try {
      expect(await auth.running.reloadKubernetes([])).toEqual({ added: [], removed: [CLUSTER], changed: [] });
      expect((await exec.done).code).not.toBe(0);
      await watch.done;
      await until(() => api.openUpgrades() === 0 && api.openWatches() === 0);
      const start = (await auth.events("kube.session.start")).filter((e) => e.fields.bot === "reloaded").at(-1)!;
      await until(async () => (await auth.events("kube.session.end")).some((e) => e.fields.session_id === start.fields.session_id));
      const end = (await auth.events("kube.session.end")).find((e) => e.fields.session_id === start.fields.session_id)!;
      expect(end.fields).toMatchObject({ ended: "cluster_removed", detail: `kubernetes_clusters "${CLUSTER}" was removed from the auth config` });
      await until(async () => (await auth.events("kube.stream.end")).some((e) => e.fields.bot === "reloaded"));
      expect((await auth.events("kube.stream.end")).find((e) => e.fields.bot === "reloaded")!.fields).toMatchObject({ ended: "cluster_removed", verb: "watch" });
      expect((await auth.events("auth.config.reload")).at(-1)!.fields).toMatchObject({ added: [], removed: [CLUSTER], changed: [], clusters: [] });
      const gone = await kubectl("reloaded", ["get", "pods", "-n", "demo"]).done;
      expect(gone.code).not.toBe(0);
      expect(gone.err).toContain(`Kubernetes cluster "${CLUSTER}" is not served by this auth service`);
    } finally {
      await auth.running.reloadKubernetes([original()]);
    }
    expect((await kubectl("reloaded", ["get", "pod", "web-1", "-n", "demo", "-o", "name"]).done).out).toBe("pod/web-1\n");
  }, 60_000);

  test("one that fails, or changes nothing, leaves an open session running", async () => {
    const exec = kubectl("reloaded", ["exec", "-i", "-n", "demo", "web-1", "--", "cat"]);
    exec.proc.stdin.write("one\n");
    await exec.proc.stdin.flush();
    await exec.waitFor("one\n");
    const missing = join(work.path, "no-such-ca.crt");
    await expect(auth.running.reloadKubernetes([original(), { ...original(), name: "other", caPath: missing }])).rejects.toThrow(missing);
    expect(await auth.running.reloadKubernetes([original()])).toEqual({ added: [], removed: [], changed: [] });
    exec.proc.stdin.write("two\n");
    await exec.proc.stdin.flush();
    await exec.waitFor("two\n");
    await exec.proc.stdin.end();
    expect(await exec.done).toMatchObject({ code: 0, out: "one\ntwo\n" });
  }, 60_000);
});
