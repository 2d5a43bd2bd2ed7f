/**
 * A renewal moves the connection that carried it to the renewed identity: in process
 * (a ConnInfo with a session, as listener.ts gives each tracked connection) and over real
 * TLS, HTTP/1.1 keep-alive and h2. The superseded certificate stays superseded on any
 * other connection, and locks and expiry still apply to the connection's identity.
 */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConnInfo } from "../../src/auth/app.ts";
import { adminOf } from "../_support/admin.ts";
import { startAuthService, type RunningAuth } from "../../src/auth/service.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { AUTH_SERVER_NAME, CONNECTION_IDENTITY_HEADER, CONNECTION_RENEWED } from "../../src/protocol/index.ts";
import { HttpError, JSON_HEADERS, RenewingBot, connect, prepareKeys, type PreparedKey, type Target } from "../_support/bot.ts";
import { identityOf, keyRequest, startHarness, type Harness } from "./harness.ts";

describe("in process", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  /** A joined instance: its first certificates, its key, and a connection with a session presenting them. */
  async function joined(ttlSeconds?: number) {
    const add = await h.call(h.admin, "POST", "/v1/bots", { name: "ci", roles: [] });
    expect(add.status).toBe(200);
    const { key, body } = keyRequest(ttlSeconds);
    const j = await h.call(h.anon, "POST", "/v1/join", { ...body, join_method: "token", token_name: add.json.token });
    expect(j.status).toBe(200);
    const caller = h.as(j.json.certs, key);
    const conn: ConnInfo = { ...caller.conn, session: {} };
    return { certs: j.json.certs, key, conn, instance: j.json.bot_instance_id as string };
  }

  test("renewals follow one another on the connection, each advancing the generation", async () => {
    const { conn } = await joined();
    for (const expected of [2, 3, 4]) {
      const r = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body);
      expect(r.status).toBe(200);
      expect(r.headers.get(CONNECTION_IDENTITY_HEADER)).toBe(CONNECTION_RENEWED);
      expect(r.json.generation).toBe(expected);
      expect(identityOf(r.json.certs).generation).toBe(expected);
    }
    // output certificates on the same connection are issued for the renewed identity
    const out = await h.call({ conn }, "POST", "/v1/bot/certs", keyRequest().body);
    expect(out.status).toBe(200);
    expect(identityOf(out.json.certs)).toMatchObject({ botName: "ci", renewable: false });
  });

  test("without a session (a transport that cannot keep one) the header is absent", async () => {
    const { certs, key } = await joined();
    const r = await h.call(h.as(certs, key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(r.status).toBe(200);
    expect(r.headers.get(CONNECTION_IDENTITY_HEADER)).toBeNull();
  });

  test("the superseded certificate on another connection is a stale copy: refused, and the instance locked", async () => {
    const { certs, key, conn } = await joined();
    expect((await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body)).status).toBe(200);
    const copy = await h.call(h.as(certs, key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(copy.status).toBe(423);
    expect(copy.json.error.message).toContain("generation 1");
    // the lock reaches the renewed connection too
    const after = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body);
    expect(after.status).toBe(423);
  });

  test("a lock on the instance refuses the renewed connection", async () => {
    const { conn, instance } = await joined();
    expect((await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body)).status).toBe(200);
    expect((await h.call(h.admin, "POST", "/v1/locks", { bot_instance_id: instance, message: "incident" })).status).toBe(200);
    const r = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body);
    expect(r.status).toBe(423);
  });

  /**
   * Issue 12: the attacker holds a stale copy of the old identity (certificate and key)
   * and the *public* key the real agent renewed to (public keys are not secrets). It
   * retries that renewal (the lost-answer path), then asks for more on that connection.
   */
  async function staleRetry() {
    const { certs, key } = await joined();
    const next = keyRequest(); // the real agent's new key; the attacker knows only its public half
    const real = await h.call(h.as(certs, key), "POST", "/v1/bot/renew", next.body);
    expect(real.status).toBe(200);
    const conn: ConnInfo = { ...h.as(certs, key).conn, session: {} };
    const retry = await h.call({ conn }, "POST", "/v1/bot/renew", next.body);
    return { conn, retry, real };
  }

  test("a retried renewal answers only what the original did, and does not move the connection", async () => {
    const { conn, retry, real } = await staleRetry();
    expect(retry.status).toBe(200);
    expect(retry.headers.get(CONNECTION_IDENTITY_HEADER)).toBeNull();
    expect(identityOf(retry.json.certs).generation).toBe(2);
    // the same key, no later expiry than the original answer
    expect(identityOf(retry.json.certs).generation).toBe(identityOf(real.json.certs).generation);
    expect(new Date(retry.json.certs.valid_before).getTime()).toBeLessThanOrEqual(new Date(real.json.certs.valid_before).getTime());
    expect(conn.session?.renewed).toBeUndefined();
  });

  test("on a retried renewal's connection, output certificates for another key are refused", async () => {
    const { conn, retry } = await staleRetry();
    expect(retry.status).toBe(200);
    const out = await h.call({ conn }, "POST", "/v1/bot/certs", keyRequest().body);
    expect(out.status).toBeGreaterThanOrEqual(400);
    expect(out.status).toBeLessThan(500);
    expect(out.json.certs).toBeUndefined();
  });

  test("on a retried renewal's connection, a renewal to another key is refused", async () => {
    const { conn, retry } = await staleRetry();
    expect(retry.status).toBe(200);
    const own = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body);
    expect(own.status).toBeGreaterThanOrEqual(400);
    expect(own.status).toBeLessThan(500);
    expect(own.json.certs).toBeUndefined();
  });

  test("the connection's identity expires with the renewed certificate", async () => {
    const { conn } = await joined();
    const r = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest(600).body);
    expect(r.status).toBe(200);
    h.clock.advance(601_000);
    const late = await h.call({ conn }, "POST", "/v1/bot/renew", keyRequest().body);
    expect(late.status).toBe(401);
    expect(late.json.error.code).toBe("EXPIRED");
    expect(late.json.error.message).toContain("expired at");
  });
});

