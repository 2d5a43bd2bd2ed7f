/**
 * What the auth service grants a bot, in terms of the resources layer's access
 * rules: the logins and Kubernetes principals its roles give it (deny wins, role
 * templates expanded from the bot's traits), and how long its certificates may live.
 */

import { accessDenied } from "../lib/errors.ts";
import {
  botMaxTtlMs,
  botTraits,
  kubernetesPrincipals,
  roleLogins,
  roleMaxSessionTtlMs,
  type BotResource,
  type RoleResource,
} from "../resources/index.ts";

/** No certificate outlives this, whatever a bot or role says. */
export const MAX_TTL_MS = 7 * 86_400_000;
/** What an agent gets when it does not ask for a TTL. */
export const DEFAULT_TTL_MS = 3_600_000;

export interface Grants {
  logins: string[];
  kubernetesUsers: string[];
  kubernetesGroups: string[];
}

/**
 * The logins and Kubernetes principals `roles` grant `bot`. Kubernetes principals
 * come from roles whose kubernetes_labels match `clusterLabels`; without a cluster
 * there are none.
 */
export function grants(bot: BotResource, roles: RoleResource[], clusterLabels?: Record<string, string>): Grants {
  const traits = botTraits(bot);
  const kube = clusterLabels ? kubernetesPrincipals(roles, clusterLabels, traits) : { users: [], groups: [] };
  const sorted = (xs: string[]) => [...xs].sort();
  return { logins: sorted(roleLogins(roles, traits)), kubernetesUsers: sorted(kube.users), kubernetesGroups: sorted(kube.groups) };
}

/** The longest TTL `bot` with `roles` may have: bot and role maxima, never above 7 days. */
export function maxTtlMs(bot: BotResource, roles: RoleResource[]): number {
  return Math.min(botMaxTtlMs(bot), ...roles.map(roleMaxSessionTtlMs), MAX_TTL_MS);
}

/** The TTL to issue: what was asked (default 1h), capped at the maximum. */
export function effectiveTtlMs(requestedSeconds: number | undefined, maxMs: number): number {
  const asked = requestedSeconds === undefined ? DEFAULT_TTL_MS : requestedSeconds * 1000;
  return Math.min(asked, maxMs);
}

/** Checks that `requested` roles are a subset of the bot's roles; all of them when none are named. */
export function checkRoleSubset(bot: BotResource, requested: string[] | undefined): string[] {
  const all = bot.spec.roles;
  if (!requested || requested.length === 0) return all;
  const extra = requested.filter((r) => !all.includes(r));
  if (extra.length > 0) {
    throw accessDenied(`Bot "${bot.metadata.name}" does not hold role${extra.length > 1 ? "s" : ""} ${extra.map((r) => `"${r}"`).join(", ")}`);
  }
  return requested;
}
