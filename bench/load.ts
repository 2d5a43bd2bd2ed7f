/**
 * The load generator, run as its own process (pinned to a core of its own by
 * bench/issuance.ts): N clients, each one request at a time, for a warm-up and then a
 * measured window; prints one JSON line with requests/s and latency percentiles.
 *
 *   bun bench/load.ts --mode sign  --clients 16 --url 127.0.0.1:8888 --csr-dir DIR --ca FILE [--cert F --key F]
 *   bun bench/load.ts --mode renew|renew-new|certs|bkp --clients 16 --addr 127.0.0.1:3025 --admin-identity FILE
 *
 * sign:  cfssl `POST /api/v1/cfssl/sign` with a P-256 CSR, one keep-alive TLS connection per client.
 * renew: `POST /v1/bot/renew` on one keep-alive mTLS connection per client: each renewal returns a
 *        new identity and the service moves the connection to it, so the next renewal goes on the
 *        same connection (RenewingBot.renewKept).
 * renew-new: the same renewals, each on a new mTLS connection with the newest certificate
 *        (handshake included in the latency), as the agent does at its interval of minutes.
 * certs: `POST /v1/bot/certs` (output certificates) on one keep-alive mTLS connection per client.
 * bkp:   bound-keypair join, `begin` + signing the challenge + `solve`, one keep-alive connection
 *        per client, each client with its own token (recovery mode insecure, so it may join again).
 */

import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatSshPublicKey } from "../src/crypto/index.ts";
import { AuthClient, parseIdentityFile } from "../src/protocol/index.ts";
import { JSON_HEADERS, RenewingBot, connect, expectOk, prepareKeys, type PreparedKey, type Target } from "./_bot.ts";
import { Http1Connection } from "./_http1.ts";
import { cpuSeconds, percentile } from "./_lib.ts";

const { values: flags } = parseArgs({
  options: {
    mode: { type: "string" },
    clients: { type: "string", default: "1" },
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    url: { type: "string" },
    addr: { type: "string" },
    "admin-identity": { type: "string" },
    "csr-dir": { type: "string" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    tag: { type: "string", default: String(Date.now()) },
    /** The server's pid: its CPU time over the measured window is reported as service_cpu (cores). */
    "service-pid": { type: "string" },
  },
});

const mode = flags.mode as "sign" | "renew" | "renew-new" | "certs" | "bkp";
const clients = Number(flags.clients);
const warmupMs = Number(flags.warmup) * 1000;
const measureMs = Number(flags.seconds) * 1000;

/** One simulated client: `step` performs one request (or one join round trip) and throws on failure. */
interface Client {
  step(): Promise<void>;
  close(): void;
}

const addr = (flags.addr ?? flags.url ?? "").replace(/^https?:\/\//, "");
const host = addr.slice(0, addr.lastIndexOf(":"));
const port = Number(addr.slice(addr.lastIndexOf(":") + 1));

function ourSetup(): { admin: AuthClient; target: Target } {
  const id = parseIdentityFile(readFileSync(flags["admin-identity"]!, "utf8"));
  const admin = new AuthClient({ addr: flags.addr!, tls: { caCertsPem: id.tlsCaCertsPem, certPem: id.tlsCertPem, keyPem: id.keyPem } });
  return { admin, target: { host, port, caPem: id.tlsCaCertsPem } };
}

/** Joins `n` fresh bot instances with one-time tokens (setup, not measured). */
async function joinInstances(admin: AuthClient, target: Target, n: number): Promise<RenewingBot[]> {
  const bot = `bench-${flags.tag}`;
  await admin.addBot({ name: bot, roles: [] });
  const out: RenewingBot[] = [];
  for (let i = 0; i < n; i++) {
    const { token } = await admin.addToken({ bot_name: bot, join_method: "token" });
    out.push(await RenewingBot.tokenJoin(target, token, prepareKeys(1)[0]!));
  }
  return out;
}

async function makeClients(): Promise<Client[]> {
  if (mode === "sign") {
    const tlsOpts = {
      ca: readFileSync(flags.ca!, "utf8"),
      servername: "localhost",
      ...(flags.cert && flags.key ? { cert: readFileSync(flags.cert, "utf8"), key: readFileSync(flags.key, "utf8") } : {}),
    };
    return Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const body = JSON.stringify({ certificate_request: readFileSync(join(flags["csr-dir"]!, `csr-${i % 64}.pem`), "utf8") });
        const c = await Http1Connection.connect({ host, port, tls: tlsOpts });
        return {
          async step() {
            const r = expectOk<{ success: boolean }>(await c.request("POST", "/api/v1/cfssl/sign", { headers: JSON_HEADERS, body }), "cfssl sign");
            if (!r.success) throw new Error("cfssl sign: success false");
          },
          close: () => c.close(),
        };
      }),
    );
  }
  const { admin, target } = ourSetup();
  // keys are prepared ahead and reused in turn, so the generator's core goes to requests
  if (mode === "renew" || mode === "renew-new") {
    const bots = await joinInstances(admin, target, clients);
    return bots.map((b) => {
      const keys = prepareKeys(4);
      let n = 0;
      const renew = mode === "renew" ? (k: PreparedKey) => b.renewKept(k) : (k: PreparedKey) => b.renew(k);
      return { step: async () => void (await renew(keys[n++ % keys.length]!)), close: () => b.close() };
    });
  }
  if (mode === "certs") {
    const bots = await joinInstances(admin, target, clients);
    return Promise.all(
      bots.map(async (b) => {
        const keys = prepareKeys(4);
        let n = 0;
        const c = await connect(target, b);
        return {
          step: async () => void expectOk(await c.request("POST", "/v1/bot/certs", { headers: JSON_HEADERS, body: JSON.stringify(keys[n++ % keys.length]!.body) }), "certs"),
          close: () => c.close(),
        };
      }),
    );
  }
  // bkp: a bound keypair per client, its token (recovery mode insecure: it may join again and again) made by the admin
  const bot = `bench-bkp-${flags.tag}`;
  await admin.addBot({ name: bot, roles: [] });
  const bound = Array.from({ length: clients }, () => generateKeyPairSync("ed25519"));
  await admin.createResources(
    bound.map((k, i) => ({
      kind: "token",
      version: "v2",
      metadata: { name: `${bot}-${i}` },
      spec: {
        roles: ["Bot"],
        bot_name: bot,
        join_method: "bound_keypair",
        bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(k.publicKey) }, recovery: { mode: "insecure", limit: 1 } },
      },
    })),
  );
  return Promise.all(
    bound.map(async (k, i) => {
      const keys = prepareKeys(4);
      const c = await connect(target);
      let n = 0;
      return {
        step: async () => void (await RenewingBot.boundKeypairJoin(target, `${bot}-${i}`, k.privateKey, keys[n++ % keys.length]!, c)),
        close: () => c.close(),
      };
    }),
  );
}

