/**
 * The `bot` kind (v1): a machine identity with roles and traits, whose certificates
 * never outlive `max_session_ttl`.
 */

import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { parseDuration } from "../lib/duration.ts";
import { durationString, resourceName } from "./_fields.ts";
import { metadataSchema } from "./_metadata.ts";

export const BOT_VERSIONS = ["v1"] as const;

/** No bot certificate may live longer than this, whatever the bot asks for. */
export const BOT_MAX_TTL_CAP_MS = 7 * 24 * 3_600_000;

/** A bot's `max_session_ttl` when none is given (Teleport's default for bots). */
export const DEFAULT_BOT_MAX_SESSION_TTL = "12h";

const trait = lazy(() => z.strictObject({
  name: z.string().min(1),
  values: z.array(z.string()).default([]),
}));

/** The bot schema, with defaults. */
export const botSchema = lazy(() => z.strictObject({
  kind: z.literal("bot"),
  version: z.enum(BOT_VERSIONS),
  metadata: metadataSchema(),
  spec: z.strictObject({
    /** Roles granted to the bot; may be empty (a bot that can only renew itself). */
    roles: z.array(resourceName()).default([]),
    /** Values roles can refer to as `{{internal.<name>}}`. */
    traits: z.array(trait).default([]),
    max_session_ttl: durationString({ positive: true, maxMs: BOT_MAX_TTL_CAP_MS }).default(DEFAULT_BOT_MAX_SESSION_TTL),
  }),
}));

/** A validated bot with its defaults applied. */
export type BotResource = z.output<typeof botSchema>;
/** One bot trait: a name and its values. */
export type BotTrait = z.output<typeof trait>;

/** The bot's `max_session_ttl` in milliseconds. */
export function botMaxTtlMs(bot: BotResource): number {
  return parseDuration(bot.spec.max_session_ttl);
}

/** The bot's traits as a map, the form role templates are expanded with. */
export function botTraits(bot: BotResource): Record<string, string[]> {
  // No prototype: a trait named "__proto__" or "constructor" is just a trait.
  const out: Record<string, string[]> = Object.create(null);
  for (const t of bot.spec.traits) (out[t.name] ??= []).push(...t.values);
  return out;
}
