/**
 * The bot side of the service: joining with a one-time token, renewing the
 * renewable identity (with the generation counter that catches copied
 * identities), and issuing the role certificates outputs are made of.
 */

import { randomUUID } from "node:crypto";
import { keyId, type CertIdentity } from "../crypto/index.ts";
import { AppError, accessDenied, badParameter, expired, isAppError, locked, notFound } from "../lib/errors.ts";
import type { BotCertsRequest, BotCertsResponse, JoinRequest, JoinResponse, RenewRequest, RenewResponse } from "../protocol/index.ts";
import { tokenExpired, tokenFingerprint, type BotResource, type RoleResource, type TokenResource } from "../resources/index.ts";
import { checkRoleSubset, effectiveTtlMs, grants, maxTtlMs } from "./access.ts";
import { event, EVENT } from "./audit.ts";
import type { AuthContext } from "./context.ts";
import { issueCerts, requestKeys } from "./issuer.ts";
import { KEYS, findLock, getBot, lockName, type BotInstanceRecord, type LockRecord, type LockTarget } from "./keys.ts";
import type { ConditionalOp, Item, StoredEvent } from "./storage/index.ts";

/**
 * What a refused join tells the caller when the token is unknown or is for another join
 * method: never whether it ever existed (a `token` token's name is its secret, so any
 * other answer for a wrong method would confirm a guessed secret).
 */
export const GENERIC_TOKEN_ERROR = "The join token is not valid: it does not exist or was already used; ask an admin for a new one (machine-id ctl bots add, or ctl tokens add)";

export interface Caller {
  remoteAddr: string;
}

/** The roles a bot holds, loaded; a role that vanished is skipped (it grants nothing). */
export async function loadRoles(ctx: AuthContext, names: string[]): Promise<RoleResource[]> {
  const items = await ctx.backend.getMany<RoleResource>(names.map(KEYS.role));
  return items.flatMap((r) => (r ? [r.value] : []));
}

/** Refuses with LOCKED when a lock covers any of `targets`. */
export async function checkLocks(ctx: AuthContext, targets: LockTarget[]): Promise<void> {
  const lock = await findLock(ctx.backend, targets);
  if (lock) throw lockedError(lock);
}

/** The LOCKED error a lock answers with. */
export function lockedError(lock: LockRecord): AppError {
  const why = lock.message ? `: ${lock.message}` : "";
  return locked(`Access is locked for ${lockName(lock.target).replace("/", " ")}${why}`);
}

/** Everything a successful join needs to write: the instance record and the response. */
export interface JoinOutcome {
  instance: BotInstanceRecord;
  response: JoinResponse;
  events: Omit<StoredEvent, "id">[];
}

/**
 * Issues the first renewable identity of a new bot instance. The caller commits
 * `instance` together with whatever consumes the join proof, in one write.
 */
export async function startInstance(
  ctx: AuthContext,
  bot: BotResource,
  req: { public_tls_key: string; public_ssh_key: string; ttl_seconds?: number },
  join: { method: string; tokenName: string; remoteAddr: string; instanceId?: string; generation?: number; boundPublicKey?: string },
): Promise<JoinOutcome> {
  const now = ctx.clock.now();
  const keys = requestKeys(req);
  const roles = await loadRoles(ctx, bot.spec.roles ?? []);
  const ttl = effectiveTtlMs(req.ttl_seconds, maxTtlMs(bot, roles));
  const instanceId = join.instanceId ?? randomUUID();
  const generation = join.generation ?? 1;
  const identity: CertIdentity = {
    cluster: ctx.authorities.cluster,
    username: `bot-${bot.metadata.name}`,
    kind: "bot",
    botName: bot.metadata.name,
    botInstanceId: instanceId,
    generation,
    renewable: true,
    roles: bot.spec.roles ?? [],
    logins: [],
    joinMethod: join.method,
  };
  const notAfter = new Date(now.getTime() + ttl);
  const { certs, serial } = await issueCerts(ctx.authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter, now });
  const instance: BotInstanceRecord = {
    bot_name: bot.metadata.name,
    instance_id: instanceId,
    created_at: now.toISOString(),
    join_method: join.method,
    token_name: join.tokenName,
    generation,
    last_key_id: keyId(keys.tls),
    last_renewed_at: now.toISOString(),
    expires_at: notAfter.toISOString(),
    remote_addr: join.remoteAddr,
    ...(join.boundPublicKey ? { bound_public_key: join.boundPublicKey } : {}),
  };
  const events = [
    event(EVENT.botJoin, now, {
      bot: bot.metadata.name,
      bot_instance_id: instanceId,
      join_method: join.method,
      token: tokenFingerprint(join.tokenName),
      remote_addr: join.remoteAddr,
    }),
    event(EVENT.certCreate, now, {
      bot: bot.metadata.name,
      bot_instance_id: instanceId,
      generation,
      renewable: true,
      serial,
      not_after: notAfter.toISOString(),
      reason: "join",
    }),
  ];
  return { instance, events, response: { bot_name: bot.metadata.name, bot_instance_id: instanceId, certs } };
}

