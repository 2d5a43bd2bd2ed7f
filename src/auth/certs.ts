/**
 * Output certificates: non-renewable certificates for (a subset of) a bot's roles, never
 * outliving the renewable identity that asks for them.
 */

import type { CertIdentity } from "../crypto/index.ts";
import { accessDenied, badParameter, notFound } from "../lib/errors.ts";
import type { BotCertsRequest, BotCertsResponse } from "../protocol/index.ts";
import type { RoleResource } from "../resources/index.ts";
import { checkRoleSubset, effectiveTtlMs, grants, maxTtlMs } from "./access.ts";
import { EVENT } from "./audit.ts";
import { authorizeBot, loadRoles, type BotCaller } from "./bots.ts";
import type { AuthContext } from "./context.ts";
import { issueCerts, requestKeys } from "./issuer.ts";

/** The proxied Kubernetes clusters, as issuance sees them (KubernetesClusters in auth/kubernetes). */
export interface KubernetesLabels {
  /** Labels of `cluster` for a bot with `roles`: NOT_FOUND when it is not proxied, ACCESS_DENIED when no role reaches it. */
  labelsFor(cluster: string, roles: readonly RoleResource[], bot: string): Record<string, string>;
}

/** Issues non-renewable certificates for (a subset of) the bot's roles, for outputs. */
export async function botCerts(ctx: AuthContext, req: BotCertsRequest, caller: BotCaller, kubernetes?: KubernetesLabels): Promise<BotCertsResponse> {
  const keys = requestKeys(req);
  const { who, bot, gen } = await authorizeBot(ctx, caller);
  if (gen.retry) throw accessDenied("This identity was renewed since: use the newest renewable identity");
  const now = ctx.clock.now();
  const roleNames = checkRoleSubset(bot, req.roles);
  const roles = await loadRoles(ctx, roleNames);
  const cluster = req.kubernetes_cluster;
  const many = req.kubernetes_clusters;
  if (cluster !== undefined && many !== undefined) throw badParameter("A certificate request names kubernetes_cluster or kubernetes_clusters, not both");
  for (const c of [...(cluster === undefined ? [] : [cluster]), ...(many ?? [])]) {
    if (!kubernetes) throw notFound(`Kubernetes cluster "${c}" is not served by this auth service`);
  }
  const clusterLabels = cluster === undefined ? undefined : kubernetes!.labelsFor(cluster, roles, who.bot);
  for (const c of many ?? []) kubernetes!.labelsFor(c, roles, who.bot); // NOT_FOUND or ACCESS_DENIED before anything is signed
  // A multi-cluster certificate carries no Kubernetes users or groups: they differ per
  // cluster, and the proxy works them out from the current roles on each request anyway.
  const g = grants(bot, roles, clusterLabels);
  const clusters = many === undefined ? undefined : [...new Set(many)];
  // outputs never outlive the renewable identity that asked for them
  const cap = Math.min(maxTtlMs(bot, roles), caller.notAfter.getTime() - now.getTime());
  const ttl = effectiveTtlMs(req.ttl_seconds, cap);
  const identity: CertIdentity = {
    cluster: ctx.authorities.cluster,
    username: `bot-${who.bot}`,
    kind: "bot",
    botName: who.bot,
    botInstanceId: who.instance,
    renewable: false,
    roles: roleNames,
    logins: g.logins,
    ...(g.kubernetesUsers.length ? { kubernetesUsers: g.kubernetesUsers } : {}),
    ...(g.kubernetesGroups.length ? { kubernetesGroups: g.kubernetesGroups } : {}),
    ...(req.kubernetes_cluster ? { kubernetesCluster: req.kubernetes_cluster } : {}),
    ...(clusters ? { kubernetesClusters: clusters } : {}),
  };
  const notAfter = new Date(now.getTime() + ttl);
  const { certs, serial } = await issueCerts(ctx.authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter, now });
  await ctx.audit.emit(EVENT.certCreate, now, {
    bot: who.bot,
    bot_instance_id: who.instance,
    renewable: false,
    roles: roleNames,
    principals: g.logins,
    serial,
    not_after: notAfter.toISOString(),
    reason: "output",
    ...(req.kubernetes_cluster ? { kubernetes_cluster: req.kubernetes_cluster } : {}),
    ...(clusters ? { kubernetes_clusters: clusters } : {}),
  });
  return { certs };
}
