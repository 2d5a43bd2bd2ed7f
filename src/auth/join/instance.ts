/**
 * What every join method shares: the `JoinMethod` contract, the refusal a method throws
 * and its audit (`join.failed`), the answer for a token that is not one, the lock check,
 * and `startInstance`, which every join ends in: the new bot instance's first renewable
 * identity, written with whatever consumes the join's proof, and its audit events.
 */

import { randomUUID, type KeyObject } from "node:crypto";
import type { z } from "zod";
import { keyId, type CertIdentity } from "../../crypto/index.ts";
import { type AppError, accessDenied, expired, isAppError } from "../../lib/errors.ts";
import type { JoinRequest, JoinResponse, KeyRequest } from "../../protocol/index.ts";
import { tokenExpired, tokenFingerprint, type BotResource, type JoinMethod as JoinMethodName, type TokenResource } from "../../resources/index.ts";
import { effectiveTtlMs, maxTtlMs } from "../access.ts";
import { event, EVENT } from "../audit.ts";
import { loadRoles, lockedError, type Caller } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import { issueCerts, requestKeys } from "../issuer.ts";
import { KEYS, findLock, getBot, getToken, type BotInstanceRecord, type LockRecord, type LockTarget } from "../keys.ts";
import type { KubernetesClusters } from "../kubernetes/index.ts";
import type { AddressLimit, FailureLimiter } from "../ratelimit.ts";
import type { ConditionalOp, Item } from "../storage/index.ts";

/**
 * What a refused join tells the caller when the token is unknown or is for another join
 * method: never whether it ever existed (a `token` token's name is its secret, so any
 * other answer for a wrong method would confirm a guessed secret).
 */
export const GENERIC_TOKEN_ERROR = "The join token is not valid: it does not exist or was already used; ask an admin for a new one (machine-id ctl bots add, or ctl tokens add)";

/** Refuses (reason "locked") with LOCKED when a lock covers any of `targets`. */
export async function checkLocks(ctx: AuthContext, targets: LockTarget[]): Promise<void> {
  const lock = await findLock(ctx.backend, targets);
  if (lock) throw refuse(lockedError(lock), "locked");
}

/**
 * A refused join, as join methods throw it: the error the caller gets and the reason
 * the audit log records (`join.failed`), which may say more than the caller is told.
 * Any other error (a malformed request, storage down) reaches the caller unaudited.
 */
export class Refusal extends Error {
  constructor(
    readonly error: AppError,
    readonly reason: string,
  ) {
    super(error.message);
  }
}

/** A Refusal to throw. */
export const refuse = (error: AppError, reason: string) => new Refusal(error, reason);

/**
 * One join as it goes: the method, who calls, and what is known so far. A method sets
 * `tokenName` and `bot` as soon as it knows them, so the refusals from then on are
 * audited with them (the token only by its fingerprint: a `token` token's name is its
 * secret, and any name could be one).
 */
export interface JoinAttempt {
  readonly method: JoinMethodName;
  readonly caller: Caller;
  tokenName?: string;
  bot?: string;
}

/** What the join's write is, besides the new instance record, and what the answer carries besides the certificates. */
export interface JoinCompletion {
  /** Conditional writes committed in the same transaction as the instance (consume the token, mark an ID token used). */
  ops: ConditionalOp[];
  answer?: Pick<JoinResponse, "join_state">;
}

/** What a join method's check proved: which bot joins, with which token, and how the join completes. */
export interface Verified {
  bot: BotResource;
  /** The join token's name: recorded on the instance, audited by its fingerprint. */
  tokenName: string;
  /** Fields the bot.join event carries after the common ones (which job, which service account). */
  auditFields?: Record<string, unknown>;
  /** Recorded on the instance: the public key a bound keypair token is now bound to. */
  boundPublicKey?: string;
  /** The rest of the join, given the new instance (before anything is written); none when only the instance is written. */
  complete?(instance: BotInstanceRecord): Promise<JoinCompletion> | JoinCompletion;
  /** The refusal when a write of `complete` finds its condition broken: the proof was used by a concurrent join. */
  conflict?: Refusal;
}

/** What a join method may use besides the context: the Kubernetes clusters this service knows. */
export interface JoinDeps {
  kubernetes: KubernetesClusters;
}

