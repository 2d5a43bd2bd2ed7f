/**
 * Who calls the Kubernetes proxy and as whom the request goes on, for both of its
 * paths: the Hono sub-app (proxy.ts) and connection upgrades (_upgrade.ts). The
 * caller must be a bot whose certificate names the cluster and a live, unlocked
 * instance; its current roles pick the Kubernetes user and groups; every decision is
 * audited with the same base fields.
 */

import type { CertIdentity } from "../../crypto/index.ts";
import { AppError, accessDenied } from "../../lib/errors.ts";
import { ROUTES } from "../../protocol/index.ts";
import type { BotResource, RoleResource } from "../../resources/index.ts";
import { loadRoles, loadUnlocked } from "../bots.ts";
import type { Authenticator } from "../authenticate.ts";
import type { AuthContext } from "../context.ts";
import type { KubeApiRequest } from "./_apipath.ts";

/** What the listener knows about the connection (the shape of the service's ConnInfo). */
export interface ProxyConn {
  remoteAddr: string;
  peerCertDer?: Uint8Array;
}

/** The Kubernetes users and groups a request is forwarded as. */
export interface Principals {
  user: string;
  groups: string[];
}

/** A refusal of an identified bot's request: audited, then answered as a Status. */
export class Denied extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

export const NEEDS_CERTIFICATE = "The Kubernetes proxy needs a client certificate: use the kubeconfig a machine-id kubernetes output writes";

/** The caller, authenticated as for the API (chain, validity, clientAuth, cluster), must be a bot. */
export async function authenticateBot(authn: Authenticator, conn: ProxyConn): Promise<CertIdentity> {
  return botOf((await authn.identify(conn, NEEDS_CERTIFICATE)).identity);
}

/** The proxy serves bots' kubernetes outputs: any other identity is refused. */
export function botOf(id: CertIdentity): CertIdentity {
  if (id.kind !== "bot" || !id.botName) throw accessDenied(`"${id.username}" is not a bot: the Kubernetes proxy serves bots' kubernetes outputs`);
  return id;
}

/**
 * The roles the certificate names that the bot still holds, loaded now: a role edit
 * applies at once. As for a renewal, the certificate's bot instance must still be
 * stored: deleting a bot deletes its instances, so an output certificate of a deleted
 * bot stays refused when a bot of the same name is created again.
 */
async function currentRoles(ctx: AuthContext, id: CertIdentity): Promise<{ roles: RoleResource[]; bot: BotResource }> {
  if (!id.botInstanceId) throw accessDenied("The client certificate names no bot instance: use the kubeconfig a machine-id kubernetes output writes");
  const { item: instance, bot } = await loadUnlocked(ctx, id.botName!, id.botInstanceId);
  if (!bot) throw accessDenied(`Bot "${id.botName}" no longer exists`);
  if (!instance) throw accessDenied(`Bot instance "${id.botInstanceId}" of bot "${id.botName}" no longer exists: the certificate was issued to a deleted instance`);
  const held = new Set(bot.value.spec.roles);
  return { bot: bot.value, roles: await loadRoles(ctx, id.roles.filter((r) => held.has(r))) };
}