/** Records a refused join and returns the error to throw. */
export async function joinFailed(
  ctx: AuthContext,
  err: AppError,
  fields: { reason: string; join_method: string; remote_addr: string; token?: string; bot?: string },
): Promise<AppError> {
  await ctx.audit.emit(EVENT.joinFailed, ctx.clock.now(), { ...fields, error: err.code });
  return err;
}

/** Joins with a one-time `token` join token: the token is consumed in the same write that creates the instance. */
export async function joinWithToken(ctx: AuthContext, req: JoinRequest, caller: Caller): Promise<JoinResponse> {
  const fp = tokenFingerprint(req.token_name);
  const fail = (err: AppError, reason: string, bot?: string) =>
    joinFailed(ctx, err, { reason, join_method: "token", remote_addr: caller.remoteAddr, token: fp, ...(bot ? { bot } : {}) });
  requestKeys(req); // a malformed key is the caller's error, found before the token is looked at
  const item = await ctx.backend.get<TokenResource>(KEYS.token(req.token_name));
  if (!item) throw await fail(accessDenied(GENERIC_TOKEN_ERROR), "token not found (never existed, deleted or already used)");
  const token = item.value;
  const botName = token.spec.bot_name;
  if (token.spec.join_method !== "token") {
    throw await fail(accessDenied(GENERIC_TOKEN_ERROR), `token is for join method ${token.spec.join_method}`, botName);
  }
  const now = ctx.clock.now();
  if (tokenExpired(token, now)) {
    throw await fail(
      expired(`The join token expired at ${token.metadata.expires}: ask an admin for a new one ("ctl bots add" or "ctl tokens add")`),
      `token expired at ${token.metadata.expires}`,
      botName,
    );
  }
  try {
    await checkLocks(ctx, [{ kind: "token", name: req.token_name }, { kind: "bot", name: botName }]);
  } catch (e) {
    throw await fail(e as AppError, "locked", botName);
  }
  const bot = await getBot(ctx.backend, botName);
  if (!bot) throw await fail(accessDenied(`The join token's bot "${botName}" no longer exists`), "bot not found", botName);
  const outcome = await startInstance(ctx, bot.value, req, { method: "token", tokenName: req.token_name, remoteAddr: caller.remoteAddr });
  const ops: ConditionalOp[] = [
    { key: item.key, condition: { kind: "revision", revision: item.revision }, action: { kind: "delete" } },
    { key: KEYS.instance(botName, outcome.instance.instance_id), condition: { kind: "notExists" }, action: { kind: "put", value: outcome.instance } },
  ];
  try {
    await ctx.backend.atomicWrite(ops, outcome.events);
  } catch (e) {
    if (isAppError(e, "COMPARE_FAILED")) throw await fail(accessDenied(GENERIC_TOKEN_ERROR), "token used concurrently by another join", botName);
    throw e;
  }
  ctx.audit.logged(outcome.events);
  return outcome.response;
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

/** Loads the caller's instance and bot, refusing locked, deleted or stale identities. */
async function authorizeBot(ctx: AuthContext, caller: BotCaller, retryKeyId?: string) {
  const who = requireRenewable(caller.identity);
  // the locks, the instance and the bot in one read: one query (one round trip on PostgreSQL) instead of four
  const [instanceLock, botLock, item, bot] = (await ctx.backend.getMany([
    KEYS.lock({ kind: "bot_instance", name: who.instance }),
    KEYS.lock({ kind: "bot", name: who.bot }),
    KEYS.instance(who.bot, who.instance),
    KEYS.bot(who.bot),
  ])) as [Item<LockRecord>?, Item<LockRecord>?, Item<BotInstanceRecord>?, Item<BotResource>?];
  const lock = instanceLock ?? botLock;
  if (lock) throw lockedError(lock.value);
  // NOT_FOUND, not ACCESS_DENIED: an agent that can rejoin (bound keypair, Kubernetes) does so
  if (!item) throw notFound(`Bot instance "${who.instance}" of bot "${who.bot}" is not known (deleted, or the database was restored from before it joined): join again`);
  if (!bot) throw accessDenied(`Bot "${who.bot}" no longer exists`);
  const gen = await checkGeneration(ctx, caller, item, who.generation, retryKeyId);
  return { who, item, bot: bot.value, gen };
}

/** What a renewal issued: the answer, and the identity its new certificate carries. */
export interface RenewResult {
  response: RenewResponse;
  identity: CertIdentity;
  notAfter: Date;
  /**
   * The answer repeats a renewal whose answer was lost (the previous certificate, the
   * same new key): it proves nothing new about the caller, so the connection that
   * carried it must keep speaking for the identity it presented.
   */
  retry: boolean;
}

/** Renews a bot's renewable identity, advancing its generation by one. */
export async function renew(ctx: AuthContext, req: RenewRequest, caller: BotCaller): Promise<RenewResult> {
  const keys = requestKeys(req);
  const newKeyId = keyId(keys.tls);
  const { who, item, bot, gen } = await authorizeBot(ctx, caller, newKeyId);
  const now = ctx.clock.now();
  const roles = await loadRoles(ctx, bot.spec.roles ?? []);
  const ttl = effectiveTtlMs(req.ttl_seconds, maxTtlMs(bot, roles));
  const generation = gen.generation + 1;
  const identity: CertIdentity = {
    ...caller.identity,
    roles: bot.spec.roles ?? [],
    logins: [],
    generation,
  };
  // A retry answers what the lost answer held (the key it certified, until its expiry), nothing more.
  const notAfter = gen.retry ? retryNotAfter(item.value, now) : new Date(now.getTime() + ttl);
  const { certs, serial } = await issueCerts(ctx.authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter, now });
  const record: BotInstanceRecord = {
    ...item.value,
    generation,
    last_key_id: newKeyId,
    last_renewed_at: now.toISOString(),
    expires_at: notAfter.toISOString(),
    remote_addr: caller.remoteAddr,
  };
  const ev = [
    event(EVENT.certCreate, now, {
      bot: who.bot,
      bot_instance_id: who.instance,
      generation,
      renewable: true,
      serial,
      not_after: notAfter.toISOString(),
      reason: gen.retry ? "renew-retry" : "renew",
      remote_addr: caller.remoteAddr,
    }),
  ];
  try {
    await ctx.backend.atomicWrite([{ key: item.key, condition: { kind: "revision", revision: item.revision }, action: { kind: "put", value: record } }], ev);
  } catch (e) {
    if (isAppError(e, "COMPARE_FAILED")) {
      throw accessDenied(`Bot instance "${who.instance}" was renewed by another request at the same time: retry with the newest identity`);
    }
    throw e;
  }
  ctx.audit.logged(ev);
  return { response: { certs, generation }, identity, notAfter, retry: gen.retry };
}

