/**
 * auth.yaml settings that change what the compiled service does, not just what it
 * parses: `ca_key_algorithm: ed25519` makes Ed25519 X.509 CAs (checked with openssl, and
 * an agent joins over TLS chained to them), and `limits` sets the listener's idle
 * timeout and per-address cap, and the failed-join limiter's burst and interval.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Http1Connection } from "../_support/http1.ts";
import { closedWithin, tcpConnect, tlsConnect } from "../_support/sockets.ts";
import { waitFor } from "../_support/wait.ts";
import { ensureBinary, run, sh, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

let dir: ReturnType<typeof tempDir>;
let auth: AuthProcess;

beforeAll(async () => {
  ensureBinary();
  dir = tempDir("auth-config-e2e-");
  const cfg = join(dir.path, "auth.yaml");
  writeFileSync(
    cfg,
    [
      "version: v1",
      "cluster_name: ed.example",
      "ca_key_algorithm: ed25519",
      "limits:",
      "  idle_timeout: 1s",
      "  max_connections_per_address: 6",
      "  failed_join_burst: 2",
      "  failed_join_interval: 1h",
      "",
    ].join("\n"),
  );
  auth = await startAuth(join(dir.path, "data"), { args: ["-c", cfg] });
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  dir?.[Symbol.dispose]();
});

describe("auth.yaml, compiled", () => {
  test("ca_key_algorithm: ed25519 creates Ed25519 X.509 CAs that agents join through", async () => {
    for (const type of ["tls-user", "tls-host"]) {
      const ca = await auth.ctlOk("auth", "export", "--type", type);
      const text = sh(["openssl", "x509", "-noout", "-text"], { stdin: ca });
      expect(text.code).toBe(0);
      expect(text.stdout).toContain("Public Key Algorithm: ED25519");
    }
    await auth.ctlOk("create", "-f", writeRole());
    const bot = JSON.parse(await auth.ctlOk("bots", "add", "ed", "--roles", "deployer", "--format", "json")) as { token: string; ca_pins: string[] };
    const out = join(dir.path, "out");
    const r = await run([
      "start", "--oneshot", "--auth-server", auth.addr, "--token", bot.token, "--ca-pin", bot.ca_pins[0]!,
      "--storage", join(dir.path, "state"), "--destination-dir", out,
    ]);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    const verify = sh(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")]);
    expect(verify.stdout).toContain(": OK");
    const leaf = sh(["openssl", "x509", "-noout", "-text", "-in", join(out, "tlscert")]);
    expect(leaf.stdout).toContain("Signature Algorithm: ED25519");
  }, 60_000);

  test("limits: an idle kept connection is closed after idle_timeout", async () => {
    const c = await Http1Connection.connect({ host: "127.0.0.1", port: auth.port, tls: { rejectUnauthorized: false } });
    const r = await c.request("GET", "/webapi/ping");
    expect(r.status).toBe(200);
    // 1s configured; the default would be 30s. The upper bound only has to tell the two
    // apart, so it is far above 1s: a loaded machine must not fail this
    const ms = await closedWithin(c.socket, 20_000);
    expect(ms).toBeGreaterThan(500);
  }, 60_000);

  test("limits: failed_join_burst failed joins from one address, then 429 with the interval as Retry-After", async () => {
    const c = await Http1Connection.connect({ host: "127.0.0.1", port: auth.port, tls: { rejectUnauthorized: false } });
    try {
      const junk = () => c.request("POST", "/v1/join", { headers: { "content-type": "application/json" }, body: "{}" });
      // 2 configured (the default would allow 10)
      expect((await junk()).status).toBe(400);
      expect((await junk()).status).toBe(400);
      const limited = await junk();
      expect(limited.status).toBe(429);
      // one more failure is allowed after failed_join_interval (1h; the default would be 6s)
      expect(Number(limited.headers["retry-after"])).toBeGreaterThan(3_500);
    } finally {
      c.socket.destroy();
    }
  });

  test("limits: connections beyond max_connections_per_address are refused at once", async () => {
    const held = await Promise.all(Array.from({ length: 6 }, () => tcpConnect(auth.port)));
    try {
      // the listener accepts in arrival order, so the guard has counted all six before this
      // one, and closes it at accept: its TLS handshake never gets an answer. (No clock:
      // an accepted connection would answer the handshake however slow the machine is.)
      await expect(tlsConnect(auth.port)).rejects.toThrow();
    } finally {
      for (const s of held) s.destroy();
    }
    // and with the six gone, the same handshake is answered
    await waitFor("a TLS handshake answered once the six are closed", async () => {
      const s = await tlsConnect(auth.port).catch(() => undefined);
      s?.destroy();
      return s !== undefined;
    }, 30_000);
  }, 60_000);
});

function writeRole(): string {
  const f = join(dir.path, "role.yaml");
  writeFileSync(f, "kind: role\nversion: v7\nmetadata:\n  name: deployer\nspec:\n  allow:\n    logins: [deploy]\n");
  return f;
}
