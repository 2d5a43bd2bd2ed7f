/**
 * The half of a backend that does not depend on the database: argument checks, the
 * errors callers see, expiry sweeping and the closed state. A backend supplies the
 * database half as a handful of row-level primitives.
 */

import { systemClock, type Clock } from "../../lib/clock.ts";
import {
  AppError,
  alreadyExists,
  badParameter,
  compareFailed,
  connectionProblem,
  errorMessage,
  notFound,
} from "../../lib/errors.ts";
import { silentLogger, type Logger } from "../../lib/log.ts";
import { IntervalLoop } from "../../lib/retry.ts";
import type {
  Backend,
  ConditionalOp,
  EventQuery,
  Item,
  ListOptions,
  OpenOptions,
  StoredEvent,
  WriteOptions,
} from "./backend.ts";
import {
  checkEvent,
  checkEventQuery,
  checkEvents,
  checkKey,
  checkLimit,
  checkOps,
  encodeJson,
  expiryMs,
  prefixRange,
  revisionNumber,
  type AtomicOp,
  type EventRow,
  type NormalizedEventQuery,
} from "./_validate.ts";

/** An item as a database returns it: the value still JSON text. */
export interface Row {
  key: string;
  value: string;
  revision: string;
  expiresMs: number | null;
}

/** How a single-key write treats what is already there. */
export type WriteMode =
  | { kind: "put" }
  | { kind: "create" }
  | { kind: "update" }
  /** `revision` is a revisionNumber(): NO_REVISION never matches. */
  | { kind: "cas"; revision: number };

/** What a conditional single-key write found instead of writing. */
export type WriteRefusal = "exists" | "missing" | "moved";

/** The outcome of a write or delete primitive. */
export type WriteResult = { revision: string } | { refused: WriteRefusal };

/** Default period of the expiry sweeper. */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

/** A schema migration: applied once, in order, inside one transaction with the others. */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** The error for a database whose schema a newer release wrote. */
export function newerSchemaError(where: string, found: number, supported: number): AppError {
  return badParameter(
    `Cannot open storage ${where}: its schema version ${found} is newer than this release supports (${supported}); run a newer machine-id`,
    { details: { schemaVersion: found, supportedVersion: supported } },
  );
}

/** The COMPARE_FAILED of an atomic write whose condition on `key` does not hold. */
export function conditionFailed(key: string, reason: string): AppError {
  return compareFailed(`Cannot apply the atomic write: "${key}" ${reason}`, { details: { key } });
}

/** The error for a migration the database refused (say, a table of that name exists already). */
export function migrationFailed(where: string, m: Migration, cause: unknown): AppError {
  if (cause instanceof AppError) return cause;
  return badParameter(`Cannot open storage ${where}: applying schema version ${m.version} failed: ${errorMessage(cause)}`, { cause });
}

/**
 * Throws COMPARE_FAILED for the first op (in order) whose condition does not hold,
 * given the live revision of each key (absent = no live item).
 */
export function checkConditions(ops: AtomicOp[], live: ReadonlyMap<string, string>): void {
  for (const { key, condition: c } of ops) {
    const current = live.get(key);
    let reason: string | undefined;
    if (c.kind === "exists" && current === undefined) reason = "does not exist";
    else if (c.kind === "notExists" && current !== undefined) reason = "already exists";
    else if (c.kind === "revision" && current === undefined) reason = "does not exist";
    else if (c.kind === "revision" && current !== c.revision) reason = `is no longer at revision "${c.revision}"`;
    if (reason) throw conditionFailed(key, reason);
  }
}

/** Whether a row is live at `nowMs`. */
export function isLive(expiresMs: number | null, nowMs: number): boolean {
  return expiresMs === null || expiresMs > nowMs;
}

function toItem<T>(row: Row): Item<T> {
  const item: Item<T> = { key: row.key, value: JSON.parse(row.value) as T, revision: row.revision };
  if (row.expiresMs !== null) item.expires = new Date(row.expiresMs);
  return item;
}

function written<T>(key: string, value: T, revision: string, expiresMs: number | null): Item<T> {
  const item: Item<T> = { key, value, revision };
  if (expiresMs !== null) item.expires = new Date(expiresMs);
  return item;
}

/** Implements Backend over row primitives; subclasses talk to one database. */
export abstract class BaseBackend implements Backend {
  abstract readonly kind: Backend["kind"];
  protected readonly clock: Clock;
  readonly logger: Logger;
  private closed = false;
  private sweeper: { stop: AbortController; done: Promise<void> } | undefined;

