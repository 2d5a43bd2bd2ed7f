/**
 * The SQLite backend: the conformance suite on a real file, then what only a file
 * has — its mode, its schema version, reopening, lock timeouts, several OS processes
 * racing on it, and a kill -9 in the middle of a write loop.
 */

import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBackend, type Backend } from "../../src/auth/storage/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { runBackendConformance } from "./conformance.ts";
import { rejectsWith, spawnBun, tempDir } from "./helpers.ts";

const CHILD = join(import.meta.dir, "sqlite_child.ts");

const suiteDir = mkdtempSync(join(tmpdir(), "storage-sqlite-"));
let n = 0;
runBackendConformance(
  "sqlite",
  (opts) => openBackend({ type: "sqlite", path: join(suiteDir, `conformance-${n++}.db`) }, opts),
  async () => rmSync(suiteDir, { recursive: true, force: true }),
);

const open = (path: string, busyTimeoutMs?: number) =>
  openBackend({ type: "sqlite", path, ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }) }, { sweepIntervalMs: 0 });

/** Opens, runs `fn`, and always closes. */
async function withBackend<R>(path: string, fn: (b: Backend) => Promise<R>): Promise<R> {
  const b = await open(path);
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe("sqlite file", () => {
  test("openBackend() creates the database, its -wal and -shm files with mode 0600", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await withBackend(path, async (b) => {
      await b.put("/k", 1);
      expect(mode(path)).toBe(0o600);
      expect(mode(path + "-wal")).toBe(0o600);
      expect(mode(path + "-shm")).toBe(0o600);
    });
    expect(mode(dir.path)).toBe(0o700); // the caller's directory is left as it was
  });

  test("openBackend() refuses an existing database file that others can read", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await withBackend(path, async (b) => void (await b.put("/k", 1)));
    chmodSync(path, 0o644);
    await rejectsWith(open(path), "ACCESS_DENIED", `Cannot open storage "${path}": mode 0644 lets others read it; run chmod 600 "${path}"`);
  });

  test("openBackend() refuses a path whose directory does not exist", async () => {
    using dir = tempDir();
    const path = join(dir.path, "missing", "auth.db");
    await rejectsWith(open(path), "BAD_PARAMETER", `Cannot create storage "${path}": no such file or directory`);
  });

  test("openBackend() refuses a file that is not a SQLite database", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    writeFileSync(path, "this is not a database, just some text that is long enough to have a header".repeat(20), { mode: 0o600 });
    await rejectsWith(open(path), "CONNECTION_PROBLEM", `Cannot use storage "${path}": it is not a SQLite database`);
  });

  test("openBackend() rejects an empty path and an unknown type with BAD_PARAMETER", async () => {
    await rejectsWith(openBackend({ type: "sqlite", path: "" }), "BAD_PARAMETER");
    await rejectsWith(openBackend({ type: "mysql" } as never), "BAD_PARAMETER", 'Cannot open storage of type "mysql": use "sqlite", "postgres" or "memory"');
    await rejectsWith(openBackend({ type: "memory" }, { sweepIntervalMs: -1 }), "BAD_PARAMETER");
  });

  test("the database is in WAL mode and records its schema version", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await withBackend(path, async () => {});
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode).toBe("wal");
      expect(raw.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version).toBe(1);
    } finally {
      raw.close();
    }
  });

  test("openBackend() refuses a database whose schema a newer release wrote", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await withBackend(path, async (b) => void (await b.put("/k", 1)));
    const raw = new Database(path);
    raw.run("PRAGMA user_version = 99");
    raw.close();
    await rejectsWith(
      open(path),
      "BAD_PARAMETER",
      `Cannot open storage "${path}": its schema version 99 is newer than this release supports (1); run a newer machine-id`,
    );
  });

  test("openBackend() refuses a SQLite database that another program's tables occupy", async () => {
    using dir = tempDir();
    const path = join(dir.path, "other.db");
    const raw = new Database(path);
    raw.run("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
    raw.close();
    chmodSync(path, 0o600);
    await rejectsWith(
      open(path),
      "BAD_PARAMETER",
      `Cannot open storage "${path}": applying schema version 1 failed: table items already exists`,
    );
    const check = new Database(path, { readonly: true });
    try {
      // the failed migration left nothing behind
      expect(check.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all()).toEqual([{ name: "items" }]);
    } finally {
      check.close();
    }
  });

  test("reopening the file keeps items, expiry, revisions and events, and revisions keep growing", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const clock = new FakeClock();
    const expires = new Date(clock.now().getTime() + 60_000);
    const before = await withBackend(path, async (b) => {
      const items = [await b.put("/a", { x: 1 }), await b.put("/b/c", "two", { expires }), await b.put("/gone", 0)];
      await b.delete("/gone");
      const e = await b.appendEvent({ type: "t", time: clock.now(), fields: { n: 1 } });
      return { items: items.slice(0, 2), e, revisions: items.map((i) => i.revision) };
    });
    const b = await openBackend({ type: "sqlite", path }, { clock, sweepIntervalMs: 0 });
    try {
      expect(await b.list("/")).toEqual(before.items);
      expect(await b.listEvents()).toEqual([before.e]);
      const next = await b.put("/gone", 1);
      expect(before.revisions).not.toContain(next.revision);
      expect(Number(next.revision)).toBeGreaterThan(Math.max(...before.revisions.map(Number)));
      expect((await b.appendEvent({ type: "t", time: clock.now(), fields: {} })).id).toBeGreaterThan(before.e.id);
    } finally {
      await b.close();
    }
  });

  test("event ids stay unused across a reopen after every event was pruned", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const clock = new FakeClock();
    const last = await withBackend(path, async (b) => {
      for (let i = 0; i < 3; i++) await b.appendEvent({ type: "t", time: clock.now(), fields: { i } });
      const newest = await b.appendEvent({ type: "t", time: clock.now(), fields: {} });
      expect(await b.pruneEvents(clock.now().getTime() + 1)).toBe(4);
      return newest.id;
    });
    // without AUTOINCREMENT SQLite would hand out max(rowid) + 1 = 1 again here
    const next = await withBackend(path, async (b) => b.appendEvent({ type: "t", time: clock.now(), fields: {} }));
    expect(next.id).toBeGreaterThan(last);
  });

  test("a write blocked beyond busyTimeoutMs by another writer is CONNECTION_PROBLEM; reads go on", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const b = await open(path, 20);
    const holder = new Database(path);
    try {
      await b.put("/k", 1);
      holder.run("BEGIN IMMEDIATE");
      await rejectsWith(
        b.put("/k", 2),
        "CONNECTION_PROBLEM",
        `Cannot use storage "${path}": another process held the database lock for more than 20ms`,
      );
      expect((await b.get("/k"))?.value).toBe(1); // WAL: readers are not blocked by the writer
      holder.run("ROLLBACK");
      expect((await b.put("/k", 3)).value).toBe(3);
    } finally {
      holder.close();
      await b.close();
    }
  });

  test("two backends on one file in one process see each other's writes and conflicts", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const [a, b] = [await open(path), await open(path)];
    try {
      const first = await a.put("/k", 1);
      expect(await b.get("/k")).toEqual(first);
      await b.compareAndSwap("/k", first.revision, 2);
      await rejectsWith(a.compareAndSwap("/k", first.revision, 3), "COMPARE_FAILED");
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** Waits until every child has the file open, then lets them all write at once. */
async function startTogether(children: ReturnType<typeof spawnBun>[]): Promise<void> {
  for (const c of children) {
    const line = await c.out.next();
    if (line !== JSON.stringify({ ready: true })) throw new Error(`a child did not get ready: ${line} ${await c.stderr()}`);
  }
  for (const c of children) {
    c.proc.stdin.write("go\n");
    await c.proc.stdin.flush();
  }
}

describe("sqlite across processes", () => {
  test("two processes racing compareAndSwap() on one revision: exactly one wins, the other is COMPARE_FAILED", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const start = await withBackend(path, (b) => b.put("/race", 0));
    await using c1 = spawnBun(CHILD, ["cas-once", path, "/race", start.revision, "1"]);
    await using c2 = spawnBun(CHILD, ["cas-once", path, "/race", start.revision, "2"]);
    await startTogether([c1, c2]);
    const results = [];
    for (const c of [c1, c2]) {
      const line = await c.out.next();
      expect(await c.proc.exited, await c.stderr()).toBe(0);
      results.push(JSON.parse(line!) as { won: boolean; code?: string; revision?: string });
    }
    expect(results.filter((r) => r.won).length).toBe(1);
    expect(results.find((r) => !r.won)?.code).toBe("COMPARE_FAILED");
    const winner = results.findIndex((r) => r.won);
    const final = await withBackend(path, (b) => b.get("/race"));
    expect(final).toEqual({ key: "/race", value: winner + 1, revision: results[winner]!.revision! });
  });

  test("three processes incrementing one counter by compareAndSwap(): their successes equal the final value", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await withBackend(path, (b) => b.put("/counter", 0));
    const children = [0, 1, 2].map(() => spawnBun(CHILD, ["increment", path, "/counter", "150"]));
    try {
      await startTogether(children);
      let wins = 0;
      for (const c of children) {
        const line = await c.out.next();
        expect(await c.proc.exited, await c.stderr()).toBe(0);
        const r = JSON.parse(line!) as { wins: number; conflicts: number };
        expect(r.wins + r.conflicts).toBe(150);
        wins += r.wins;
      }
      expect(wins).toBeGreaterThan(0);
      expect((await withBackend(path, (b) => b.get<number>("/counter")))?.value).toBe(wins);
    } finally {
      for (const c of children) await c[Symbol.asyncDispose]();
    }
  }, 30_000);

  test("kill -9 in the middle of a write loop loses no reported write and leaves the file intact", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using child = spawnBun(CHILD, ["write-loop", path]);
    const reported: number[] = [];
    while (reported.length < 300) {
      const line = await child.out.next();
      if (line === undefined) throw new Error(`the writer exited early: ${await child.stderr()}`);
      reported.push(Number(line));
    }
    child.proc.kill("SIGKILL");
    await child.proc.exited;
    expect(child.proc.signalCode).toBe("SIGKILL");
    for (let line = await child.out.next(); line !== undefined; line = await child.out.next()) reported.push(Number(line));

    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.query<{ integrity_check: string }, []>("PRAGMA integrity_check").all()).toEqual([{ integrity_check: "ok" }]);
    } finally {
      raw.close();
    }
    await withBackend(path, async (b) => {
      const stored = new Set((await b.list<{ i: number }>("/crash")).map((i) => i.value.i));
      for (const i of reported) expect(stored.has(i)).toBe(true);
      expect(stored.size).toBeGreaterThanOrEqual(reported.length);
      expect(Math.max(...reported)).toBe(reported.length - 1); // the child reported 0…n in order
    });
  }, 30_000);
});
