/**
 * Connection upgrades through the Kubernetes proxy: `exec`, `attach` (WebSocket
 * `v5.channel.k8s.io`/`v4.channel.k8s.io`, or legacy SPDY) and `portforward` (WebSocket-
 * tunnelled `SPDY/3.1+portforward.k8s.io`, or legacy SPDY). The request is authorized
 * like any other proxied request (proxy.ts), sent to the API server on a connection of
 * its own as the bot's Kubernetes user and groups, and once the API server answers
 * `101 Switching Protocols` the two sockets are spliced byte for byte: the proxy never
 * alters the framing, so every protocol kubectl speaks passes. Of a port-forward it reads
 * copies of the client's bytes, for the audit of the ports it forwards
 * (_portforward_observer.ts).
 */

import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { AppError, errorMessage } from "../../lib/errors.ts";
import { ROUTES } from "../../protocol/index.ts";
import { grants } from "../access.ts";
import { EVENT } from "../audit.ts";
import type { Authenticator } from "../authenticate.ts";
import type { AuthContext } from "../context.ts";
import { authorizeRequest } from "./_access.ts";
import { parseKubeApiRequest, type KubeApiRequest } from "./_apipath.ts";
import { PortForwardObserver, urlPorts, type PortForwardFraming, type PortsSeen } from "./_portforward_observer.ts";
import { SessionLimitReached, type SessionOwner, type SessionSlot } from "./_sessions.ts";
import { statusOf, statusResponse } from "./_status.ts";
import type { KubernetesClusters } from "./clusters.ts";
import { Denied, auditBase, authenticateBot, choosePrincipals, describe, forwardedQuery, rolesOnCluster, splitProxyPath, type Principals, type ProxyConn } from "./_caller.ts";

/** Subresources served as upgrades. */
const UPGRADABLE = new Set(["exec", "attach", "portforward"]);

/**
 * Header lines of the client's request that go on to the API server: what the
 * upgrade handshakes need, nothing else. An allowlist, because a request that becomes
 * a raw stream cannot be looked at again afterwards; the client's own credentials and
 * impersonation headers never pass (the service sets its own).
 */
const FORWARDED = new Set([
  "connection",
  "upgrade",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  // legacy SPDY negotiates its subprotocol with one line per offered version
  "x-stream-protocol-version",
  "user-agent",
  "accept",
  "content-type",
  "kubectl-command",
  "kubectl-session",
]);

/** Response heads larger than this are not an API server's. */
const MAX_HEAD_BYTES = 64 << 10;
/** How long the API server has to answer the upgrade request. */
const ANSWER_TIMEOUT_MS = 30_000;
/** After one side of a session closed, how long the other has to flush what is in flight. */
const LINGER_MS = 10_000;

/** The listener's upgrade hook for the proxy: false for paths outside `/v1/kubernetes/`. */
export function kubernetesUpgrade(
  ctx: AuthContext,
  clusters: KubernetesClusters,
  authn: Authenticator,
): (req: Request, rawHeaders: string[], conn: ProxyConn, client: Socket, head: Uint8Array) => Promise<boolean> {
  return async (req, rawHeaders, conn, client, head) => {
    const url = new URL(req.url);
    if (!url.pathname.startsWith(ROUTES.kubernetes)) return false;
    try {
      await serveUpgrade(ctx, clusters, authn, { req, url, rawHeaders, conn, client, head });
    } catch (e) {
      if (e instanceof AppError) await answer(client, statusResponse(statusOf(e), e.message));
      else {
        ctx.log.error("Kubernetes proxy failed on an upgrade", { path: url.pathname, error: errorMessage(e), stack: (e as Error)?.stack });
        await answer(client, statusResponse(500, "Internal error: the auth service logged the details"));
      }
    }
    return true;
  };
}

interface UpgradeRequest {
  req: Request;
  url: URL;
  rawHeaders: string[];
  conn: ProxyConn;
  client: Socket;
  head: Uint8Array;
}