/**
 * An extra route a join method serves besides `/v1/join` (bound keypair's begin and
 * solve). The app decodes the body with `schema`, naming it `what` in errors, and
 * answers with what `handle` returns as JSON.
 */
export interface JoinRoute<Req = unknown> {
  path: string;
  schema: z.ZodType<Req>;
  what: string;
  handle(ctx: AuthContext, req: Req, caller: Caller): Promise<object>;
}

/**
 * A join method, auth side. A method that joins in one request (`/v1/join`) has
 * `verify`: it checks the proof in `req` — the token, its expiry and locks, the
 * signature, the rules — and throws a Refusal when it does not hold; `joinWith` then
 * starts the instance. A method with more steps serves `routes` of its own whose last
 * step ends in `startInstance` too (bound keypair). Register it in join/index.ts.
 */
export interface JoinMethod {
  /** The join method's name, as in a token's spec.join_method and the join request (the protocol's JOIN_METHODS). */
  name: JoinMethodName;
  verify?(ctx: AuthContext, req: JoinRequest, attempt: JoinAttempt, deps: JoinDeps): Promise<Verified>;
  routes?: readonly JoinRoute[];
  /**
   * A limit per address of the method's own on its routes, beside the failed-join one
   * (ratelimit.ts); `limiter` replaces the method's default (tests set their own).
   */
  addressLimit?(ctx: AuthContext, limiter?: FailureLimiter): AddressLimit;
}

/** A JoinRoute typed by its schema, as the registry holds it (the app hands `handle` what `schema` decoded). */
export function joinRoute<Req>(route: JoinRoute<Req>): JoinRoute {
  return route;
}

/** Runs `join` for `attempt`, auditing a Refusal as `join.failed` and throwing its error. */
export async function audited<T>(ctx: AuthContext, attempt: JoinAttempt, join: () => Promise<T>): Promise<T> {
  try {
    return await join();
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    throw await joinFailed(ctx, e.error, {
      reason: e.reason,
      join_method: attempt.method,
      remote_addr: attempt.caller.remoteAddr,
      ...(attempt.tokenName !== undefined ? { token: tokenFingerprint(attempt.tokenName) } : {}),
      ...(attempt.bot ? { bot: attempt.bot } : {}),
    });
  }
}

/** A one-request join (`/v1/join`) by `method`: check the keys, `verify` the proof, start the instance. */
export async function joinWith(
  ctx: AuthContext,
  method: JoinMethodName,
  verify: NonNullable<JoinMethod["verify"]>,
  req: JoinRequest,
  caller: Caller,
  deps: JoinDeps,
): Promise<JoinResponse> {
  const attempt: JoinAttempt = { method, caller, tokenName: req.token_name };
  return audited(ctx, attempt, async () => {
    const keys = parseKeys(req); // a malformed key is the caller's error, found before the token is looked at
    return startInstance(ctx, attempt, keys, await verify(ctx, req, attempt, deps));
  });
}

/** The keys a join certifies and the TTL it asks for, parsed once. */
export interface JoinKeys {
  tls: KeyObject;
  ssh: KeyObject;
  ttlSeconds?: number | undefined;
}

/** Parses a join's key request (BAD_PARAMETER naming the field for a malformed key). */
export function parseKeys(req: KeyRequest): JoinKeys {
  return { ...requestKeys(req), ttlSeconds: req.ttl_seconds };
}

/**
 * Starts a new bot instance for a verified join: issues its first renewable identity,
 * then writes the instance record, `verified.complete`'s writes and the bot.join and
 * cert.create events in one transaction. A broken condition in that write is
 * `verified.conflict` when the method named one.
 */
