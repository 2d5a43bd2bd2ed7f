/**
 * Storage throughput: put, compareAndSwap, get and a join-shaped atomicWrite per second
 * for each backend, one operation at a time (the auth service awaits each write), then
 * renewal-shaped writes (a compareAndSwap of the bot's key plus one event, as one
 * atomicWrite) from 1, 16 and 64 concurrent writers, as the service sees them under load.
 *
 *   bun bench/storage.ts [--seconds 2] [--postgres postgres://user@host:port/db]
 *
 * SQLite runs on a file in a temp dir (synchronous=FULL: one fsync per commit, so the
 * disk decides the write numbers). PostgreSQL runs only when given a connection string
 * (it creates and drops its own tables there: use a scratch database).
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openBackend, type Backend, type BackendConfig } from "../src/auth/storage/index.ts";

const { values: flags } = parseArgs({
  options: { seconds: { type: "string", default: "2" }, postgres: { type: "string" } },
});
const seconds = Number(flags.seconds);
const VALUE = { kind: "bot_instance", spec: { bot: "ci", generation: 1, publicKey: "x".repeat(300), roles: ["a", "b"] } };

/** Runs `op` back to back for `seconds`; returns operations per second. `i` never repeats. */
async function rate(op: (i: number) => Promise<unknown>): Promise<number> {
  let i = 0;
  while (i < 200) await op(i++); // warm the statement caches and the JIT
  const first = i;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let j = 0; j < 50; j++) await op(i++);
  }
  return (i - first) / ((performance.now() - start) / 1000);
}

/**
 * `writers` loops, each renewing its own key as the service renews a bot instance: an
 * atomicWrite with a revision condition on the key and one audit event. Returns
 * completed writes per second over all writers.
 */
async function concurrentRenewals(b: Backend, writers: number): Promise<number> {
  const revs: string[] = [];
  for (let w = 0; w < writers; w++) revs.push((await b.put(`/renew/${w}`, VALUE)).revision);
  const renew = async (w: number) => {
    const key = `/renew/${w}`;
    const out = await b.atomicWrite(
      [{ key, condition: { kind: "revision", revision: revs[w]! }, action: { kind: "put", value: VALUE } }],
      [{ type: "bot.renew", time: new Date(), fields: { w } }],
    );
    revs[w] = out[key]!;
  };
  for (let i = 0; i < 20; i++) await Promise.all(revs.map((_, w) => renew(w))); // warm up
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    revs.map(async (_, w) => {
      while (performance.now() < end) {
        await renew(w);
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

async function bench(name: string, b: Backend): Promise<Record<string, string>> {
  const keys = 1000;
  for (let i = 0; i < keys; i++) await b.put(`/bench/${i}`, VALUE);
  let cas = await b.put("/bench/cas", VALUE);
  const results = {
    put: await rate((i) => b.put(`/bench/${i % keys}`, VALUE)),
    compareAndSwap: await rate(async () => {
      cas = await b.compareAndSwap("/bench/cas", cas.revision, VALUE);
    }),
    get: await rate((i) => b.get(`/bench/${(i * 7919) % keys}`)),
    "atomicWrite (2 keys + event)": await rate((i) =>
      b.atomicWrite(
        [
          { key: `/bench/join/${i}`, condition: { kind: "notExists" }, action: { kind: "put", value: VALUE } },
          { key: `/bench/${i % keys}`, condition: { kind: "exists" }, action: { kind: "put", value: VALUE } },
        ],
        [{ type: "bench.join", time: new Date(), fields: { i } }],
      ),
    ),
    "renew ×1": await concurrentRenewals(b, 1),
    "renew ×16": await concurrentRenewals(b, 16),
    "renew ×64": await concurrentRenewals(b, 64),
  };
  const row: Record<string, string> = { backend: name };
  for (const [op, r] of Object.entries(results)) row[op] = `${Math.round(r).toLocaleString("en-US")}/s`;
  return row;
}

const dir = mkdtempSync(join(tmpdir(), "bench-storage-"));
const targets: [string, BackendConfig][] = [
  ["memory", { type: "memory" }],
  ["sqlite (file, FULL)", { type: "sqlite", path: join(dir, "bench.db") }],
];
if (flags.postgres) targets.push(["postgres", { type: "postgres", connString: flags.postgres }]);

const rows = [];
try {
  for (const [name, cfg] of targets) {
    const b = await openBackend(cfg, { sweepIntervalMs: 0 });
    try {
      rows.push(await bench(name, b));
    } finally {
      await b.close();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`storage throughput (renew ×N: N concurrent writers), ${seconds}s per cell (bun ${Bun.version})`);
console.table(rows);
