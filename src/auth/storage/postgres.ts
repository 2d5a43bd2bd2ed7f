/**
 * The PostgreSQL backend, over Bun's built-in client (`SQL` from "bun", no extra
 * dependency): for several auth servers sharing one database. Same semantics as SQLite.
 */

import { SQL } from "bun";
import { AppError, badParameter, connectionProblem, errorMessage } from "../../lib/errors.ts";
import type { OpenOptions, StoredEvent } from "./backend.ts";
import {
  BaseBackend,
  checkConditions,
  conditionFailed,
  isLive,
  migrationFailed,
  newerSchemaError,
  type Migration,
  type Row,
  type WriteMode,
  type WriteResult,
} from "./_base.ts";
import { decodeEvent, type AtomicOp, type EventRow, type NormalizedEventQuery } from "./_validate.ts";

/** Default number of pooled connections. */
export const DEFAULT_POOL_SIZE = 10;

// Advisory lock ids (arbitrary constants, "mid" = machine-id): one serialises schema
// migrations of concurrent openers, one orders event inserts by commit (see insertEvents).
const MIGRATION_LOCK = 0x6d69_6401;
const EVENTS_LOCK = 0x6d69_6402;

/**
 * The schema, oldest first; the one row of `schema_version` holds the version applied.
 * Never edit a released migration: append a new one.
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "items with revisions and expiry, the revision sequence, the event log",
    sql: `
      -- Revisions come from a sequence: never handed out twice, whatever is deleted.
      CREATE SEQUENCE item_revisions AS bigint;
      CREATE TABLE items (
        key      text COLLATE "C" PRIMARY KEY,  -- "C": keys sort by UTF-8 bytes, as in SQLite
        value    text NOT NULL,                 -- JSON as written, not jsonb: jsonb would reorder keys
        revision bigint NOT NULL,
        expires  timestamptz                    -- NULL never expires
      );
      CREATE INDEX items_expires ON items (expires) WHERE expires IS NOT NULL;
      CREATE TABLE events (
        id     bigserial PRIMARY KEY,
        type   text NOT NULL,
        time   timestamptz NOT NULL,
        fields text NOT NULL
      );
      CREATE INDEX events_type ON events (type, id);
      CREATE INDEX events_time ON events (time);
    `,
  },
];

function latestVersion(): number {
  return POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]?.version ?? 0;
}

interface DbRow {
  key: string;
  value: string;
  revision: string; // bigint arrives as a string
  expires: Date | null;
}

/** Connects, migrates the schema, and returns the backend. */
export async function openPostgres(connString: string, poolSize: number, opts: OpenOptions): Promise<PostgresBackend> {
  if (typeof connString !== "string" || connString === "") {
    throw badParameter(`Cannot open PostgreSQL storage: "connString" is empty`, { field: "connString" });
  }
  if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
    throw badParameter(`Cannot open PostgreSQL storage: pool size ${String(poolSize)} is not a positive integer`, { field: "poolSize" });
  }
  let sql: SQL;
  try {
    sql = new SQL({ url: connString, max: poolSize, connectionTimeout: 10 });
  } catch (e) {
    // The message of a bad URL may quote it, password included: do not pass it on.
    throw badParameter(`Cannot open PostgreSQL storage: the connection string is not a valid postgres:// URL`, { field: "connString" });
  }
  if (sql.options.adapter !== undefined && sql.options.adapter !== "postgres") {
    await sql.close({ timeout: 0 });
    throw badParameter(`Cannot open PostgreSQL storage: the connection string names adapter "${sql.options.adapter}"`, {
      field: "connString",
    });
  }
  const where = describeTarget(sql);
  try {
    const applied = await migrate(sql, where);
    const backend = new PostgresBackend(sql, where, opts);
    backend.logger.debug("Opened storage", { postgres: where, schemaVersion: latestVersion(), migrated: applied });
    return backend;
  } catch (e) {
    await sql.close({ timeout: 0 });
    throw pgError(e, where);
  }
}

/** host:port/database, never the user or password. */
function describeTarget(sql: SQL): string {
  const o = sql.options as { hostname?: string; port?: number; database?: string; path?: string };
  const host = o.path ? o.path : `${o.hostname ?? "localhost"}:${o.port ?? 5432}`;
  return `"${host}/${o.database ?? ""}"`;
}