/** Writes `res` on the raw socket as an HTTP/1.1 answer and closes the connection. */
async function answer(sock: Socket, res: Response): Promise<void> {
  const body = Buffer.from(await res.arrayBuffer());
  const lines = [`HTTP/1.1 ${res.status} ${STATUS_CODES[res.status] ?? "Error"}`];
  res.headers.forEach((v, k) => lines.push(`${k}: ${v}`));
  lines.push(`content-length: ${body.length}`, "connection: close", "", "");
  if (!sock.destroyed) sock.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
}

async function serveUpgrade(ctx: AuthContext, clusters: KubernetesClusters, authn: Authenticator, u: UpgradeRequest): Promise<void> {
  const { req, url, conn, client } = u;
  // A socket error is followed by its close, which is what ends a session (splice() sees
  // a socket closed before it started too); until then, an error must not go unheard.
  client.on("error", () => {});
  const { cluster, apiPath } = splitProxyPath(url);
  const upstream = clusters.requireUpstream(cluster);
  const id = await authenticateBot(authn, conn);
  const base = auditBase(id, cluster, req, conn);
  let api: KubeApiRequest | undefined;
  let who: Principals;
  let reason: string;
  // The session's end, once it is spliced; a lock that lands before that ends it at the start.
  let stop: ((why: string, detail?: string) => void) | undefined;
  let stoppedEarly: [string, string | undefined] | undefined;
  let slot: SessionSlot | undefined;
  try {
    const { bot, roles } = await rolesOnCluster(ctx, id, cluster);
    api = parseKubeApiRequest(req.method, apiPath, url.searchParams);
    if (api.type !== "resource" || !UPGRADABLE.has(api.subresource ?? "")) {
      throw new Denied(400, "Only exec, attach and portforward are served as connection upgrades", "upgrade of another request");
    }
    const labels = upstream.config.labels;
    const decision = authorizeRequest(roles, labels, api, undefined);
    if (!decision.allowed) throw new Denied(403, `Access denied to Kubernetes cluster "${cluster}": ${decision.reason}`, decision.reason);
    reason = decision.reason;
    who = choosePrincipals(req, id, grants(bot, roles, labels), cluster);
    slot = openSlot(clusters, { bot: id.botName!, ...(id.botInstanceId ? { instance: id.botInstanceId } : {}), cluster }, (why, detail) => {
      if (stop) stop(why, detail);
      else stoppedEarly = [why, detail];
    });
    // A reload while the roles were read could not end this session yet: it was decided on what is gone.
    if (!clusters.isCurrent(cluster, upstream)) {
      slot?.release();
      clusters.requireUpstream(cluster); // NOT_FOUND if the reload removed it
      throw new Denied(503, `Kubernetes cluster "${cluster}" was changed in the auth config while this request was set up: try again`, "cluster_changed");
    }
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...base, ...describe(api), ...(api ? {} : { path: apiPath }), allowed: false, reason: e.reason });
    await answer(client, statusResponse(e.status, e.message));
    return;
  }
  const resource = api;
  const allowed = { ...base, ...describe(resource), allowed: true, reason, kubernetes_user: who.user, kubernetes_groups: who.groups };

  let up: Socket | undefined;
  let answerHead: { status: number; head: Buffer; rest: Buffer; headers: Map<string, string> };
  try {
    const dialed = await upstream.connect(resource.path + forwardedQuery(url.searchParams));
    up = dialed.socket;
    up.on("error", () => {});
    const lines = [`${req.method} ${dialed.target} HTTP/1.1`, ...dialed.headerLines.map(([k, v]) => `${k}: ${v}`)];
    for (let i = 0; i + 1 < u.rawHeaders.length; i += 2) {
      const name = u.rawHeaders[i]!;
      if (FORWARDED.has(name.toLowerCase())) lines.push(`${name}: ${u.rawHeaders[i + 1]}`);
    }
    lines.push(`Impersonate-User: ${who.user}`);
    // one line per group: the API server reads each line as one group
    for (const g of who.groups) lines.push(`Impersonate-Group: ${g}`);
    up.write(lines.join("\r\n") + "\r\n\r\n");
    // Bytes the client sent behind its headers (u.head) wait for the API server's 101:
    // written now, they would reach an API server that answers 403/404 as the next HTTP
    // request on this connection, one that was never authorized, audited or stripped of
    // its own Impersonate-* headers, made with the service's credentials (request smuggling).
    answerHead = await readHead(up, cluster);
  } catch (e) {
    slot?.release();
    up?.destroy();
    await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...allowed, status: 502, error: errorMessage(e) });
    throw e;
  }

  if (answerHead.status !== 101) {
    slot?.release();
    await ctx.audit.emit(EVENT.kubeRequest, ctx.clock.now(), { ...allowed, status: answerHead.status });
    relayAnswer(up!, client, answerHead);
    return;
  }

  const q = url.searchParams;
  const started = ctx.clock.now();
  // what every event of the session carries
  const session = {
    session_id: crypto.randomUUID(),
    bot: id.botName,
    ...(id.botInstanceId ? { bot_instance_id: id.botInstanceId } : {}),
    kubernetes_cluster: cluster,
  };
  const sessionFields = {
    ...session,
    verb: resource.verb,
    subresource: resource.subresource,
    namespace: resource.namespace,
    pod: resource.name,
    ...(q.get("container") ? { container: q.get("container") } : {}),
    ...(resource.subresource === "exec" ? { command: q.getAll("command") } : {}),
    // the ports a client names in the URL, as the API server reads them; kubectl names them
    // per stream instead (kube.portforward, and the end's `ports`)
    ...(resource.subresource === "portforward" ? { ports: urlPorts(q.getAll("ports")) } : {}),
    ...(resource.subresource !== "portforward" ? { stdin: q.get("stdin") === "true", tty: q.get("tty") === "true" } : {}),
    protocol: answerHead.headers.get("sec-websocket-protocol") ?? answerHead.headers.get("x-stream-protocol-version") ?? answerHead.headers.get("upgrade") ?? "",
    kubernetes_user: who.user,
    kubernetes_groups: who.groups,
    remote_addr: conn.remoteAddr,
  };
  const framing = resource.subresource === "portforward" ? portForwardFraming(answerHead.headers) : undefined;
  const observer = framing
    ? new PortForwardObserver(framing, (port) => {
        void ctx.audit
          .emit(EVENT.kubePortForward, ctx.clock.now(), { ...session, namespace: resource.namespace, pod: resource.name, port, remote_addr: conn.remoteAddr })
          .catch((e: unknown) => ctx.log.error("Cannot record a port of a Kubernetes port-forward", { error: errorMessage(e) }));
      })
    : undefined;
  await ctx.audit.emit(EVENT.kubeSessionStart, started, sessionFields);
  // the protocol is switched: from here on the client's bytes are the session's
  if (u.head.length > 0 && !up!.destroyed) {
    up!.write(u.head);
    // only what reached the API server is observed, as in the splice
    observer?.feed(u.head);
  }
  client.write(answerHead.head);
  if (answerHead.rest.length > 0) client.write(answerHead.rest);
  // bytes that came with the handshakes count as session bytes too
  const look = observer && ((chunk: Buffer) => observer.feed(chunk));
  stop = splice(client, up!, { fromClient: u.head.length, fromUpstream: answerHead.rest.length }, look, (how, detail, bytes) => {
    const now = ctx.clock.now();
    const ended = async () => {
      // the ports of header blocks still being inflated belong to the session: wait for them
      const ports = resource.subresource === "portforward" ? portsFields(await observer?.finish(), q) : {};
      await ctx.audit.emit(EVENT.kubeSessionEnd, now, {
        ...session,
        subresource: resource.subresource,
        namespace: resource.namespace,
        pod: resource.name,
        duration_ms: now.getTime() - started.getTime(),
        bytes_from_client: bytes.fromClient,
        bytes_from_upstream: bytes.fromUpstream,
        ended: how,
        ...(detail ? { detail } : {}),
        ...ports,
      });
    };
    // the slot is held until the observer let go of what it holds: the session caps bound that memory too
    void ended()
      .catch((e: unknown) => ctx.log.error("Cannot record the end of a Kubernetes session", { error: errorMessage(e) }))
      .finally(() => slot?.release());
  });
  if (stoppedEarly) stop(...stoppedEarly);
}

