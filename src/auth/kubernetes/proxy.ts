/**
 * The Kubernetes proxy of the auth service, served under `/v1/kubernetes/<cluster>/`
 * on its HTTPS listener: the client certificate says which bot calls and for which
 * cluster, the bot's roles decide the request, and an allowed request goes on to the
 * cluster's API server as the bot's Kubernetes user and groups (impersonation), with
 * the answer streamed back (lists and watches filtered to what the roles allow).
 * Every decision on an identified bot's request is audited as `kube.request`.
 */

import { Hono } from "hono";
import type { CertIdentity } from "../../crypto/index.ts";
import { AppError, accessDenied, errorMessage } from "../../lib/errors.ts";
import { ROUTES } from "../../protocol/index.ts";
import type { BotResource, RoleResource } from "../../resources/index.ts";
import { grants } from "../access.ts";
import { EVENT } from "../audit.ts";
import { loadRoles, loadUnlocked } from "../bots.ts";
import type { Authenticator } from "../authenticate.ts";
import type { AuthContext } from "../context.ts";
import type { Env } from "../request.ts";
import { allowObject, authorizeRequest } from "./_access.ts";
import { parseKubeApiRequest, type KubeApiRequest } from "./_apipath.ts";
import { filterListText, filterWatchStream } from "./_filter.ts";
import { statusOf, statusResponse } from "./_status.ts";
import { trackedStream } from "./_sessions.ts";
import { readCapped } from "../../lib/stream.ts";
import type { HeaderMap } from "./_upstream.ts";
import type { KubernetesClusters } from "./clusters.ts";

/** What the listener knows about the connection (the shape of the service's ConnInfo). */
export interface ProxyConn {
  remoteAddr: string;
  peerCertDer?: Uint8Array;
}

/** A list answer is read whole to be filtered; beyond this it is refused (page with `limit`). */
const MAX_LIST_BYTES = 64 << 20;

/**
 * The only client request headers forwarded: what content negotiation, bodies (a
 * patch's type says which patch it is) and a later protocol upgrade (exec, attach,
 * port-forward: SPDY's X-Stream-Protocol-Version, WebSocket's Sec-WebSocket-*) need.
 * Everything else stays behind: the caller's Authorization, Impersonate-* (replaced
 * by the proxy's own), X-Remote-* (which an API server with a request-header
 * authenticator would believe), Audit-ID, cookies. Upgrade and Connection are
 * hop-by-hop: an upgrade path sets them itself. Accept-Encoding is left out too:
 * lists and watches must come uncompressed to be filtered.
 */
const FORWARDED_REQUEST_HEADERS = new Set([
  "accept",
  "content-type",
  "content-encoding",
  "user-agent",
  "x-stream-protocol-version",
  "sec-websocket-protocol",
  "sec-websocket-version",
  "sec-websocket-key",
]);
const DROPPED_RESPONSE_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "trailer", "upgrade", "content-length", "set-cookie"]);

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

/**
 * The proxy as a Hono sub-app, mounted by app.ts under `/v1/kubernetes`: the app's one
 * client authentication (`authn`) sets the caller, and every refusal, its own
 * included, is answered as a Kubernetes Status. HEAD is the app's to answer (no body).
 * Connection upgrades (exec, attach, port-forward) take the listener's other path,
 * _upgrade.ts, which authenticates with the same `authn` (authenticateBot).
 */
export function kubernetesProxy(ctx: AuthContext, clusters: KubernetesClusters, authn: Authenticator): Hono<Env> {
  const app = new Hono<Env>();
  app.use(authn.middleware(NEEDS_CERTIFICATE));
  app.all("*", (c) => serve(ctx, clusters, c.req.raw, new URL(c.req.url), { remoteAddr: c.env.conn.remoteAddr }, botOf(c.var.caller.identity), c.var.body));
  app.onError((e, c) => {
    if (e instanceof AppError) return statusResponse(statusOf(e), e.message);
    ctx.log.error("Kubernetes proxy failed", { path: c.req.path, error: errorMessage(e), stack: (e as Error)?.stack });
    return statusResponse(500, "Internal error: the auth service logged the details");
  });
  return app;
}

const NEEDS_CERTIFICATE = "The Kubernetes proxy needs a client certificate: use the kubeconfig a machine-id kubernetes output writes";

/** The caller, authenticated as for the API (chain, validity, clientAuth, cluster), must be a bot. */
export async function authenticateBot(authn: Authenticator, conn: ProxyConn): Promise<CertIdentity> {
  return botOf((await authn.identify(conn, NEEDS_CERTIFICATE)).identity);
}