/** Applies the missing migrations in one transaction under an advisory lock; returns how many. */
async function migrate(sql: SQL, where: string): Promise<number> {
  const latest = latestVersion();
  return sql.begin(async (tx) => {
    // Concurrent openers queue here, so exactly one of them creates the schema.
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    // Look before creating: once migrated, a role without CREATE on the schema must be
    // able to open the database, and CREATE TABLE IF NOT EXISTS would need that right.
    const [found] = await tx`SELECT to_regclass('schema_version') IS NOT NULL AS present`;
    let current = 0;
    if ((found as { present: boolean }).present) {
      const [row] = await tx`SELECT version FROM schema_version WHERE id = 1`;
      current = (row as { version: number } | undefined)?.version ?? 0;
    } else {
      await tx.unsafe("CREATE TABLE schema_version (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)");
    }
    if (current > latest) throw newerSchemaError(where, current, latest);
    const pending = POSTGRES_MIGRATIONS.filter((m) => m.version > current);
    for (const m of pending) {
      try {
        await tx.unsafe(m.sql);
      } catch (e) {
        // Connection trouble is reported as such; anything else means the schema is not ours.
        const mapped = pgError(e, where);
        throw mapped === e ? migrationFailed(where, m, e) : mapped;
      }
    }
    if (pending.length) {
      await tx`INSERT INTO schema_version (id, version) VALUES (1, ${latest})
               ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`;
    }
    return pending.length;
  });
}

// SQLSTATE classes that mean "the database is unreachable or unusable right now".
const UNAVAILABLE_SQLSTATE = /^(08|53|57|58|28|3D|40)/;

/** Turns a Bun SQL error into the AppError a caller can act on. */
function pgError(e: unknown, where: string): unknown {
  if (e instanceof AppError) return e;
  const code = String((e as { code?: unknown })?.code ?? "");
  const state = String((e as { errno?: unknown })?.errno ?? "");
  const serverSide = code === "ERR_POSTGRES_SERVER_ERROR";
  if (
    code.startsWith("ERR_POSTGRES_CONNECTION") ||
    code.startsWith("ERR_POSTGRES_TLS") ||
    code.startsWith("ERR_POSTGRES_AUTHENTICATION") ||
    code.startsWith("ERR_POSTGRES_SASL") ||
    code.endsWith("_TIMEOUT") ||
    (serverSide && UNAVAILABLE_SQLSTATE.test(state))
  ) {
    const reason = code === "ERR_POSTGRES_CONNECTION_REFUSED" ? "connection refused" : errorMessage(e);
    return connectionProblem(`Cannot use storage postgres ${where}: ${reason}`, { cause: e, details: { postgres: code, sqlstate: state } });
  }
  return e; // anything else is a bug in this file, not a condition to report
}

const UNIQUE_VIOLATION = "23505";

/** A Backend over a pool of PostgreSQL connections. */
export class PostgresBackend extends BaseBackend {
  readonly kind = "postgres" as const;

  constructor(
    private readonly sql: SQL,
    private readonly where: string,
    opts: OpenOptions,
  ) {
    super(opts, "storage");
  }

  private async run<R>(fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (e) {
      throw pgError(e, this.where);
    }
  }

  /** The live revision of `key`, to tell "gone" from "moved" after a refused write. */
  private async refusal(key: string, now: Date): Promise<WriteResult> {
    const [r] = await this.sql`SELECT 1 FROM items WHERE key = ${key} AND (expires IS NULL OR expires > ${now})`;
    return { refused: r ? "moved" : "missing" };
  }

  protected async readRow(key: string, nowMs: number): Promise<Row | undefined> {
    const now = new Date(nowMs);
    const [r] = await this.run(
      () => this.sql`SELECT key, value, revision, expires FROM items WHERE key = ${key} AND (expires IS NULL OR expires > ${now})`,
    );
    return r ? toRow(r as DbRow) : undefined;
  }

  protected async readRows(keys: string[], nowMs: number): Promise<Row[]> {
    const now = new Date(nowMs);
    const rows = await this.run(
      () => this.sql`SELECT key, value, revision, expires FROM items WHERE key IN ${this.sql(keys)} AND (expires IS NULL OR expires > ${now})`,
    );
    return (rows as DbRow[]).map(toRow);
  }

