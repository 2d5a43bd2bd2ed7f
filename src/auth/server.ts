/**
 * The one file that binds a port. In Bun it is `node:http2.createSecureServer`
 * with `allowHTTP1` that exposes the client certificate (`node:https` and
 * `Bun.serve` do not), for HTTP/1.1 and h2 clients alike.
 */

import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { AppError, errorMessage } from "../lib/errors.ts";
import type { Logger } from "../lib/log.ts";
import { MAX_BODY_BYTES, STATUS_BY_CODE, errorBody } from "../protocol/index.ts";
import type { ConnInfo } from "./http.ts";

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  /** CAs client certificates are checked against (the user CA). */
  clientCaPem: string[];
}

export interface ListenOptions {
  host: string;
  port: number;
  tls: TlsMaterial;
  handler: (req: Request, conn: ConnInfo) => Promise<Response>;
  log: Logger;
  /** Idle sockets and slow requests are cut after this long; default 30s. */
  timeoutMs?: number;
  /** Upper bound on concurrent connections; default 4096. */
  maxConnections?: number;
}

export interface Listener {
  host: string;
  port: number;
  /** Swaps the server's certificate (for the periodic refresh) without dropping connections. */
  setTls(tls: TlsMaterial): void;
  close(): Promise<void>;
}

function formatRemote(sock: TLSSocket | undefined): string {
  const a = sock?.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** Starts listening; resolves once the port is bound. */
export async function listen(opts: ListenOptions): Promise<Listener> {
  const server = http2.createSecureServer({
    allowHTTP1: true,
    // The certificate is optional at the TLS layer; handlers that need one verify it themselves.
    requestCert: true,
    rejectUnauthorized: false,
    cert: opts.tls.certPem,
    key: opts.tls.keyPem,
    ca: opts.tls.clientCaPem,
    minVersion: "TLSv1.2",
  });
  server.maxConnections = opts.maxConnections ?? 4096;
  server.setTimeout(opts.timeoutMs ?? 30_000);

  server.on("request", (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    void serve(req, res, opts).catch((e) => {
      opts.log.error("Cannot answer request", { error: errorMessage(e) });
      try {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      } catch {
        // the connection is gone already
      }
    });
  });
  server.on("timeout", (sock: { destroy?: () => void }) => sock?.destroy?.());
  server.on("tlsClientError", (e: Error) => opts.log.debug("TLS handshake failed", { error: e.message }));

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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // idle keep-alive sessions would hold close() open forever
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        setTimeout(resolve, 2000).unref();
      }),
  };
}

async function serve(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, opts: ListenOptions): Promise<void> {
  const sock = req.socket as unknown as TLSSocket;
  const peer = sock.getPeerCertificate?.(false) as { raw?: Buffer } | undefined;
  const conn: ConnInfo = {
    remoteAddr: formatRemote(sock),
    ...(peer?.raw && peer.raw.length > 0 ? { peerCertDer: new Uint8Array(peer.raw) } : {}),
  };
  const method = req.method ?? "GET";
  let body: Uint8Array | undefined;
  if (method !== "GET" && method !== "HEAD") {
    const read = await readCapped(req);
    if (read === "too-large") {
      const e = new AppError("TOO_LARGE", `Request body too large: at most ${MAX_BODY_BYTES} bytes`);
      res.writeHead(STATUS_BY_CODE[e.code], { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify(errorBody(e)));
      return;
    }
    body = read;
  }
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    headers.set(k, Array.isArray(v) ? v.join(", ") : String(v));
  }
  const authority = req.headers[":authority"] ?? req.headers.host ?? "localhost";
  const url = `https://${authority}${req.url}`;
  let request: Request;
  try {
    request = new Request(url, { method, headers, ...(body ? { body } : {}) });
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
  res.writeHead(response.status, out);
  res.end(Buffer.from(await response.arrayBuffer()));
}

/** Reads the body, stopping as soon as it exceeds MAX_BODY_BYTES. */
function readCapped(req: http2.Http2ServerRequest): Promise<Uint8Array | "too-large"> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        req.pause();
        resolve("too-large");
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!done) resolve(new Uint8Array(Buffer.concat(chunks)));
    });
    req.on("error", (e) => {
      if (!done) reject(e);
    });
  });
}