/**
 * The SPDY framing of a port-forward, from the API server's 101: tunnelled in WebSocket
 * (`SPDY/3.1+portforward.k8s.io`) or legacy `Upgrade: SPDY/3.1`. Undefined for another
 * protocol (a WebSocket `portforward.k8s.io` client names its ports in the URL).
 */
function portForwardFraming(headers: Map<string, string>): PortForwardFraming | undefined {
  if ((headers.get("sec-websocket-protocol") ?? "").toLowerCase() === "spdy/3.1+portforward.k8s.io") return "websocket";
  if ((headers.get("upgrade") ?? "").toLowerCase() === "spdy/3.1") return "spdy";
  return undefined;
}

/** A port-forward's ports as its `kube.session.end` records them: those its streams were opened for, or the URL's. */
function portsFields(seen: PortsSeen | undefined, q: URLSearchParams): Record<string, unknown> {
  if (!seen) {
    return { ports: urlPorts(q.getAll("ports")), ports_observed: "url" };
  }
  return { ports: seen.ports, ports_observed: seen.observed, ...(seen.reason ? { ports_unparsed_reason: seen.reason } : {}) };
}

/** Registers an upgraded session with the service's registry; a cap reached is a 429 refusal. */
function openSlot(clusters: KubernetesClusters, owner: SessionOwner, end: (why: string, detail?: string) => void): SessionSlot | undefined {
  try {
    return clusters.sessions?.open(owner, "upgrade", end);
  } catch (e) {
    throw e instanceof SessionLimitReached ? new Denied(429, e.message, e.reason) : e;
  }
}

