/**
 * Hostile input against the compiled auth service over real HTTPS, with fast-check:
 * random and mutated JSON bodies to every endpoint as anonymous, admin and bot callers;
 * random methods, paths, headers and framing; oversized bodies; hostile client
 * certificates (foreign CA, expired, wrong cluster, garbage identity extensions signed
 * by the real CA); malformed and forged JWS challenge answers and join states. Zero 5xx,
 * the process never dies, no "Unhandled error" in its log, and it answers afterwards.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { CompactSign, SignJWT, jwtVerify } from "jose";
import { openBackend } from "../../src/auth/storage/index.ts";
import { createCA, formatSshPublicKey, generateKeyPair, issueCertificate, parsePrivateKey, privateKeyToPem, type CertIdentity } from "../../src/crypto/index.ts";
import { ERROR_CODES } from "../../src/lib/errors.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { AUTH_SERVER_NAME, MAX_BODY_BYTES, parseIdentityFile, type AuthClient } from "../../src/protocol/index.ts";
import { JSON_HEADERS, RenewingBot, prepareKeys, signClaims, type PreparedKey, type Target } from "../_support/bot.ts";
import { Http1Connection, type RawResponse } from "../_support/http1.ts";
import { adminClient } from "../_support/clients.ts";
import { sh, startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";
import { SOAK, size } from "./_helpers.ts";

const RUNS = { bodies: size(1500, 15_000), raw: size(600, 6000), certs: size(25, 150), solve: size(300, 3000), joinState: size(30, 300), big: size(12, 60) };

interface Identity {
  certPem: string;
  keyPem: string;
}

let work: ReturnType<typeof tempDir>;
let auth: AuthProcess;
let admin: AuthClient;
let target: Target;
let adminId: Identity;
let bot: RenewingBot;
const pool: PreparedKey[] = prepareKeys(8);
let userCa: { certPem: string; key: KeyObject };
let jwtKey: KeyObject;
/** The cluster's name (the host name: the harness starts the service without --cluster-name). */
let cluster: string;
const bound = generateKeyPairSync("ed25519");
const BKP_TOKEN = "fuzz-bkp";
/**
 * The challenge-answer fuzzing's own token: a token holds at most 10 unanswered
 * challenges, and the request fuzzing leaves BKP_TOKEN's unanswered.
 */
const BKP_ANSWERS_TOKEN = "fuzz-bkp-answers";
/** The recovery limit of the join-state fuzzing's tokens. */
const RECOVERY_LIMIT = 100;
let nextAddress = 1;
const fiveHundreds: string[] = [];
const silentCloses: string[] = [];

beforeAll(async () => {
  work = tempDir("mid-hostile-");
  auth = await startAuth(join(work.path, "auth"));
  admin = adminClient(join(work.path, "auth"), auth.addr);
  const id = parseIdentityFile(readFileSync(join(work.path, "auth", "admin-identity"), "utf8"));
  adminId = { certPem: id.tlsCertPem, keyPem: id.keyPem };
  target = { host: "127.0.0.1", port: auth.port, caPem: id.tlsCaCertsPem };
  cluster = (await admin.ping()).cluster_name;
  await admin.createResources([
    { kind: "role", version: "v7", metadata: { name: "fuzz-role" }, spec: { allow: { logins: ["fuzz"] } } },
    { kind: "bot", version: "v1", metadata: { name: "fuzz" }, spec: { roles: ["fuzz-role"] } },
    { kind: "bot", version: "v1", metadata: { name: "victim" }, spec: { roles: [] } },
    {
      kind: "token",
      version: "v2",
      metadata: { name: BKP_TOKEN },
      spec: { roles: ["Bot"], bot_name: "fuzz", join_method: "bound_keypair", bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(bound.publicKey) }, recovery: { mode: "insecure", limit: 1 } } },
    },
    {
      kind: "token",
      version: "v2",
      metadata: { name: BKP_ANSWERS_TOKEN },
      spec: { roles: ["Bot"], bot_name: "fuzz", join_method: "bound_keypair", bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(bound.publicKey) }, recovery: { mode: "insecure", limit: 1 } } },
    },
  ]);
  const { token } = await admin.addToken({ bot_name: "fuzz", join_method: "token" });
  bot = await RenewingBot.tokenJoin(target, token, pool[0]!);
  // the service's own keys, read from its database: certificates the real CA signed can still be hostile
  const backend = await openBackend({ type: "sqlite", path: join(work.path, "auth", "machine-id.db") }, { sweepIntervalMs: 0 });
  try {
    const user = (await backend.get<{ tls: { cert: string; key: string } }>("/authorities/user"))!.value;
    userCa = { certPem: user.tls.cert, key: parsePrivateKey(user.tls.key).privateKey };
    jwtKey = parsePrivateKey((await backend.get<{ jwt: { key: string } }>("/authorities/jwt"))!.value.jwt.key).privateKey;
  } finally {
    await backend.close();
  }
}, 60_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  work?.[Symbol.dispose]();
});

