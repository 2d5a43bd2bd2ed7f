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
import { AppError, errorMessage } from "../../lib/errors.ts";
import { ROUTES } from "../../protocol/index.ts";
import { grants } from "../access.ts";
import { EVENT } from "../audit.ts";
import type { Authenticator } from "../authenticate.ts";
import type { AuthContext } from "../context.ts";
import type { Env } from "../request.ts";
import { allowObject, authorizeRequest } from "./_access.ts";
import { Denied, NEEDS_CERTIFICATE, auditBase, botOf, choosePrincipals, describe, forwardedQuery, rolesOnCluster, splitProxyPath, type Principals, type ProxyConn } from "./_caller.ts";
import { parseKubeApiRequest, type KubeApiRequest } from "./_apipath.ts";
import { filterListText, filterWatchStream } from "./_filter.ts";
import { statusOf, statusResponse } from "./_status.ts";
import { trackedStream } from "./_sessions.ts";
import { readCapped } from "../../lib/stream.ts";
import type { HeaderMap } from "./_upstream.ts";
import type { KubernetesClusters } from "./clusters.ts";

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
    // Live answers (watches, logs -f) are registered so that a lock or a reload of the cluster ends them (see _sessions.ts).
    const ended = (why: string, detail?: string) => {
      void ctx.audit.emit(EVENT.kubeStreamEnd, ctx.clock.now(), { ...allowed, ended: why, ...(detail ? { detail } : {}) }).catch(() => {});
    };
    const live = (body: ReadableStream<Uint8Array>) => {
      if (api!.verb !== "watch" && url.searchParams.get("follow") !== "true") return body;
      // A reload while upstream answered could not end this stream yet: it ends here.
      if (!clusters.isCurrent(cluster, upstream)) {
        void body.cancel().catch(() => {});
        const removed = !clusters.names().includes(cluster);
        ended(removed ? "cluster_removed" : "cluster_changed", `kubernetes_clusters "${cluster}" was ${removed ? "removed from" : "changed in"} the auth config`);
        return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
      }
      return trackedStream(clusters.sessions, { bot: id.botName!, ...(id.botInstanceId ? { instance: id.botInstanceId } : {}), cluster }, body, ended);
    };
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
