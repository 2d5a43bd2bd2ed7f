/**
 * The listener's protections in process, with short deadlines: slow handshakes,
 * trickled headers, slow bodies and idle keep-alive connections are cut; the caps
 * refuse connections beyond the total and per-address limits while other clients
 * are served; malformed HTTP gets an answer. And the failed-join limiter on a
 * FakeClock, alone and wrapped around the real handler.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { CompactSign } from "jose";
import { loadAuthorities, issueServerCertificate } from "../../src/auth/authorities.ts";
import { Hono } from "hono";
import { FailureLimiter } from "../../src/auth/ratelimit.ts";
import { limitBody, type ConnInfo } from "../../src/auth/app.ts";
import type { Env } from "../../src/auth/request.ts";
import { listen, type Listener } from "../../src/auth/listener.ts";
import { openBackend } from "../../src/auth/storage/index.ts";
import { formatSshPublicKey, generateKeyPair } from "../../src/crypto/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { STATUS_BY_CODE, errorBody, type Certs } from "../../src/protocol/index.ts";
import { AppError } from "../../src/lib/errors.ts";
import { Http1Connection } from "../_support/http1.ts";
import { keyRequest, startHarness, type Harness } from "../auth/harness.ts";
import { waitFor } from "../agent/wait.ts";
import { closedWithin, tcpConnect, tlsConnect } from "../_support/sockets.ts";

const LIMITS = { headersTimeoutMs: 400, requestTimeoutMs: 600, idleTimeoutMs: 500, maxConnections: 40, maxConnectionsPerAddress: 10 };

let listener: Listener;
/** Releases the second half of the /stream answer. */
let release: () => void = () => {};

/** An answer in two parts, the second only once the test releases it (a watch, say). */
function streamed(): Response {
  const gate = new Promise<void>((resolve) => (release = resolve));
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(new TextEncoder().encode("first\n"));
      await gate;
      controller.enqueue(new TextEncoder().encode("second\n"));
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/plain" } });
}
const bare = new Hono<Env>()
  .use(limitBody())
  .all("*", (c) => (c.req.path === "/stream" ? streamed() : c.json({ ok: true, got: c.var.body?.byteLength ?? 0 })))
  .onError((e) => (e instanceof AppError ? Response.json(errorBody(e), { status: STATUS_BY_CODE[e.code] }) : Response.json({}, { status: 500 })));

beforeAll(async () => {
  const backend = await openBackend({ type: "memory" }, { logger: silentLogger });
  const auth = await loadAuthorities(backend, "limits.test", new Date());
  const c = await issueServerCertificate(auth, { dns: ["localhost"], ips: ["127.0.0.1"] }, new Date(), 3_600_000);
  listener = await listen({
    host: "127.0.0.1",
    port: 0,
    tls: { certPem: c.certPem, keyPem: c.keyPem, clientCaPem: [auth.user.tlsCertPem] },
    log: silentLogger,
    ...LIMITS,
    // the app's body cap (which reads the whole body, as for every route) in front of a handler that answers at once
    handler: async (req, conn) => bare.fetch(req, { conn }),
  });
  await backend.close();
});
afterAll(async () => {
  await listener?.close();
});

/** Waits until the server counts exactly `n` open connections (closes and accepts are asynchronous). */
const openIs = (n: number) => waitFor(`${n} open connections on the server`, () => listener.stats().open === n, 3000);

const conn = (localAddress?: string) =>
  Http1Connection.connect({ host: "127.0.0.1", port: listener.port, tls: { rejectUnauthorized: false }, ...(localAddress ? { localAddress } : {}) });

