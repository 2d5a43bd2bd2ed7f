/**
 * Where a request's time goes, in two halves measured apart:
 *
 * - transport: src/auth/listener.ts's listener with a handler that only reads the body and
 *   answers `{}` — the ceiling any endpoint can reach — pinned to core 0, 16 clients on
 *   core 1, one new mTLS connection per request (as a renewal) or one keep-alive
 *   connection per client (as output certificates); and, for comparison, the floor of a
 *   hand-written HTTP/1.1 server on Bun's own TLS sockets (serveFloor);
 * - handler: the auth service's request handler called in process (no sockets, one
 *   request at a time, one core) for /v1/bot/certs and /v1/bot/renew, on the in-memory
 *   and the SQLite (file, synchronous=FULL) backends.
 *
 *   bun bench/breakdown.ts [--seconds 3]
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { Admin } from "../src/auth/admin.ts";
import { issueServerCertificate, loadAuthorities } from "../src/auth/authorities.ts";
import { issueCerts } from "../src/auth/issuer.ts";
import { listen } from "../src/auth/listener.ts";
import { startAuthService } from "../src/auth/service.ts";
import { openBackend } from "../src/auth/storage/index.ts";
import { generateKeyPair, privateKeyToPem } from "../src/crypto/index.ts";
import { silentLogger } from "../src/lib/log.ts";
import { pemDecodeOne } from "../src/lib/pem.ts";
import { AUTH_SERVER_NAME } from "../src/protocol/index.ts";
import { JSON_HEADERS, prepareKeys } from "./_bot.ts";
import { Http1Connection } from "./_http1.ts";
import { ROOT, Service, fmt, pinned, table, tempDir } from "./_lib.ts";

const { values: flags } = parseArgs({ options: { seconds: { type: "string", default: "3" }, serve: { type: "string" }, floor: { type: "boolean" }, load: { type: "string" } } });
const seconds = Number(flags.seconds);

interface Material {
  certPem: string;
  keyPem: string;
  caPem: string;
  clientCaPem: string;
  clientCertPem: string;
  clientKeyPem: string;
}

/** A server certificate from a fresh host CA and a client certificate from the user CA. */
async function material(): Promise<Material> {
  const backend = await openBackend({ type: "memory" }, { sweepIntervalMs: 0 });
  const now = new Date();
  const auth = await loadAuthorities(backend, "bench.example", now);
  await backend.close();
  const server = await issueServerCertificate(auth, { dns: ["localhost", AUTH_SERVER_NAME], ips: ["127.0.0.1"] }, now, 3_600_000);
  const k = generateKeyPair("ecdsa-p256");
  const { certs } = await issueCerts(auth, {
    identity: { cluster: "bench.example", username: "admin", kind: "admin", renewable: false, roles: [], logins: [] },
    publicTlsKey: k.publicKey,
    publicSshKey: k.publicKey,
    notAfter: new Date(+now + 3_600_000),
    now,
  });
  return {
    certPem: server.certPem + auth.host.tlsCertPem,
    keyPem: server.keyPem,
    caPem: auth.host.tlsCertPem,
    clientCaPem: auth.user.tlsCertPem,
    clientCertPem: certs.tls_cert,
    clientKeyPem: privateKeyToPem(k.privateKey),
  };
}

/**
 * The floor under any HTTP server on Bun's TLS sockets that sees the client certificate:
 * `Bun.listen` with TLS and requestCert (it does expose getPeerCertificate), the
 * certificate read once per connection, each request framed by its Content-Length and
 * answered `{}` — no header parsing, no routing, no limits. Not a server (it would be a
 * hand-written HTTP/1.1 parser at a security boundary); it measures how much of the
 * listener's cost a hand-written one could save at best.
 */
function serveFloor(m: Material): number {
  const answer = Buffer.from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
  const server = Bun.listen<{ pending: Buffer; peer: unknown }>({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: m.certPem, key: m.keyPem, ca: m.clientCaPem, requestCert: true, rejectUnauthorized: true },
    socket: {
      open(sock) {
        sock.data = { pending: Buffer.alloc(0), peer: (sock as unknown as { getPeerCertificate(detailed: boolean): unknown }).getPeerCertificate(true) };
      },
      data(sock, chunk) {
        let buf = sock.data.pending.length ? Buffer.concat([sock.data.pending, chunk]) : chunk;
        for (;;) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) break;
          const length = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, end).toString("latin1"))?.[1] ?? 0);
          if (buf.length < end + 4 + length) break;
          buf = buf.subarray(end + 4 + length);
          sock.write(answer);
        }
        sock.data.pending = buf;
      },
    },
  });
  return server.port;
}

