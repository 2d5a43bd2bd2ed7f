/**
 * The SQLite backend (bun:sqlite), the default: one file in the data directory, safe
 * for several processes, durable across a crash of the process and a loss of power.
 * `:memory:` gives the in-memory backend with the very same semantics.
 *
 * Writes are group-committed: every commit costs an fsync (synchronous=FULL), and
 * bun:sqlite is synchronous, so each fsync stalls the event loop. Writes issued in the
 * same event-loop turn are queued and committed together in one transaction, each in
 * its own savepoint (one write's failure undoes only that write), so under concurrent
 * load one fsync covers many writes. A write's promise settles only after the COMMIT
 * that contains it returned, so durability is unchanged; reads are not queued. A batch
 * of only non-durable writes (WriteOptions.durable false) commits with `synchronous =
 * NORMAL`: no fsync, and the next durable batch's fsync covers it.
 */

import { Database, type Statement } from "bun:sqlite";
import { closeSync, constants, fchmodSync, openSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { AppError, accessDenied, badParameter, connectionProblem } from "../../lib/errors.ts";
import { fsError, formatMode } from "../../lib/fs.ts";
import type { OpenOptions, StoredEvent } from "./backend.ts";
import {
  BaseBackend,
  checkConditions,
  migrationFailed,
  newerSchemaError,
  type Migration,
  type Row,
  type WriteMode,
  type WriteResult,
} from "./_base.ts";
import { decodeEvent, type AtomicOp, type EventRow, type NormalizedEventQuery } from "./_validate.ts";

/** Default wait for another process's write lock. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/**
 * At most this many queued writes share one transaction, so one flush holds the event
 * loop for a bounded time; the rest go into the next turn's transaction.
 */
export const MAX_BATCH = 256;

/**
 * A queued write older than this is flushed by the next read instead of waiting for
 * setImmediate: code that awaits only already-settled promises (a reader polling in a
 * loop) never lets the event loop reach its check phase, and would otherwise wait for
 * ever for the write it is polling for. Long enough that a busy but live turn (many
 * requests handled at once) still commits its writes together.
 */
export const MAX_QUEUE_WAIT_MS = 10;

/** Counters of the group commit since the backend opened (for tests and diagnostics). */
export interface WriteStats {
  /** Transactions the writer queue ran (each one COMMIT, or one failed BEGIN/COMMIT). */
  batches: number;
  /** Writes those transactions carried. */
  writes: number;
  /** The most writes one transaction carried. */
  largestBatch: number;
  /** Transactions of only non-durable writes, committed without waiting for the disk. */
  unsynced: number;
}

/** A write waiting for the next flush: `run` executes inside the batch's transaction. */
interface QueuedWrite {
  run: () => unknown;
  /** False: may commit without an fsync (WriteOptions.durable). */
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * The schema, oldest first; `PRAGMA user_version` holds the version applied. Never edit
 * a released migration: append a new one.
 */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "items with revisions and expiry, the revision counter, the event log",
    sql: `
      CREATE TABLE items (
        key      TEXT    NOT NULL PRIMARY KEY,  -- BINARY collation: keys sort by UTF-8 bytes
        value    TEXT    NOT NULL,              -- JSON
        revision INTEGER NOT NULL,
        expires  INTEGER                        -- ms since the epoch; NULL never expires
      ) STRICT;
      CREATE INDEX items_expires ON items (expires) WHERE expires IS NOT NULL;
      -- One row: the last revision handed out. Kept apart from items so that deleting
      -- the newest item can never make its revision come round again.
      CREATE TABLE revision_counter (
        id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        last INTEGER NOT NULL
      ) STRICT;
      INSERT INTO revision_counter (id, last) VALUES (1, 0);
      -- AUTOINCREMENT: ids are never reused, even once old events are pruned.
      CREATE TABLE events (
        id     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        type   TEXT    NOT NULL,
        time   INTEGER NOT NULL,                -- ms since the epoch
        fields TEXT    NOT NULL                 -- JSON object
      ) STRICT;
      CREATE INDEX events_type ON events (type, id);
      CREATE INDEX events_time ON events (time);
    `,
  },
];