describe("deadlines", () => {
  test("a connection that never starts TLS is closed after the headers deadline", async () => {
    const s = await tcpConnect(listener.port);
    const ms = await closedWithin(s, 3000);
    expect(ms).toBeGreaterThan(LIMITS.headersTimeoutMs * 0.8);
  });

  test("headers trickled a byte at a time (slowloris) are cut at the headers deadline, however steady", async () => {
    const s = await tlsConnect(listener.port);
    s.write("POST /v1/join HTTP/1.1\r\nhost: x\r\n");
    let n = 0;
    const trickle = setInterval(() => !s.destroyed && s.write(`x-${n++}: y\r\n`), 50);
    try {
      const ms = await closedWithin(s, 3000);
      expect(ms).toBeLessThan(LIMITS.headersTimeoutMs + 500);
      expect(n).toBeGreaterThan(3); // it was sending all along
    } finally {
      clearInterval(trickle);
    }
  });

  test("a body that never arrives in full is cut at the request deadline", async () => {
    const s = await tlsConnect(listener.port);
    s.write("POST /v1/join HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{");
    const trickle = setInterval(() => !s.destroyed && s.write(" "), 50);
    try {
      const ms = await closedWithin(s, 3000);
      expect(ms).toBeGreaterThan(LIMITS.requestTimeoutMs * 0.8);
    } finally {
      clearInterval(trickle);
    }
  });

  test("a keep-alive connection serves request after request, then closes when idle", async () => {
    const c = await conn();
    for (let i = 0; i < 3; i++) expect((await c.request("POST", "/x", { body: "abc" })).status).toBe(200);
    const ms = await closedWithin(c.socket, 3000);
    expect(ms).toBeGreaterThan(LIMITS.idleTimeoutMs * 0.8);
  });

  test("an h2 session is tracked like an HTTP/1.1 connection and closed when idle", async () => {
    const session = http2.connect(`https://127.0.0.1:${listener.port}`, { rejectUnauthorized: false });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const st = session.request({ ":path": "/x", ":method": "GET" });
        st.on("response", (h) => resolve(Number(h[":status"])));
        st.on("error", reject);
        st.resume();
      });
      expect(status).toBe(200);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("the idle h2 session stayed open")), 3000);
        session.once("close", () => {
          clearTimeout(t);
          resolve();
        });
      });
    } finally {
      session.destroy();
    }
  });
});

describe("caps", () => {
  test("one address holding its share is refused more; another address is still served", async () => {
    const held = await Promise.all(Array.from({ length: LIMITS.maxConnectionsPerAddress }, () => tcpConnect(listener.port, "127.0.0.2")));
    try {
      // closed at accept: its TLS handshake is never answered (an accepted one would be, however slow the machine)
      await expect(tlsConnect(listener.port, { localAddress: "127.0.0.2" })).rejects.toThrow();
      const other = await conn("127.0.0.1");
      expect((await other.request("GET", "/ping")).status).toBe(200);
      other.close();
      expect(listener.stats().refused).toBeGreaterThan(0);
    } finally {
      for (const s of held) s.destroy();
      await openIs(0);
    }
  });

  test("past the total cap new connections are refused until old ones go", async () => {
    const addrs = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];
    const held = (await Promise.all(addrs.map((a) => Promise.all(Array.from({ length: LIMITS.maxConnectionsPerAddress }, () => tcpConnect(listener.port, a)))))).flat();
    await openIs(LIMITS.maxConnections);
    try {
      await expect(conn("127.0.0.7").then((c) => c.request("GET", "/ping"))).rejects.toThrow();
    } finally {
      for (const s of held) s.destroy();
    }
    // the slots are freed as the held sockets close: a new client gets in
    for (let i = 0; ; i++) {
      const ok = await conn("127.0.0.7").then((c) => c.request("GET", "/ping").finally(() => c.close())).catch(() => undefined);
      if (ok?.status === 200) break;
      if (i > 200) throw new Error("the total cap never freed up");
    }
  });
});

describe("malformed HTTP gets an answer, not a silent close", () => {
  test("headers over Bun's limit: 431", async () => {
    const c = await conn();
    const r = await c.send(Buffer.from(`GET / HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(100_000)}\r\n\r\n`));
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body.toString()).error.code).toBe("TOO_LARGE");
  });

  test("garbage instead of a request line: 400", async () => {
    const c = await conn();
    const r = await c.send(Buffer.from("\x00\x01garbage\r\n\r\n"));
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body.toString()).error.code).toBe("BAD_PARAMETER");
  });
});

describe("streamed answers", () => {
  test("each part reaches the client as it is written, and a long stream outlives the request and idle deadlines", async () => {
    const s = await tlsConnect(listener.port);
    let got = "";
    s.on("data", (d: Buffer) => (got += d.toString()));
    s.write("GET /stream HTTP/1.1\r\nhost: x\r\n\r\n");
    await waitFor("the first part", () => got.includes("first"), 3000);
    expect(got).not.toContain("second");
    const t0 = Date.now();
    await waitFor("both deadlines to pass", () => Date.now() - t0 > LIMITS.requestTimeoutMs + LIMITS.idleTimeoutMs, 3000);
    expect(s.destroyed).toBe(false);
    release();
    await waitFor("the second part", () => got.includes("second"), 3000);
    s.destroy();
  });
});