  protected async writeRow(key: string, json: string, expiresMs: number | null, mode: WriteMode, nowMs: number): Promise<WriteResult> {
    const now = new Date(nowMs);
    const exp = expiresMs === null ? null : new Date(expiresMs);
    const sql = this.sql;
    return this.run(async () => {
      // Each is one statement, so PostgreSQL's row lock makes it atomic: of two racing
      // writers the second re-checks its WHERE against the first one's committed row.
      if (mode.kind === "put" || mode.kind === "create") {
        const [r] = await sql`
          INSERT INTO items (key, value, revision, expires) VALUES (${key}, ${json}, nextval('item_revisions'), ${exp})
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, revision = EXCLUDED.revision, expires = EXCLUDED.expires
          ${mode.kind === "create" ? sql`WHERE items.expires IS NOT NULL AND items.expires <= ${now}` : sql``}
          RETURNING revision`;
        return r ? { revision: (r as { revision: string }).revision } : { refused: "exists" };
      }
      const [r] = await sql`
        UPDATE items SET value = ${json}, revision = nextval('item_revisions'), expires = ${exp}
        WHERE key = ${key} AND (expires IS NULL OR expires > ${now})
        ${mode.kind === "cas" ? sql`AND revision = ${mode.revision}` : sql``}
        RETURNING revision`;
      if (r) return { revision: (r as { revision: string }).revision };
      return mode.kind === "cas" ? this.refusal(key, now) : { refused: "missing" };
    });
  }

  protected async removeRow(key: string, revision: number | undefined, nowMs: number): Promise<WriteResult> {
    const now = new Date(nowMs);
    const sql = this.sql;
    return this.run(async () => {
      const [r] = await sql`
        DELETE FROM items WHERE key = ${key} AND (expires IS NULL OR expires > ${now})
        ${revision === undefined ? sql`` : sql`AND revision = ${revision}`}
        RETURNING revision`;
      if (r) return { revision: (r as { revision: string }).revision };
      return revision === undefined ? { refused: "missing" } : this.refusal(key, now);
    });
  }

  protected async listRows(low: string, high: string, after: string, limit: number | undefined, nowMs: number): Promise<Row[]> {
    const now = new Date(nowMs);
    const rows = await this.run(
      () => this.sql`
        SELECT key, value, revision, expires FROM items
        WHERE key >= ${low} AND key < ${high} AND key > ${after} AND (expires IS NULL OR expires > ${now})
        ORDER BY key LIMIT ${limit ?? null}`,
    );
    return (rows as DbRow[]).map(toRow);
  }

  protected async countRows(low: string, high: string, nowMs: number): Promise<number> {
    const now = new Date(nowMs);
    const [r] = await this.run(
      () => this.sql`
        SELECT count(*)::integer AS n FROM items
        WHERE key >= ${low} AND key < ${high} AND (expires IS NULL OR expires > ${now})`,
    );
    return (r as { n: number }).n;
  }

  protected async applyAtomic(ops: AtomicOp[], events: EventRow[], nowMs: number): Promise<string | undefined> {
    const sorted = [...ops].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    return this.run(() =>
      this.sql.begin(async (tx) => {
        // Lock the rows that exist, in key order (every multi-key writer locks in this
        // one order, so two of them cannot deadlock). Rows that do not exist cannot be
        // locked; a racing insert of one is caught by the primary key below.
        const locked = new Map<string, { revision: string; expires: Date | null }>();
        if (sorted.length) {
          const rows = await tx`
            SELECT key, revision, expires FROM items WHERE key = ANY(${sorted.map((o) => o.key)}::text[])
            ORDER BY key FOR UPDATE`;
          for (const r of rows as DbRow[]) locked.set(r.key, r);
        }
        const live = new Map<string, string>();
        for (const [key, r] of locked) if (isLive(r.expires?.getTime() ?? null, nowMs)) live.set(key, r.revision);
        checkConditions(ops, live); // throws: the transaction rolls back with nothing written

        let revision: string | undefined;
        if (ops.some((op) => op.put)) {
          const [r] = await tx`SELECT nextval('item_revisions')::text AS r`;
          revision = (r as { r: string }).r;
        }
        for (const op of sorted) {
          if (op.put === undefined) continue;
          if (op.put === null) {
            await tx`DELETE FROM items WHERE key = ${op.key}`;
            continue;
          }
          const exp = op.put.expiresMs === null ? null : new Date(op.put.expiresMs);
          if (locked.has(op.key)) {
            await tx`UPDATE items SET value = ${op.put.json}, revision = ${revision!}::bigint, expires = ${exp} WHERE key = ${op.key}`;
          } else if (op.condition.kind === "whatever") {
            await tx`
              INSERT INTO items (key, value, revision, expires) VALUES (${op.key}, ${op.put.json}, ${revision!}::bigint, ${exp})
              ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, revision = EXCLUDED.revision, expires = EXCLUDED.expires`;
          } else {
            // notExists held when we looked; if another transaction has since inserted
            // the key, the primary key refuses this insert and the condition has failed.
            try {
              await tx`
                INSERT INTO items (key, value, revision, expires) VALUES (${op.key}, ${op.put.json}, ${revision!}::bigint, ${exp})`;
            } catch (e) {
              if ((e as { errno?: unknown }).errno === UNIQUE_VIOLATION) throw conditionFailed(op.key, "already exists");
              throw e;
            }
          }
        }
        await insertEvents(tx, events);
        return revision;
      }),
    );
  }