const all = await makeClients();
const latencies: number[] = [];
let errors = 0;
let firstError: string | undefined;
const start = performance.now();
const measureFrom = start + warmupMs;
const measureTo = measureFrom + measureMs;
const servicePid = flags["service-pid"] ? Number(flags["service-pid"]) : undefined;
let cpuAtStart = 0;
let serviceCpuAtStart = 0;
let serviceCpuAtEnd = NaN;
let connectionsAtStart = 0;
let connectionsAtEnd = 0;
let endMeasured = false;
const cpuTimer = setTimeout(() => {
  connectionsAtStart = Http1Connection.opened;
  cpuAtStart = cpuSeconds(process.pid);
  if (servicePid) serviceCpuAtStart = cpuSeconds(servicePid);
}, warmupMs);
const endTimer = setTimeout(() => {
  endMeasured = true;
  connectionsAtEnd = Http1Connection.opened;
  if (servicePid) serviceCpuAtEnd = cpuSeconds(servicePid);
}, warmupMs + measureMs);

await Promise.all(
  all.map(async (c) => {
    while (performance.now() < measureTo) {
      const t0 = performance.now();
      try {
        await c.step();
        const t1 = performance.now();
        if (t1 >= measureFrom && t1 <= measureTo) latencies.push(t1 - t0);
      } catch (e) {
        if (performance.now() >= measureFrom) errors++;
        firstError ??= (e as Error).message;
        if (errors > 1000) throw new Error(`too many errors, first: ${firstError}`);
      }
    }
  }),
);
clearTimeout(cpuTimer);
clearTimeout(endTimer);
// the clients stop at measureTo, which can come before the end timer had its turn
if (!endMeasured) {
  connectionsAtEnd = Http1Connection.opened;
  if (servicePid) serviceCpuAtEnd = cpuSeconds(servicePid);
}
const generatorCpu = (cpuSeconds(process.pid) - cpuAtStart) / (measureMs / 1000);
for (const c of all) c.close();
const sorted = Float64Array.from(latencies).sort();
console.log(
  JSON.stringify({
    mode,
    clients,
    seconds: measureMs / 1000,
    requests: latencies.length,
    errors,
    ...(firstError ? { first_error: firstError } : {}),
    rps: latencies.length / (measureMs / 1000),
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted[sorted.length - 1] ?? NaN,
    generator_cpu: generatorCpu,
    connections_opened: connectionsAtEnd - connectionsAtStart,
    ...(servicePid ? { service_cpu: (serviceCpuAtEnd - serviceCpuAtStart) / (measureMs / 1000) } : {}),
  }),
);
process.exit(0);