  protected constructor(opts: OpenOptions, component: string) {
    this.clock = opts.clock ?? systemClock;
    this.logger = (opts.logger ?? silentLogger).child(component);
  }

  /** Reads the live row at `key`. */
  protected abstract readRow(key: string, nowMs: number): Promise<Row | undefined>;
  /** Reads the live rows among `keys` (distinct, at least one), in any order, in one query. */
  protected abstract readRows(keys: string[], nowMs: number): Promise<Row[]>;
  /**
   * Writes one key according to `mode`; refuses instead of throwing when the mode's
   * condition fails. `durable` false: see WriteOptions.durable.
   */
  protected abstract writeRow(key: string, json: string, expiresMs: number | null, mode: WriteMode, nowMs: number, durable: boolean): Promise<WriteResult>;
  /** Deletes the live row at `key`, if its revision is `revision` (a revisionNumber) when given. */
  protected abstract removeRow(key: string, revision: number | undefined, nowMs: number): Promise<WriteResult>;
  /** Live rows with `low <= key < high` and `key > startAfter`, by key. */
  protected abstract listRows(low: string, high: string, startAfter: string, limit: number | undefined, nowMs: number): Promise<Row[]>;
  protected abstract countRows(low: string, high: string, nowMs: number): Promise<number>;
  /**
   * In one transaction: lock and read the ops' keys, call checkConditions, apply the
   * actions with one new revision, insert the events. Returns that revision (undefined
   * when nothing was put).
   */
  protected abstract applyAtomic(ops: AtomicOp[], events: EventRow[], nowMs: number): Promise<string | undefined>;
  protected abstract insertEvent(e: EventRow): Promise<number>;
  protected abstract queryEvents(q: NormalizedEventQuery): Promise<StoredEvent[]>;
  /** Deletes up to `limit` (all when undefined) events with `time < beforeMs`, oldest first; returns how many. */
  protected abstract removeEvents(beforeMs: number, limit: number | undefined): Promise<number>;
  protected abstract removeExpired(nowMs: number): Promise<number>;
  /** Releases the database; called once. */
  protected abstract release(): Promise<void>;

  /** Starts the expiry sweeper; the factory calls this once the backend is ready. */
  startSweeper(intervalMs: number = DEFAULT_SWEEP_INTERVAL_MS): void {
    if (intervalMs <= 0 || this.sweeper) return;
    const stop = new AbortController();
    const loop = new IntervalLoop({
      name: "storage-sweeper",
      interval: () => intervalMs,
      runImmediately: false,
      clock: this.clock,
      signal: stop.signal,
      task: async () => {
        const n = await this.deleteExpired();
        if (n > 0) this.logger.debug("Removed expired items", { count: n });
      },
      onFailure: (e, attempt, next) =>
        this.logger.warn("Cannot remove expired items", { error: errorMessage(e), attempt, retryInMs: next }),
    });
    this.sweeper = { stop, done: loop.run() };
  }

  protected now(): number {
    return this.clock.now().getTime();
  }

  private checkOpen(): void {
    if (this.closed) throw connectionProblem(`Cannot use the ${this.kind} storage: it is closed`);
  }

  async get<T>(key: string): Promise<Item<T> | undefined> {
    this.checkOpen();
    const row = await this.readRow(checkKey(key), this.now());
    return row && toItem<T>(row);
  }

  async getMany<T>(keys: readonly string[]): Promise<(Item<T> | undefined)[]> {
    this.checkOpen();
    for (const k of keys) checkKey(k);
    if (keys.length === 0) return [];
    const rows = await this.readRows([...new Set(keys)], this.now());
    const byKey = new Map(rows.map((r) => [r.key, r]));
    return keys.map((k) => {
      const row = byKey.get(k);
      return row && toItem<T>(row);
    });
  }

  async put<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>> {
    return this.write(key, value, opts, "put", "store");
  }

  async create<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>> {
    return this.write(key, value, opts, "create", "create");
  }

  async update<T>(key: string, value: T, opts?: WriteOptions): Promise<Item<T>> {
    return this.write(key, value, opts, "update", "update");
  }

  async compareAndSwap<T>(key: string, expectedRevision: string, value: T, opts?: WriteOptions): Promise<Item<T>> {
    return this.write(key, value, opts, "cas", "update", expectedRevision);
  }

