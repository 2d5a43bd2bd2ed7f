/**
 * The one file that binds a port. In Bun it is `node:http2.createSecureServer`
 * with `allowHTTP1` that exposes the client certificate (`node:https` and
 * `Bun.serve` do not), for HTTP/1.1 and h2 clients alike. It also keeps slow and
 * greedy clients from starving well-behaved ones: connection caps (in total and
 * per address) and deadlines for the handshake, the headers, each request and idle
 * keep-alive connections, enforced here because Bun's HTTP/1 path behind
 * `allowHTTP1` ignores `headersTimeout`, `requestTimeout` and `keepAliveTimeout`.
 * Everything about a request beyond its socket (body cap, authentication, routing)
 * is the app's (app.ts): this file turns a node request into a Fetch Request with
 * the connection's ConnInfo, and writes the Response back.
 */

import type { IncomingMessage } from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { AuthLimitsConfig } from "../config/index.ts";
import { AppError, errorMessage } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { errorBody } from "../protocol/index.ts";
import { handshakeFailureLogger } from "./_plain_http.ts";
import type { ConnInfo } from "./request.ts";

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  /** CAs client certificates are checked against (the user CA). */
  clientCaPem: string[];
}

/** Deadlines and caps of the listener; every field has a default fit for production. */
/** The listener's deadlines and caps: the connection settings of `limits` in auth.yaml. */
export type ConnectionLimits = Omit<AuthLimitsConfig, "maxKubernetesSessions" | "maxKubernetesSessionsPerInstance" | "failedJoinBurst" | "failedJoinIntervalMs">;

export const DEFAULT_LIMITS: Required<ConnectionLimits> = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  maxConnections: 4096,
  maxConnectionsPerAddress: 256,
};

export interface ListenOptions extends ConnectionLimits {
  host: string;
  port: number;
  tls: TlsMaterial;
  handler: (req: Request, conn: ConnInfo) => Promise<Response>;
  /** Serves HTTP/1.1 connection upgrades (see UpgradeHandler); without it they are refused. */
  upgrade?: UpgradeHandler;
  log: Logger;
}

/**
 * Takes over a connection that asked for an HTTP/1.1 upgrade (`Connection: Upgrade`):
 * `req` has the request's headers (no body), `rawHeaders` its header lines as sent
 * (name, value, name, value…: repeated lines stay apart), `head` the bytes the client
 * sent after the headers. From then on the socket is the handler's: it answers on it
 * and closes it. Resolves to false when the path is not one it serves.
 */
export type UpgradeHandler = (req: Request, rawHeaders: string[], conn: ConnInfo, socket: Socket, head: Uint8Array) => Promise<boolean>;

export interface Listener {
  host: string;
  port: number;
  /** Swaps the server's certificate (for the periodic refresh) without dropping connections. */
  setTls(tls: TlsMaterial): void;
  /** Connections open now, and connections refused by a cap since the start. */
  stats(): { open: number; refused: number; timedOut: number };
  close(): Promise<void>;
}

