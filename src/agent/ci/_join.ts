/**
 * What the CI join methods share on the agent side: send the ID token the platform
 * gave the job, with the name of the join token whose rules it must meet.
 */

import { AppError } from "../../lib/errors.ts";
import type { JoinResponse } from "../../protocol/index.ts";
import type { CiJoinMethod } from "../../resources/index.ts";
import { publicKeys, type JoinContext } from "../bot/index.ts";

/** The join token's name from onboarding.token; BAD_PARAMETER naming the method when absent. */
export function ciTokenName(ctx: JoinContext, method: string): string {
  const name = ctx.onboarding.token;
  if (!name) throw new AppError("BAD_PARAMETER", `Join method "${method}" needs the name of a ${method} join token: set onboarding.token or pass --token`);
  return name;
}

/** Joins with `idToken` for join token `tokenName`. */
export function joinWithIdToken(ctx: JoinContext, method: CiJoinMethod, tokenName: string, idToken: string): Promise<JoinResponse> {
  ctx.log.debug("Joining with a CI ID token", { join_method: method, token_name: tokenName });
  return ctx.client.join({ join_method: method, token_name: tokenName, id_token: idToken, ttl_seconds: ctx.ttlSeconds, ...publicKeys(ctx.key) });
}
