/**
 * The bot's own identity: storage, trust bootstrap, join methods, renewal.
 */

export { Bot, AGENT_KEY_ALGORITHM, type BotOptions, type BotSettings, type RefreshOutcome } from "./bot.ts";
export { BotStore } from "./store.ts";
export { registerJoinMethod, joinMethod, tokenJoin, type JoinContext, type JoinMethod } from "./join.ts";
export { resolveTrust, type TrustSettings } from "./trust.ts";
export { makeIdentity, encodeIdentity, decodeIdentity, identityTLS, publicKeys, type BotIdentity } from "./identity.ts";
