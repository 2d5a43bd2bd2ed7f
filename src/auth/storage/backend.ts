/**
 * The storage contract of the auth service: a key/value store with revisions,
 * conditional and atomic writes, expiry, and an append-only event log.
 */

import type { Clock } from "../../lib/clock.ts";
import type { Logger } from "../../lib/log.ts";

/**
 * A stored value. `revision` is opaque: compare it only for equality. Every write of a
 * key gives it a revision that key has never had before, also after a delete and a
 * re-create. `expires` is absent for items that never expire.
 */
export interface Item<T = unknown> {
  key: string;
  value: T;
  revision: string;
  expires?: Date;
}

/**
 * What must hold for a key before an atomic write applies. An expired item counts as
 * absent: `notExists` holds for it and `exists` and `revision` do not.
 */
export type Condition =
  | { kind: "exists" }
  | { kind: "notExists" }
  | { kind: "revision"; revision: string }
  | { kind: "whatever" };

/** What an atomic write does to one key. Deleting an absent key is a no-op. */
export type Action<T = unknown> = { kind: "put"; value: T; expires?: Date } | { kind: "delete" };

/** One key of an atomic write: a condition to check and an action to apply. */
export interface ConditionalOp<T = unknown> {
  key: string;
  condition: Condition;
  action: Action<T> | { kind: "nop" };
}

/** An audit event. `id` grows strictly with commit order and is never reused. */
export interface StoredEvent {
  id: number;
  type: string;
  time: Date;
  fields: Record<string, unknown>;
}

/**
 * A filter over the event log. Results are ordered by `id` (not by `time`, which is
 * whatever the writer recorded).
 */
export interface EventQuery {
  /** Only these types; an empty array matches no event. */
  types?: string[];
  /** Events whose time is at or after this instant. */
  since?: Date;
  /** Events whose time is before this instant (exclusive). */
  until?: Date;
  /** At most this many events (a non-negative integer); no limit when absent. */
  limit?: number;
  /** `asc` (default, oldest first) or `desc`. */
  order?: "asc" | "desc";
  /**
   * A cursor: only events that come after this id in the requested order, so `id >
   * afterId` for `asc` and `id < afterId` for `desc`. Pass the last id of a page.
   */
  afterId?: number;
}

/** Options of a single-key write. */
export interface WriteOptions {
  /** When the item stops being visible; absent means never. */
  expires?: Date;
  /**
   * `false`: the write may skip waiting for the disk, for data that is cheap to lose and
   * costly to make durable (a bound-keypair challenge, answered within a minute). Such a
   * write is lost only by a power failure or OS crash before the next durable write
   * commits, never by a crash of the process alone, and never out of order: a durable
   * write committed after it keeps it too. SQLite commits a batch of only such writes
   * without its fsync; PostgreSQL ignores the option. Default `true`.
   */
  durable?: boolean;
}

/** Options of `list`. */
export interface ListOptions {
  /** At most this many items (a non-negative integer); no limit when absent. */
  limit?: number;
  /** Only keys that sort after this string (it need not be an existing key). */
  startAfter?: string;
}

/**
 * A storage backend. Every method may reject with `CONNECTION_PROBLEM` when the
 * database cannot be reached, is locked beyond the timeout, or the backend is closed,
 * and with `BAD_PARAMETER` for a malformed key, date, limit or a value that JSON
 * cannot represent.
 *
 * Keys are `/`-separated paths: they start with `/`, have at least one segment, no
 * empty, `.` or `..` segment, no trailing `/`, no control characters, at most 1024
 * bytes of UTF-8. Keys sort by their UTF-8 bytes (code point order).
 *
 * Values are stored as `JSON.stringify` renders them and read back with `JSON.parse`;
 * the item a write returns holds the caller's value as given.
 *
 * Expired items (`expires <= clock.now()`) are invisible to every read and condition:
 * `get` returns undefined, `update` and `delete` reject with `NOT_FOUND`, and `create`
 * replaces them. They stay in the database until `deleteExpired` removes them.
 *
 * Each method is one transaction: it either applies fully or not at all.
 */
export interface Backend {
  /** Which implementation this is, for logs and diagnostics. */
  readonly kind: "sqlite" | "postgres" | "memory";