type Who = "anon" | "admin" | "bot" | "foreign";

/** A foreign CA's certificate that claims to be this cluster's admin. */
let foreign: Identity | undefined;
async function foreignAdmin(): Promise<Identity> {
  if (foreign) return foreign;
  const ca = generateKeyPair("ecdsa-p256");
  const now = new Date();
  const caPem = await createCA({ commonName: "evil CA", organization: "evil", keyPair: ca, notBefore: now, notAfter: new Date(+now + 3_600_000) });
  const k = generateKeyPair("ecdsa-p256");
  const certPem = await issueCertificate({
    caCertPem: caPem,
    caKey: ca.privateKey,
    publicKey: k.publicKey,
    commonName: "admin",
    notBefore: now,
    notAfter: new Date(+now + 3_600_000),
    usage: "client",
    identity: { cluster, username: "admin", kind: "admin", renewable: false, roles: [], logins: [] },
  });
  foreign = { certPem, keyPem: privateKeyToPem(k.privateKey) };
  return foreign;
}

/**
 * Keep-alive connections per caller, reopened when the server closes one and every 8
 * requests from a new address in 127.1.0.0/16: fewer failed joins per address than the
 * limiter allows, so it never ends the fuzzing, and 127.0.0.1 stays clean for the checks.
 */
const conns = new Map<Who, { c: Http1Connection; uses: number }>();
const fuzzAddress = () => {
  // host part 1..254: each address stands for one connection (x.0 used to double up with x.1,
  // giving that address 16 requests and, with enough failed joins among them, a 429)
  const n = nextAddress++;
  return `127.1.${Math.floor(n / 254) & 255}.${(n % 254) + 1}`;
};
async function connection(who: Who): Promise<Http1Connection> {
  const cur = conns.get(who);
  if (cur && !cur.c.closed && cur.uses < 8) {
    cur.uses++;
    return cur.c;
  }
  cur?.c.close();
  const identity = who === "admin" ? adminId : who === "bot" ? { certPem: bot.certPem, keyPem: bot.keyPem } : who === "foreign" ? await foreignAdmin() : undefined;
  const c = await Http1Connection.connect({
    host: target.host,
    port: target.port,
    tls: { ca: target.caPem, servername: AUTH_SERVER_NAME, ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}) },
    localAddress: fuzzAddress(),
  });
  conns.set(who, { c, uses: 1 });
  return c;
}

/** Checks one answer: never 5xx; an error body, when JSON, carries a known code. */
function check(what: string, r: RawResponse): void {
  if (r.status >= 500) fiveHundreds.push(`${what} → ${r.status} ${r.body.toString().slice(0, 200)}`);
  if (r.status >= 400 && r.headers["content-type"]?.includes("json") && r.body.length > 0) {
    const body = JSON.parse(r.body.toString()) as { error?: { code?: string }; kind?: string };
    // the Kubernetes proxy answers the way the Kubernetes API does, with a Status object
    const known = (ERROR_CODES as readonly string[]).includes(body.error?.code ?? "") || body.kind === "Status";
    if (!known) fiveHundreds.push(`${what} → ${r.status} without a known error code: ${r.body.toString().slice(0, 200)}`);
  }
}

async function call(who: Who, method: string, path: string, body?: string, headers: Record<string, string> = JSON_HEADERS): Promise<RawResponse | undefined> {
  const c = await connection(who);
  try {
    const r = await c.request(method, path, { headers, ...(body !== undefined ? { body } : {}) });
    check(`${who} ${method} ${path} ${body?.slice(0, 120) ?? ""}`, r);
    if (r.headers.connection === "close") c.close();
    return r;
  } catch (e) {
    silentCloses.push(`${who} ${method} ${path}: ${(e as Error).message}`);
    c.close();
    return undefined;
  }
}