/** Header values the client sent, split the way the API server reads repeated headers. */
function headerList(req: Request, name: string): string[] {
  const v = req.headers.get(name);
  return v === null ? [] : v.split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * The user and groups to impersonate: what the roles grant on this cluster, narrowed by
 * the client's own `Impersonate-User`/`Impersonate-Group` (kubectl --as/--as-group) when
 * it sends them. Roles that grant groups but no user act as the bot's own user name.
 */
export function choosePrincipals(req: Request, id: CertIdentity, granted: { kubernetesUsers: string[]; kubernetesGroups: string[] }, cluster: string): Principals {
  for (const h of req.headers.keys()) {
    if (h === "impersonate-uid" || h.startsWith("impersonate-extra-")) {
      throw new Denied(403, `The Kubernetes proxy does not forward the "${h}" header`, `client sent ${h}`);
    }
  }
  const users = granted.kubernetesUsers;
  const groups = granted.kubernetesGroups;
  if (users.length === 0 && groups.length === 0) {
    throw new Denied(403, `The bot's roles grant no kubernetes_users or kubernetes_groups on Kubernetes cluster "${cluster}"`, "no Kubernetes principals");
  }
  const candidates = users.length > 0 ? users : [id.username];
  const asUser = req.headers.get("impersonate-user") ?? undefined;
  if (asUser !== undefined && !candidates.includes(asUser)) {
    throw new Denied(403, `The bot may not act as Kubernetes user "${asUser}": its roles allow ${candidates.map((u) => `"${u}"`).join(", ")}`, `user ${asUser} not granted`);
  }
  if (asUser === undefined && candidates.length > 1) {
    throw new Denied(
      403,
      `The bot's roles grant several Kubernetes users (${candidates.map((u) => `"${u}"`).join(", ")}): choose one with kubectl --as`,
      "several Kubernetes users and none chosen",
    );
  }
  const asGroups = headerList(req, "impersonate-group");
  const extra = asGroups.filter((g) => !groups.includes(g));
  if (extra.length > 0) {
    throw new Denied(403, `The bot may not act as Kubernetes group "${extra[0]}": its roles allow ${groups.map((g) => `"${g}"`).join(", ") || "none"}`, `group ${extra[0]} not granted`);
  }
  return { user: asUser ?? candidates[0]!, groups: asGroups.length > 0 ? asGroups : groups };
}

/** The query as forwarded upstream: what was parsed, serialized again. */
export function forwardedQuery(query: URLSearchParams): string {
  const q = query.toString();
  return q === "" ? "" : `?${q}`;
}

export function describe(api: KubeApiRequest | undefined): Record<string, unknown> {
  if (!api) return {};
  if (api.type === "nonresource") return { verb: api.verb, path: api.path };
  return {
    verb: api.verb,
    path: api.path,
    kind: api.kind,
    resource: api.apiGroup ? `${api.resource}.${api.apiGroup}` : api.resource,
    ...(api.subresource ? { subresource: api.subresource } : {}),
    ...(api.namespace !== undefined ? { namespace: api.namespace } : {}),
    ...(api.name !== undefined ? { name: api.name } : {}),
  };
}

/** The fields every `kube.request` event of an identified bot carries. */
export function auditBase(id: CertIdentity, cluster: string, req: Request, conn: ProxyConn) {
  return {
    bot: id.botName,
    ...(id.botInstanceId ? { bot_instance_id: id.botInstanceId } : {}),
    kubernetes_cluster: cluster,
    method: req.method,
    remote_addr: conn.remoteAddr,
  };
}

/** The bot's current roles for a request on `cluster`: refused (Denied) for a certificate of another cluster, a lock, a deleted bot. */
export async function rolesOnCluster(ctx: AuthContext, id: CertIdentity, cluster: string): Promise<{ roles: RoleResource[]; bot: BotResource }> {
  // A certificate opens only the clusters it was issued for: one (a kubernetes output) or a list (kubernetes/v2).
  const issuedFor = id.kubernetesClusters ?? (id.kubernetesCluster ? [id.kubernetesCluster] : []);
  if (!issuedFor.includes(cluster)) {
    const issued =
      issuedFor.length === 0 ? "no Kubernetes cluster" : issuedFor.length === 1 ? `Kubernetes cluster "${issuedFor[0]}"` : `Kubernetes clusters ${issuedFor.map((c) => `"${c}"`).join(", ")}`;
    throw new Denied(403, `The client certificate was issued for ${issued}, not "${cluster}"`, `certificate is for ${issued}`);
  }
  return currentRoles(ctx, id).catch((e: unknown) => {
    throw e instanceof AppError ? new Denied(403, e.message, e.code === "LOCKED" ? "locked" : e.message) : e;
  });
}

/** The cluster name and the API path of a proxy URL (`/v1/kubernetes/<cluster>/<api path>`). */
export function splitProxyPath(url: URL): { cluster: string; apiPath: string } {
  const rest = url.pathname.slice(ROUTES.kubernetes.length);
  const slash = rest.indexOf("/");
  try {
    return { cluster: decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash)), apiPath: slash < 0 ? "/" : rest.slice(slash) };
  } catch {
    throw new AppError("BAD_PARAMETER", "The Kubernetes cluster name in the path is not valid percent-encoding");
  }
}
