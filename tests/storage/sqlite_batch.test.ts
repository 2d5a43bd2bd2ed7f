/**
 * Group commit in the SQLite backend: writes issued in one event-loop turn share one
 * transaction (one fsync), yet each keeps the outcome it would have had alone, and a
 * transaction that cannot start or commit fails all of its writes and keeps none.
 */

import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import { openBackend, type Backend } from "../../src/auth/storage/index.ts";
import { MAX_BATCH, SqliteBackend, type WriteStats } from "../../src/auth/storage/sqlite.ts";
import { AppError } from "../../src/lib/errors.ts";
import { rejectsWith, tempDir } from "./helpers.ts";

const CHILD = join(import.meta.dir, "sqlite_child.ts");

/** Opens the file backend and gives the test its group-commit counters. */
async function openFile(path: string, busyTimeoutMs?: number): Promise<{ b: Backend; stats: () => WriteStats } & AsyncDisposable> {
  const b = await openBackend({ type: "sqlite", path, ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }) }, { sweepIntervalMs: 0 });
  if (!(b instanceof SqliteBackend)) throw new Error(`expected a SqliteBackend, got ${b.kind}`);
  return { b, stats: () => b.stats(), [Symbol.asyncDispose]: () => b.close() };
}

/** Frames in the WAL file: every COMMIT appends at least one (no checkpoint runs below 1000). */
function walFrames(path: string, pageSize: number): number {
  const size = statSync(path + "-wal").size;
  return size === 0 ? 0 : (size - 32) / (pageSize + 24);
}

function readPageSize(path: string): number {
  const raw = new Database(path, { readonly: true });
  try {
    return raw.query<{ page_size: number }, []>("PRAGMA page_size").get()!.page_size;
  } finally {
    raw.close();
  }
}

/** Reads keys straight from the file through a second connection: only what was committed. */
function committed(path: string): { items: Map<string, string>; events: string[] } {
  const raw = new Database(path, { readonly: true });
  try {
    const items = new Map(raw.query<{ key: string; value: string }, []>("SELECT key, value FROM items").all().map((r) => [r.key, r.value]));
    const events = raw.query<{ type: string }, []>("SELECT type FROM events ORDER BY id").all().map((r) => r.type);
    return { items, events };
  } finally {
    raw.close();
  }
}

const put = (key: string, value: unknown) => ({ key, condition: { kind: "whatever" as const }, action: { kind: "put" as const, value } });

