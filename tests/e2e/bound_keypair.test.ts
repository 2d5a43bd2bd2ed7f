/**
 * Issue 4 end to end with the compiled binary. Seed 003 step by step with the
 * scenario files (static key from the environment and from a file: oneshot, again on
 * fresh memory storage, then renewing as a daemon); standard mode with the keypair
 * in storage (rejoin after the identity expired while auth was down, a cloned
 * keypair locking the token, the recovery limit); rotation; registration secrets;
 * and the static-key refusals as a user sees them.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp, readFile, readdir, rm, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { Proc } from "../agent/procs.ts";
import { freePort } from "../agent/sshd.ts";
import { metricValue } from "../agent/wait.ts";
import { waitFor } from "../_support/wait.ts";
import { ensureBinary, ROOT, run, sh, startAuth, tempDir, type AuthProcess, type RunResult } from "./_harness.ts";

import { SCENARIOS } from "../_scenarios.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
const ENV = "TBOT_BOUND_KEYPAIR_STATIC_KEY";
const IDENTITY_FILES = ["identity", "key", "key-cert.pub", "key.pub", "known_hosts", "ssh_config", "sshcacerts", "tlscacerts", "tlscert"];

let work: ReturnType<typeof tempDir>;
beforeAll(() => {
  ensureBinary();
  work = tempDir("bkp-e2e-");
}, 120_000);
afterAll(() => work?.[Symbol.dispose]());

const scenario = (name: string) => readFile(join(SCENARIOS, name), "utf8");

/** `text` with `from` replaced by `to`, which must occur exactly once (a real setup fills in exactly these values). */
function fill(text: string, from: string, to: string): string {
  expect(text.split(from).length - 1).toBe(1);
  return text.replace(from, to);
}

/** An auth service of its own in `dir`, with its CA pin. */
async function cluster(dir: string, name: string): Promise<{ auth: AuthProcess; pin: string }> {
  const auth = await startAuth(join(dir, "auth"), { args: ["--cluster-name", name] });
  const pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
  return { auth, pin };
}

async function tokenStatus(auth: AuthProcess, name: string): Promise<Record<string, unknown>> {
  const [t] = JSON.parse(await auth.ctlOk("get", `token/${name}`, "--format", "json")) as { status?: { bound_keypair?: Record<string, unknown> } }[];
  return t!.status?.bound_keypair ?? {};
}

/** The public key line `keypair create` prints. */
function printedPublicKey(stdout: string): string {
  return /^(ssh-ed25519 \S+|ecdsa-sha2-nistp256 \S+)$/m.exec(stdout)![1]!;
}

