/**
 * The `token` join method: a one-time secret token, consumed in the same write that
 * creates the bot instance.
 */

import { accessDenied, expired } from "../../lib/errors.ts";
import { tokenExpired, type TokenResource } from "../../resources/index.ts";
import { KEYS } from "../keys.ts";
import { GENERIC_TOKEN_ERROR, refuse, unlockedBot, type JoinMethod } from "./instance.ts";

export const tokenJoin: JoinMethod = {
  name: "token",
  async verify(ctx, req, attempt) {
    const item = await ctx.backend.get<TokenResource>(KEYS.token(req.token_name));
    if (!item) throw refuse(accessDenied(GENERIC_TOKEN_ERROR), "token not found (never existed, deleted or already used)");
    const token = item.value;
    const botName = (attempt.bot = token.spec.bot_name);
    if (token.spec.join_method !== "token") throw refuse(accessDenied(GENERIC_TOKEN_ERROR), `token is for join method ${token.spec.join_method}`);
    if (tokenExpired(token, ctx.clock.now())) {
      throw refuse(
        expired(`The join token expired at ${token.metadata.expires}: ask an admin for a new one ("ctl bots add" or "ctl tokens add")`),
        `token expired at ${token.metadata.expires}`,
      );
    }
    return {
      bot: await unlockedBot(ctx, req.token_name, botName),
      tokenName: req.token_name,
      // the token is used up by this join: deleted only if no other join got it first
      complete: () => ({ ops: [{ key: item.key, condition: { kind: "revision", revision: item.revision }, action: { kind: "delete" } }] }),
      conflict: refuse(accessDenied(GENERIC_TOKEN_ERROR), "token used concurrently by another join"),
    };
  },
};