describe("body size cap", () => {
  test("a declared length over the cap is refused at once, without waiting for the body", async () => {
    const c = await conn();
    const t0 = performance.now();
    const r = await c.send(Buffer.from("POST /v1/join HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000000\r\n\r\n{"));
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe("close");
    expect(performance.now() - t0).toBeLessThan(LIMITS.requestTimeoutMs);
  });

  /** POSTs 300 KiB over h2 declaring `contentLength`; status 0 when the runtime reset the stream. */
  async function h2PostDeclaring(contentLength: string): Promise<{ status: number; body: string }> {
    const session = http2.connect(`https://127.0.0.1:${listener.port}`, { rejectUnauthorized: false });
    try {
      return await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const st = session.request({ ":path": "/v1/join", ":method": "POST", "content-type": "application/json", "content-length": contentLength });
        let status = 0;
        let body = "";
        st.on("response", (h) => (status = Number(h[":status"])));
        st.on("data", (d: Buffer) => (body += d.toString()));
        st.on("end", () => resolve({ status, body }));
        st.on("close", () => resolve({ status, body }));
        st.on("error", reject);
        st.end(Buffer.alloc(300 * 1024, 0x20));
      }).catch(() => ({ status: 0, body: "" }));
    } finally {
      session.destroy();
    }
  }

  test("an h2 body longer than its declared Content-Length is refused, not read past the declared length", async () => {
    const { status, body } = await h2PostDeclaring("10");
    // refused (or the stream reset by the runtime): never answered as if the body were read
    expect(status === 0 || (status >= 400 && status < 500)).toBe(true);
    expect(body).not.toContain('"ok":true');
  });

  test("a Content-Length that is not one decimal number is refused before the body is read", async () => {
    // Number("x") is NaN, and NaN is never over the cap: without the check the whole body was read
    for (const declared of ["x", "5, 5", "1e9", "-1", "0x10"]) {
      const r = await bare.fetch(new Request("https://x/v1/join", { method: "POST", headers: { "content-length": declared }, body: "a".repeat(300 * 1024) }));
      expect(r.status, declared).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toContain("Invalid Content-Length");
    }
    // over h2 (where the runtime may pass such a header through), refused as well or reset, never read
    const { status, body } = await h2PostDeclaring("x");
    expect(status === 0 || status === 400).toBe(true);
    expect(body).not.toContain('"ok":true');
  });

  test("an h2 body over the cap gets 413 too", async () => {
    const session = http2.connect(`https://127.0.0.1:${listener.port}`, { rejectUnauthorized: false });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const st = session.request({ ":path": "/v1/join", ":method": "POST", "content-type": "application/json" });
        st.on("response", (h) => resolve(Number(h[":status"])));
        st.on("error", reject);
        st.end(Buffer.alloc(300 * 1024, 0x20));
        st.resume();
      });
      expect(status).toBe(413);
    } finally {
      session.destroy();
    }
  });
});

describe("FailureLimiter", () => {
  test("allows a burst of failures, then limits with the time to the next allowance", () => {
    const clock = new FakeClock();
    const l = new FailureLimiter({ clock, burst: 3, refillMs: 1000 });
    expect(l.recordFailure("a")).toBe(false);
    expect(l.recordFailure("a")).toBe(false);
    expect(l.retryAfterMs("a")).toBe(0);
    expect(l.recordFailure("a")).toBe(true);
    expect(l.retryAfterMs("a")).toBe(1000);
    expect(l.retryAfterMs("b")).toBe(0);
    clock.advance(400);
    expect(l.retryAfterMs("a")).toBe(600);
    clock.advance(600);
    expect(l.retryAfterMs("a")).toBe(0);
    expect(l.recordFailure("a")).toBe(true); // one allowance back, spent at once
  });

  test("forgets an address once it has fully recovered, and never holds more than maxAddresses", () => {
    const clock = new FakeClock();
    const l = new FailureLimiter({ clock, burst: 2, refillMs: 1000, maxAddresses: 100 });
    for (let i = 0; i < 500; i++) l.recordFailure(`10.0.${i >> 8}.${i & 255}`);
    expect(l.size).toBe(100);
    clock.advance(2000);
    l.recordFailure("x");
    expect(l.retryAfterMs("10.0.1.243")).toBe(0);
    expect(l.size).toBeLessThanOrEqual(100);
  });
});