  protected async insertEvent(e: EventRow): Promise<number> {
    return this.run(() => this.sql.begin(async (tx) => (await insertEvents(tx, [e]))[0]!));
  }

  protected async queryEvents(q: NormalizedEventQuery): Promise<StoredEvent[]> {
    const sql = this.sql;
    // An empty array would be bound as a value, not joined as fragments: hence sql`` below.
    const filters: SQL.Query<unknown>[] = [];
    if (q.types !== undefined) filters.push(sql`AND type = ANY(${q.types}::text[])`);
    if (q.sinceMs !== undefined) filters.push(sql`AND time >= ${new Date(q.sinceMs)}`);
    if (q.untilMs !== undefined) filters.push(sql`AND time < ${new Date(q.untilMs)}`);
    if (q.afterId !== undefined) filters.push(q.desc ? sql`AND id < ${q.afterId}` : sql`AND id > ${q.afterId}`);
    const rows = await this.run(
      () => sql`
        SELECT id, type, time, fields FROM events WHERE TRUE ${filters.length ? filters : sql``}
        ORDER BY id ${q.desc ? sql`DESC` : sql`ASC`} LIMIT ${q.limit ?? null}`,
    );
    return (rows as { id: string; type: string; time: Date; fields: string }[]).map((r) =>
      decodeEvent(r.id, r.type, r.time.getTime(), r.fields),
    );
  }

  protected async removeExpired(nowMs: number): Promise<number> {
    const now = new Date(nowMs);
    // SKIP LOCKED: rows a writer holds are left for the next sweep instead of waited
    // for, and rows are never locked in an order that could deadlock with a writer.
    const r = await this.run(
      () => this.sql`
        DELETE FROM items WHERE key IN (
          SELECT key FROM items WHERE expires IS NOT NULL AND expires <= ${now} FOR UPDATE SKIP LOCKED)`,
    );
    return r.count;
  }

  protected async removeEvents(beforeMs: number, limit: number | undefined): Promise<number> {
    const before = new Date(beforeMs);
    // SKIP LOCKED: auth servers sharing the database prune at once; each takes rows the
    // others have not claimed instead of waiting for them and then finding them gone.
    // Event ids come from a sequence, so pruning never lets an id come round again.
    const r = await this.run(
      () => this.sql`
        DELETE FROM events WHERE id IN (
          SELECT id FROM events WHERE time < ${before} ORDER BY time, id LIMIT ${limit ?? null} FOR UPDATE SKIP LOCKED)`,
    );
    return r.count;
  }

  protected async release(): Promise<void> {
    await this.sql.close({ timeout: 5 });
  }
}

/**
 * Inserts events inside `tx`. Sequence values are handed out at insert, not at commit,
 * so two concurrent inserters could commit ids out of order and a reader paging by
 * `afterId` would skip the late one. The transaction-scoped advisory lock makes event
 * writers take turns until commit: ids become visible strictly in order.
 */
async function insertEvents(tx: SQL, events: EventRow[]): Promise<number[]> {
  if (events.length === 0) return [];
  await tx`SELECT pg_advisory_xact_lock(${EVENTS_LOCK})`;
  const ids: number[] = [];
  for (const e of events) {
    const [r] = await tx`INSERT INTO events (type, time, fields) VALUES (${e.type}, ${new Date(e.timeMs)}, ${e.fields}) RETURNING id`;
    ids.push(Number((r as { id: string }).id));
  }
  return ids;
}

function toRow(r: DbRow): Row {
  return { key: r.key, value: r.value, revision: String(r.revision), expiresMs: r.expires === null ? null : r.expires.getTime() };
}