  /** The live item at `key`, or undefined. */
  get<T>(key: string): Promise<Item<T> | undefined>;
  /**
   * The live items at `keys`, in their order (undefined where there is none; a key
   * given twice is answered twice): one query and one snapshot instead of a round
   * trip per key.
   */
  getMany<T>(keys: readonly string[]): Promise<(Item<T> | undefined)[]>;
  /** Writes `key` whether or not it exists (upsert). */
  put<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>>;
  /** Writes `key` only if it does not exist; `ALREADY_EXISTS` otherwise. */
  create<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>>;
  /** Writes `key` only if it exists; `NOT_FOUND` otherwise. The expiry is replaced, not kept. */
  update<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>>;
  /**
   * Writes `key` only if its revision is still `expectedRevision`: `COMPARE_FAILED`
   * when it moved, `NOT_FOUND` when the item is gone. Of several writers racing on one
   * revision exactly one succeeds.
   */
  compareAndSwap<T>(key: string, expectedRevision: string, value: T, opts?: WriteOptions): Promise<Item<T>>;
  /**
   * Removes `key`: `NOT_FOUND` when absent, `COMPARE_FAILED` when `expectedRevision` is
   * given and the revision moved.
   */
  delete(key: string, expectedRevision?: string): Promise<void>;
  /**
   * Live items under `prefix`, ordered by key. The prefix names a directory: a trailing
   * `/` is implied, so `/tokens` and `/tokens/` both match `/tokens/a` and
   * `/tokens/a/b` but neither `/tokens` itself nor `/tokens2/a`. `""` and `/` match
   * every key. Page with `startAfter` set to the last key seen.
   */
  list<T>(prefix: string, opts?: ListOptions): Promise<Item<T>[]>;
  /** How many live items `list(prefix)` would return. */
  count(prefix: string): Promise<number>;
  /**
   * All-or-nothing: every condition is checked and every action applied in one
   * transaction, with `events` appended in the same commit. When a condition fails
   * nothing is written and `COMPARE_FAILED` names the first failing key (in `ops`
   * order, also in `details.key`). A key may appear once. Returns the new revision of
   * every key that was put (all share one revision value).
   */
  atomicWrite(ops: ConditionalOp[], events?: Omit<StoredEvent, "id">[]): Promise<Record<string, string>>;
  /** Appends one event; returns it with its id. */
  appendEvent(e: Omit<StoredEvent, "id">): Promise<StoredEvent>;
  /** Events matching `q`, ordered by id (see EventQuery). */
  listEvents(q?: EventQuery): Promise<StoredEvent[]>;
  /**
   * Deletes events whose `time` is before `beforeMs` (ms since the epoch; exclusive: an
   * event at exactly `beforeMs` stays), oldest `time` first (ties by id), at most `limit`
   * of them (a non-negative integer; no limit when absent), and returns how many it
   * deleted. This is the audit log's retention: callers pass a limit and call again while
   * a call deleted `limit` events, so one call holds the write lock only briefly. Ids are
   * never reused: events appended after a prune get ids above every id handed out before.
   */
  pruneEvents(beforeMs: number, limit?: number): Promise<number>;
  /**
   * Removes items expired at `now` (default: the clock's now); returns how many. The
   * backend also runs this every `sweepIntervalMs` (see OpenOptions).
   */
  deleteExpired(now?: Date): Promise<number>;
  /** Stops the sweeper and releases the database; idempotent. Later calls reject with `CONNECTION_PROBLEM`. */
  close(): Promise<void>;
}

/** Where the data lives. */
export type BackendConfig =
  | {
      type: "sqlite";
      /** The database file; its directory must exist (the caller creates it 0700). */
      path: string;
      /** How long a write waits for another process's lock; default 5000. */
      busyTimeoutMs?: number;
    }
  | {
      type: "postgres";
      /** `postgres://user:password@host:port/database?…` (Bun's SQL client syntax). */
      connString: string;
      /** Connections in the pool; default 10. */
      poolSize?: number;
    }
  | { type: "memory" };

/** Dependencies and tuning shared by every backend. */
export interface OpenOptions {
  /** Decides what has expired; default the system clock. */
  clock?: Clock;
  logger?: Logger;
  /** How often expired items are removed; default 60000, 0 turns the sweeper off. */
  sweepIntervalMs?: number;
}
