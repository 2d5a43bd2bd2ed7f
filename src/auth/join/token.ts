/**
 * The `token` join method: a one-time secret token, consumed in the same write that
 * creates the bot instance.
 */

import { accessDenied, expired, isAppError, type AppError } from "../../lib/errors.ts";
import type { JoinRequest, JoinResponse } from "../../protocol/index.ts";
import { tokenExpired, tokenFingerprint, type TokenResource } from "../../resources/index.ts";
import type { Caller } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import { requestKeys } from "../issuer.ts";
import { KEYS, getBot } from "../keys.ts";
import type { ConditionalOp } from "../storage/index.ts";
import { GENERIC_TOKEN_ERROR, checkLocks, joinFailed, startInstance } from "./instance.ts";

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