/** The proxy serves bots' kubernetes outputs: any other identity is refused. */
function botOf(id: CertIdentity): CertIdentity {
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

/** The object name in a create request's JSON body, if it has one. */
function nameInBody(body: Uint8Array | undefined): string | undefined {
  if (!body?.length) return undefined;
  try {
    const name = (JSON.parse(Buffer.from(body).toString("utf8")) as { metadata?: { name?: unknown } })?.metadata?.name;
    return typeof name === "string" && name !== "" ? name : undefined;
  } catch {
    return undefined;
  }
}

/** Prefers JSON: protobuf answers could not be filtered. */
function jsonAccept(accept: string | null): string {
  const kept = (accept ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "" && !s.includes("protobuf"));
  return kept.length > 0 ? kept.join(",") : "application/json";
}

function upstreamHeaders(req: Request, who: Principals, filtered: boolean): HeaderMap {
  const out: HeaderMap = {};
  req.headers.forEach((value, key) => {
    if (FORWARDED_REQUEST_HEADERS.has(key)) out[key] = value;
  });
  if (filtered) out.accept = jsonAccept(req.headers.get("accept"));
  out["impersonate-user"] = who.user;
  // one header line per group: the API server reads each line as one group
  if (who.groups.length > 0) out["impersonate-group"] = who.groups;
  return out;
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

async function serve(
  ctx: AuthContext,
  clusters: KubernetesClusters,
  req: Request,
  url: URL,
  conn: ProxyConn,
  id: CertIdentity,
  body: Uint8Array | undefined,
): Promise<Response> {
  const { cluster, apiPath } = splitProxyPath(url);
  const upstream = clusters.requireUpstream(cluster);

  const base = auditBase(id, cluster, req, conn);
  let api: KubeApiRequest | undefined;
  try {
    const { bot, roles } = await rolesOnCluster(ctx, id, cluster);
    api = parseKubeApiRequest(req.method, apiPath, url.searchParams);
    const labels = upstream.config.labels;
    const createName = api.type === "resource" && api.verb === "create" && api.name === undefined ? nameInBody(body) : undefined;
    const decision = authorizeRequest(roles, labels, api, createName);
    if (!decision.allowed) throw new Denied(403, `Access denied to Kubernetes cluster "${cluster}": ${decision.reason}`, decision.reason);
    const who = choosePrincipals(req, id, grants(bot, roles, labels), cluster);
    const streaming = api.type === "resource" && (api.verb === "exec" || api.verb === "portforward" || req.headers.has("upgrade"));
    // Upgrades reach _upgrade.ts from the listener; what is left here (h2, no Upgrade header) cannot be spliced.
    if (streaming) throw new Denied(400, "exec, attach and portforward need an HTTP/1.1 connection upgrade (WebSocket or SPDY): connect with HTTP/1.1", "streaming connection without an HTTP/1.1 upgrade");

    const allowed = { ...base, ...describe(api), allowed: true, reason: decision.reason, kubernetes_user: who.user, kubernetes_groups: who.groups };
    let res;
    try {
      res = await upstream.request({
        method: req.method,
        // the query as the proxy parsed it, re-encoded: the API server then parses what
        // was decided on (no raw `;` or stray `%` for Go's parser to read differently)
        path: api.path + forwardedQuery(url.searchParams),
        headers: upstreamHeaders(req, who, decision.filter),
        ...(body?.length ? { body } : {}),
        signal: req.signal,
      });
    } catch (e) {
      await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...allowed, status: 502, error: errorMessage(e) });
      throw e;
    }
    await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...allowed, status: res.status });
    const headers = new Headers();
    for (const [k, v] of Object.entries(res.headers)) {
      if (DROPPED_RESPONSE_HEADERS.has(k)) continue;
      for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
    }
    // Live answers (watches, logs -f) are registered so that a lock ends them (see _sessions.ts).
    const live = (body: ReadableStream<Uint8Array>) =>
      api!.verb === "watch" || url.searchParams.get("follow") === "true"
        ? trackedStream(clusters.sessions, { bot: id.botName!, ...(id.botInstanceId ? { instance: id.botInstanceId } : {}) }, body, (why, detail) => {
            void ctx.audit.emit(EVENT.kubeStreamEnd, ctx.clock.now(), { ...allowed, ended: why, ...(detail ? { detail } : {}) }).catch(() => {});
          })
        : body;
    const resource = api.type === "resource" ? api : undefined;
    if (!decision.filter || !resource || res.status < 200 || res.status >= 300) return new Response(live(res.body), { status: res.status, headers });
    const check = (o: { name: string; namespace?: string }) => allowObject(roles, labels, resource, o);
    if (resource.verb === "watch") return new Response(live(filterWatchStream(res.body, check)), { status: res.status, headers });
    const text = await readCapped(res.body, MAX_LIST_BYTES, `the list from Kubernetes cluster "${cluster}"`);
    return new Response(filterListText(text, check), { status: res.status, headers });
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...base, ...describe(api), ...(api ? {} : { path: apiPath }), allowed: false, reason: e.reason });
    return statusResponse(e.status, e.message);
  }
}