function formatRemote(sock: { remoteAddress?: string | undefined } | undefined): string {
  const a = sock?.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** Per-connection state, reachable from a request through its socket (h2 hands out a proxy of it). */
const TRACKED = Symbol("machine-id.connection");

interface Tracked {
  /** The socket itself: h2 requests only see a proxy of it, whose destroy() does not close it. */
  sock: Socket;
  addr: string;
  /** Requests in flight on this connection (h2 multiplexes several). */
  active: number;
  /** What the handler is told about the connection, read at its first request. */
  conn?: ConnInfo;
  /** The headers or idle deadline, armed while no request is in flight. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Counts connections and enforces the deadlines. A connection has `headersTimeoutMs`
 * to complete its handshake and send a request, each request `requestTimeoutMs` to
 * deliver its body, and a connection between requests `idleTimeoutMs` before its next
 * request's headers are complete — so a client trickling bytes (slowloris) is cut
 * after a bounded time however steadily it sends.
 */
class ConnectionGuard {
  private open = 0;
  private readonly perAddress = new Map<string, number>();
  private refused = 0;
  private timedOut = 0;
  private lastRefusalLog = 0;
  private refusedSinceLog = 0;
  private readonly bodyDeadlines = new WeakMap<http2.Http2ServerRequest, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly limits: Required<ConnectionLimits>,
    private readonly log: Logger,
  ) {}

  stats() {
    return { open: this.open, refused: this.refused, timedOut: this.timedOut };
  }

  onConnection(sock: Socket): void {
    const addr = formatRemote(sock);
    const fromAddr = this.perAddress.get(addr) ?? 0;
    if (this.open >= this.limits.maxConnections || fromAddr >= this.limits.maxConnectionsPerAddress) {
      this.refuse(addr, this.open >= this.limits.maxConnections ? "total" : "per-address");
      sock.destroy();
      return;
    }
    this.open++;
    this.perAddress.set(addr, fromAddr + 1);
    const t: Tracked = { sock, addr, active: 0, timer: undefined };
    (sock as unknown as Record<symbol, Tracked>)[TRACKED] = t;
    this.arm(t, sock, this.limits.headersTimeoutMs);
    sock.once("close", () => {
      if (t.timer) clearTimeout(t.timer);
      this.open--;
      const n = (this.perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(addr);
      else this.perAddress.set(addr, n);
    });
  }

  onRequest(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    // For h2, req.socket is a proxy of the TLS socket: property reads reach the real one.
    const t = (req.socket as unknown as Record<symbol, Tracked | undefined>)[TRACKED];
    if (!t) return;
    const sock = t.sock;
    t.active++;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    const deadline = setTimeout(() => this.expire(sock, "request body not received in time"), this.limits.requestTimeoutMs);
    this.bodyDeadlines.set(req, deadline);
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      t.active--;
      if (t.active === 0 && !sock.destroyed) this.arm(t, sock, this.limits.idleTimeoutMs);
    };
    res.once("finish", finished);
    res.once("close", finished);
  }

  /** The connection was upgraded: it is a stream now, whose life its handler governs, not a request's deadlines. */
  onUpgrade(sock: Socket): void {
    const t = (sock as unknown as Record<symbol, Tracked | undefined>)[TRACKED];
    if (t?.timer) clearTimeout(t.timer);
    if (t) t.timer = undefined;
  }

  /** The request's body has been read: from here on the handler, not the client, decides how long it takes. */
  bodyRead(req: http2.Http2ServerRequest): void {
    clearTimeout(this.bodyDeadlines.get(req));
    this.bodyDeadlines.delete(req);
  }

  private arm(t: Tracked, sock: Socket, ms: number): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => this.expire(sock, "no complete request in time"), ms);
    t.timer.unref?.();
  }

  private expire(sock: Socket, why: string): void {
    if (sock.destroyed) return;
    this.timedOut++;
    this.log.debug("Closing a slow connection", { remote_addr: formatRemote(sock), reason: why });
    sock.destroy();
  }

  /** Counts a refusal; logs at most one warning every 10s so a flood cannot flood the log too. */
  private refuse(addr: string, cap: string): void {
    this.refused++;
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog >= 10_000) {
      this.log.warn("Refusing connections: connection cap reached", {
        cap,
        remote_addr: addr,
        refused: this.refusedSinceLog,
        max_connections: this.limits.maxConnections,
        max_per_address: this.limits.maxConnectionsPerAddress,
      });
      this.lastRefusalLog = now;
      this.refusedSinceLog = 0;
    }
  }
}

/**
 * The remote address and client certificate of a request's connection. Read once per
 * connection: getPeerCertificate builds a whole object each call and was a fifth of the
 * CPU time of a keep-alive request; the certificate cannot change within a connection
 * (TLS 1.3 has no renegotiation, and the server does not allow it on TLS 1.2). Only a
 * tracked connection gets a session (see ConnSession): an untracked one would hand each
 * request a fresh ConnInfo, and a renewal recorded there would be lost, so it is never
 * offered.
 */
function connInfo(req: { socket: unknown }): ConnInfo {
  const t = (req.socket as unknown as Record<symbol, Tracked | undefined>)[TRACKED];
  if (t?.conn) return t.conn;
  const sock = req.socket as unknown as TLSSocket;
  const peer = sock.getPeerCertificate?.(false) as { raw?: Buffer } | undefined;
  const conn: ConnInfo = {
    remoteAddr: formatRemote(sock),
    ...(peer?.raw && peer.raw.length > 0 ? { peerCertDer: new Uint8Array(peer.raw) } : {}),
    ...(t ? { session: {} } : {}),
  };
  if (t) t.conn = conn;
  return conn;
}

/** The answer to a request Bun's HTTP/1 parser rejected, in place of a silent close. */
function clientErrorResponse(code: string | undefined): string {
  return code === "HPE_HEADER_OVERFLOW"
    ? rawErrorAnswer(431, "Request Header Fields Too Large", new AppError("TOO_LARGE", "Request headers too large"))
    : rawErrorAnswer(400, "Bad Request", new AppError("BAD_PARAMETER", "Malformed HTTP request"));
}

