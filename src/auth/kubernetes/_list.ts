/**
 * `GET /v1/bot/kubernetes-clusters`: the proxied clusters the calling bot's roles
 * reach, with their labels, so a kubernetes/v2 output can resolve its selectors. A
 * cluster no role reaches stays unnamed, as the proxy would refuse it anyway.
 */

import type { KubernetesClustersResponse } from "../../protocol/index.ts";
import { botAndRoles, type BotCaller } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import type { KubernetesClusters } from "./clusters.ts";

/** The clusters `caller`'s roles reach, sorted by name. */
export async function listKubernetesClusters(ctx: AuthContext, caller: BotCaller, clusters: KubernetesClusters): Promise<KubernetesClustersResponse> {
  const { roles } = await botAndRoles(ctx, caller);
  return { clusters: clusters.reachable(roles) };
}
