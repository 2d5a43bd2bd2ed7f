/**
 * A second OS process for the SQLite tests: it opens the same database file and
 * writes, reporting on stdout, one line at a time, so the parent can race it against
 * other processes or kill it mid-write.
 *
 *   bun sqlite_child.ts cas-once   <db> <key> <revision> <value>   waits for "go" on stdin
 *   bun sqlite_child.ts increment  <db> <key> <attempts>           waits for "go" on stdin
 *   bun sqlite_child.ts write-loop <db>                             until killed
 *   bun sqlite_child.ts big-batch  <db>                             run under `ulimit -f`
 */

import { openBackend } from "../../src/auth/storage/index.ts";
import { SqliteBackend } from "../../src/auth/storage/sqlite.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { incrementByCas } from "./helpers.ts";

const [mode, path, ...args] = process.argv.slice(2);
if (!mode || !path) throw new Error("usage: sqlite_child.ts <mode> <db> …");

const say = (x: unknown) => process.stdout.write(JSON.stringify(x) + "\n");
const b = await openBackend({ type: "sqlite", path, busyTimeoutMs: 30_000 }, { sweepIntervalMs: 0 });

async function firstStdinLine(): Promise<string> {
  let buf = "";
  for await (const chunk of Bun.stdin.stream()) {
    buf += new TextDecoder().decode(chunk);
    const nl = buf.indexOf("\n");
    if (nl >= 0) return buf.slice(0, nl);
  }
  return buf;
}

/** Reports readiness and waits for the parent's "go", so racers start together. */
async function barrier(): Promise<void> {
  say({ ready: true });
  if ((await firstStdinLine()) !== "go") throw new Error('expected "go" on stdin');
}

if (mode === "cas-once") {
  const [key, revision, value] = args as [string, string, string];
  await barrier();
  try {
    const item = await b.compareAndSwap(key, revision, Number(value));
    say({ won: true, revision: item.revision });
  } catch (e) {
    if (!isAppError(e)) throw e;
    say({ won: false, code: e.code });
  }
} else if (mode === "increment") {
  const [key, attempts] = args as [string, string];
  await barrier();
  say(await incrementByCas(b, key, Number(attempts)));
} else if (mode === "write-loop") {
  for (let i = 0; ; i++) {
    await b.put(`/crash/${String(i).padStart(8, "0")}`, { i });
    // Only after put() resolved: every number printed is a committed write.
    say(i);
  }
} else if (mode === "big-batch") {
  // 64 writes of 10 kB in one turn: one transaction whose WAL frames, written at
  // COMMIT, pass the file size limit the parent set, so the COMMIT itself fails.
  await b.put("/small", 0);
  const big = "x".repeat(10_000);
  const results = await Promise.allSettled(Array.from({ length: 64 }, (_, i) => b.put(`/big/${i}`, big)));
  const outcomes = results.map((r) => (r.status === "fulfilled" ? "ok" : isAppError(r.reason) ? `${r.reason.code}: ${r.reason.message}` : String(r.reason)));
  const stats = b instanceof SqliteBackend ? b.stats() : undefined;
  const after = await b.put("/after", 1).then(
    () => "ok",
    (e: unknown) => String(e),
  );
  say({ outcomes, stats, after });
} else {
  throw new Error(`unknown mode "${mode}"`);
}
await b.close();