function expectOk(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderr}${r.stdout}`);
}

/** The identity output is complete and its certificate chains to the CA file it came with. */
async function expectIdentityOutput(dir: string): Promise<void> {
  expect((await readdir(dir)).sort()).toEqual(IDENTITY_FILES);
  const v = sh(["openssl", "verify", "-CAfile", join(dir, "tlscacerts"), join(dir, "tlscert")]);
  expect(v.stdout).toContain(": OK");
}

describe("seed 003: static keys with the compiled binary", () => {
  /**
   * Steps 2–6 of the seed: bot.yaml, keypair create --static, the token from the
   * printed example, the agent config from the scenario file, start --oneshot.
   */
  async function seed(variant: "env" | "file") {
    const dir = join(work.path, `seed-${variant}`);
    const { auth, pin } = await cluster(dir, `seed-${variant}.example`);
    expect(await auth.ctlOk("create", join(SCENARIOS, "bot.yaml"))).toContain("created");

    const keyPath = join(dir, "path", "to", "key");
    const made = await run(["keypair", "create", "--proxy-server", auth.addr, "--static", ...(variant === "file" ? ["--static-key-path", keyPath] : [])]);
    expectOk(made, "keypair create");
    expect(made.stdout).toStartWith(`Cluster "seed-${variant}.example" answered (machine-id `);
    const publicKey = printedPublicKey(made.stdout);
    expect(publicKey).toStartWith("ssh-ed25519 ");

    // The printed example is the scenario's token with the real key filled in.
    const tokenYaml = fill(await scenario("token-bound-keypair.yaml"), `"ssh-ed25519 AAAA... (the public key printed by keypair create)"`, `"${publicKey}"`);
    const example = /^kind: token\n[\s\S]*?^version: v2$/m.exec(made.stdout)![0];
    expect(parseYaml(example)).toEqual(parseYaml(tokenYaml));
    await writeFile(join(dir, "token.yaml"), tokenYaml);
    expectOk(await run(["ctl", "--data-dir", auth.dataDir, "create", "-f", join(dir, "token.yaml")]), "ctl create -f token.yaml");

    const out = join(dir, "out");
    let config = await scenario(variant === "env" ? "tbot-static-env.yaml" : "tbot-static-file.yaml");
    config = fill(config, "example.teleport.sh:443", auth.addr);
    config = fill(config, "/var/lib/teleport/bot", join(dir, "storage"));
    config = fill(config, "outputs: []", `outputs:\n  - type: identity\n    destination:\n      type: directory\n      path: ${out}`);
    let env: Record<string, string>;
    if (variant === "env") {
      const value = new RegExp(`^export ${ENV}="([A-Za-z0-9+/=]+)"$`, "m").exec(made.stdout)![1]!;
      env = { [ENV]: value };
    } else {
      expect(made.stdout).not.toContain(ENV);
      expect(sh(["stat", "-c", "%a", keyPath]).stdout.trim()).toBe("600");
      config = fill(config, "/path/to/key", keyPath);
      // the config wins over the environment: a key of another bot in the variable changes nothing
      const other = await run(["keypair", "create", "--static", "--format", "json"]);
      env = { [ENV]: Buffer.from(JSON.parse(other.stdout).private_key).toString("base64") };
    }
    const cfg = join(dir, "tbot.yaml");
    await writeFile(cfg, config);
    return { dir, auth, pin, cfg, env, out, publicKey };
  }

  for (const variant of ["env", "file"] as const) {
    test(`${variant}: start --oneshot writes the identity output, and does again on fresh memory storage`, async () => {
      const s = await seed(variant);
      await using _auth = s.auth;
      const r = await run(["start", "-c", s.cfg, "--oneshot", "--ca-pin", s.pin], { env: s.env });
      expectOk(r, "start --oneshot");
      expect(r.stderr).not.toContain(s.env[ENV]!);
      await expectIdentityOutput(s.out);
      expect((await readdir(join(s.dir, "storage"))).sort()).toEqual(["bound_keypair.json", "identity.json"]);

      // an ephemeral CI job: nothing survives, it joins again with the same key
      await rm(s.out, { recursive: true });
      expectOk(await run(["start", "-c", s.cfg, "--oneshot", "--ca-pin", s.pin, "--storage", "memory://"], { env: s.env }), "second oneshot");
      await expectIdentityOutput(s.out);
      expect(await tokenStatus(s.auth, "example-token")).toMatchObject({ recovery_count: 2, bound_public_key: s.publicKey });
      const instances = JSON.parse(await s.auth.ctlOk("bots", "instances", "ls", "example", "--format", "json")) as unknown[];
      expect(instances.length).toBe(2);

      if (variant !== "env") return;
      // without --oneshot it keeps renewing
      const diagPort = await freePort();
      await using agent = new Proc(
        ["start", "-c", s.cfg, "--ca-pin", s.pin, "--storage", "memory://", "--renewal-interval", "1s", "--certificate-ttl", "1m", "--diag-addr", `127.0.0.1:${diagPort}`, "--log-format", "json"],
        s.env,
      );
      const metrics = async () => (await fetch(`http://127.0.0.1:${diagPort}/metrics`).catch(() => undefined))?.text() ?? "";
      await waitFor("a join and two renewals", async () => metricValue(await metrics(), 'machine_id_task_iterations_total{task="identity"}') >= 3, 30_000);
      expect(metricValue(await metrics(), 'machine_id_task_iterations_failed_total{task="identity"}')).toBe(0);
      expect(agent.stderr.match(/"msg":"Renewed bot identity"/g)!.length).toBeGreaterThanOrEqual(2);
      expect(await agent.stop("SIGTERM")).toBe(0);
    }, 90_000);
  }
});