describe("sqlite group commit", () => {
  test("64 writes issued in one turn commit in one transaction and are all durable once they resolve", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path);
    await db.b.put("/warm", 0); // creates the WAL
    const pageSize = readPageSize(path);

    // One at a time: at least one WAL frame (one commit) per write.
    let frames = walFrames(path, pageSize);
    for (let i = 0; i < 64; i++) await db.b.put(`/seq/${i}`, i);
    expect(walFrames(path, pageSize) - frames).toBeGreaterThanOrEqual(64);

    const before = db.stats();
    frames = walFrames(path, pageSize);
    const items = await Promise.all(Array.from({ length: 64 }, (_, i) => db.b.put(`/together/${i}`, { i })));
    const after = db.stats();
    expect(after.batches - before.batches).toBe(1);
    expect(after.writes - before.writes).toBe(64);
    // Counted independently of the backend's own counters: fewer than 64 commits.
    expect(walFrames(path, pageSize) - frames).toBeLessThan(64);
    expect(new Set(items.map((i) => i.revision)).size).toBe(64); // still one revision per write

    const { items: stored } = committed(path);
    for (let i = 0; i < 64; i++) expect(stored.get(`/together/${i}`)).toBe(JSON.stringify({ i }));
  });

  test("a batch of only non-durable writes commits without its fsync; one durable write makes the batch wait for it", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path);
    await db.b.put("/warm", 0);
    const base = db.stats().unsynced;
    await Promise.all([db.b.create("/c/1", 1, { durable: false }), db.b.put("/c/2", 2, { durable: false })]);
    expect(db.stats().unsynced - base).toBe(1);
    // committed all the same: another connection reads them
    expect(committed(path).items.get("/c/2")).toBe("2");
    // mixed: the durable write decides
    await Promise.all([db.b.put("/c/3", 3, { durable: false }), db.b.put("/d", 4)]);
    await db.b.put("/e", 5);
    await db.b.atomicWrite([put("/f", 6)]);
    expect(db.stats().unsynced - base).toBe(1);
    expect([...committed(path).items.keys()].sort()).toEqual(["/c/1", "/c/2", "/c/3", "/d", "/e", "/f", "/warm"]);
  });

  test("a refused write in the middle of a batch fails alone; the others commit", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path);
    const k = await db.b.put("/k", 0);
    await db.b.put("/taken", 0);
    const before = db.stats().batches;
    const results = await Promise.allSettled([
      db.b.put("/a", 1),
      db.b.compareAndSwap("/k", "999999", 1),
      db.b.create("/taken", 1),
      db.b.atomicWrite([put("/c", 1), { key: "/d", condition: { kind: "exists" }, action: { kind: "put", value: 1 } }], [
        { type: "never", time: new Date(), fields: {} },
      ]),
      db.b.appendEvent({ type: "kept", time: new Date(), fields: {} }),
      db.b.put("/e", 1),
    ]);
    expect(db.stats().batches - before).toBe(1);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "rejected", "fulfilled", "fulfilled"]);
    const codes = results.map((r) => (r.status === "rejected" ? (r.reason as AppError).code : undefined));
    expect(codes).toEqual([undefined, "COMPARE_FAILED", "ALREADY_EXISTS", "COMPARE_FAILED", undefined, undefined]);
    expect((results[3] as PromiseRejectedResult).reason.details).toEqual({ key: "/d" });

    const { items, events } = committed(path);
    expect([...items.keys()].sort()).toEqual(["/a", "/e", "/k", "/taken"]);
    expect(items.get("/k")).toBe("0");
    expect(events).toEqual(["kept"]);
    expect(await db.b.get("/k")).toEqual(k);
  });

  test("a write whose statement fails half-way is rolled back to its savepoint alone", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path);
    // A trigger another connection installs makes one event type fail after the
    // atomic write's puts already ran.
    const raw = new Database(path);
    raw.run("CREATE TRIGGER refuse_boom BEFORE INSERT ON events WHEN NEW.type = 'boom' BEGIN SELECT RAISE(ABORT, 'boom refused'); END");
    raw.close();
    const results = await Promise.allSettled([
      db.b.put("/before", 1),
      db.b.atomicWrite([put("/half/1", 1), put("/half/2", 2)], [{ type: "boom", time: new Date(), fields: {} }]),
      db.b.put("/after", 1),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toContain("boom refused");
    expect([...committed(path).items.keys()].sort()).toEqual(["/after", "/before"]);
  });

  test("writes to one key in one batch apply in call order, as if one after another", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path);
    const k = await db.b.put("/k", 0);
    const before = db.stats().batches;
    const results = await Promise.allSettled([
      db.b.put("/k", 1),
      db.b.compareAndSwap("/k", k.revision, 2), // the put above moved it
      db.b.delete("/gone-soon").catch((e: unknown) => (e as AppError).code),
      db.b.create("/new", "x"),
      db.b.atomicWrite([{ key: "/new", condition: { kind: "exists" }, action: { kind: "put", value: "y" } }]),
      db.b.delete("/new"),
      db.b.create("/new", "z"),
      db.b.put("/k", 3),
    ]);
    expect(db.stats().batches - before).toBe(1);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled", "fulfilled", "fulfilled", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.code).toBe("COMPARE_FAILED");
    expect((results[2] as PromiseFulfilledResult<unknown>).value).toBe("NOT_FOUND");
    const last = (results[7] as PromiseFulfilledResult<{ revision: string }>).value;
    const first = (results[0] as PromiseFulfilledResult<{ revision: string }>).value;
    expect(Number(last.revision)).toBeGreaterThan(Number(first.revision));
    expect(await db.b.get("/k")).toEqual({ key: "/k", value: 3, revision: last.revision });
    expect((await db.b.get("/new"))?.value).toBe("z");
  });

  test("events written in one batch get ascending ids in call order", async () => {
    using dir = tempDir();
    await using db = await openFile(join(dir.path, "auth.db"));
    const time = new Date();
    const [e1, , e3] = await Promise.all([
      db.b.appendEvent({ type: "one", time, fields: {} }),
      db.b.atomicWrite([put("/x", 1)], [
        { type: "two", time, fields: {} },
        { type: "three", time, fields: {} },
      ]),
      db.b.appendEvent({ type: "four", time, fields: {} }),
    ]);
    const events = await db.b.listEvents();
    expect(events.map((e) => e.type)).toEqual(["one", "two", "three", "four"]);
    expect(events[0]!.id).toBe(e1.id);
    expect(events[3]!.id).toBe(e3.id);
  });

  test("a batch whose transaction cannot start fails every write with CONNECTION_PROBLEM and keeps none", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    await using db = await openFile(path, 20);
    const k = await db.b.put("/k", 0);
    const holder = new Database(path);
    try {
      holder.run("BEGIN IMMEDIATE");
      const message = `Cannot use storage "${path}": another process held the database lock for more than 20ms`;
      const writes = [
        db.b.put("/a", 1),
        db.b.compareAndSwap("/k", k.revision, 1),
        db.b.compareAndSwap("/k", "999999", 2),
        db.b.atomicWrite([put("/b", 1)], [{ type: "t", time: new Date(), fields: {} }]),
        db.b.appendEvent({ type: "t", time: new Date(), fields: {} }),
      ];
      for (const w of writes) await rejectsWith(w, "CONNECTION_PROBLEM", message);
      holder.run("ROLLBACK");
    } finally {
      holder.close();
    }
    const { items, events } = committed(path);
    expect([...items.keys()]).toEqual(["/k"]);
    expect(events).toEqual([]);
    expect(await db.b.get("/k")).toEqual(k);
    expect((await db.b.put("/a", 2)).value).toBe(2); // and the next batch works
  });

  test("a batch whose COMMIT fails (file size limit) fails every write with CONNECTION_PROBLEM and keeps none", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    // RLIMIT_FSIZE of 512 KiB, with SIGXFSZ ignored so the write fails with EFBIG
    // instead of killing the child: no root or special filesystem needed.
    const proc = Bun.spawn(["bash", "-c", `trap '' XFSZ; ulimit -f 512; exec "$0" "$@"`, process.execPath, CHILD, "big-batch", path], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code, err).toBe(0);
    const r = JSON.parse(out) as { outcomes: string[]; stats: WriteStats; after: string };
    expect(r.stats.largestBatch).toBe(64); // the 64 writes were one transaction
    expect(new Set(r.outcomes)).toEqual(new Set([`CONNECTION_PROBLEM: Cannot use storage "${path}": an I/O error occurred (disk I/O error)`]));
    expect(r.after).toBe("ok"); // the next, small batch commits
    const { items } = committed(path);
    expect([...items.keys()].sort()).toEqual(["/after", "/small"]);
  });

  test(`more than ${MAX_BATCH} writes in one turn are split into batches of at most ${MAX_BATCH}`, async () => {
    using dir = tempDir();
    await using db = await openFile(join(dir.path, "auth.db"));
    const before = db.stats();
    await Promise.all(Array.from({ length: MAX_BATCH + 10 }, (_, i) => db.b.put(`/many/${i}`, i)));
    const after = db.stats();
    expect(after.batches - before.batches).toBe(2);
    expect(after.largestBatch).toBe(MAX_BATCH);
    expect(await db.b.count("/many")).toBe(MAX_BATCH + 10);
  });

  test("close() commits and settles the writes still queued, then refuses new ones", async () => {
    using dir = tempDir();
    const path = join(dir.path, "auth.db");
    const { b } = await openFile(path);
    const k = await b.put("/k", 0);
    const pending = [b.put("/a", 1), b.compareAndSwap("/k", "999999", 1), b.appendEvent({ type: "t", time: new Date(), fields: {} })];
    await b.close();
    const results = await Promise.allSettled(pending);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    await rejectsWith(b.put("/b", 1), "CONNECTION_PROBLEM", "Cannot use the sqlite storage: it is closed");
    const { items, events } = committed(path);
    expect([...items.keys()].sort()).toEqual(["/a", "/k"]);
    expect(items.get("/k")).toBe("0");
    expect(events).toEqual(["t"]);
    expect(k.value).toBe(0);
  });

  test("a reader polling without yielding to the event loop still sees a queued write commit", async () => {
    await using db = await openFile(":memory:");
    let done = false;
    const w = db.b.put("/k", 1).then(() => (done = true));
    // Awaits only settled promises: setImmediate never gets its turn here.
    while (!done) await db.b.get("/k");
    await w;
    expect((await db.b.get("/k"))?.value).toBe(1);
  });
});
