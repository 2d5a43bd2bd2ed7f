/**
 * Chooses and opens a storage backend from its config, and starts its expiry sweeper.
 */

import { badParameter } from "../../lib/errors.ts";
import type { Backend, BackendConfig, OpenOptions } from "./backend.ts";
import { DEFAULT_SWEEP_INTERVAL_MS } from "./_base.ts";
import { DEFAULT_POOL_SIZE, openPostgres } from "./postgres.ts";
import { DEFAULT_BUSY_TIMEOUT_MS, openSqlite } from "./sqlite.ts";

/**
 * Opens the backend `cfg` names, creating and migrating its schema when needed.
 * Rejects with BAD_PARAMETER for a bad config or a database a newer release wrote,
 * ACCESS_DENIED for a database file others can read, CONNECTION_PROBLEM when the
 * database cannot be reached. The caller owns the result and must `close()` it.
 */
export async function openBackend(cfg: BackendConfig, opts: OpenOptions = {}): Promise<Backend> {
  const sweep = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  if (typeof sweep !== "number" || !Number.isFinite(sweep) || sweep < 0) {
    throw badParameter(`Cannot open storage: sweep interval ${String(sweep)} is not a non-negative number of milliseconds`);
  }
  const type = (cfg as { type?: unknown })?.type;
  switch (cfg?.type) {
    case "sqlite": {
      if (typeof cfg.path !== "string" || cfg.path === "") throw badParameter(`Cannot open SQLite storage: "path" is empty`, { field: "path" });
      const b = openSqlite(cfg.path, cfg.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS, opts);
      b.startSweeper(sweep);
      return b;
    }
    case "memory": {
      const b = openSqlite(":memory:", 0, opts);
      b.startSweeper(sweep);
      return b;
    }
    case "postgres": {
      const b = await openPostgres(cfg.connString, cfg.poolSize ?? DEFAULT_POOL_SIZE, opts);
      b.startSweeper(sweep);
      return b;
    }
    default:
      throw badParameter(`Cannot open storage of type ${JSON.stringify(type)}: use "sqlite", "postgres" or "memory"`, { field: "type" });
  }
}