/** Reads the API server's response head; the socket is left paused with what followed in `rest`. */
function readHead(sock: Socket, cluster: string): Promise<{ status: number; head: Buffer; rest: Buffer; headers: Map<string, string> }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const fail = (why: string) => {
      cleanup();
      reject(new AppError("CONNECTION_PROBLEM", `Cannot upgrade the connection to Kubernetes cluster "${cluster}": ${why}`));
    };
    const timer = setTimeout(() => fail("no answer in time"), ANSWER_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) fail("the answer's headers are too large");
        return;
      }
      cleanup();
      const head = buf.subarray(0, end + 4);
      const lines = head.toString("latin1").split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? NaN);
      if (!Number.isInteger(status)) return reject(new AppError("CONNECTION_PROBLEM", `Cannot upgrade the connection to Kubernetes cluster "${cluster}": not an HTTP answer`));
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      resolve({ status, head, rest: buf.subarray(end + 4), headers });
    };
    const onEnd = () => fail("the API server closed the connection");
    const onError = (e: Error) => fail(errorMessage(e));
    function cleanup() {
      clearTimeout(timer);
      sock.pause();
      sock.off("data", onData);
      sock.off("end", onEnd);
      sock.off("error", onError);
    }
    sock.on("data", onData);
    sock.once("end", onEnd);
    sock.once("error", onError);
  });
}

/**
 * Relays an answer other than 101 (a refusal of the API server, say) as a normal
 * response, then closes both connections: the body runs to its Content-Length, its
 * last chunk, or the API server's close.
 */
