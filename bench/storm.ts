/**
 * A join storm: N distinct static-key nodes (one bound-keypair token and key each, as on
 * N ephemeral machines) join one auth service at the same instant. Each node is the
 * agent's own code (`Agent.oneshot()`, memory storage) with its own retry: the service
 * may tell a crowd from one address to come back (429 Retry-After), and the agent waits
 * as told. Reports nodes joined, lost, answers by status, the storm's total time and
 * each node's time to its identity (p50/p99). Loopback only; the auth service (the
 * compiled binary) on core 0, the N agents in one process on core 1, bounded by
 * --deadline.
 *
 *   bun bench/storm.ts [--nodes 2000] [--deadline 300]
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Agent } from "../src/agent/index.ts";
import type { AgentConfig } from "../src/config/index.ts";
import { formatSshPublicKey, generateKeyPair, privateKeyToPem } from "../src/crypto/index.ts";
import { errorMessage, isAppError } from "../src/lib/errors.ts";
import { Logger } from "../src/lib/log.ts";
import { ROOT, adminClient, fmt, median, percentile, pinned, startAuth, table } from "./_lib.ts";

export interface StormFigures {
  nodes: number;
  joined: number;
  lost: number;
  /** errors the nodes ended with, by code */
  failures: Record<string, number>;
  /** 429 answers the nodes were given (and waited on) */
  asked: number;
  /** connections the service closed at its per-address cap (retried after backoff) */
  resets: number;
  totalMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  serviceCpu: number;
}

/** Runs in the benchmark's process: the service, the tokens, then the storm in a child pinned to core 1. */
export async function stormBench(o: { bin: string; dir: string; nodes: number; deadlineS: number; log: (l: string) => void }): Promise<StormFigures> {
  const auth = await startAuth(o.bin, join(o.dir, "auth"), { cpu: 0 });
  try {
    const admin = adminClient(join(o.dir, "auth"), auth.addr);
    const bot = await admin.addBot({ name: "storm", roles: [] });
    const keys = join(o.dir, "keys");
    mkdirSync(keys, { mode: 0o700 });
    const tokens: unknown[] = [];
    for (let i = 0; i < o.nodes; i++) {
      const k = generateKeyPair("ed25519");
      writeFileSync(join(keys, `node-${i}`), privateKeyToPem(k.privateKey), { mode: 0o600 });
      tokens.push({
        kind: "token",
        version: "v2",
        metadata: { name: `storm-${i}` },
        spec: { bot_name: "storm", join_method: "bound_keypair", roles: ["Bot"], bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(k.publicKey) }, recovery: { limit: 1, mode: "insecure" } } },
      });
    }
    for (let i = 0; i < tokens.length; i += 500) await admin.createResources(tokens.slice(i, i + 500));
    o.log(`  storm: ${o.nodes} tokens and keys made; joining`);
    const cpu0 = auth.service.cpuSeconds();
    const p = Bun.spawn(
      pinned(1, [process.execPath, join(ROOT, "bench", "storm.ts"), "--child", "--addr", auth.addr, "--pin", bot.ca_pins[0]!, "--keys", keys, "--nodes", String(o.nodes), "--deadline", String(o.deadlineS)]),
      { stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`the storm's agents failed (${code}): ${err}`);
    for (const line of err.trim().split("\n").filter(Boolean).slice(0, 6)) o.log(`  ${line}`);
    const f = JSON.parse(out.trim().split("\n").pop()!) as StormFigures;
    f.serviceCpu = auth.service.cpuSeconds() - cpu0;
    return f;
  } finally {
    await auth.service.stop();
  }
}

/** The child: N agents, each a oneshot, all started together. */
async function storm(addr: string, pin: string, keys: string, nodes: number, deadlineS: number): Promise<StormFigures> {
  let asked = 0;
  let resets = 0;
  // warnings only: the agents' "busy: trying again" lines are counted (429s, connections closed at the cap), not printed
  const count = (line: string) => {
    if (!line.includes("is busy: trying again")) return process.stderr.write(line);
    if (line.includes("Too many")) asked++;
    else if (line.includes("closed the connection")) resets++;
    else process.stderr.write(line);
  };
  const log = new Logger({ level: "warn", format: "json", component: "storm", sink: { write: (line: string) => void count(line) } });
  const config = (i: number): AgentConfig => ({
    authServer: addr,
    onboarding: { joinMethod: "bound_keypair", token: `storm-${i}`, caPins: [pin], boundKeypair: { staticPrivateKeyPath: join(keys, `node-${i}`) } },
    storage: { type: "memory" },
    outputs: [],
    services: [],
    credentialTtlMs: 3_600_000,
    renewalIntervalMs: 1_200_000,
    oneshot: true,
    debug: false,
    insecure: false,
    logFormat: "json",
    warnings: [],
  });
  const agents = Array.from({ length: nodes }, (_, i) => new Agent({ config: config(i), log }));
  const times: number[] = [];
  const failures: Record<string, number> = {};
  const t0 = performance.now();
  const deadline = setTimeout(() => {
    console.error(`the storm did not end within ${deadlineS} s: ${times.length} of ${nodes} joined`);
    process.exit(3);
  }, deadlineS * 1000);
  await Promise.all(
    agents.map(async (a) => {
      try {
        await a.oneshot();
        times.push(performance.now() - t0);
      } catch (e) {
        const code = isAppError(e) ? e.code : "OTHER";
        failures[code] = (failures[code] ?? 0) + 1;
        if ((failures[code] ?? 0) <= 3) console.error(`a node failed: ${errorMessage(e)}`);
      }
    }),
  );
  clearTimeout(deadline);
  const totalMs = performance.now() - t0;
  times.sort((a, b) => a - b);
  return { nodes, joined: times.length, lost: nodes - times.length, failures, asked, resets, totalMs, p50Ms: median(times), p99Ms: percentile(times, 99), maxMs: times[times.length - 1] ?? NaN, serviceCpu: NaN };
}

export function stormTable(f: StormFigures): string {
  return table(
    ["nodes", "joined", "lost", "failed, by code", "429 answers waited on", "connections closed at the cap, retried", "total", "node p50", "node p99", "slowest", "service CPU (s)"],
    [[fmt(f.nodes), fmt(f.joined), fmt(f.lost), Object.entries(f.failures).map(([k, v]) => `${k} ${v}`).join(", ") || "none", fmt(f.asked), fmt(f.resets), `${fmt(f.totalMs / 1000, 1)} s`, `${fmt(f.p50Ms)} ms`, `${fmt(f.p99Ms)} ms`, `${fmt(f.maxMs)} ms`, fmt(f.serviceCpu, 1)]],
  );
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      child: { type: "boolean", default: false },
      addr: { type: "string" },
      pin: { type: "string" },
      keys: { type: "string" },
      nodes: { type: "string", default: "2000" },
      deadline: { type: "string", default: "300" },
    },
  });
  if (values.child) {
    console.log(JSON.stringify(await storm(values.addr!, values.pin!, values.keys!, Number(values.nodes), Number(values.deadline))));
  } else {
    const { privateBinary, tempDir } = await import("./_lib.ts");
    using dir = tempDir("bench-storm-");
    const f = await stormBench({ bin: privateBinary(dir.path), dir: dir.path, nodes: Number(values.nodes), deadlineS: Number(values.deadline), log: (l) => console.error(l) });
    console.log(stormTable(f));
  }
}
