/**
 * Renewal: a bot's renewable identity for a new key, its generation advanced by one, in
 * one compare-and-swap on the instance record (a renewal whose answer was lost is
 * answered again, never twice advanced).
 */

import { keyId, type CertIdentity } from "../crypto/index.ts";
import { accessDenied, expired, isAppError } from "../lib/errors.ts";
import type { RenewRequest, RenewResponse } from "../protocol/index.ts";
import { effectiveTtlMs, maxTtlMs } from "./access.ts";
import { event, EVENT } from "./audit.ts";
import { authorizeBot, loadRoles, type BotCaller } from "./bots.ts";
import type { AuthContext } from "./context.ts";
import { issueCerts, requestKeys } from "./issuer.ts";
import type { BotInstanceRecord } from "./keys.ts";

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
      reason: gen.retry ? "renew_retry" : "renew",
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
