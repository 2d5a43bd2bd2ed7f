/**
 * Audit retention: the janitor deletes events older than the retention in chunks,
 * records the deletion as an `audit.pruned` event, leaves every other record alone,
 * and `GET /v1/events` (what `ctl events ls` calls) lists what remains.
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EVENT } from "../../src/auth/audit.ts";
import {
  AUDIT_PRUNE_CHUNK,
  janitor,
  pruneAuditEvents,
  startAuthService,
} from "../../src/auth/service.ts";
import type { Backend, StoredEvent } from "../../src/auth/storage/index.ts";
import { DEFAULT_AUDIT_RETENTION_MS } from "../../src/config/index.ts";
import { AppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { keyRequest, startHarness, type Harness } from "./harness.ts";

const DAY = 86_400_000;
const RETENTION = 30 * DAY;

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

/** Appends `n` events of `type` at `at`. */
async function appendAt(type: string, at: Date, n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await h.ctx.backend.appendEvent({ type, time: at, fields: { i } });
}

const ago = (ms: number) => new Date(h.clock.now().getTime() - ms);
const all = () => h.ctx.backend.listEvents();
const pruned = async () => h.ctx.backend.listEvents({ types: [EVENT.auditPruned] });

/** Counts the backend's pruneEvents calls and the limits they were given. */
function spyOnPrune(backend: Backend, fail?: (call: number) => boolean): { limits: number[] } {
  const calls = { limits: [] as number[] };
  const real = backend.pruneEvents.bind(backend);
  backend.pruneEvents = async (before: number, limit?: number) => {
    calls.limits.push(limit ?? -1);
    if (fail?.(calls.limits.length)) throw new Error("disk on fire");
    return real(before, limit);
  };
  return calls;
}

describe("pruneAuditEvents()", () => {
  test("deletes events older than the retention, keeps the rest, and records audit.pruned", async () => {
    await appendAt("bot.join", ago(RETENTION + DAY), 3);
    await appendAt("cert.create", ago(RETENTION + 1), 2);
    await appendAt("cert.create", ago(RETENTION)); // exactly at the cutoff: kept
    await appendAt("cert.create", ago(DAY), 2);
    const beforeIds = (await all()).map((e) => e.id);

    expect(await pruneAuditEvents(h.ctx, RETENTION)).toBe(5);

    const left = await all();
    expect(left.map((e) => e.id).slice(0, 3)).toEqual(beforeIds.slice(5));
    expect(left.slice(0, 3).map((e) => e.time.getTime())).toEqual([ago(RETENTION), ago(DAY), ago(DAY)].map((d) => d.getTime()));
    const [record] = left.slice(3);
    expect(left.length).toBe(4);
    expect(record).toMatchObject({
      type: "audit.pruned",
      time: h.clock.now(),
      fields: { count: 5, before: ago(RETENTION).toISOString() },
    } satisfies Partial<StoredEvent>);
    expect(record!.id).toBeGreaterThan(Math.max(...beforeIds));
  });

  test("with nothing old enough it deletes nothing and records nothing", async () => {
    await appendAt("cert.create", ago(DAY), 3);
    expect(await pruneAuditEvents(h.ctx, RETENTION)).toBe(0);
    expect((await all()).length).toBe(3);
    expect(await pruned()).toEqual([]);
  });

  test("touches nothing but the events: bots, tokens, instances, roles and authorities stay as they were", async () => {
    const role = { kind: "role", version: "v7", metadata: { name: "deployer" }, spec: { allow: { logins: ["deploy"] } } };
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [role] })).status).toBe(200);
    const first = await h.call(h.admin, "POST", "/v1/bots", { name: "ci", roles: ["deployer"] });
    expect(first.status).toBe(200);
    const { body } = keyRequest();
    expect((await h.call(h.anon, "POST", "/v1/join", { ...body, join_method: "token", token_name: first.json.token })).status).toBe(200);
    expect((await h.call(h.admin, "POST", "/v1/bots", { name: "web", roles: ["deployer"] })).status).toBe(200); // its token stays unused
    const items = await h.ctx.backend.list("/");
    for (const prefix of ["/authorities/", "/roles/", "/bots/", "/tokens/", "/bot_instances/"]) {
      expect(items.some((i) => i.key.startsWith(prefix))).toBe(true);
    }
    const created = (await all()).length;
    expect(created).toBeGreaterThan(0);

    h.clock.advance(RETENTION + DAY); // everything recorded so far is now too old
    await appendAt("cert.create", h.clock.now());
    expect(await pruneAuditEvents(h.ctx, RETENTION)).toBe(created);

    expect(await h.ctx.backend.list("/")).toEqual(items);
    expect((await all()).map((e) => e.type)).toEqual(["cert.create", "audit.pruned"]);
  });

  test("deletes in chunks until a chunk comes back short, and records one event for all of them", async () => {
    await appendAt("old", ago(RETENTION + DAY), 10);
    const spy = spyOnPrune(h.ctx.backend);
    expect(await pruneAuditEvents(h.ctx, RETENTION, { chunk: 3 })).toBe(10);
    expect(spy.limits).toEqual([3, 3, 3, 3]); // 3 + 3 + 3 + 1
    expect((await pruned()).map((e) => e.fields.count)).toEqual([10]);

    // a backlog that is a multiple of the chunk takes one more call that finds nothing
    await appendAt("old", ago(RETENTION + DAY), 6);
    spy.limits.length = 0;
    expect(await pruneAuditEvents(h.ctx, RETENTION, { chunk: 3 })).toBe(6);
    expect(spy.limits).toEqual([3, 3, 3]);
    expect(AUDIT_PRUNE_CHUNK).toBe(10_000);
  });

  test("a chunk that fails still leaves a record of what the chunks before it deleted", async () => {
    await appendAt("old", ago(RETENTION + DAY), 5);
    spyOnPrune(h.ctx.backend, (call) => call === 2);
    await expect(pruneAuditEvents(h.ctx, RETENTION, { chunk: 2 })).rejects.toThrow("disk on fire");
    expect((await pruned()).map((e) => e.fields.count)).toEqual([2]);
    expect((await all()).filter((e) => e.type === "old").length).toBe(3);
  });

  test("an aborted signal stops it after the current chunk, with a record of that chunk", async () => {
    await appendAt("old", ago(RETENTION + DAY), 5);
    const stop = new AbortController();
    stop.abort();
    expect(await pruneAuditEvents(h.ctx, RETENTION, { chunk: 2, signal: stop.signal })).toBe(2);
    expect((await pruned()).map((e) => e.fields.count)).toEqual([2]);
  });

  test("a retention that is not a positive number is BAD_PARAMETER and deletes nothing", async () => {
    await appendAt("old", ago(RETENTION + DAY), 2);
    for (const bad of [0, -DAY, Number.NaN, Infinity]) {
      const err = await pruneAuditEvents(h.ctx, bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("BAD_PARAMETER");
      expect((err as AppError).message).toStartWith(`Cannot prune audit events with retention ${bad}`);
    }
    expect((await all()).length).toBe(2);
  });
});