/** An error as a whole HTTP/1.1 answer, for the paths that write to the socket before any Response exists. */
function rawErrorAnswer(status: number, reason: string, e: AppError): string {
  const body = JSON.stringify(errorBody(e));
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** Starts listening; resolves once the port is bound. */
export async function listen(opts: ListenOptions): Promise<Listener> {
  const limits: Required<ConnectionLimits> = {
    headersTimeoutMs: opts.headersTimeoutMs ?? DEFAULT_LIMITS.headersTimeoutMs,
    requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULT_LIMITS.requestTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs,
    maxConnections: opts.maxConnections ?? DEFAULT_LIMITS.maxConnections,
    maxConnectionsPerAddress: opts.maxConnectionsPerAddress ?? DEFAULT_LIMITS.maxConnectionsPerAddress,
  };
  const server = http2.createSecureServer({
    allowHTTP1: true,
    // Bun honours this one natively; ConnectionGuard covers the same span and what follows.
    handshakeTimeout: limits.headersTimeoutMs,
    // The certificate is optional at the TLS layer; handlers that need one verify it themselves.
    requestCert: true,
    rejectUnauthorized: false,
    cert: opts.tls.certPem,
    key: opts.tls.keyPem,
    ca: opts.tls.clientCaPem,
    minVersion: "TLSv1.2",
  });
  const guard = new ConnectionGuard(limits, opts.log);
  server.on("connection", (sock: Socket) => guard.onConnection(sock));
  server.on("clientError", (e: Error & { code?: string }, sock: Socket) => {
    opts.log.debug("Malformed HTTP request", { remote_addr: formatRemote(sock), error: e.code ?? e.message });
    if (sock.destroyed) return;
    try {
      sock.end(clientErrorResponse(e.code));
    } catch {
      sock.destroy();
    }
  });

  server.on("request", (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    guard.onRequest(req, res);
    void serve(req, res, opts, () => guard.bodyRead(req)).catch((e) => {
      // A client that hangs up mid-request is not the service's failure: no error, no 500 to nobody.
      if (req.aborted || req.socket?.destroyed || (e as { code?: string }).code === "ECONNRESET" || errorMessage(e) === "aborted") {
        opts.log.debug("The client went away before the answer", { method: req.method, path: req.url, error: errorMessage(e) });
        return;
      }
      opts.log.error("Cannot answer request", { error: errorMessage(e) });
      try {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      } catch {
        // the connection is gone already
      }
    });
  });
  // --- HTTP/1.1 connection upgrades (Kubernetes exec, attach, port-forward) ---
  // Bun's node:http2 server with allowHTTP1 emits "upgrade" with the TLS socket itself
  // (peer certificate, the bytes after the headers, back-pressure on write): measured in
  // docs/design.md. h2 has no Upgrade; those clients reach the handler and are refused there.
  server.on("upgrade", (req: IncomingMessage, sock: Socket, head: Buffer) => {
    guard.onUpgrade(sock);
    // nothing reads the socket until the handler splices it: keep what arrives meanwhile
    sock.pause();
    void serveUpgrade(req, sock, head, opts).catch((e) => {
      opts.log.error("Cannot serve a connection upgrade", { path: req.url, error: errorMessage(e) });
      sock.destroy();
    });
  });
  // --- end of upgrades ---
  server.on("tlsClientError", handshakeFailureLogger(opts.log));

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  return {
    host: opts.host,
    port,
    setTls(tls) {
      server.setSecureContext({ cert: tls.certPem, key: tls.keyPem, ca: tls.clientCaPem });
    },
    stats: () => guard.stats(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // idle keep-alive sessions would hold close() open forever
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        setTimeout(resolve, 2000).unref();
      }),
  };
}

/** Hands an upgrade to opts.upgrade, or refuses it (400) when nothing serves that path. */
async function serveUpgrade(req: IncomingMessage, sock: Socket, head: Buffer, opts: ListenOptions): Promise<void> {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : String(v));
  let request: Request | undefined;
  try {
    request = new Request(`https://${req.headers.host ?? "localhost"}${req.url}`, { method: req.method ?? "GET", headers });
  } catch {
    // a malformed target: refused below
  }
  if (request && opts.upgrade && (await opts.upgrade(request, req.rawHeaders, connInfo(req), sock, new Uint8Array(head)))) return;
  sock.end(rawErrorAnswer(400, "Bad Request", new AppError("BAD_PARAMETER", "Connection upgrades are served only for the Kubernetes proxy's exec, attach and portforward")));
}