function relayAnswer(up: Socket, client: Socket, a: { head: Buffer; rest: Buffer; headers: Map<string, string> }): void {
  const lines = a.head.toString("latin1").split("\r\n").filter((l) => l !== "" && !/^(connection|keep-alive):/i.test(l));
  client.write(Buffer.from([...lines, "connection: close", "", ""].join("\r\n"), "latin1"));
  const length = a.headers.has("content-length") ? Number(a.headers.get("content-length")) : undefined;
  const chunked = /chunked/i.test(a.headers.get("transfer-encoding") ?? "");
  let sent = 0;
  let tail = Buffer.alloc(0);
  const finish = () => {
    up.destroy();
    client.end();
  };
  const onBody = (chunk: Buffer) => {
    const take = length !== undefined ? chunk.subarray(0, Math.max(0, length - sent)) : chunk;
    sent += take.length;
    client.write(take);
    if (chunked) tail = Buffer.concat([tail, take]).subarray(-5);
    if ((length !== undefined && sent >= length) || (chunked && tail.toString("latin1") === "0\r\n\r\n")) {
      up.off("data", onBody);
      finish();
    }
  };
  up.on("data", onBody);
  up.once("close", finish);
  client.once("close", () => up.destroy());
  if (a.rest.length > 0) onBody(a.rest);
  up.resume();
}

/** Bytes each way of a spliced session. */
interface Counts {
  fromClient: number;
  fromUpstream: number;
}

/**
 * Splices two sockets byte for byte both ways, pausing a reader while the other side's
 * writes are buffered (back-pressure). When one side closes, the other is ended (after
 * flushing what is in flight) and cut if it lingers. `look`, if given, is shown each
 * chunk from the client once it is handed on, and only those (it must not throw, keep, or change it).
 * `done` runs once both are closed, with how the session ended. Returns a function that
 * ends it now (a lock, a shutdown).
 */
function splice(
  client: Socket,
  up: Socket,
  bytes: Counts,
  look: ((chunk: Buffer) => void) | undefined,
  done: (how: string, detail: string | undefined, bytes: Counts) => void,
): (why: string, detail?: string) => void {
  let how: string | undefined;
  let detail: string | undefined;
  let open = 2;
  const pipe = (src: Socket, dst: Socket, count: (n: number) => void, side: string, seen?: (chunk: Buffer) => void) => {
    src.on("data", (chunk: Buffer) => {
      count(chunk.length);
      // once the other side is gone, what still comes has nowhere to go: drop it, and read
      // on (a paused socket never sees its close, and the session would wait for the linger)
      if (dst.destroyed || dst.writableEnded) return;
      if (!dst.write(chunk)) src.pause();
      // only what was handed on is looked at: a stream opened after the other side went opens nothing
      seen?.(chunk);
    });
    dst.on("drain", () => src.resume());
    // a reader paused for a side that then closed gets no drain: resume it to see its end
    dst.once("close", () => src.resume());
    const onEnd = () => {
      how ??= `${side}_closed`;
      dst.end();
    };
    let closed = false;
    const onClose = () => {
      if (closed) return;
      closed = true;
      how ??= `${side}_closed`;
      if (!dst.destroyed) {
        dst.end();
        setTimeout(() => dst.destroy(), LINGER_MS).unref?.();
      }
      if (--open === 0) done(how, detail, bytes);
    };
    src.once("end", onEnd);
    src.once("error", (e) => {
      how ??= `${side}_error`;
      detail ??= errorMessage(e);
    });
    src.once("close", onClose);
    // a side that ended or closed while the session was being set up has no event left to tell
    if (src.destroyed) onClose();
    else if (src.readableEnded) onEnd();
    src.resume();
  };
  pipe(client, up, (n) => (bytes.fromClient += n), "client", look);
  pipe(up, client, (n) => (bytes.fromUpstream += n), "upstream");
  return (why, d) => {
    how ??= why;
    detail ??= d;
    client.destroy();
    up.destroy();
  };
}