describe("standard mode: the keypair in storage", () => {
  test("rejoins after the identity expired while auth was down; a copy with the old join state locks the token", async () => {
    const dir = join(work.path, "standard");
    const { auth: first, pin } = await cluster(dir, "standard.example");
    let auth = first;
    try {
      const a = join(dir, "host-a");
      const made = await run(["keypair", "create", "--storage", a]);
      expectOk(made, "keypair create --storage");
      const publicKey = printedPublicKey(made.stdout);
      expect((await readFile(join(a, "id_bkp.pub"), "utf8")).trim()).toBe(publicKey);
      const bot = JSON.parse(await auth.ctlOk("bots", "add", "std", "--initial-public-key", publicKey, "--recovery-mode", "standard", "--recovery-limit", "3", "--format", "json"));
      expect(bot.join_method).toBe("bound_keypair");

      const cfg = join(dir, "tbot.yaml");
      const diagPort = await freePort();
      await writeFile(
        cfg,
        [
          "version: v2",
          `auth_server: "${auth.addr}"`,
          "onboarding:",
          "  join_method: bound_keypair",
          `  token: "${bot.token}"`,
          `  ca_pins: ["${pin}"]`,
          "storage:",
          "  type: directory",
          `  path: ${a}`,
          "credential_ttl: 4s",
          "renewal_interval: 1s",
          `diag_addr: "127.0.0.1:${diagPort}"`,
          "",
        ].join("\n"),
      );
      await using agent = new Proc(["start", "-c", cfg, "--log-format", "json"]);
      const diag = `http://127.0.0.1:${diagPort}`;
      const readyz = async () => (await fetch(`${diag}/readyz`).catch(() => undefined))?.status;
      const metric = async (sample: string) => metricValue(await (await fetch(`${diag}/metrics`)).text(), sample);
      await waitFor("the first join", async () => (await readyz()) === 200, 30_000);
      // host B: a copy of the keypair and of the join state as they are now
      const b = join(dir, "host-b");
      await cp(a, b, { recursive: true });
      await rm(join(b, "identity.json"));

      // auth down until the agent's identity has expired, then back on the same port
      expect(await auth.stop("SIGTERM")).toBe(0);
      await waitFor("the identity to expire", async () => (await metric('machine_id_identity_expires_in_seconds{bot="std"}')) < 0, 30_000);
      auth = await startAuth(auth.dataDir, { port: auth.port, args: ["--cluster-name", "standard.example"] });
      await waitFor("the rejoin", async () => (await tokenStatus(auth, bot.token)).recovery_count === 2, 60_000);
      await waitFor("the agent to be ready again", async () => (await readyz()) === 200, 30_000);
      expect(agent.stderr.match(/"msg":"Joined"/g)!.length).toBe(2);
      const instances = JSON.parse(await auth.ctlOk("bots", "instances", "ls", "std", "--format", "json")) as unknown[];
      expect(instances.length).toBe(2);
      expect(await agent.stop("SIGTERM")).toBe(0);

      // host B joins with the join state of the first join: refused, and the token is locked
      const clone = await run(["start", "--oneshot", "-c", cfg, "--storage", b]);
      expect(clone.code).toBe(1);
      expect(clone.stderr).toContain(`Join token "${bot.token}" is now locked: a stale join state (sequence 1, expected 2)`);
      const locks = JSON.parse(await auth.ctlOk("locks", "ls", "--format", "json")) as { name: string }[];
      expect(locks.map((l) => l.name)).toContain(`token/${bot.token}`);
      const failed = JSON.parse(await auth.ctlOk("events", "ls", "--type", "token.locked", "--format", "json")) as { fields: Record<string, unknown> }[];
      expect(failed.some((e) => e.fields.token === tokenFingerprint(bot.token) && e.fields.remote_addr === "127.0.0.1")).toBe(true);
    } finally {
      await auth[Symbol.asyncDispose]();
    }
  }, 150_000);

  test("the recovery limit, rotation via rotate_after, and registration-secret onboarding", async () => {
    const dir = join(work.path, "more");
    const { auth, pin } = await cluster(dir, "more.example");
    await using _auth = auth;
    const oneshot = (storage: string, token: string, extra: string[] = []) =>
      run(["start", "--oneshot", "--allow-no-outputs", "--auth-server", auth.addr, "--join-method", "bound_keypair", "--token", token, "--ca-pin", pin, "--storage", storage, "--certificate-ttl", "2s", ...extra]);
    /** Waits until the identity in `storage` has expired (by the certificate's own notAfter). */
    const expiredIn = async (storage: string) => {
      const until = Date.parse(JSON.parse(await readFile(join(storage, "identity.json"), "utf8")).certs.valid_before);
      await waitFor("the identity to expire", () => Date.now() > until + 50, 10_000);
    };
    const keypair = async (storage: string) => {
      const r = await run(["keypair", "create", "--storage", storage]);
      expectOk(r, "keypair create");
      return printedPublicKey(r.stdout);
    };

    // limit 1: the first join uses it, the rejoin is refused with the count
    const lim = join(dir, "lim");
    const limBot = JSON.parse(await auth.ctlOk("bots", "add", "lim", "--initial-public-key", await keypair(lim), "--recovery-limit", "1", "--recovery-mode", "standard", "--format", "json"));
    expectOk(await oneshot(lim, limBot.token), "first join");
    await expiredIn(lim);
    const refused = await oneshot(lim, limBot.token);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`ERROR: Recovery limit reached for token "${limBot.token}": 1 of 1 joins used`);

    // rotation: rotate_after in the past, the next join binds a new key and keeps the old one in the history
    const rot = join(dir, "rot");
    const oldKey = await keypair(rot);
    const rotBot = JSON.parse(await auth.ctlOk("bots", "add", "rot", "--initial-public-key", oldKey, "--recovery-limit", "5", "--format", "json"));
    expectOk(await oneshot(rot, rotBot.token), "join before rotation");
    const [token] = JSON.parse(await auth.ctlOk("get", `token/${rotBot.token}`, "--format", "json")) as Record<string, any>[];
    delete token!.status;
    token!.spec.bound_keypair.rotate_after = new Date(Date.now() - 1000).toISOString();
    await writeFile(join(dir, "rotate.json"), JSON.stringify(token));
    await auth.ctlOk("create", "--force", "-f", join(dir, "rotate.json"));
    await expiredIn(rot);
    expectOk(await oneshot(rot, rotBot.token), "join with rotation");
    const newKey = (await readFile(join(rot, "id_bkp.pub"), "utf8")).trim();
    expect(newKey).not.toBe(oldKey);
    expect((await tokenStatus(auth, rotBot.token)).bound_public_key).toBe(newKey);
    const history = JSON.parse(await readFile(join(rot, "bound_keypair.json"), "utf8")).key_history as { public_key: string; reason: string }[];
    expect(history).toMatchObject([{ public_key: oldKey, reason: "rotated" }]);
    expect(sh(["ssh-keygen", "-l", "-f", join(rot, "id_bkp.pub")]).code).toBe(0);

    // registration secret: ctl bots add generates one; the agent makes its key and the service binds it
    const reg = join(dir, "reg");
    const regBot = JSON.parse(await auth.ctlOk("bots", "add", "reg", "--join-method", "bound_keypair", "--format", "json"));
    expect(regBot.registration_secret).toBeString();
    const regCfg = join(dir, "reg.yaml");
    await writeFile(regCfg, `version: v2\nonboarding:\n  bound_keypair:\n    registration_secret: "${regBot.registration_secret}"\n`);
    const joined = await oneshot(reg, regBot.token, ["-c", regCfg]);
    expectOk(joined, "registration");
    expect(joined.stderr).not.toContain(regBot.registration_secret);
    expect((await tokenStatus(auth, regBot.token)).bound_public_key).toBe((await readFile(join(reg, "id_bkp.pub"), "utf8")).trim());
  }, 90_000);
});

