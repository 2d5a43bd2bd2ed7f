/**
 * What every join method shares: the refusal every method gives for a token that is not
 * one, the lock check, and starting the new bot instance (its first renewable identity,
 * the instance record, the bot.join and cert.create events). A refused join is audited
 * by joinFailed.
 */

import { randomUUID } from "node:crypto";
import { keyId, type CertIdentity } from "../../crypto/index.ts";
import type { AppError } from "../../lib/errors.ts";
import type { JoinResponse } from "../../protocol/index.ts";
import { tokenFingerprint, type BotResource } from "../../resources/index.ts";
import { effectiveTtlMs, maxTtlMs } from "../access.ts";
import { event, EVENT } from "../audit.ts";
import { loadRoles, lockedError } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import { issueCerts, requestKeys } from "../issuer.ts";
import { findLock, type BotInstanceRecord, type LockTarget } from "../keys.ts";
import type { StoredEvent } from "../storage/index.ts";

/**
 * What a refused join tells the caller when the token is unknown or is for another join
 * method: never whether it ever existed (a `token` token's name is its secret, so any
 * other answer for a wrong method would confirm a guessed secret).
 */
export const GENERIC_TOKEN_ERROR = "The join token is not valid: it does not exist or was already used; ask an admin for a new one (machine-id ctl bots add, or ctl tokens add)";

/** Refuses with LOCKED when a lock covers any of `targets`. */
export async function checkLocks(ctx: AuthContext, targets: LockTarget[]): Promise<void> {
  const lock = await findLock(ctx.backend, targets);
  if (lock) throw lockedError(lock);
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