const jwtish = fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.map((s) => s.replace(/=/g, "").replace(/\+/g, "-").replace(/\//g, "_")).join("."));

/** Valid-looking bodies per POST route; mutations start from these. */
function templates(): Record<string, () => Record<string, unknown>> {
  const k = pool[Math.floor(Math.random() * pool.length)]!;
  return {
    "/v1/join": () => ({ ...k.body, join_method: "token", token_name: randomBytes(16).toString("hex") }),
    "/v1/join#kubernetes": () => ({ ...k.body, join_method: "kubernetes", token_name: "k8s", id_token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln" }),
    "/v1/join/bound-keypair/begin": () => ({ ...k.body, token_name: BKP_TOKEN, public_key: formatSshPublicKey(bound.publicKey) }),
    "/v1/join/bound-keypair/solve": () => ({ challenge_id: randomBytes(16).toString("hex"), solution: "eyJhbGciOiJFZERTQSJ9.e30.c2ln" }),
    "/v1/bot/renew": () => ({ ...k.body }),
    "/v1/bot/certs": () => ({ ...k.body, roles: ["fuzz-role"] }),
    "/v1/resources": () => ({ resources: [{ kind: "role", version: "v7", metadata: { name: "fz" }, spec: { allow: { logins: ["x"] } } }], force: true }),
    "/v1/bots": () => ({ name: `fz-${randomBytes(4).toString("hex")}`, roles: [] }),
    "/v1/tokens": () => ({ bot_name: "victim", join_method: "token" }),
    "/v1/locks": () => ({ bot: "victim", message: "fuzz" }),
    "/v1/auth/sign-host": () => ({ public_key: formatSshPublicKey(bound.publicKey), principals: ["host.example"] }),
  };
}

type Mutation =
  | { kind: "none" }
  | { kind: "replace"; at: number; value: unknown }
  | { kind: "drop"; at: number }
  | { kind: "add"; key: string; value: unknown }
  | { kind: "whole"; value: unknown }
  | { kind: "text"; value: string }
  | { kind: "huge"; at: number; size: number }
  | { kind: "nest"; depth: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), value: fc.jsonValue() }),
  fc.record({ kind: fc.constant("drop" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("add" as const), key: fc.string(), value: fc.jsonValue() }),
  fc.record({ kind: fc.constant("whole" as const), value: fc.jsonValue() }),
  fc.record({ kind: fc.constant("text" as const), value: fc.string({ unit: "binary", maxLength: 200 }) }),
  fc.record({ kind: fc.constant("huge" as const), at: fc.nat(), size: fc.integer({ min: 16 * 1024, max: MAX_BODY_BYTES + 4096 }) }),
  fc.record({ kind: fc.constant("nest" as const), depth: fc.integer({ min: 50, max: 20_000 }) }),
);

function mutate(body: Record<string, unknown>, m: Mutation): string {
  const keys = Object.keys(body);
  const pick = (at: number) => keys[at % keys.length]!;
  switch (m.kind) {
    case "none":
      return JSON.stringify(body);
    case "replace":
      return JSON.stringify({ ...body, [pick(m.at)]: m.value });
    case "drop": {
      const { [pick(m.at)]: _, ...rest } = body;
      return JSON.stringify(rest);
    }
    case "add":
      return JSON.stringify({ ...body, [m.key]: m.value });
    case "whole":
      return JSON.stringify(m.value);
    case "text":
      return m.value;
    case "huge":
      return JSON.stringify({ ...body, [pick(m.at)]: "A".repeat(m.size) });
    case "nest":
      return JSON.stringify({ ...body, [keys[0]!]: JSON.parse("[".repeat(m.depth) + "]".repeat(m.depth)) });
  }
}

/** After a 200 from a renewal with one of our keys, the bot caller moves on to its new certificate. */
function followRenewal(path: string, who: Who, body: string, r: RawResponse | undefined): void {
  if (path !== "/v1/bot/renew" || who !== "bot" || r?.status !== 200) return;
  const sent = JSON.parse(body) as { public_tls_key?: string };
  const key = pool.find((k) => k.body.public_tls_key === sent.public_tls_key);
  if (!key) throw new Error("a renewal succeeded for a key this test does not hold");
  bot.certPem = (JSON.parse(r.body.toString()) as { certs: { tls_cert: string } }).certs.tls_cert;
  bot.keyPem = key.privatePem;
  conns.get("bot")?.c.close();
  conns.delete("bot");
}

const who = fc.constantFrom<Who>("anon", "admin", "bot", "foreign");

describe(`hostile input, compiled service${SOAK ? " (soak sizes)" : ""}`, () => {
  test("random and mutated JSON bodies to every POST route, as every kind of caller", async () => {
    const routes = Object.keys(templates());
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), who, mutation, fc.constantFrom("application/json", "text/plain", "", "application/json; charset=latin1"), async (route, caller, m, ctype) => {
        const path = route.split("#")[0]!;
        const body = mutate(templates()[route]!(), m);
        const r = await call(caller, "POST", path, body, ctype ? { "content-type": ctype } : {});
        followRenewal(path, caller, body, r);
        if (body.length > MAX_BODY_BYTES && r) expect(r.status).toBe(413);
      }),
      { numRuns: RUNS.bodies },
    );
  }, 300_000);

  test("GET and DELETE on every route with random segments and queries", async () => {
    const seg = fc.oneof(fc.constantFrom("bot", "role", "token", "fuzz", "victim", "bot_instance", "..", "%2e%2e", "%00", ""), fc.string({ maxLength: 40 }).map(encodeURIComponent));
    const base = fc.constantFrom(
      "/webapi/ping", "/webapi/auth/export", "/scripts/install.sh", "/downloads/", "/v1/status", "/v1/resources", "/v1/bot-instances",
      "/v1/locks", "/v1/events", "/v1/kubernetes/", "/v1/kubernetes/none/api/v1/pods", "/v1/join", "/v1/bot/renew", "/nowhere",
    );
    const query = fc.dictionary(fc.constantFrom("type", "limit", "since", "bot", "watch", "x", ""), fc.string({ maxLength: 30 }), { maxKeys: 3 });
    await fc.assert(
      fc.asyncProperty(who, fc.constantFrom("GET", "DELETE", "HEAD", "PUT", "PATCH", "OPTIONS"), base, fc.array(seg, { maxLength: 3 }), query, async (caller, method, b, segs, q) => {
        const qs = new URLSearchParams(q).toString();
        const path = [b.replace(/\/$/, ""), ...segs].join("/") + (qs ? `?${qs}` : "");
        if (method === "DELETE" && /\/(fuzz|victim)(\/|$|\?)/.test(path)) return; // keep the callers' own bots
        await call(caller, method, path || "/", undefined, {});
      }),
      { numRuns: RUNS.raw },
    );
  }, 300_000);

  test("random request lines, headers and framing on raw connections", async () => {
    const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,24}$/);
    const headerValue = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "binary-ascii", maxLength: 80 }));
    const header = fc.tuple(fc.oneof(token, fc.constantFrom("content-type", "host", "expect", "connection", "authorization", "x-forwarded-for", "upgrade", "te", "transfer-encoding")), headerValue);
    const framing = fc.constantFrom("length", "none", "chunked", "chunked-bad", "length-short", "both");
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constantFrom("GET", "POST", "DELETE"), token),
        fc.oneof(fc.constantFrom("/v1/join", "/v1/bot/renew", "/webapi/ping", "/v1/resources"), fc.string({ maxLength: 60 }).map((s) => "/" + s.replace(/[\s]/g, "%20"))),
        fc.array(header, { maxLength: 12 }),
        fc.string({ unit: "binary", maxLength: 300 }),
        framing,
        async (method, path, headers, body, frame) => {
          const bytes = Buffer.from(body);
          let head = `${method} ${path} HTTP/1.1\r\nhost: x\r\n` + headers.map(([k, v]) => `${k}: ${v.replace(/[\r\n]/g, " ")}\r\n`).join("");
          let payload = bytes;
          if (frame === "length") head += `content-length: ${bytes.length}\r\n`;
          if (frame === "length-short") head += `content-length: ${Math.max(0, bytes.length - 3)}\r\n`;
          if (frame === "both") head += `content-length: ${bytes.length}\r\ntransfer-encoding: chunked\r\n`;
          if (frame === "chunked" || frame === "chunked-bad") {
            head += "transfer-encoding: chunked\r\n";
            const size = frame === "chunked" ? bytes.length.toString(16) : "zz";
            payload = Buffer.concat([Buffer.from(`${size}\r\n`), bytes, Buffer.from("\r\n0\r\n\r\n")]);
          }
          // a fresh connection each time: after odd framing the server may rightly see a second request
          const c = await Http1Connection.connect({ host: target.host, port: target.port, tls: { ca: target.caPem, servername: AUTH_SERVER_NAME }, localAddress: fuzzAddress() });
          try {
            const r = await Promise.race([c.send(Buffer.concat([Buffer.from(head + "\r\n"), payload])), Bun.sleep(5000).then(() => "slow" as const)]);
            if (r === "slow") silentCloses.push(`no answer in 5s: ${JSON.stringify(head.slice(0, 200))}`);
            else check(`raw ${JSON.stringify(head.slice(0, 200))}`, r);
          } catch (e) {
            silentCloses.push(`raw ${JSON.stringify(head.slice(0, 120))}: ${(e as Error).message}`);
          } finally {
            c.close();
          }
        },
      ),
      { numRuns: RUNS.raw },
    );
  }, 300_000);

  test("oversized bodies are refused with 413, declared or chunked", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: MAX_BODY_BYTES + 1, max: 4 * MAX_BODY_BYTES }), fc.boolean(), fc.constantFrom("/v1/join", "/v1/bot/renew", "/v1/resources", "/v1/join/bound-keypair/solve"), async (n, chunked, path) => {
        const c = await Http1Connection.connect({ host: target.host, port: target.port, tls: { ca: target.caPem, servername: AUTH_SERVER_NAME, cert: adminId.certPem, key: adminId.keyPem }, localAddress: fuzzAddress() });
        try {
          const body = Buffer.alloc(n, 0x7b);
          const head = `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` + (chunked ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${n}\r\n\r\n`);
          const payload = chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")]) : body;
          const r = await c.send(Buffer.concat([Buffer.from(head), payload]));
          expect(r.status).toBe(413);
          expect((JSON.parse(r.body.toString()) as { error: { code: string } }).error.code).toBe("TOO_LARGE");
        } finally {
          c.close();
        }
      }),
      { numRuns: RUNS.big },
    );
  }, 120_000);

  test("hostile client certificates never authenticate anything", async () => {
    const now = new Date();
    const k = generateKeyPair("ecdsa-p256");
    const keyPem = privateKeyToPem(k.privateKey);
    const signed = async (identity: CertIdentity | undefined, notBefore: Date, notAfter: Date) =>
      issueCertificate({ caCertPem: userCa.certPem, caKey: userCa.key, publicKey: k.publicKey, commonName: "x", notBefore, notAfter, usage: "client", ...(identity ? { identity } : {}) });
    const botId: CertIdentity = { cluster, username: "bot-fuzz", kind: "bot", botName: "fuzz", botInstanceId: bot.instanceId, generation: 1, renewable: true, roles: [], logins: [] };
    const hour = 3_600_000;
    const certs: [string, string][] = [
      ["foreign CA claiming admin", (await foreignAdmin()).certPem],
      ["expired admin", await signed({ ...botId, kind: "admin", username: "admin", renewable: false }, new Date(+now - 2 * hour), new Date(+now - hour))],
      ["not yet valid admin", await signed({ ...botId, kind: "admin", username: "admin", renewable: false }, new Date(+now + hour), new Date(+now + 2 * hour))],
      ["admin of another cluster", await signed({ cluster: "other", username: "admin", kind: "admin", renewable: false, roles: [], logins: [] }, now, new Date(+now + hour))],
      ["no identity extension", await signed(undefined, now, new Date(+now + hour))],
      ["bot instance that does not exist", await signed({ ...botId, botInstanceId: "00000000-0000-4000-8000-000000000000" }, now, new Date(+now + hour))],
      ["bot that does not exist", await signed({ ...botId, botName: "ghost", username: "bot-ghost" }, now, new Date(+now + hour))],
      ["non-renewable bot on renew", await signed({ ...botId, renewable: false }, now, new Date(+now + hour))],
    ];
    // identity extensions the real CA signed but that are not identities: openssl writes what our encoder refuses to
    const dir = join(work.path, "certs");
    sh(["mkdir", "-p", dir]);
    writeFileSync(join(dir, "ca.pem"), userCa.certPem);
    writeFileSync(join(dir, "ca.key"), privateKeyToPem(userCa.key));
    writeFileSync(join(dir, "leaf.key"), keyPem);
    const csr = sh(["openssl", "req", "-new", "-key", join(dir, "leaf.key"), "-subj", "/CN=evil", "-out", join(dir, "leaf.csr")]);
    expect(csr.code).toBe(0);
    const utf8 = (s: string) => {
      const b = Buffer.from(s);
      const len = b.length < 128 ? Buffer.from([b.length]) : b.length < 256 ? Buffer.from([0x81, b.length]) : Buffer.from([0x82, b.length >> 8, b.length & 255]);
      return Buffer.concat([Buffer.from([0x0c]), len, b]).toString("hex");
    };
    const payloads: [string, string][] = [
      ["not JSON", utf8("{not json")],
      ["JSON null", utf8("null")],
      ["admin with wrong types", utf8(JSON.stringify({ cluster: "vm", username: 7, kind: "admin", renewable: "yes", roles: {}, logins: [] }))],
      ["an INTEGER, not a UTF8String", "020101"],
      ["an empty OCTET STRING", "0400"],
      ["invalid UTF-8", "0c03c328ff"],
      ["oversized", utf8(JSON.stringify({ ...botId, roles: Array.from({ length: 2000 }, (_, i) => `role-${i}`) }))],
      ...fc.sample(fc.jsonValue(), { numRuns: RUNS.certs, seed: 7 }).map((v, i): [string, string] => [`random JSON ${i}`, utf8(JSON.stringify(v) ?? "null")]),
    ];
    for (const [name, hex] of payloads) {
      writeFileSync(join(dir, "ext.cnf"), `[ext]\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n1.3.9999.77.1=DER:${hex}\n`);
      const r = sh(["openssl", "x509", "-req", "-in", join(dir, "leaf.csr"), "-CA", join(dir, "ca.pem"), "-CAkey", join(dir, "ca.key"), "-CAcreateserial", "-days", "1", "-extfile", join(dir, "ext.cnf"), "-extensions", "ext"]);
      expect(r.code).toBe(0);
      certs.push([`identity extension: ${name}`, r.stdout]);
    }
    for (const [name, certPem] of certs) {
      const ownKey = name === "foreign CA claiming admin" ? (await foreignAdmin()).keyPem : keyPem;
      const c = await Http1Connection.connect({ host: target.host, port: target.port, tls: { ca: target.caPem, servername: AUTH_SERVER_NAME, cert: certPem, key: ownKey }, localAddress: fuzzAddress() });
      try {
        for (const [method, path, body] of [
          ["POST", "/v1/bot/renew", JSON.stringify(pool[1]!.body)],
          ["POST", "/v1/bot/certs", JSON.stringify(pool[1]!.body)],
          ["GET", "/v1/status"],
          ["GET", "/v1/resources/bot"],
          ["POST", "/v1/locks", JSON.stringify({ bot: "victim" })],
          ["GET", "/v1/events"],
          ["GET", "/v1/kubernetes/none/api/v1/pods"],
        ] as const) {
          const r = await c.request(method, path, { headers: JSON_HEADERS, ...(body ? { body } : {}) });
          check(`certificate "${name}" ${method} ${path}`, r);
          if (r.status < 400 || r.status >= 500) throw new Error(`certificate "${name}": ${method} ${path} answered ${r.status} ${r.body.toString().slice(0, 200)}`);
        }
      } finally {
        c.close();
      }
    }
  }, 120_000);

  test("forged, malformed and mutated challenge answers never join", async () => {
    const wrong = generateKeyPairSync("ed25519").privateKey;
    const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
    type Forge = (claims: Record<string, unknown>) => Promise<string> | string;
    const forgeries: fc.Arbitrary<[string, Forge]> = fc.oneof(
      fc.string({ maxLength: 300 }).map((s): [string, Forge] => ["random text", () => s || "x"]),
      jwtish.map((s): [string, Forge] => ["random segments", () => s]),
      fc.constant<[string, Forge]>(["alg none", (c) => `${b64({ alg: "none" })}.${b64(c)}.`]),
      fc.constant<[string, Forge]>(["wrong key", (c) => signClaims(c, wrong)]),
      fc.tuple(fc.constantFrom("iss", "aud", "sub", "nbf", "iat", "exp", "nonce"), fc.jsonValue()).map(([k, v]): [string, Forge] => [`claim ${k} changed`, (c) => signClaims({ ...c, [k]: v }, bound.privateKey)]),
      fc.tuple(fc.string(), fc.jsonValue()).map(([k, v]): [string, Forge] => [`extra claim`, (c) => signClaims({ ...c, [k || "extra"]: v }, bound.privateKey)]),
      fc.jsonValue().map((v): [string, Forge] => ["payload not the claims", () => new CompactSign(Buffer.from(JSON.stringify(v) ?? "x")).setProtectedHeader({ alg: "EdDSA" }).sign(bound.privateKey)]),
      fc.constantFrom<[string, Record<string, unknown>]>(
        ["crit b64", { alg: "EdDSA", crit: ["b64"], b64: false }],
        ["kid traversal", { alg: "EdDSA", kid: "../../../../etc/passwd" }],
        ["jku", { alg: "EdDSA", jku: "http://127.0.0.1:1/keys" }],
        ["ES256 declared", { alg: "ES256" }],
      ).map(([name, header]): [string, Forge] => [`header ${name}`, async (c) => {
        const real = await signClaims(c, bound.privateKey);
        const [, payload, sig] = real.split(".");
        return `${b64(header)}.${payload}.${sig}`;
      }]),
    );
    await fc.assert(
      fc.asyncProperty(forgeries, async ([name, forge]) => {
        const begin = await call("anon", "POST", "/v1/join/bound-keypair/begin", JSON.stringify({ ...pool[2]!.body, token_name: BKP_ANSWERS_TOKEN, public_key: formatSshPublicKey(bound.publicKey) }));
        if (begin?.status !== 200) throw new Error(`begin answered ${begin?.status}: ${begin?.body.toString()}`);
        const { challenge_id, challenge } = JSON.parse(begin.body.toString()) as { challenge_id: string; challenge: Record<string, unknown> };
        const solution = await forge(challenge);
        const r = await call("anon", "POST", "/v1/join/bound-keypair/solve", JSON.stringify({ challenge_id, solution }));
        if (r?.status === 200) {
          // only a change that left the claims as they were may join
          const sent = JSON.parse(Buffer.from(solution.split(".")[1] ?? "", "base64url").toString() || "null") as unknown;
          expect(sent).toEqual(challenge);
        } else if (r) expect(r.status).toBeGreaterThanOrEqual(400);
        else throw new Error(`no answer to a "${name}" solution`);
      }),
      { numRuns: RUNS.solve },
    );
  }, 300_000);

  test("forged and mutated join states lock the token or are refused, never join", async () => {
    type JoinStateMutation = { name: string; make: (c: Record<string, unknown>) => Promise<string> };
    const jsonKey = fc.constantFrom("token_name", "token_incarnation", "bot_instance_id", "recovery_sequence", "recovery_limit", "recovery_mode", "sub", "iss", "aud");
    const signedChange = (k: string, v: unknown): JoinStateMutation => ({ name: `${k} changed, signed by the cluster's own key`, make: async (c) => sign({ ...c, [k]: v }, jwtKey) });
    const mutations = fc.oneof(
      fc.string({ maxLength: 200 }).map((s): JoinStateMutation => ({ name: "random text", make: async () => s || "x" })),
      jwtish.map((s): JoinStateMutation => ({ name: "random segments", make: async () => s })),
      fc.constant<JoinStateMutation>({ name: "signed by another key", make: async (c) => sign(c, generateKeyPairSync("ed25519").privateKey) }),
      fc.tuple(jsonKey, fc.jsonValue()).map(([k, v]) => signedChange(k, v)),
    );
    async function sign(claims: Record<string, unknown>, key: KeyObject): Promise<string> {
      return new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "JWT" }).sign(key);
    }
    const jwtPublic = createPublicKey(jwtKey);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(mutations, async ({ name: what, make }) => {
        const key = generateKeyPairSync("ed25519");
        const name = `fuzz-js-${n++}`;
        await admin.createResources([
          {
            kind: "token",
            version: "v2",
            metadata: { name },
            spec: { roles: ["Bot"], bot_name: "fuzz", join_method: "bound_keypair", bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { mode: "standard", limit: RECOVERY_LIMIT } } },
          },
        ]);
        const first = await RenewingBot.boundKeypairJoin(target, name, key.privateKey, pool[3]!);
        const claims = JSON.parse(Buffer.from(first.joinState!.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
        const stored = claims.recovery_sequence as number;
        const joinState = await make(claims);
        const begin = await call("anon", "POST", "/v1/join/bound-keypair/begin", JSON.stringify({ ...pool[4]!.body, token_name: name, public_key: formatSshPublicKey(key.publicKey), join_state: joinState }));
        if (!begin || begin.status !== 200) return; // refused at the door (too long, malformed): fine
        const b = JSON.parse(begin.body.toString()) as { challenge_id: string; challenge: unknown };
        const r = await call("anon", "POST", "/v1/join/bound-keypair/solve", JSON.stringify({ challenge_id: b.challenge_id, solution: await signClaims(b.challenge, key.privateKey) }));
        if (!r) throw new Error(`no answer to a join with a "${what}" join state`);
        // A state only this cluster could sign, for this token and this creation of it (the
        // instance then is one this token issued), with a *newer* sequence than the stored one
        // is what a restored database looks like (docs/reliability.md): the count catches up and
        // the join goes on, within the recovery limit (429 beyond it), audited as a rollback.
        const signed = await jwtVerify(joinState, jwtPublic, { issuer: cluster, audience: cluster, subject: "fuzz", algorithms: ["EdDSA"] }).then(({ payload }) => payload, () => undefined);
        const presented = signed?.recovery_sequence;
        const sameToken = signed?.token_name === name && signed?.token_incarnation === claims.token_incarnation && signed?.bot_instance_id === claims.bot_instance_id;
        const rollback = sameToken && Number.isInteger(presented) && (presented as number) > stored ? (presented as number) : undefined;
        if (rollback !== undefined) {
          expect([r.status, what]).toEqual([rollback >= RECOVERY_LIMIT ? 429 : 200, what]);
          const audited = await admin.listEvents({ type: "join_state.rollback" });
          expect(audited.some((e) => e.fields.token === tokenFingerprint(name) && e.fields.presented === rollback && e.fields.stored === stored)).toBe(true);
        } else if (r.status === 200) {
          // otherwise only the state the cluster signed, for this instance and sequence, may join
          if (!signed) throw new Error(`a "${what}" join state the cluster did not sign joined`);
          expect([signed.token_name, signed.token_incarnation, signed.bot_instance_id, signed.recovery_sequence]).toEqual([
            name,
            claims.token_incarnation,
            claims.bot_instance_id,
            claims.recovery_sequence,
          ]);
        } else if (r.status !== 403 && r.status !== 423) throw new Error(`a "${what}" join state answered ${r.status}, not 403 or 423: ${r.body.toString().slice(0, 300)}`);
      }),
      // the restored-database cases run every time, not only when the generator happens on them
      { numRuns: RUNS.joinState, examples: [[signedChange("recovery_sequence", 5)], [signedChange("recovery_sequence", 2_147_483_647)]] },
    );
  }, 300_000);

  test("afterwards: no 5xx, the process alive, nothing unhandled in its log, and it still serves", async () => {
    const errors = auth.logs().split("\n").filter((l) => / ERROR /.test(l));
    if (errors.length) console.log(`the service logged errors:\n${errors.slice(0, 5).map((l) => l.slice(0, 2000)).join("\n")}`);
    expect(fiveHundreds).toEqual([]);
    if (silentCloses.length) console.log(`${silentCloses.length} requests got no answer (connection closed or slow), e.g. ${silentCloses.slice(0, 3).join(" | ")}`);
    expect(auth.proc.exitCode).toBeNull();
    expect(auth.logs()).not.toMatch(/Unhandled error|Cannot answer request|Internal error/);
    expect((await admin.ping()).cluster_name).toBe(cluster);
    expect((await admin.status()).cluster_name).toBe(cluster);
    // a well-behaved bot still renews and joins still work
    expect(await new RenewingBot(target, bot.instanceId, bot.certPem, bot.keyPem, bot.generation).renew(pool[5]!)).toBeGreaterThan(0);
    const { token } = await admin.addBot({ name: "after-fuzz", roles: [] });
    expect((await RenewingBot.tokenJoin(target, token, pool[6]!)).instanceId).toMatch(/-/);
  }, 60_000);
});