  private async write<T>(
    key: string,
    value: T,
    opts: WriteOptions | undefined,
    kind: WriteMode["kind"],
    verb: string,
    expected?: string,
  ): Promise<Item<T>> {
    this.checkOpen();
    checkKey(key);
    const mode: WriteMode = kind === "cas" ? { kind, revision: revisionNumber(expected) } : { kind };
    const json = encodeJson(value, `${verb} "${key}"`);
    const exp = expiryMs(key, opts?.expires);
    const r = await this.writeRow(key, json, exp, mode, this.now(), opts?.durable !== false);
    if ("refused" in r) throw refusal(r.refused, verb, key, expected);
    return written(key, value, r.revision, exp);
  }

  async delete(key: string, expectedRevision?: string): Promise<void> {
    this.checkOpen();
    checkKey(key);
    const rev = expectedRevision === undefined ? undefined : revisionNumber(expectedRevision);
    const r = await this.removeRow(key, rev, this.now());
    if ("refused" in r) throw refusal(r.refused, "delete", key, expectedRevision);
  }

  async list<T>(prefix: string, opts: ListOptions = {}): Promise<Item<T>[]> {
    this.checkOpen();
    const { low, high } = prefixRange(prefix);
    const limit = checkLimit(opts.limit);
    const after = opts.startAfter ?? "";
    if (typeof after !== "string") throw badParameter(`Cannot list "${prefix}": "startAfter" must be a string`, { field: "startAfter" });
    if (limit === 0) return [];
    const rows = await this.listRows(low, high, after, limit, this.now());
    return rows.map((r) => toItem<T>(r));
  }

  async count(prefix: string): Promise<number> {
    this.checkOpen();
    const { low, high } = prefixRange(prefix);
    return this.countRows(low, high, this.now());
  }

  async atomicWrite(ops: ConditionalOp[], events?: Omit<StoredEvent, "id">[]): Promise<Record<string, string>> {
    this.checkOpen();
    const checked = checkOps(ops);
    const rows = checkEvents(events);
    if (checked.length === 0 && rows.length === 0) return {};
    const revision = await this.applyAtomic(checked, rows, this.now());
    const out: Record<string, string> = {};
    for (const op of checked) if (op.put && revision !== undefined) out[op.key] = revision;
    return out;
  }

  async appendEvent(e: Omit<StoredEvent, "id">): Promise<StoredEvent> {
    this.checkOpen();
    const row = checkEvent(e);
    const id = await this.insertEvent(row);
    return { id, type: row.type, time: new Date(row.timeMs), fields: JSON.parse(row.fields) as Record<string, unknown> };
  }

  async listEvents(q?: EventQuery): Promise<StoredEvent[]> {
    this.checkOpen();
    const nq = checkEventQuery(q);
    if (nq.limit === 0 || (nq.types !== undefined && nq.types.length === 0)) return [];
    return this.queryEvents(nq);
  }

  async pruneEvents(beforeMs: number, limit?: number): Promise<number> {
    this.checkOpen();
    if (typeof beforeMs !== "number" || Number.isNaN(new Date(beforeMs).getTime())) {
      throw badParameter(`Cannot prune events before ${String(beforeMs)}: it is not a time in milliseconds since the epoch`, {
        field: "beforeMs",
      });
    }
    const n = checkLimit(limit);
    if (n === 0) return 0;
    return this.removeEvents(beforeMs, n);
  }

  async deleteExpired(now?: Date): Promise<number> {
    this.checkOpen();
    if (now !== undefined && (!(now instanceof Date) || Number.isNaN(now.getTime()))) {
      throw badParameter("Cannot remove expired items: the time given is not a valid date");
    }
    return this.removeExpired(now?.getTime() ?? this.now());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) {
      this.sweeper.stop.abort();
      await this.sweeper.done;
    }
    await this.release();
  }
}

function refusal(r: WriteRefusal, verb: string, key: string, expected: string | undefined): AppError {
  if (r === "exists") return alreadyExists(`Cannot ${verb} "${key}": it already exists`, { details: { key } });
  if (r === "missing") return notFound(`Cannot ${verb} "${key}": it does not exist`, { details: { key } });
  return compareFailed(`Cannot ${verb} "${key}": it changed after revision "${expected}"`, { details: { key, expectedRevision: expected } });
}