describe("over TLS", () => {
  let dir: string;
  let auth: RunningAuth;
  let target: Target;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "conn-renewal-"));
    auth = await startAuthService({ dataDir: join(dir, "data"), listenAddr: "127.0.0.1:0", log: silentLogger, storage: { type: "sqlite" } });
    target = { host: "127.0.0.1", port: auth.listener.port, caPem: [auth.ctx.authorities.host.tlsCertPem] };
  });
  afterAll(async () => {
    await auth.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function joinBot(name: string): Promise<RenewingBot> {
    const { token } = await adminOf(auth.ctx).addBot({ name, roles: [] }, { user: "admin" });
    return RenewingBot.tokenJoin(target, token, prepareKeys(1)[0]!);
  }

  test("HTTP/1.1: renewals on one kept connection; the superseded certificate elsewhere locks the instance", async () => {
    const bot = await joinBot("kept-h1");
    const first = { certPem: bot.certPem, keyPem: bot.keyPem };
    const keys = prepareKeys(2);
    const c = await connect(target, first);
    try {
      for (const expected of [2, 3, 4]) {
        const r = await c.request("POST", "/v1/bot/renew", { headers: JSON_HEADERS, body: JSON.stringify(keys[expected % 2]!.body) });
        expect(r.status).toBe(200);
        expect(r.headers[CONNECTION_IDENTITY_HEADER]).toBe(CONNECTION_RENEWED);
        expect(JSON.parse(r.body.toString()).generation).toBe(expected);
      }
      // a second connection sees only its own handshake's certificate: the superseded one
      const other = await connect(target, first);
      const stale = await other.request("POST", "/v1/bot/renew", { headers: JSON_HEADERS, body: JSON.stringify(keys[0]!.body) });
      other.close();
      expect(stale.status).toBe(423);
      const locked = await c.request("POST", "/v1/bot/renew", { headers: JSON_HEADERS, body: JSON.stringify(keys[1]!.body) });
      expect(locked.status).toBe(423);
    } finally {
      c.close();
    }
  });

  test("RenewingBot.renewKept keeps its connection; a new connection with the newest certificate renews on", async () => {
    const bot = await joinBot("kept-client");
    const keys = prepareKeys(3);
    for (let i = 0; i < 5; i++) expect(await bot.renewKept(keys[i % 3]!)).toBe(i + 2);
    expect(bot.connections).toBe(1);
    bot.close();
    // the newest certificate, on a fresh connection, is current
    expect(await bot.renew(keys[0]!)).toBe(7);
    await expect(bot.renewKept(keys[1]!)).resolves.toBe(8);
    expect(bot.connections).toBe(3);
    bot.close();
  });

  test("h2: renewals on the streams of one session", async () => {
    const bot = await joinBot("kept-h2");
    const session = http2.connect(`https://127.0.0.1:${auth.listener.port}`, {
      ca: target.caPem,
      servername: AUTH_SERVER_NAME,
      cert: bot.certPem,
      key: bot.keyPem,
    });
    const post = (body: string) =>
      new Promise<{ status: number; header: unknown; json: { generation: number } }>((resolve, reject) => {
        const s = session.request({ ":method": "POST", ":path": "/v1/bot/renew", "content-type": "application/json" });
        let status = 0;
        let header: unknown;
        const chunks: Buffer[] = [];
        s.on("response", (h) => {
          status = Number(h[":status"]);
          header = h[CONNECTION_IDENTITY_HEADER];
        });
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("end", () => resolve({ status, header, json: JSON.parse(Buffer.concat(chunks).toString()) }));
        s.on("error", reject);
        s.end(body);
      });
    try {
      const keys = prepareKeys(2);
      for (const expected of [2, 3, 4]) {
        const r = await post(JSON.stringify(keys[expected % 2]!.body));
        expect(r.status).toBe(200);
        expect(r.header).toBe(CONNECTION_RENEWED);
        expect(r.json.generation).toBe(expected);
      }
    } finally {
      session.close();
    }
  });

  test("a refused renewal on a kept connection leaves the bot's identity as it was", async () => {
    const bot = await joinBot("kept-refused");
    const keys = prepareKeys(1);
    expect(await bot.renewKept(keys[0]!)).toBe(2);
    const before = bot.certPem;
    // a body the service refuses (no keys): 400, nothing changes
    const bad = { privatePem: keys[0]!.privatePem, body: {} } as unknown as PreparedKey;
    await expect(bot.renewKept(bad)).rejects.toBeInstanceOf(HttpError);
    expect(bot.certPem).toBe(before);
    expect(await bot.renewKept(keys[0]!)).toBe(3);
    bot.close();
  });
});
