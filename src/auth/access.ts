/**
 * What a bot may get: the logins and Kubernetes users/groups its roles grant
 * (deny wins over allow, role templates expanded from the bot's traits), and how
 * long its certificates may live.
 */

import { parseDuration } from "../lib/duration.ts";
import { accessDenied } from "../lib/errors.ts";
import type { BotResource, RoleResource } from "../resources/index.ts";

/** No certificate outlives this, whatever a bot or role says. */
export const MAX_TTL_MS = 7 * 86_400_000;
/** A bot's certificates live at most this long unless its spec.max_session_ttl says otherwise. */
export const DEFAULT_BOT_MAX_TTL_MS = 12 * 3_600_000;
/** What an agent gets when it does not ask for a TTL. */
export const DEFAULT_TTL_MS = 3_600_000;

/** Traits of a bot as a name → values map. */
export function botTraits(bot: BotResource): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of bot.spec.traits ?? []) out[t.name] = [...(out[t.name] ?? []), ...t.values];
  return out;
}

const TEMPLATE = /^\{\{\s*(internal|external)\.([A-Za-z0-9_]+)\s*\}\}$/;

/** Expands `{{internal.logins}}`-style values from traits; other values pass through. */
export function expandTemplates(values: string[], traits: Record<string, string[]>): string[] {
  const out: string[] = [];
  for (const v of values) {
    const m = TEMPLATE.exec(v.trim());
    if (m) out.push(...(traits[m[2]!] ?? []));
    else if (!v.includes("{{")) out.push(v);
    // an unknown template expression grants nothing rather than a literal "{{…}}" login
  }
  return out;
}

function union(lists: string[][]): string[] {
  return [...new Set(lists.flat())].sort();
}

export interface Grants {
  logins: string[];
  kubernetesUsers: string[];
  kubernetesGroups: string[];
}

/** The logins and Kubernetes principals `roles` grant `bot`; deny rules remove from allow. */
export function grants(bot: BotResource, roles: RoleResource[]): Grants {
  const traits = botTraits(bot);
  const pick = (side: "allow" | "deny", field: "logins" | "kubernetes_users" | "kubernetes_groups") =>
    union(roles.map((r) => expandTemplates((r.spec[side]?.[field] as string[] | undefined) ?? [], traits)));
  const minus = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
  return {
    logins: minus(pick("allow", "logins"), pick("deny", "logins")),
    kubernetesUsers: minus(pick("allow", "kubernetes_users"), pick("deny", "kubernetes_users")),
    kubernetesGroups: minus(pick("allow", "kubernetes_groups"), pick("deny", "kubernetes_groups")),
  };
}

/** The longest TTL `bot` with `roles` may have: bot and role maxima, never above 7 days. */
export function maxTtlMs(bot: BotResource, roles: RoleResource[]): number {
  let max = bot.spec.max_session_ttl ? parseDuration(bot.spec.max_session_ttl) : DEFAULT_BOT_MAX_TTL_MS;
  for (const r of roles) {
    const m = r.spec.options?.max_session_ttl;
    if (m) max = Math.min(max, parseDuration(m));
  }
  return Math.min(max, MAX_TTL_MS);
}

/** The TTL to issue: what was asked (default 1h), capped at the maximum. */
export function effectiveTtlMs(requestedSeconds: number | undefined, maxMs: number): number {
  const asked = requestedSeconds === undefined ? DEFAULT_TTL_MS : requestedSeconds * 1000;
  return Math.min(asked, maxMs);
}

/** Checks that `requested` roles are a subset of the bot's roles. */
export function checkRoleSubset(bot: BotResource, requested: string[] | undefined): string[] {
  const all = bot.spec.roles ?? [];
  if (!requested || requested.length === 0) return all;
  const extra = requested.filter((r) => !all.includes(r));
  if (extra.length > 0) {
    throw accessDenied(`Bot "${bot.metadata.name}" does not hold role${extra.length > 1 ? "s" : ""} ${extra.map((r) => `"${r}"`).join(", ")}`);
  }
  return requested;
}
