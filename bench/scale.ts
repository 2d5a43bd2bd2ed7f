/**
 * Scale: an auth service whose SQLite database holds 100,000 bots (each with one joined
 * instance, written straight in through the storage backend the way a migration or
 * restore would land them; 1,000 keys per atomic write) against one on an empty
 * database. Reports `ctl bots ls` time, the services' RSS, and renewal throughput of
 * both, measured in alternation.
 *
 *   bun bench/scale.ts [--bots 100000] [--runs 3] [--seconds 5]
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { openBackend, type ConditionalOp } from "../src/auth/storage/index.ts";
import { runLoad, warmUp, type LoadResult } from "./issuance.ts";
import { fmt, median, rssMiB, startAuth, table } from "./_lib.ts";

export interface ScaleOptions {
  bin: string;
  dir: string;
  bots: number;
  runs: number;
  seconds: number;
  log: (line: string) => void;
}

export interface ScaleFigures {
  bots: number;
  insertSeconds: number;
  startMs: number;
  lsMs: number[];
  lsLines: number;
  rssEmptyMiB: number;
  rssLoadedMiB: number;
  rssAfterLsMiB: number;
  rssLoadedAfterRenewMiB: number;
  renewBefore: number[];
  renewAfter: number[];
  p99Before: number[];
  p99After: number[];
}

/** Writes `n` bots and one instance each, 1,000 keys (500 of each) per transaction. */
async function insertBots(dbPath: string, n: number): Promise<void> {
  const backend = await openBackend({ type: "sqlite", path: dbPath }, { sweepIntervalMs: 0 });
  try {
    const now = new Date().toISOString();
    for (let start = 0; start < n; start += 500) {
      const ops: ConditionalOp[] = [];
      for (let i = start; i < Math.min(n, start + 500); i++) {
        const name = `scale-${String(i).padStart(6, "0")}`;
        const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
        ops.push({ key: `/bots/${name}`, condition: { kind: "notExists" }, action: { kind: "put", value: { kind: "bot", version: "v1", metadata: { name }, spec: { roles: [] } } } });
        ops.push({
          key: `/bot_instances/${name}/${id}`,
          condition: { kind: "notExists" },
          action: {
            kind: "put",
            value: { bot_name: name, instance_id: id, created_at: now, join_method: "token", generation: 1, last_renewed_at: now, expires_at: now, remote_addr: "192.0.2.1" },
          },
        });
      }
      await backend.atomicWrite(ops);
    }
  } finally {
    await backend.close();
  }
}

/** One renewal run (16 clients) against the service at `addr`. */
function renewRun(o: ScaleOptions, addr: string, admin: string, pid: number, tag: string): Promise<LoadResult> {
  return runLoad(["--mode", "renew", "--clients", "16", "--seconds", String(o.seconds), "--warmup", "1", "--addr", addr, "--admin-identity", admin, "--service-pid", String(pid), "--tag", tag]);
}

/**
 * Two services from the same binary, both pinned to core 0: one on an empty database,
 * one on a database holding `o.bots` bots. Renewal runs alternate between them (empty,
 * loaded, loaded, empty, …), so drift of this shared VM over the minutes of the run lands on
 * both sides alike instead of on "before" or "after".
 */
