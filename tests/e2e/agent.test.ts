/**
 * The agent end to end with the compiled executable: an auth service on port 0,
 * `ctl bots add`, then `start` (oneshot and daemon), checked with OpenSSL,
 * ssh-keygen, a real sshd, /metrics and /readyz; a copied identity is locked out;
 * a wrong CA pin is refused before the token is sent.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Proc, requireBinary, runBin } from "../agent/procs.ts";
import { tempDir } from "../agent/harness.ts";
import { canRunSshd, freePort, runSsh, startSshd } from "../agent/sshd.ts";
import { metricValue, waitFor } from "../agent/wait.ts";

const ROLE = `kind: role
version: v7
metadata:
  name: deployer
spec:
  allow:
    logins: [root, deploy]
`;

const IDENTITY_FILES = ["identity", "key", "key-cert.pub", "key.pub", "known_hosts", "ssh_config", "sshcacerts", "tlscacerts", "tlscert"];

let work: Awaited<ReturnType<typeof tempDir>>;
let authData: string;
let auth: Proc | undefined;
let authAddr = "";

/** Starts the auth service (port 0 the first time, the same port on restarts) and waits for its admin identity. */
async function startAuth(listen = "127.0.0.1:0"): Promise<void> {
  const identity = join(authData, "admin-identity");
  const before = await readFile(identity, "utf8").catch(() => "");
  auth = new Proc(["auth", "start", "--data-dir", authData, "--listen-addr", listen]);
  const text = await waitFor("the admin identity", async () => {
    const t = await readFile(identity, "utf8").catch(() => "");
    return t !== before && /# auth_server: (\S+)/.test(t) ? t : undefined;
  }, 30_000);
  authAddr = /# auth_server: (\S+)/.exec(text)![1]!;
}

async function stopAuth(): Promise<void> {
  if (!auth) return;
  const code = await auth.stop("SIGTERM");
  expect(code).toBe(0);
  auth = undefined;
}