/** The expiry of the certificate a lost renewal answer carried: a retry never outlives it. */
function retryNotAfter(record: BotInstanceRecord, now: Date): Date {
  const at = record.expires_at ? new Date(record.expires_at) : undefined;
  if (!at || Number.isNaN(at.getTime()) || at.getTime() <= now.getTime()) {
    throw expired(`The renewal of bot instance "${record.instance_id}" that this request repeats expired: join again`);
  }
  return at;
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

/** The proxied Kubernetes clusters, as issuance sees them (KubernetesClusters in auth/kubernetes). */
export interface KubernetesLabels {
  /** Labels of `cluster` for a bot with `roles`: NOT_FOUND when it is not proxied, ACCESS_DENIED when no role reaches it. */
  labelsFor(cluster: string, roles: readonly RoleResource[], bot: string): Record<string, string>;
}

/** Issues non-renewable certificates for (a subset of) the bot's roles, for outputs. */
export async function botCerts(ctx: AuthContext, req: BotCertsRequest, caller: BotCaller, kubernetes?: KubernetesLabels): Promise<BotCertsResponse> {
  const keys = requestKeys(req);
  const { who, bot, gen } = await authorizeBot(ctx, caller);
  if (gen.retry) throw accessDenied("This identity was renewed since: use the newest renewable identity");
  const now = ctx.clock.now();
  const roleNames = checkRoleSubset(bot, req.roles);
  const roles = await loadRoles(ctx, roleNames);
  const cluster = req.kubernetes_cluster;
  const many = req.kubernetes_clusters;
  if (cluster !== undefined && many !== undefined) throw badParameter("A certificate request names kubernetes_cluster or kubernetes_clusters, not both");
  for (const c of [...(cluster === undefined ? [] : [cluster]), ...(many ?? [])]) {
    if (!kubernetes) throw notFound(`Kubernetes cluster "${c}" is not served by this auth service`);
  }
  const clusterLabels = cluster === undefined ? undefined : kubernetes!.labelsFor(cluster, roles, who.bot);
  for (const c of many ?? []) kubernetes!.labelsFor(c, roles, who.bot); // NOT_FOUND or ACCESS_DENIED before anything is signed
  // A multi-cluster certificate carries no Kubernetes users or groups: they differ per
  // cluster, and the proxy works them out from the current roles on each request anyway.
  const g = grants(bot, roles, clusterLabels);
  const clusters = many === undefined ? undefined : [...new Set(many)];
  // outputs never outlive the renewable identity that asked for them
  const cap = Math.min(maxTtlMs(bot, roles), caller.notAfter.getTime() - now.getTime());
  const ttl = effectiveTtlMs(req.ttl_seconds, cap);
  const identity: CertIdentity = {
    cluster: ctx.authorities.cluster,
    username: `bot-${who.bot}`,
    kind: "bot",
    botName: who.bot,
    botInstanceId: who.instance,
    renewable: false,
    roles: roleNames,
    logins: g.logins,
    ...(g.kubernetesUsers.length ? { kubernetesUsers: g.kubernetesUsers } : {}),
    ...(g.kubernetesGroups.length ? { kubernetesGroups: g.kubernetesGroups } : {}),
    ...(req.kubernetes_cluster ? { kubernetesCluster: req.kubernetes_cluster } : {}),
    ...(clusters ? { kubernetesClusters: clusters } : {}),
  };
  const notAfter = new Date(now.getTime() + ttl);
  const { certs, serial } = await issueCerts(ctx.authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter, now });
  await ctx.audit.emit(EVENT.certCreate, now, {
    bot: who.bot,
    bot_instance_id: who.instance,
    renewable: false,
    roles: roleNames,
    principals: g.logins,
    serial,
    not_after: notAfter.toISOString(),
    reason: "output",
    ...(req.kubernetes_cluster ? { kubernetes_cluster: req.kubernetes_cluster } : {}),
    ...(clusters ? { kubernetes_clusters: clusters } : {}),
  });
  return { certs };
}