describe("limitFailedJoins around the real handler", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    await h.call(h.admin, "POST", "/v1/resources", { resources: [{ kind: "bot", version: "v1", metadata: { name: "rl" }, spec: { roles: [] } }] });
  });
  afterAll(async () => {
    await h.close();
  });

  test("ten failed joins from one address: 429 with Retry-After, audited once; others and renewals unaffected", async () => {
    const handler = h.withJoinLimiter(new FailureLimiter({ clock: h.clock }));
    const post = (path: string, body: unknown, conn: ConnInfo) =>
      handler(new Request(`https://auth.test${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }), conn);
    const join = (addr: string, token: string, key = keyRequest()) =>
      post("/v1/join", { ...key.body, join_method: "token", token_name: token }, { remoteAddr: addr });
    for (let i = 0; i < 10; i++) expect((await join("192.0.2.1", `guess-${i}`)).status).toBe(403);
    const limited = await join("192.0.2.1", "guess-x");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBe(6);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("LIMIT_EXCEEDED");

    // a real token from another address joins at once, and its renewal is never limited
    const added = await h.call(h.admin, "POST", "/v1/bots", { name: "rl2", roles: [] });
    expect(added.status).toBe(200);
    const key = keyRequest();
    const ok = await join("192.0.2.2", added.json.token, key);
    expect(ok.status).toBe(200);
    const certs = ((await ok.json()) as { certs: Certs }).certs;
    const renewed = await post("/v1/bot/renew", keyRequest().body, h.as(certs, key.key, "192.0.2.1").conn);
    expect(renewed.status).toBe(200);

    const events = (await h.call(h.admin, "GET", "/v1/events?type=join.failed")).json as { fields: Record<string, unknown> }[];
    const limitEvents = events.filter((e) => e.fields.error === "LIMIT_EXCEEDED");
    expect(limitEvents.length).toBe(1);
    expect(limitEvents[0]!.fields).toMatchObject({ remote_addr: "192.0.2.1", retry_after_seconds: 6 });
    // refused requests are not audited one by one
    expect(events.filter((e) => e.fields.remote_addr === "192.0.2.1").length).toBe(11);

    h.clock.advance(6000);
    expect((await join("192.0.2.1", "guess-y")).status).toBe(403);
    expect((await join("192.0.2.1", "guess-z")).status).toBe(429);
  });
});

describe("bound keypair begins are limited per address (issue 12)", () => {
  test("issued challenges spend an address's allowance, answered ones give it back; 429 past it, other addresses unaffected", async () => {
    const h = await startHarness();
    try {
      await h.call(h.admin, "POST", "/v1/resources", { resources: [{ kind: "bot", version: "v1", metadata: { name: "rl" }, spec: { roles: [] } }] });
      const key = generateKeyPair("ed25519");
      const tokenName = "bkp-rl";
      const created = await h.call(h.admin, "POST", "/v1/resources", {
        resources: [
          {
            kind: "token",
            version: "v2",
            metadata: { name: tokenName },
            spec: { roles: ["Bot"], bot_name: "rl", join_method: "bound_keypair", bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 0, mode: "insecure" } } },
          },
        ],
      });
      expect(created.status).toBe(200);
      const handler = h.withJoinLimiter(new FailureLimiter({ clock: h.clock }), new FailureLimiter({ clock: h.clock, burst: 3, refillMs: 1000 }));
      const post = (path: string, body: unknown, addr: string) =>
        handler(new Request(`https://auth.test${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }), { remoteAddr: addr });
      const begin = async (addr: string) => {
        const r = await post("/v1/join/bound-keypair/begin", { ...keyRequest().body, token_name: tokenName, public_key: formatSshPublicKey(key.publicKey) }, addr);
        return { status: r.status, headers: r.headers, json: (await r.json()) as any };
      };
      const first = await begin("192.0.2.7");
      expect(first.status).toBe(200);
      expect((await begin("192.0.2.7")).status).toBe(200);
      expect((await begin("192.0.2.7")).status).toBe(200);
      const limited = await begin("192.0.2.7");
      expect(limited.status).toBe(429);
      expect(limited.json.error.code).toBe("LIMIT_EXCEEDED");
      expect(limited.json.error.message).toContain("unanswered bound keypair challenges");
      expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
      // another address is not limited
      expect((await begin("192.0.2.8")).status).toBe(200);
      // answering a challenge gives the allowance back
      const solution = await new CompactSign(new TextEncoder().encode(JSON.stringify(first.json.challenge))).setProtectedHeader({ alg: "EdDSA" }).sign(key.privateKey);
      expect((await post("/v1/join/bound-keypair/solve", { challenge_id: first.json.challenge_id, solution }, "192.0.2.7")).status).toBe(200);
      expect((await begin("192.0.2.7")).status).toBe(200);
      expect((await begin("192.0.2.7")).status).toBe(429);
      const audited = (await h.call(h.admin, "GET", "/v1/events?type=join.failed")).json as { fields: Record<string, unknown> }[];
      expect(audited.filter((e) => e.fields.error === "LIMIT_EXCEEDED" && e.fields.remote_addr === "192.0.2.7").length).toBeGreaterThanOrEqual(1);
    } finally {
      await h.close();
    }
  });
});