describe("static key refusals, as the user sees them", () => {
  test("bad base64, an open key file, a standard-mode token, a key that is not bound: exit 1 with the reason", async () => {
    const dir = join(work.path, "refusals");
    const { auth, pin } = await cluster(dir, "refusals.example");
    await using _auth = auth;
    const made = JSON.parse((await run(["keypair", "create", "--static", "--format", "json"])).stdout) as { public_key: string; private_key: string };
    const std = JSON.parse(await auth.ctlOk("bots", "add", "std", "--initial-public-key", made.public_key, "--recovery-mode", "standard", "--format", "json"));
    const ins = JSON.parse(await auth.ctlOk("bots", "add", "ins", "--initial-public-key", made.public_key, "--recovery-mode", "insecure", "--format", "json"));
    const start = (token: string, env: Record<string, string>, extra: string[] = []) =>
      run(["start", "--oneshot", "--allow-no-outputs", "--auth-server", auth.addr, "--join-method", "bound_keypair", "--token", token, "--ca-pin", pin, "--storage", "memory://", ...extra], { env });
    const value = Buffer.from(made.private_key).toString("base64");

    const bad = await start(ins.token, { [ENV]: "not*base64" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`ERROR: Cannot read static key in $${ENV}: it is not valid base64`);

    const keyFile = join(dir, "key");
    await writeFile(keyFile, made.private_key);
    await chmod(keyFile, 0o644);
    const cfg = join(dir, "file.yaml");
    await writeFile(cfg, `version: v2\nonboarding:\n  bound_keypair:\n    static_private_key_path: ${keyFile}\n`);
    const open = await start(ins.token, {}, ["-c", cfg]);
    expect(open.code).toBe(1);
    expect(open.stderr).toContain(`ERROR: Cannot read static key "${keyFile}": mode 0644 lets others read it`);

    const standard = await start(std.token, { [ENV]: value });
    expect(standard.code).toBe(1);
    expect(standard.stderr).toContain(`uses recovery mode "standard", but a static key needs "insecure"`);

    const other = JSON.parse((await run(["keypair", "create", "--static", "--format", "json"])).stdout) as { private_key: string };
    const wrong = await start(ins.token, { [ENV]: Buffer.from(other.private_key).toString("base64") });
    expect(wrong.code).toBe(1);
    // both fingerprints, so the user can tell which key to use
    expect(wrong.stderr).toMatch(
      new RegExp(`ERROR: The key presented \\(SHA256:[\\w+/]+\\) does not match the public key bound to join token "${ins.token}" \\(SHA256:[\\w+/]+\\); use the private key of SHA256:`),
    );

    for (const token of [std.token, ins.token]) expect((await tokenStatus(auth, token)).recovery_count ?? 0).toBe(0);
    // and the right key still joins
    expectOk(await start(ins.token, { [ENV]: value }), "the right key");
  }, 90_000);
});