interface DbRow {
  key: string;
  value: string;
  revision: number;
  expires: number | null;
}

const LIVE = "(expires IS NULL OR expires > $now)";

/** Opens (creating if needed) the SQLite database at `path`, or an in-memory one for `":memory:"`. */
export function openSqlite(path: string, busyTimeoutMs: number, opts: OpenOptions): SqliteBackend {
  const memory = path === ":memory:";
  const abs = memory ? path : resolve(path);
  const where = memory ? "in memory" : `"${abs}"`;
  if (!memory) prepareFile(abs);
  let db: Database;
  try {
    // strict: a missing named parameter is an error, not a silent NULL
    db = new Database(abs, { create: true, readwrite: true, strict: true });
  } catch (e) {
    throw sqliteError(e, where, busyTimeoutMs);
  }
  try {
    configure(db, memory, busyTimeoutMs);
    const applied = migrate(db, where, busyTimeoutMs);
    const backend = new SqliteBackend(db, memory, where, busyTimeoutMs, opts);
    backend.logger.debug("Opened storage", { path: memory ? ":memory:" : abs, schemaVersion: latestVersion(), migrated: applied });
    return backend;
  } catch (e) {
    db.close(false);
    throw sqliteError(e, where, busyTimeoutMs);
  }
}

/**
 * Creates the file owner-only before SQLite sees it (SQLite would create it 0644
 * minus umask), and refuses an existing file others can read: it holds CA keys.
 * The -wal and -shm files SQLite creates later copy the database file's mode.
 */
