/**
 * A bot's standing, as every bot request checks it: the roles it holds, the locks that
 * stop it, and the renewable identity it calls with (instance, bot and the generation
 * counter that catches copied identities). Joining is in auth/join/, renewal in
 * renew.ts, output certificates in certs.ts.
 */

import type { CertIdentity } from "../crypto/index.ts";
import { AppError, accessDenied, locked, notFound } from "../lib/errors.ts";
import type { BotResource, RoleResource } from "../resources/index.ts";
import { event, EVENT } from "./audit.ts";
import type { AuthContext } from "./context.ts";
import { KEYS, lockName, type BotInstanceRecord, type LockRecord, type LockTarget } from "./keys.ts";
import type { Item } from "./storage/index.ts";

/** Who sent a request, as the join and bot routes know it. */
export interface Caller {
  remoteAddr: string;
}

/** The roles a bot holds, loaded; a role that vanished is skipped (it grants nothing). */
export async function loadRoles(ctx: AuthContext, names: string[]): Promise<RoleResource[]> {
  const items = await ctx.backend.getMany<RoleResource>(names.map(KEYS.role));
  return items.flatMap((r) => (r ? [r.value] : []));
}

/** The LOCKED error a lock answers with. */
export function lockedError(lock: LockRecord): AppError {
  const why = lock.message ? `: ${lock.message}` : "";
  return locked(`Access is locked for ${lockName(lock.target).replace("/", " ")}${why}`);
}

/** The verified identity of a bot calling with its renewable certificate. */
export interface BotCaller extends Caller {
  identity: CertIdentity;
  /** Expiry of the presented certificate. */
  notAfter: Date;
}

function requireRenewable(identity: CertIdentity): { bot: string; instance: string; generation: number } {
  if (identity.kind !== "bot" || !identity.renewable || !identity.botName || !identity.botInstanceId || identity.generation === undefined) {
    throw accessDenied("This endpoint needs a bot's renewable identity");
  }
  return { bot: identity.botName, instance: identity.botInstanceId, generation: identity.generation };
}

/**
 * Checks the presented generation against the stored one. Older means a copy of
 * an identity that has since been renewed: the instance is locked and the event
 * audited. Newer means the database went back in time (a restored backup): the
 * stored counter catches up rather than locking every bot.
 */
async function checkGeneration(
  ctx: AuthContext,
  caller: BotCaller,
  item: Item<BotInstanceRecord>,
  presented: number,
  retryKeyId?: string,
): Promise<{ generation: number; rollback: boolean; retry: boolean }> {
  const stored = item.value.generation;
  if (presented === stored) return { generation: stored, rollback: false, retry: false };
  if (presented > stored) {
    await ctx.audit.emit(EVENT.generationRollback, ctx.clock.now(), {
      bot: item.value.bot_name,
      bot_instance_id: item.value.instance_id,
      presented,
      stored,
      remote_addr: caller.remoteAddr,
    });
    return { generation: presented, rollback: true, retry: false };
  }
  // The renewal before this one succeeded here but its answer never reached the
  // agent: it asks again with the previous certificate for the same new key.
  if (presented === stored - 1 && retryKeyId !== undefined && retryKeyId === item.value.last_key_id) {
    return { generation: stored - 1, rollback: false, retry: true };
  }
  const now = ctx.clock.now();
  const target: LockTarget = { kind: "bot_instance", name: item.value.instance_id };
  const lock: LockRecord = {
    target,
    created_at: now.toISOString(),
    message: `certificate generation ${presented} presented, ${stored} expected: the identity was copied`,
    created_by: "machine-id-auth",
  };
  const ev = [
    event(EVENT.generationMismatch, now, {
      bot: item.value.bot_name,
      bot_instance_id: item.value.instance_id,
      presented,
      expected: stored,
      remote_addr: caller.remoteAddr,
    }),
    event(EVENT.lockCreate, now, { target: lockName(target), message: lock.message, user: "machine-id-auth" }),
  ];
  await ctx.backend.atomicWrite([{ key: KEYS.lock(target), condition: { kind: "whatever" }, action: { kind: "put", value: lock } }], ev);
  ctx.audit.logged(ev);
  return Promise.reject(
    locked(
      `Bot instance "${item.value.instance_id}" is now locked: it presented certificate generation ${presented} but generation ${stored} was issued since, so a copy of this identity is in use elsewhere`,
    ),
  );
}

/**
 * A bot instance and its bot as stored now, refused (LOCKED) when a lock names either.
 * Each caller says what a missing instance or bot means for its request.
 */
export async function loadUnlocked(ctx: AuthContext, botName: string, instanceId: string): Promise<{ item?: Item<BotInstanceRecord> | undefined; bot?: Item<BotResource> | undefined }> {
  // the locks, the instance and the bot in one read: one query (one round trip on PostgreSQL) instead of four
  const [instanceLock, botLock, item, bot] = (await ctx.backend.getMany([
    KEYS.lock({ kind: "bot_instance", name: instanceId }),
    KEYS.lock({ kind: "bot", name: botName }),
    KEYS.instance(botName, instanceId),
    KEYS.bot(botName),
  ])) as [Item<LockRecord>?, Item<LockRecord>?, Item<BotInstanceRecord>?, Item<BotResource>?];
  const lock = instanceLock ?? botLock;
  if (lock) throw lockedError(lock.value);
  return { item, bot };
}

/** Loads the caller's instance and bot, refusing locked, deleted or stale identities. */
export async function authorizeBot(ctx: AuthContext, caller: BotCaller, retryKeyId?: string) {
  const who = requireRenewable(caller.identity);
  const { item, bot } = await loadUnlocked(ctx, who.bot, who.instance);
  // NOT_FOUND, not ACCESS_DENIED: an agent that can rejoin (bound keypair, Kubernetes) does so
  if (!item) throw notFound(`Bot instance "${who.instance}" of bot "${who.bot}" is not known (deleted, or the database was restored from before it joined): join again`);
  if (!bot) throw accessDenied(`Bot "${who.bot}" no longer exists`);
  const gen = await checkGeneration(ctx, caller, item, who.generation, retryKeyId);
  return { who, item, bot: bot.value, gen };
}

/**
 * The calling bot and all the roles it holds, for a request that issues nothing (the
 * same refusals as a certificate request: locks, a deleted bot, a stale generation).
 */
export async function botAndRoles(ctx: AuthContext, caller: BotCaller): Promise<{ bot: BotResource; roles: RoleResource[] }> {
  const { bot, gen } = await authorizeBot(ctx, caller);
  if (gen.retry) throw accessDenied("This identity was renewed since: use the newest renewable identity");
  return { bot, roles: await loadRoles(ctx, bot.spec.roles) };
}