const ctl = async (...args: string[]) => {
  const r = await runBin(["ctl", "--data-dir", authData, ...args]);
  if (r.code !== 0) throw new Error(`ctl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
};

async function addBot(name: string): Promise<{ token: string; ca_pins: string[] }> {
  return JSON.parse(await ctl("bots", "add", name, "--roles", "deployer", "--format", "json"));
}

const sh = (args: string[]) => {
  const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};

beforeAll(async () => {
  requireBinary();
  work = await tempDir("agent-e2e-");
  authData = join(work.path, "auth");
  await startAuth();
  const role = join(work.path, "role.yaml");
  await writeFile(role, ROLE);
  await ctl("create", "-f", role);
});

afterAll(async () => {
  if (auth) await auth[Symbol.asyncDispose]();
  await work?.[Symbol.asyncDispose]();
});

describe("agent, compiled", () => {
  test("start --oneshot with one output it cannot write exits 1 naming it, and writes the other", async () => {
    const bot = await addBot("oneshot-partial");
    const blocked = join(work.path, "partial-file-not-dir");
    const good = join(work.path, "partial-good");
    await writeFile(blocked, "x");
    const cfg = join(work.path, "partial.yaml");
    await writeFile(
      cfg,
      [
        "version: v2",
        `auth_server: ${authAddr}`,
        "onboarding:",
        "  join_method: token",
        `  token: ${bot.token}`,
        `  ca_pins: ["${bot.ca_pins[0]}"]`,
        "storage:",
        "  type: memory",
        "outputs:",
        ...[blocked, good].flatMap((p) => ["  - type: identity", "    destination:", "      type: directory", `      path: ${p}`]),
        "",
      ].join("\n"),
    );
    const r = await runBin(["start", "--oneshot", "-c", cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR: Cannot write output "identity:${blocked}" (Cannot use directory "${blocked}": it is not a directory); the others were written`);
    expect((await readdir(good)).sort()).toEqual(IDENTITY_FILES);
  });

  test("start --oneshot writes an identity that OpenSSL, ssh-keygen and sshd accept", async () => {
    const bot = await addBot("oneshot");
    const out = join(work.path, "oneshot-out");
    const r = await runBin([
      "start", "--oneshot", "--auth-server", authAddr, "--token", bot.token, "--ca-pin", bot.ca_pins[0]!,
      "--storage", join(work.path, "oneshot-state"), "--destination-dir", out, "--certificate-ttl", "30m",
    ]);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain(bot.token);

    expect((await stat(out)).mode & 0o777).toBe(0o700);
    expect((await readdir(out)).sort()).toEqual(IDENTITY_FILES);
    for (const f of IDENTITY_FILES) expect((await stat(join(out, f))).mode & 0o777).toBe(0o600);

    const verify = sh(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")]);
    expect(verify.out).toContain(": OK");
    const listing = sh(["ssh-keygen", "-L", "-f", join(out, "key-cert.pub")]);
    expect(listing.code).toBe(0);
    expect(listing.out).toMatch(/Principals:\s*\n\s+deploy\n\s+root\n/);
    const valid = /Valid: from (\S+) to (\S+)/.exec(listing.out)!;
    const lifetime = new Date(valid[2]! + "Z").getTime() - new Date(valid[1]! + "Z").getTime();
    expect(Math.abs(lifetime - 31 * 60_000)).toBeLessThanOrEqual(2000); // credential_ttl + the 1m backdating

    if (!canRunSshd) return;
    const hostKey = join(work.path, "sshd_host_key");
    expect(sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey]).code).toBe(0);
    const userCa = await ctl("auth", "export", "--type", "ssh-user");
    // The host key is certified by the cluster's host CA, so ssh trusts it only through the
    // output's known_hosts @cert-authority line (StrictHostKeyChecking yes in ssh_config).
    const hostCert = (await ctl("auth", "sign-host", "--key", hostKey + ".pub", "--principals", "127.0.0.1,localhost", "--ttl", "1h")).trim();
    await using sshd = await startSshd({ dir: work.path, userCaLine: userCa, hostKeyPath: hostKey, hostCertLine: hostCert });
    const ssh = runSsh(["-F", join(out, "ssh_config"), "-p", String(sshd.port), "root@127.0.0.1", "echo", "ok"]);
    if (ssh.code !== 0) console.error(ssh.stderr, sshd.log());
    expect(ssh.stdout.trim()).toBe("ok");
    expect(ssh.code).toBe(0);
    // a login the role does not grant is refused
    const denied = runSsh(["-F", join(out, "ssh_config"), "-p", String(sshd.port), "nobody@127.0.0.1", "true"]);
    expect(denied.code).not.toBe(0);
  }, 60_000);

  test("daemon: renews every 2s, keeps outputs while auth is down (503), resumes when it is back (200), exits 0 on SIGTERM", async () => {
    const bot = await addBot("daemon");
    const out = join(work.path, "daemon-out");
    const diagPort = await freePort();
    const cfg = join(work.path, "daemon.yaml");
    await writeFile(
      cfg,
      [
        "version: v2",
        `auth_server: "${authAddr}"`,
        "onboarding:",
        "  join_method: token",
        `  token: "${bot.token}"`,
        "  ca_pins:",
        `    - "${bot.ca_pins[0]}"`,
        "storage:",
        "  type: directory",
        `  path: ${join(work.path, "daemon-state")}`,
        "credential_ttl: 1m",
        "renewal_interval: 2s",
        `diag_addr: "127.0.0.1:${diagPort}"`,
        "outputs:",
        "  - type: identity",
        "    destination:",
        "      type: directory",
        `      path: ${out}`,
        "",
      ].join("\n"),
    );
    await using agent = new Proc(["start", "-c", cfg, "--log-format", "json"]);
    const diag = `http://127.0.0.1:${diagPort}`;
    const metric = async (sample: string) => metricValue(await (await fetch(`${diag}/metrics`)).text(), sample);
    const iterations = () => metric('machine_id_task_iterations_total{task="identity"}');
    const readyz = async () => (await fetch(`${diag}/readyz`).catch(() => undefined))?.status;

    await waitFor("the first join", async () => (await readyz()) === 200, 30_000);
    expect(await (await fetch(`${diag}/livez`)).text()).toBe("OK");
    const certs = new Set<string>();
    await waitFor("three renewals after the join, each rewriting tlscert", async () => {
      certs.add(await readFile(join(out, "tlscert"), "utf8"));
      return (await iterations()) >= 4 && certs.size >= 4;
    }, 30_000);
    expect(await metric('machine_id_task_iterations_failed_total{task="identity"}')).toBe(0);
    expect(await metric('machine_id_identity_expires_in_seconds{bot="daemon"}')).toBeGreaterThan(0);

    // auth down: renewals fail, /readyz turns 503, the last good files stay
    const port = authAddr.split(":").pop()!;
    await stopAuth();
    await waitFor("/readyz 503", async () => (await readyz()) === 503, 30_000);
    const kept = await readFile(join(out, "tlscert"), "utf8");
    const failedBefore = await metric('machine_id_task_iterations_failed_total{task="identity"}');
    await waitFor("another failed attempt", async () => (await metric('machine_id_task_iterations_failed_total{task="identity"}')) > failedBefore, 30_000);
    expect(await readFile(join(out, "tlscert"), "utf8")).toBe(kept);
    const body = (await (await fetch(`${diag}/readyz`)).json()) as { services: Record<string, { status: string; reason?: string }> };
    expect(body.services.identity!.status).toBe("unhealthy");
    expect(body.services.identity!.reason).toContain("Cannot reach auth service");

    // auth back on the same port: renewal resumes
    await startAuth(`127.0.0.1:${port}`);
    await waitFor("/readyz 200 again", async () => (await readyz()) === 200, 45_000);
    await waitFor("fresh certificates after recovery", async () => (await readFile(join(out, "tlscert"), "utf8")) !== kept, 30_000);

    // SIGHUP reloads and re-renders; SIGTERM exits 0
    agent.proc.kill("SIGHUP");
    await agent.waitForStderr(/"msg":"Configuration reloaded"/);
    expect(await agent.stop("SIGTERM")).toBe(0);
    expect(agent.stderr).toContain('"msg":"Stopped"');
    expect(agent.stderr).not.toContain(bot.token);
  }, 150_000);

  test("a copied storage used after the original renewed is refused and the instance is locked", async () => {
    const bot = await addBot("copied");
    const state = join(work.path, "copied-state");
    const copy = join(work.path, "copied-state-copy");
    const args = (storage: string) => ["start", "--oneshot", "--allow-no-outputs", "--auth-server", authAddr, "--token", bot.token, "--ca-pin", bot.ca_pins[0]!, "--storage", storage];
    expect((await runBin(args(state))).code).toBe(0);
    await cp(state, copy, { recursive: true });
    expect((await runBin(args(state))).code).toBe(0); // the original renews: generation 2

    const stolen = await runBin(args(copy));
    expect(stolen.code).toBe(1);
    expect(stolen.stderr).toContain("is now locked: it presented certificate generation 1 but generation 2 was issued since");

    const instances = JSON.parse(await ctl("bots", "instances", "ls", "copied", "--format", "json")) as { locked: boolean; instance_id: string }[];
    expect(instances.length).toBe(1);
    expect(instances[0]!.locked).toBe(true);
    const events = JSON.parse(await ctl("events", "ls", "--type", "cert.generation_mismatch", "--format", "json")) as { fields: Record<string, unknown> }[];
    expect(events.some((e) => e.fields.bot_instance_id === instances[0]!.instance_id)).toBe(true);
  }, 60_000);

  test("a wrong CA pin is refused before the token is sent, and the token stays usable", async () => {
    const bot = await addBot("pinned");
    const wrongPin = "sha256:" + "0".repeat(64);
    const args = (pin: string) => ["start", "--oneshot", "--allow-no-outputs", "--auth-server", authAddr, "--token", bot.token, "--ca-pin", pin, "--storage", "memory://"];
    const r = await runBin(args(wrongPin));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is not the expected cluster: its CA pin ${bot.ca_pins[0]} matches none of the configured ca_pins`);
    const attempts = JSON.parse(await ctl("events", "ls", "--type", "join.failed,bot.join", "--format", "json")) as { fields: Record<string, unknown> }[];
    expect(attempts.filter((e) => e.fields.bot === "pinned")).toEqual([]);
    expect((await runBin(args(bot.ca_pins[0]!))).code).toBe(0);
  }, 60_000);
});