function prepareFile(path: string): void {
  try {
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      fchmodSync(fd, 0o600); // the umask may have narrowed it further
    } finally {
      closeSync(fd);
    }
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw fsError("create storage", path, e);
  }
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw fsError("open storage", path, e);
  }
  if (!st.isFile()) throw badParameter(`Cannot open storage "${path}": it is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw accessDenied(`Cannot open storage "${path}": mode ${formatMode(st.mode)} lets others read it; run chmod 600 "${path}"`);
  }
}

function configure(db: Database, memory: boolean, busyTimeoutMs: number): void {
  // Waits (blocking this thread) when another process holds the write lock; beyond it
  // the write fails with SQLITE_BUSY, which becomes CONNECTION_PROBLEM.
  db.run(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  if (memory) return;
  // WAL: readers never block the writer and a commit appends to one file. It needs
  // shared memory, so the file must be on a local filesystem (not NFS).
  const mode = db.query<{ journal_mode: string }, []>("PRAGMA journal_mode = WAL").get()?.journal_mode;
  if (mode !== "wal") throw connectionProblem(`Cannot switch storage to write-ahead logging: SQLite kept journal mode "${mode}"`);
  // FULL: every commit fsyncs the WAL before it returns. A crash of the process alone
  // loses nothing even with NORMAL (the WAL is in the OS page cache), but after a power
  // loss NORMAL may roll back the last commits, and for us such a rollback is a
  // security event: a consumed single-use join token would be usable again and a
  // bot's certificate generation counter would step back. FULL costs one fsync per
  // commit (about 7,000 lone writes/s vs 27,000 on the development VM; see
  // bench/storage.ts), and group commit shares that fsync among concurrent writes.
  // Corruption is impossible either way.
  db.run("PRAGMA synchronous = FULL");
}

function latestVersion(): number {
  return SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]?.version ?? 0;
}

/** Applies the missing migrations in one IMMEDIATE transaction; returns how many. */
function migrate(db: Database, where: string, busyTimeoutMs: number): number {
  const latest = latestVersion();
  const run = db.transaction(() => {
    // Read inside the write lock: two processes opening a new file migrate once.
    const current = db.query<{ user_version: number }, []>("PRAGMA user_version").get()?.user_version ?? 0;
    if (current > latest) throw newerSchemaError(where, current, latest);
    const pending = SQLITE_MIGRATIONS.filter((m) => m.version > current);
    for (const m of pending) {
      try {
        db.run(m.sql);
      } catch (e) {
        // Busy or I/O trouble is reported as such; anything else means the schema is not ours.
        const mapped = sqliteError(e, where, busyTimeoutMs);
        throw mapped === e ? migrationFailed(where, m, e) : mapped;
      }
    }
    if (pending.length) db.run(`PRAGMA user_version = ${latest}`);
    return pending.length;
  });
  return run.immediate() as number;
}

/** Turns a bun:sqlite error into the AppError a caller can act on. */
function sqliteError(e: unknown, where: string, busyTimeoutMs: number): unknown {
  if (e instanceof AppError) return e;
  const code = String((e as { code?: unknown })?.code ?? "");
  const problem = (reason: string) => connectionProblem(`Cannot use storage ${where}: ${reason}`, { cause: e, details: { sqlite: code } });
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return problem(`another process held the database lock for more than ${busyTimeoutMs}ms`);
  }
  if (code === "SQLITE_NOTADB") return problem("it is not a SQLite database");
  if (code.startsWith("SQLITE_CORRUPT")) return problem("the database file is corrupt");
  if (code === "SQLITE_FULL") return problem("the disk is full");
  if (code.startsWith("SQLITE_READONLY")) return problem("the database is read-only");
  if (code.startsWith("SQLITE_CANTOPEN")) return problem("the database file cannot be opened");
  if (code.startsWith("SQLITE_IOERR")) return problem(`an I/O error occurred (${(e as Error).message})`);
  if (code === "SQLITE_PERM" || code === "SQLITE_AUTH") return problem("permission denied");
  return e; // anything else is a bug in this file, not a condition to report
}

/** A Backend over one bun:sqlite connection. */
export class SqliteBackend extends BaseBackend {
  readonly kind: "sqlite" | "memory";
  private readonly eventQueries = new Map<string, Statement>();
  // Prepared once: every call binds fresh parameters to the same compiled statement.
  private readonly s: {
    get: Statement<DbRow>;
    getMany: Statement<DbRow>;
    liveRevision: Statement<{ revision: number }>;
    bump: Statement<{ last: number }>;
    upsert: Statement;
    remove: Statement;
    list: Statement<DbRow>;
    count: Statement<{ n: number }>;
    insertEvent: Statement<{ id: number }>;
    removeExpired: Statement;
    pruneEvents: Statement;
    begin: Statement;
    commit: Statement;
    rollback: Statement;
    savepoint: Statement;
    release: Statement;
    rollbackTo: Statement;
    syncFull: Statement;
    syncNormal: Statement;
  };
  /** The connection's `synchronous` level, set before each batch's BEGIN: FULL for any durable write. */
  private synchronous: "FULL" | "NORMAL" = "FULL";
  private queue: QueuedWrite[] = [];
  private flushScheduled = false;
  /** performance.now() when the oldest queued write was queued. */
  private queuedSince = 0;
  private readonly counters: WriteStats = { batches: 0, writes: 0, largestBatch: 0, unsynced: 0 };

  constructor(
    private readonly db: Database,
    private readonly memory: boolean,
    private readonly where: string,
    private readonly busyTimeoutMs: number,
    opts: OpenOptions,
  ) {
    super(opts, "storage");
    this.kind = memory ? "memory" : "sqlite";
    this.s = {
      get: db.prepare(`SELECT key, value, revision, expires FROM items WHERE key = $key AND ${LIVE}`),
      // the keys as one JSON array: one prepared statement for any number of them
      getMany: db.prepare(`SELECT key, value, revision, expires FROM items WHERE key IN (SELECT value FROM json_each($keys)) AND ${LIVE}`),
      liveRevision: db.prepare(`SELECT revision FROM items WHERE key = $key AND ${LIVE}`),
      bump: db.prepare("UPDATE revision_counter SET last = last + 1 WHERE id = 1 RETURNING last"),
      upsert: db.prepare(
        `INSERT INTO items (key, value, revision, expires) VALUES ($key, $value, $revision, $expires)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires`,
      ),
      remove: db.prepare("DELETE FROM items WHERE key = $key"),
      list: db.prepare(
        `SELECT key, value, revision, expires FROM items
         WHERE key >= $low AND key < $high AND key > $after AND ${LIVE} ORDER BY key LIMIT $limit`,
      ),
      count: db.prepare(`SELECT count(*) AS n FROM items WHERE key >= $low AND key < $high AND ${LIVE}`),
      insertEvent: db.prepare("INSERT INTO events (type, time, fields) VALUES ($type, $time, $fields) RETURNING id"),
      removeExpired: db.prepare("DELETE FROM items WHERE expires IS NOT NULL AND expires <= $now"),
      // The subquery walks the events_time index from its start, so a chunk costs its
      // own size, not a scan of the log (DELETE … LIMIT needs a compile-time option).
      pruneEvents: db.prepare(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < $before ORDER BY time, id LIMIT $limit)",
      ),
      // BEGIN IMMEDIATE takes the write lock up front, so a read-then-write transaction
      // can never find its snapshot stale at the write (SQLITE_BUSY_SNAPSHOT): a
      // competing process waits for the lock and then reads what we committed.
      begin: db.prepare("BEGIN IMMEDIATE"),
      commit: db.prepare("COMMIT"),
      rollback: db.prepare("ROLLBACK"),
      savepoint: db.prepare("SAVEPOINT op"),
      release: db.prepare("RELEASE op"),
      rollbackTo: db.prepare("ROLLBACK TO op"),
      syncFull: db.prepare("PRAGMA synchronous = FULL"),
      syncNormal: db.prepare("PRAGMA synchronous = NORMAL"),
    };
  }

  private read<R>(fn: () => R): R {
    this.flushIfStarved();
    try {
      return fn();
    } catch (e) {
      throw sqliteError(e, this.where, this.busyTimeoutMs);
    }
  }

  /** How many transactions and writes the group commit has run. */
  stats(): WriteStats {
    return { ...this.counters };
  }

  /**
   * Queues `fn` for the next flush; resolves with its result once the transaction that
   * ran it has committed, rejects with what it threw (its savepoint rolled back) or with
   * the batch's BEGIN/COMMIT failure.
   */
  private inWrite<R>(fn: () => R, durable = true): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (this.queue.length === 0) this.queuedSince = performance.now();
      this.queue.push({ run: fn, durable, resolve: resolve as (v: unknown) => void, reject });
      this.scheduleFlush();
    });
  }

  private flushIfStarved(): void {
    if (this.queue.length > 0 && performance.now() - this.queuedSince > MAX_QUEUE_WAIT_MS) this.flush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: it runs after the I/O callbacks of this loop turn,
    // so writes from requests that arrived together share one commit, and a lone writer
    // waits only for the rest of its turn.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Runs up to MAX_BATCH queued writes in one transaction, then settles their promises. */
  private flush(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
    this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
    if (this.queue.length > 0) {
      this.queuedSince = performance.now();
      this.scheduleFlush();
    }
    this.counters.batches++;
    this.counters.writes += batch.length;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    const outcomes = this.runBatch(batch);
    if (!Array.isArray(outcomes)) {
      for (const w of batch) w.reject(outcomes.error);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      if (o.ok) batch[i]!.resolve(o.value);
      else batch[i]!.reject(o.error);
    }
  }

  /**
   * The batch's transaction: each write in its own savepoint, in queue order, so later
   * writes see earlier ones. Returns each write's outcome, or the one error every write
   * fails with when the transaction as a whole did not commit (nothing of it is kept).
   */
  private runBatch(batch: QueuedWrite[]): Outcome[] | { error: unknown } {
    const fail = (e: unknown) => {
      if (this.db.inTransaction) {
        try {
          this.s.rollback.run();
        } catch {
          // the original failure is the one to report; SQLite rolls back on close anyway
        }
      }
      return { error: sqliteError(e, this.where, this.busyTimeoutMs) };
    };
    // FULL is set again before any batch with a durable write, so a failure to set it
    // fails that batch rather than committing it without its fsync.
    const level = this.memory || batch.some((w) => w.durable) ? "FULL" : "NORMAL";
    try {
      if (level !== this.synchronous) {
        this.synchronous = "NORMAL"; // until FULL is known to be set again
        (level === "FULL" ? this.s.syncFull : this.s.syncNormal).run();
        this.synchronous = level;
      }
      this.s.begin.run();
    } catch (e) {
      return fail(e);
    }
    if (level === "NORMAL") this.counters.unsynced++;
    // A lone write needs no savepoint: the whole transaction is its own, and a failure
    // rolls it back (two statements less on the path of a single writer).
    const alone = batch.length === 1;
    const outcomes: Outcome[] = [];
    for (const w of batch) {
      try {
        if (!alone) this.s.savepoint.run();
        const value = w.run();
        if (!alone) this.s.release.run();
        outcomes.push({ ok: true, value });
      } catch (e) {
        // Disk full, I/O errors and the like may make SQLite abandon the whole
        // transaction: then the writes before this one are gone too.
        if (!this.db.inTransaction) return fail(e);
        try {
          if (alone) this.s.rollback.run();
          else {
            this.s.rollbackTo.run();
            this.s.release.run();
          }
        } catch (e2) {
          return fail(e2);
        }
        const error = sqliteError(e, this.where, this.busyTimeoutMs);
        if (alone) return [{ ok: false, error }];
        outcomes.push({ ok: false, error });
      }
    }
    try {
      this.s.commit.run();
    } catch (e) {
      return fail(e);
    }
    return outcomes;
  }

  private liveRevision(key: string, now: number): number | undefined {
    return this.s.liveRevision.get({ key, now })?.revision;
  }

  private nextRevision(): number {
    const r = this.s.bump.get();
    if (!r) throw new Error("revision_counter has no row"); // the schema guarantees one
    return r.last;
  }

  protected async readRows(keys: string[], now: number): Promise<Row[]> {
    return this.read(() => this.s.getMany.all({ keys: JSON.stringify(keys), now }).map(toRow));
  }

  protected async readRow(key: string, now: number): Promise<Row | undefined> {
    const r = this.read(() => this.s.get.get({ key, now }));
    return r ? toRow(r) : undefined;
  }

  protected async writeRow(key: string, json: string, expires: number | null, mode: WriteMode, now: number, durable: boolean): Promise<WriteResult> {
    return this.inWrite((): WriteResult => {
      if (mode.kind !== "put") {
        const current = this.liveRevision(key, now);
        if (mode.kind === "create" && current !== undefined) return { refused: "exists" };
        if (mode.kind !== "create" && current === undefined) return { refused: "missing" };
        if (mode.kind === "cas" && current !== mode.revision) return { refused: "moved" };
      }
      const revision = this.nextRevision();
      // Also replaces an expired row: it counts as absent.
      this.s.upsert.run({ key, value: json, revision, expires });
      return { revision: String(revision) };
    }, durable);
  }

  protected async removeRow(key: string, revision: number | undefined, now: number): Promise<WriteResult> {
    return this.inWrite((): WriteResult => {
      const current = this.liveRevision(key, now);
      if (current === undefined) return { refused: "missing" };
      if (revision !== undefined && current !== revision) return { refused: "moved" };
      this.s.remove.run({ key });
      return { revision: String(current) };
    });
  }

  protected async listRows(low: string, high: string, after: string, limit: number | undefined, now: number): Promise<Row[]> {
    // LIMIT -1 is SQLite for "no limit"
    return this.read(() => this.s.list.all({ low, high, after, now, limit: limit ?? -1 }).map(toRow));
  }

  protected async countRows(low: string, high: string, now: number): Promise<number> {
    return this.read(() => this.s.count.get({ low, high, now })?.n ?? 0);
  }

  protected async applyAtomic(ops: AtomicOp[], events: EventRow[], now: number): Promise<string | undefined> {
    return this.inWrite(() => {
      const live = new Map<string, string>();
      for (const op of ops) {
        const r = this.liveRevision(op.key, now);
        if (r !== undefined) live.set(op.key, String(r));
      }
      checkConditions(ops, live); // throws: the transaction rolls back with nothing written
      const revision = ops.some((op) => op.put) ? this.nextRevision() : undefined;
      for (const op of ops) {
        if (op.put) this.s.upsert.run({ key: op.key, value: op.put.json, revision, expires: op.put.expiresMs });
        else if (op.put === null) this.s.remove.run({ key: op.key });
      }
      for (const e of events) this.s.insertEvent.get({ type: e.type, time: e.timeMs, fields: e.fields });
      return revision === undefined ? undefined : String(revision);
    });
  }

  protected async insertEvent(e: EventRow): Promise<number> {
    return this.inWrite(() => {
      const r = this.s.insertEvent.get({ type: e.type, time: e.timeMs, fields: e.fields });
      if (!r) throw new Error("INSERT … RETURNING gave no row");
      return r.id;
    });
  }

  protected async queryEvents(q: NormalizedEventQuery): Promise<StoredEvent[]> {
    // Only the filters given go into the SQL, so SQLite can use the type and time
    // indexes; the few shapes are compiled once each.
    const where: string[] = [];
    const params: Record<string, string | number> = {};
    if (q.types !== undefined) {
      where.push("type IN (SELECT value FROM json_each($types))");
      params.types = JSON.stringify(q.types);
    }
    if (q.sinceMs !== undefined) {
      where.push("time >= $since");
      params.since = q.sinceMs;
    }
    if (q.untilMs !== undefined) {
      where.push("time < $until");
      params.until = q.untilMs;
    }
    if (q.afterId !== undefined) {
      where.push(q.desc ? "id < $after" : "id > $after");
      params.after = q.afterId;
    }
    params.limit = q.limit ?? -1;
    const sql =
      "SELECT id, type, time, fields FROM events" +
      (where.length ? ` WHERE ${where.join(" AND ")}` : "") +
      ` ORDER BY id ${q.desc ? "DESC" : "ASC"} LIMIT $limit`;
    return this.read(() => {
      let stmt = this.eventQueries.get(sql);
      if (!stmt) this.eventQueries.set(sql, (stmt = this.db.prepare(sql)));
      const rows = stmt.all(params) as { id: number; type: string; time: number; fields: string }[];
      return rows.map((r) => decodeEvent(r.id, r.type, r.time, r.fields));
    });
  }

  protected async removeExpired(now: number): Promise<number> {
    return this.inWrite(() => this.s.removeExpired.run({ now }).changes);
  }

  protected async removeEvents(before: number, limit: number | undefined): Promise<number> {
    return this.inWrite(() => this.s.pruneEvents.run({ before, limit: limit ?? -1 }).changes);
  }

  protected async release(): Promise<void> {
    // Writes queued before close() still commit and settle (their callers wait for
    // them); none can queue after, the base class refuses calls once closed.
    while (this.queue.length > 0) this.flush();
    // Closing the last connection checkpoints the WAL into the main file.
    this.read(() => this.db.close(true));
  }
}

function toRow(r: DbRow): Row {
  return { key: r.key, value: r.value, revision: String(r.revision), expiresMs: r.expires };
}