export async function scaleBench(o: ScaleOptions): Promise<ScaleFigures> {
  const emptyDir = join(o.dir, "empty");
  const loadedDir = join(o.dir, "loaded");
  // the loaded service's first start creates its CAs; the bots go into its database while it is stopped
  const init = await startAuth(o.bin, loadedDir, { cpu: 0 });
  const port = init.port;
  await init.service.stop();
  const t0 = performance.now();
  await insertBots(join(loadedDir, "machine-id.db"), o.bots);
  const insertSeconds = (performance.now() - t0) / 1000;
  o.log(`  inserted ${fmt(o.bots)} bots and instances in ${fmt(insertSeconds, 1)} s`);

  const s0 = performance.now();
  const loaded = await startAuth(o.bin, loadedDir, { cpu: 0, port });
  const startMs = performance.now() - s0;
  let empty: Awaited<ReturnType<typeof startAuth>> | undefined;
  try {
    const rssLoadedMiB = rssMiB(loaded.service.pid);
    const lsMs: number[] = [];
    let lsLines = 0;
    for (let r = 0; r < o.runs; r++) {
      const t = performance.now();
      const p = Bun.spawn(["taskset", "-c", "1", o.bin, "ctl", "--data-dir", loadedDir, "bots", "ls"], { stdout: "pipe", stderr: "pipe" });
      const [text, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      lsMs.push(performance.now() - t);
      if (code !== 0) throw new Error(`ctl bots ls exited ${code}: ${err}`);
      lsLines = text.split("\n").filter((l) => l.includes("scale-")).length;
    }
    const rssAfterLsMiB = rssMiB(loaded.service.pid);
    o.log(`  ctl bots ls: ${lsMs.map((m) => fmt(m)).join(", ")} ms, ${fmt(lsLines)} bots listed`);

    empty = await startAuth(o.bin, emptyDir, { cpu: 0 });
    const sides = [
      { auth: empty, admin: join(emptyDir, "admin-identity"), runs: [] as LoadResult[] },
      { auth: loaded, admin: join(loadedDir, "admin-identity"), runs: [] as LoadResult[] },
    ];
    for (const side of sides) await warmUp(side.auth.addr, side.admin);
    // empty, loaded, loaded, empty, …: neither side always goes first
    for (let r = 0; r < o.runs; r++) {
      for (const side of r % 2 ? [...sides].reverse() : sides) side.runs.push(await renewRun(o, side.auth.addr, side.admin, side.auth.service.pid, `${side.auth === empty ? "empty" : "loaded"}-${r}`));
    }
    const [before, after] = [sides[0]!.runs, sides[1]!.runs];
    o.log(`  renew, empty: ${before.map((r) => fmt(r.rps)).join(", ")} /s; with the bots: ${after.map((r) => fmt(r.rps)).join(", ")} /s`);
    return {
      bots: o.bots,
      insertSeconds,
      startMs,
      lsMs,
      lsLines,
      rssEmptyMiB: rssMiB(empty.service.pid),
      rssLoadedMiB,
      rssAfterLsMiB,
      rssLoadedAfterRenewMiB: rssMiB(loaded.service.pid),
      renewBefore: before.map((r) => r.rps),
      renewAfter: after.map((r) => r.rps),
      p99Before: before.map((r) => r.p99_ms),
      p99After: after.map((r) => r.p99_ms),
    };
  } finally {
    await empty?.service.stop();
    await loaded.service.stop();
  }
}

export function scaleTable(f: ScaleFigures): string {
  const change = median(f.renewAfter) / median(f.renewBefore) - 1;
  return table(
    ["measure", "figure", "target"],
    [
      [`bots (each with one instance) written into storage`, `${fmt(f.bots)} in ${fmt(f.insertSeconds, 1)} s`, "–"],
      ["service start with them (exec → listening)", `${fmt(f.startMs)} ms`, "–"],
      ["`ctl bots ls`, median (runs)", `${fmt(median(f.lsMs))} ms (${f.lsMs.map((m) => fmt(m)).join(", ")}); ${fmt(f.lsLines)} listed`, "–"],
      ["auth RSS: empty database, after its renewal runs", `${fmt(f.rssEmptyMiB, 1)} MiB`, "–"],
      ["auth RSS: with the bots, after start", `${fmt(f.rssLoadedMiB, 1)} MiB`, "–"],
      ["auth RSS: with the bots, after `bots ls`", `${fmt(f.rssAfterLsMiB, 1)} MiB`, "–"],
      ["auth RSS: with the bots, after its renewal runs", `${fmt(f.rssLoadedAfterRenewMiB, 1)} MiB`, "–"],
      ["renewals/s, 16 clients, empty database (median)", `${fmt(median(f.renewBefore))} (${f.renewBefore.map((r) => fmt(r)).join(", ")}), p99 ${fmt(median(f.p99Before), 1)} ms`, "–"],
      ["renewals/s, 16 clients, with the bots (median)", `${fmt(median(f.renewAfter))} (${f.renewAfter.map((r) => fmt(r)).join(", ")}), p99 ${fmt(median(f.p99After), 1)} ms`, "–"],
      ["change", `${change >= 0 ? "+" : ""}${fmt(change * 100, 1)} %`, "within ±10 %"],
    ],
  );
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { bots: { type: "string", default: "100000" }, runs: { type: "string", default: "3" }, seconds: { type: "string", default: "5" } } });
  const { privateBinary, tempDir } = await import("./_lib.ts");
  using dir = tempDir("bench-scale-");
  const f = await scaleBench({ bin: privateBinary(dir.path), dir: dir.path, bots: Number(values.bots), runs: Number(values.runs), seconds: Number(values.seconds), log: (l) => console.error(l) });
  console.log(scaleTable(f));
}