describe("janitor()", () => {
  test("prunes with the retention it is given", async () => {
    await appendAt("old", ago(RETENTION + DAY), 2);
    await appendAt("new", ago(DAY));
    await janitor(h.ctx, { auditRetentionMs: RETENTION });
    expect((await all()).map((e) => e.type)).toEqual(["new", "audit.pruned"]);
  });

  test("a null retention keeps every event", async () => {
    await appendAt("ancient", ago(10 * 365 * DAY));
    const spy = spyOnPrune(h.ctx.backend);
    await janitor(h.ctx, { auditRetentionMs: null });
    expect(spy.limits).toEqual([]);
    expect((await all()).map((e) => e.type)).toEqual(["ancient"]);
  });
});

test("GET /v1/events (ctl events ls) lists what remains after a prune", async () => {
  await appendAt("bot.join", ago(RETENTION + DAY), 2);
  await appendAt("join.failed", ago(DAY));
  await pruneAuditEvents(h.ctx, RETENTION);
  const r = await h.call(h.admin, "GET", "/v1/events");
  expect(r.status).toBe(200);
  expect((r.json as { type: string }[]).map((e) => e.type)).toEqual(["join.failed", "audit.pruned"]);
  const only = await h.call(h.admin, "GET", "/v1/events?type=audit.pruned");
  expect((only.json as { fields: unknown }[]).map((e) => e.fields)).toEqual([{ count: 2, before: ago(RETENTION).toISOString() }]);
});

test("startAuthService() refuses a retention that is not positive before it touches the data dir", async () => {
  const dir = mkdtempSync(join(tmpdir(), "audit-retention-"));
  try {
    const dataDir = join(dir, "data");
    const err = await startAuthService({ dataDir, listenAddr: "127.0.0.1:0", log: silentLogger, storage: { type: "memory" }, auditRetentionMs: 0 }).catch(
      (e: unknown) => e,
    );
    expect((err as AppError).code).toBe("BAD_PARAMETER");
    expect(existsSync(dataDir)).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