if (flags.serve && flags.floor) {
  console.log(`listening ${serveFloor((await Bun.file(flags.serve).json()) as Material)}`);
  process.once("SIGTERM", () => process.exit(0));
} else if (flags.serve) {
  // the server half, run pinned by the parent: material comes in a file
  const m = (await Bun.file(flags.serve).json()) as Material;
  const l = await listen({
    host: "127.0.0.1",
    port: 0,
    tls: { certPem: m.certPem, keyPem: m.keyPem, clientCaPem: [m.clientCaPem] },
    log: silentLogger,
    handler: async (req) => {
      if (req.method === "POST") await req.arrayBuffer();
      return Response.json({});
    },
  });
  console.log(`listening ${l.port}`);
  // a clean exit, so that `bun --cpu-prof` writes its profile
  process.once("SIGTERM", () => void l.close().then(() => process.exit(0)));
} else if (flags.load) {
  // the client half: 16 clients, new connection per request or keep-alive, one JSON line
  const [file, port, mode] = flags.load.split(",");
  const m = (await Bun.file(file!).json()) as Material;
  const tls = { ca: m.caPem, servername: AUTH_SERVER_NAME, cert: m.clientCertPem, key: m.clientKeyPem };
  const body = JSON.stringify(prepareKeys(1)[0]!.body);
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      const keep = mode === "keep-alive" ? await Http1Connection.connect({ host: "127.0.0.1", port: Number(port), tls }) : undefined;
      while (performance.now() < end) {
        const c = keep ?? (await Http1Connection.connect({ host: "127.0.0.1", port: Number(port), tls }));
        await c.request("POST", "/", { headers: JSON_HEADERS, body });
        n++;
        if (!keep) c.close();
      }
      keep?.close();
    }),
  );
  console.log(JSON.stringify({ rps: n / ((performance.now() - start) / 1000) }));
  process.exit(0);
}

/** Requests per second of the bare listener, per connection mode. */
export async function transportCeiling(dir: string): Promise<Record<string, number>> {
  const file = join(dir, "material.json");
  await Bun.write(file, JSON.stringify(await material()));
  const script = join(ROOT, "bench", "breakdown.ts");
  const out: Record<string, number> = {};
  const servers = [
    { floor: false, cells: [["new connection", "new"], ["keep-alive", "keep-alive"]] },
    { floor: true, cells: [["floor: Bun.listen, TLS with the client certificate, no HTTP parser (keep-alive)", "keep-alive"]] },
  ];
  for (const { floor, cells } of servers) {
    const { service, match } = await Service.start([process.execPath, script, "--serve", file, ...(floor ? ["--floor"] : [])], { cpu: 0, logPath: join(dir, floor ? "transport-floor.log" : "transport.log"), ready: /listening (\d+)/ });
    try {
      for (const [name, mode] of cells) {
        const p = Bun.spawn(pinned(1, [process.execPath, script, "--seconds", String(seconds), "--load", `${file},${match[1]},${mode}`]), { stdout: "pipe", stderr: "pipe" });
        const [text, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
        if (code !== 0) throw new Error(`transport load failed: ${err}`);
        out[name!] = (JSON.parse(text.trim()) as { rps: number }).rps;
      }
    } finally {
      await service.stop();
    }
  }
  return out;
}

/** Microseconds per request of the handler alone, per backend and endpoint. */
export async function handlerCost(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const storage of ["memory", "sqlite"] as const) {
    const a = await startAuthService({ dataDir: join(dir, `handler-${storage}`), listenAddr: "127.0.0.1:0", log: silentLogger, storage: { type: storage } });
    try {
      const h = a.handler;
      // with the Content-Length every request the listener hands the app carries (HTTP/1.1 clients declare it)
      const post = (path: string, body: unknown, der?: Uint8Array) => {
        const text = JSON.stringify(body);
        const headers = { ...JSON_HEADERS, "content-length": String(Buffer.byteLength(text)) };
        return h(new Request(`https://bench${path}`, { method: "POST", headers, body: text }), { remoteAddr: "127.0.0.1", ...(der ? { peerCertDer: der } : {}) });
      };
      const bot = await new Admin(a.ctx).addBot({ name: "b", roles: [] }, { user: "admin" });
      const keys = prepareKeys(4);
      const joined = (await (await post("/v1/join", { ...keys[0]!.body, join_method: "token", token_name: bot.token })).json()) as { certs: { tls_cert: string } };
      let der = pemDecodeOne(joined.certs.tls_cert, ["CERTIFICATE"]).der;
      for (const path of ["/v1/bot/certs", "/v1/bot/renew"]) {
        const run = async (ms: number) => {
          let n = 0;
          const t0 = performance.now();
          while (performance.now() - t0 < ms) {
            const r = await post(path, keys[n % keys.length]!.body, der);
            const body = (await r.json()) as { certs: { tls_cert: string } };
            if (r.status !== 200) throw new Error(`${path}: ${JSON.stringify(body)}`);
            if (path === "/v1/bot/renew") der = pemDecodeOne(body.certs.tls_cert, ["CERTIFICATE"]).der;
            n++;
          }
          return ((performance.now() - t0) * 1000) / n;
        };
        await run(1000); // warm up the JIT
        out[`${path} (${storage})`] = await run(seconds * 1000);
      }
    } finally {
      await a.close();
    }
  }
  return out;
}

export function breakdownTable(transport: Record<string, number>, handler: Record<string, number>): string {
  return [
    table(["bare listener (listener.ts, handler answers {}), 16 clients", "req/s", "µs per request"], Object.entries(transport).map(([k, v]) => [k, fmt(v), fmt(1e6 / v)])),
    "",
    table(["handler in process, one request at a time", "µs per request", "req/s"], Object.entries(handler).map(([k, v]) => [k, fmt(v), fmt(1e6 / v)])),
  ].join("\n");
}

if (import.meta.main && !flags.serve && !flags.load) {
  using dir = tempDir("bench-breakdown-");
  const transport = await transportCeiling(dir.path);
  // the handler half runs in this process: pin it to core 0 like the service
  Bun.spawnSync(["taskset", "-p", "-c", "0", String(process.pid)]);
  const handler = await handlerCost(dir.path);
  console.log(breakdownTable(transport, handler));
}
