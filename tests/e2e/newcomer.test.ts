/**
 * Issue 18 end to end with the compiled binary: what a new user meets on the README's
 * path — version flags, ctl's -o and hints, the newest events, refusals that say what
 * to do before anything is spent, a plain http:// request named in the auth log, and
 * the demo's output when it is not a terminal.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { waitFor } from "../_support/wait.ts";
import { ROOT, ensureBinary, run, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

let dir: ReturnType<typeof tempDir>;
let auth: AuthProcess;

beforeAll(async () => {
  ensureBinary();
  dir = tempDir("mid-newcomer-");
  auth = await startAuth(join(dir.path, "data"), { args: ["--cluster-name", "newcomer.example"] });
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  dir?.[Symbol.dispose]();
});

const json = <T>(s: string): T => JSON.parse(s) as T;

describe("the newcomer's path, compiled", () => {
  test("machine-id --version prints what machine-id version prints", async () => {
    const flag = await run(["--version"]);
    const cmd = await run(["version"]);
    expect(flag.code).toBe(0);
    expect(flag.stdout).toMatch(/^machine-id v\d+\.\d+\.\d+ git:\S+ bun:\S+\n$/);
    expect(flag.stdout).toBe(cmd.stdout);
  });

  test("ctl -o is --format, on every command that has --format", async () => {
    expect(await auth.ctlOk("get", "bot", "-o", "json")).toBe(await auth.ctlOk("get", "bot", "--format", "json"));
    expect(json<unknown[]>(await auth.ctlOk("tokens", "ls", "-o", "json"))).toBeArray();
    expect(json<unknown[]>(await auth.ctlOk("events", "ls", "-o", "json", "--limit", "1"))).toHaveLength(1);
    expect((await run(["ctl", "get", "--help"])).stdout).toContain("-o, --format <format>");
  });

  test("ctl status without the identity names --data-dir", async () => {
    const r = await run(["ctl", "--data-dir", join(dir.path, "elsewhere"), "status"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("elsewhere/admin-identity");
    expect(r.stderr).toContain("pass --data-dir DIR, the auth service's --data-dir");
    expect(r.stderr).toContain("--identity FILE");
  });

  test("events ls --limit N shows the newest N, oldest first", async () => {
    for (const name of ["lim-a", "lim-b", "lim-c"]) await auth.ctlOk("bots", "add", name, "--format", "json");
    const all = json<{ id: string; type: string; fields: Record<string, unknown> }[]>(await auth.ctlOk("events", "ls", "-o", "json"));
    const last3 = json<{ id: string }[]>(await auth.ctlOk("events", "ls", "-o", "json", "--limit", "3"));
    expect(last3.map((e) => e.id)).toEqual(all.slice(-3).map((e) => e.id));
    expect(all.at(-1)!.fields.bot).toBe("lim-c");
  });

  test("durations need a unit and a TTL must be at least 1s: refused by ctl, no wire field names", async () => {
    const bare = await auth.ctl("bots", "add", "ttl-bare", "--ttl", "10");
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain(`Invalid --ttl "10": a number needs a unit: write "10s" for seconds or "10m" for minutes`);
    const zero = await auth.ctl("tokens", "add", "--bot-name", "lim-a", "--ttl", "0s");
    expect(zero.code).toBe(1);
    expect(zero.stderr).toContain(`Invalid --ttl "0s": must be at least 1s`);
    expect(zero.stderr).not.toContain("ttl_seconds");
    const since = await auth.ctl("events", "ls", "--since", "10");
    expect(since.stderr).toContain("a number needs a unit");
    const agent = await run(["start", "--renewal-interval", "10", "--auth-server", auth.addr, "--token", "x", "--destination-dir", join(dir.path, "o")]);
    expect(agent.code).toBe(1);
    expect(agent.stderr).toContain(`Invalid duration "10" for --renewal-interval: a number needs a unit`);
    expect(json<unknown[]>(await auth.ctlOk("bots", "ls", "-o", "json")).map((b) => (b as { metadata: { name: string } }).metadata.name)).not.toContain("ttl-bare");
  });

  test("bots add shows the storage in the start command, and the static key variable for a static key", async () => {
    const plain = await auth.ctlOk("bots", "add", "shown");
    expect(plain).toContain("--storage=/var/lib/machine-id");
    expect(plain).toContain("--storage ~/.local/state/machine-id");
    expect(plain).not.toContain("TBOT_BOUND_KEYPAIR_STATIC_KEY");
    const made = json<{ public_key: string }>((await run(["keypair", "create", "--static", "--format", "json"])).stdout);
    const edge = await auth.ctlOk("bots", "add", "edge", "--initial-public-key", made.public_key, "--recovery-mode", "insecure");
    expect(edge).toContain("> TBOT_BOUND_KEYPAIR_STATIC_KEY=");
    expect(edge).toContain("--join-method=bound_keypair");
  });

  test("start --oneshot with flags and no output exits 2 before the token is spent", async () => {
    const bot = json<{ token: string; ca_pins: string[] }>(await auth.ctlOk("bots", "add", "nothing", "--format", "json"));
    const args = ["start", "--oneshot", "--auth-server", auth.addr, "--token", bot.token, "--ca-pin", bot.ca_pins[0]!, "--storage", "memory://"];
    const refused = await run(args);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("Nothing to write: --oneshot with no outputs would spend the join token");
    expect(refused.stderr).toContain("--destination-dir DIR");
    // the token is still good
    const out = join(dir.path, "nothing-out");
    const ok = await run([...args, "--destination-dir", out]);
    expect(ok.code).toBe(0);
    expect(existsSync(join(out, "tlscert"))).toBe(true);
  }, 60_000);

  test("an address without a port says that 443 was tried", async () => {
    const r = await run(["start", "--oneshot", "--allow-no-outputs", "--auth-server", "127.0.0.1", "--token", "x", "--ca-pin", "sha256:" + "0".repeat(64), "--storage", "memory://"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot reach auth service at "127.0.0.1" (no port given, so port 443 was tried`);
  }, 60_000);

  test("a plain http:// request to the auth port gets a 400 saying to use https://, and is named in the auth log", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(auth.port, "127.0.0.1", () => sock.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      let got = "";
      sock.on("data", (d) => (got += d.toString()));
      sock.on("close", () => resolve(got));
      sock.on("error", reject);
    });
    expect(reply).toStartWith("HTTP/1.1 400 Bad Request\r\n");
    expect(reply).toContain("This port speaks TLS: use https://");
    // curl, as a user would type it, prints the answer instead of "Empty reply from server"
    const curl = Bun.spawn(["curl", "-sS", "-i", `http://127.0.0.1:${auth.port}/webapi/ping`], { stdout: "pipe", stderr: "pipe" });
    const [curlOut, curlCode] = await Promise.all([new Response(curl.stdout).text(), curl.exited]);
    expect(curlCode).toBe(0);
    expect(curlOut).toContain("use https://");
    await waitFor("the plain-HTTP warning", () => auth.logs().includes("A plain http:// request reached the TLS port"), 20_000);
    // the listener still serves TLS
    expect(await auth.ctlOk("status")).toContain("newcomer.example");
  });

  test("other bytes that are not TLS get no plaintext answer, only a closed connection", async () => {
    // Only BoringSSL's "this is an HTTP request" failure is answered in plaintext; any other
    // failed handshake (here a record of an unknown type) must not make the port speak HTTP.
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(auth.port, "127.0.0.1", () => sock.write(Buffer.from([0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b])));
      let got = "";
      sock.on("data", (d) => (got += d.toString("latin1")));
      sock.on("close", () => resolve(got));
      sock.on("error", reject);
    });
    expect(reply).not.toContain("HTTP/1.1");
    expect(await auth.ctlOk("status")).toContain("newcomer.example");
  });

  test("the demo prints no escape codes when piped, and the auth log after ctl's output", async () => {
    const p = Bun.spawn([process.execPath, join(ROOT, "scripts", "demo.ts")], { stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "" } });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code, err).toBe(0);
    expect(out).not.toContain("\x1b");
    const logAt = out.indexOf("==> The auth service's log");
    expect(logAt).toBeGreaterThan(0);
    // every line the service logged comes after the heading, none among ctl's output
    expect(out.slice(0, logAt)).not.toMatch(/ INFO  \[(audit|auth)\]/);
    expect(out.slice(logAt)).toContain("[audit] bot.join");
  }, 120_000);
});