/** Turns the node request into a Fetch Request for the app and writes the app's answer back. */
async function serve(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, opts: ListenOptions, bodyRead: () => void): Promise<void> {
  const conn = connInfo(req);
  const method = req.method ?? "GET";
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    headers.set(k, Array.isArray(v) ? v.join(", ") : String(v));
  }
  const authority = req.headers[":authority"] ?? req.headers.host ?? "localhost";
  const url = `https://${authority}${req.url}`;
  const hasBody = method !== "GET" && method !== "HEAD";
  if (hasBody) req.once("end", bodyRead);
  else bodyRead();
  let request: Request;
  try {
    // The body is handed on as it arrives; the app reads it within its cap (app.ts limitBody).
    request = new Request(url, { method, headers, ...(hasBody ? { body: bodyStream(req) } : {}) });
  } catch {
    res.writeHead(400, { "content-type": "application/json" });
    res.end(JSON.stringify(errorBody(new AppError("BAD_PARAMETER", "Malformed request"))));
    return;
  }
  const response = await opts.handler(request, conn);
  const out: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    out[k] = v;
  });
  // Answered before its body was read (refused as too large, say): HTTP/1.1 closes so
  // the unread rest is not parsed as the next request; h2 forbids the header.
  if (hasBody && !req.complete && req.httpVersionMajor === 1) out.connection = "close";
  await sendResponse(res, response.status, out, response.body);
}

/**
 * The request body as a stream, paced by its reader: the socket is paused while the
 * reader has a chunk it has not taken, and left paused when the reader stops (the
 * app refused the body), so no more of it is buffered. A body longer than its
 * Content-Length is malformed (RFC 9113 8.1.1; HTTP/1.1's parser never delivers one)
 * and ends the stream with an error: the app trusts a declared length to bound it.
 */
function bodyStream(req: http2.Http2ServerRequest): ReadableStream<Uint8Array> {
  let closed = false;
  const raw = req.headers["content-length"];
  // A length that is not one decimal number bounds nothing: no byte is accepted (the app refuses it, 400).
  const declared = raw === undefined ? Infinity : /^\d+$/.test(raw) ? Number(raw) : -1;
  let received = 0;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Buffer) => {
        if (closed) return;
        received += chunk.length;
        if (received > declared) {
          closed = true;
          req.pause();
          controller.error(new Error("request body longer than its Content-Length"));
          return;
        }
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 1) <= 0) req.pause();
      });
      req.once("end", () => {
        if (closed) return;
        closed = true;
        controller.close();
      });
      const fail = () => {
        if (closed) return;
        closed = true;
        controller.error(new Error("aborted"));
      };
      req.once("error", fail);
      req.once("aborted", fail);
      req.once("close", () => {
        if (!req.complete) fail();
      });
    },
    pull() {
      if (req.isPaused()) req.resume();
    },
    cancel() {
      closed = true;
      req.pause();
    },
  });
}

/**
 * Writes the answer. A body that is all there at once (every JSON answer) goes out in
 * one write with its Content-Length; a live stream (a Kubernetes watch, events for
 * minutes) is written chunk by chunk as it comes, so each event reaches the client
 * when it happens, and reading stops when the client hangs up.
 */
async function sendResponse(res: http2.Http2ServerResponse, status: number, headers: Record<string, string>, body: ReadableStream<Uint8Array> | null): Promise<void> {
  if (!body) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const reader = body.getReader();
  let chunk = await reader.read();
  let next = chunk.done ? undefined : reader.read();
  const whole = chunk.done ? { done: true as const, value: undefined } : await settledSoon(next!);
  if (whole?.done) {
    const bytes = chunk.value ?? new Uint8Array(0);
    // headers set rather than written: Bun then sends them and the body in one write
    res.statusCode = status;
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.setHeader("content-length", String(bytes.byteLength));
    res.end(bytes);
    return;
  }
  res.writeHead(status, headers);
  const cancel = () => void reader.cancel().catch(() => {});
  res.once("close", cancel);
  try {
    while (!chunk.done) {
      if (!res.write(chunk.value) && !res.destroyed) {
        await new Promise<void>((resolve) => {
          res.once("drain", resolve);
          res.once("close", resolve);
        });
      }
      if (res.destroyed) return;
      chunk = await next!;
      next = chunk.done ? undefined : reader.read();
    }
    res.end();
  } finally {
    res.off("close", cancel);
  }
}

/**
 * `p`'s value if it settles within a few microtask turns, else undefined. A body that
 * is already complete (a string, a buffer) reports its end within two turns in Bun;
 * a live stream does not, and is then written chunk by chunk.
 */
async function settledSoon<T>(p: Promise<T>): Promise<T | undefined> {
  let value: { v: T } | undefined;
  p.then(
    (v) => (value = { v }),
    () => {},
  );
  for (let turn = 0; turn < 4 && !value; turn++) await null;
  return value?.v;
}