export async function startInstance(ctx: AuthContext, attempt: JoinAttempt, keys: JoinKeys, verified: Verified): Promise<JoinResponse> {
  const { bot, tokenName } = verified;
  const now = ctx.clock.now();
  const roles = await loadRoles(ctx, bot.spec.roles ?? []);
  const ttl = effectiveTtlMs(keys.ttlSeconds, maxTtlMs(bot, roles));
  const instanceId = randomUUID();
  const generation = 1;
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
    joinMethod: attempt.method,
  };
  const notAfter = new Date(now.getTime() + ttl);
  const { certs, serial } = await issueCerts(ctx.authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter, now });
  const instance: BotInstanceRecord = {
    bot_name: bot.metadata.name,
    instance_id: instanceId,
    created_at: now.toISOString(),
    join_method: attempt.method,
    token_name: tokenName,
    generation,
    last_key_id: keyId(keys.tls),
    last_renewed_at: now.toISOString(),
    expires_at: notAfter.toISOString(),
    remote_addr: attempt.caller.remoteAddr,
    ...(verified.boundPublicKey ? { bound_public_key: verified.boundPublicKey } : {}),
  };
  const events = [
    event(EVENT.botJoin, now, {
      bot: bot.metadata.name,
      bot_instance_id: instanceId,
      join_method: attempt.method,
      token: tokenFingerprint(tokenName),
      remote_addr: attempt.caller.remoteAddr,
      ...verified.auditFields,
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
  const completion = (await verified.complete?.(instance)) ?? { ops: [] };
  const ops: ConditionalOp[] = [
    ...completion.ops,
    { key: KEYS.instance(bot.metadata.name, instanceId), condition: { kind: "notExists" }, action: { kind: "put", value: instance } },
  ];
  try {
    await ctx.backend.atomicWrite(ops, events);
  } catch (e) {
    if (verified.conflict && isAppError(e, "COMPARE_FAILED")) throw verified.conflict;
    throw e;
  }
  ctx.audit.logged(events);
  return { bot_name: bot.metadata.name, bot_instance_id: instanceId, certs, ...completion.answer };
}

/**
 * The bot a join token names, with the lock check, in one read: refused (reason
 * "locked") when a lock covers the token or the bot, then when the bot no longer exists.
 */
export async function unlockedBot(ctx: AuthContext, tokenName: string, botName: string): Promise<BotResource> {
  return checkUnlockedBot(await ctx.backend.getMany(unlockedBotKeys(tokenName, botName)), botName);
}

/** The keys unlockedBot reads, for a caller that reads them with others. */
export function unlockedBotKeys(tokenName: string, botName: string): string[] {
  return [KEYS.lock({ kind: "token", name: tokenName }), KEYS.lock({ kind: "bot", name: botName }), KEYS.bot(botName)];
}

/** unlockedBot's checks over the items read at unlockedBotKeys, in their order. */
export function checkUnlockedBot(items: readonly (Item<unknown> | undefined)[], botName: string): BotResource {
  const [tokenLock, botLock, bot] = items;
  const lock = (tokenLock ?? botLock)?.value as LockRecord | undefined;
  if (lock) throw refuse(lockedError(lock), "locked");
  if (!bot) throw refuse(accessDenied(`The join token's bot "${botName}" no longer exists`), "bot not found");
  return bot.value as BotResource;
}

/** The bot a join token names; refused when it no longer exists. */
export async function joiningBot(ctx: AuthContext, botName: string): Promise<BotResource> {
  const bot = await getBot(ctx.backend, botName);
  if (!bot) throw refuse(accessDenied(`The join token's bot "${botName}" no longer exists`), "bot not found");
  return bot.value;
}

/**
 * The token of a join method whose tokens are sets of rules, never consumed (kubernetes,
 * the CI joins): refused when there is no token of `attempt.method` by that name, or it
 * expired, or a lock covers it or its bot.
 */
export async function ruleToken(ctx: AuthContext, req: JoinRequest, attempt: JoinAttempt): Promise<TokenResource> {
  const item = await getToken(ctx.backend, req.token_name);
  const token = item?.value.spec.join_method === attempt.method ? item.value : undefined;
  if (!token) {
    throw refuse(accessDenied(`There is no ${attempt.method} join token by this name`), item ? `token is for join method ${item.value.spec.join_method}` : "token not found");
  }
  attempt.bot = token.spec.bot_name;
  if (tokenExpired(token, ctx.clock.now())) {
    throw refuse(expired(`The join token "${req.token_name}" expired at ${token.metadata.expires}`), `token expired at ${token.metadata.expires}`);
  }
  await checkLocks(ctx, [{ kind: "token", name: req.token_name }, { kind: "bot", name: token.spec.bot_name }]);
  return token;
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
