/**
 * A minimal HTTP/1.1 client over one socket (TLS or plain), for the load generator and
 * the reliability suite: one connection per simulated client, requests one after
 * another on it (keep-alive), and raw bytes when a test needs a malformed request.
 * Hand-written because fetch pools connections behind our back and normalises headers,
 * and both benchmarks and hostile-input tests need to decide exactly what goes on the wire.
 */

import net from "node:net";
import tls from "node:tls";

export interface RawResponse {
  status: number;
  /** Lower-case header names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** TLS options (client certificate, CA, servername…); omit for plain TCP. */
  tls?: tls.ConnectionOptions;
  /** Source address, e.g. "127.0.0.2" to look like another client on loopback. */
  localAddress?: string;
  /** Give up connecting after this long; default 10s. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (r: RawResponse) => void;
  reject: (e: Error) => void;
  /** A response to HEAD has headers only, whatever its Content-Length says. */
  head: boolean;
}

/** One HTTP/1.1 connection; `request` calls are queued so at most one is on the wire. */
export class Http1Connection {
  private buf: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private ended = false;
  private error: Error | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.tryParse();
    });
    const fail = (e: Error) => {
      this.error ??= e;
      this.ended = true;
      this.tryParse();
      this.pending?.reject(this.error);
      this.pending = undefined;
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed by the server")));
    socket.on("end", () => {
      this.ended = true;
      this.tryParse();
    });
  }

  /** Opens a connection; resolves once TCP (and TLS) are up. */
  /** Connections opened by this process so far (the load generator reports how many it opened while measuring). */
  static opened = 0;

  static connect(opts: ConnectOptions): Promise<Http1Connection> {
    Http1Connection.opened++;
    return new Promise((resolve, reject) => {
      const base = { host: opts.host, port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) };
      const sock = opts.tls
        ? tls.connect({ ...base, ALPNProtocols: ["http/1.1"], ...opts.tls })
        : net.connect(base);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${opts.host}:${opts.port} timed out`));
      }, opts.timeoutMs ?? 10_000);
      sock.once(opts.tls ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        resolve(new Http1Connection(sock));
      });
      sock.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  get closed(): boolean {
    return this.ended || this.socket.destroyed;
  }

  /** Sends a request (Host, Content-Length and keep-alive added) and reads its response. */
  request(method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<RawResponse> {
    const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? Buffer.from(opts.body) : Buffer.from(opts.body);
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.socket.remoteAddress}:${this.socket.remotePort}\r\n`;
    for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
    if (body) head += `content-length: ${body.length}\r\n`;
    head += "\r\n";
    return this.send(body ? Buffer.concat([Buffer.from(head), body]) : Buffer.from(head), method === "HEAD");
  }

  /** Writes `bytes` as they are and reads one response (or rejects when the server closes instead). */
  send(bytes: Uint8Array, head = false): Promise<RawResponse> {
    const run = () =>
      new Promise<RawResponse>((resolve, reject) => {
        if (this.error) return reject(this.error);
        if (this.closed) return reject(new Error("connection closed"));
        this.pending = { resolve, reject, head };
        this.socket.write(bytes);
      });
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  close(): void {
    this.socket.destroy();
  }

  private tryParse(): void {
    if (!this.pending) return;
    const r = parseResponse(this.buf, this.ended, this.pending.head);
    if (!r) return;
    this.buf = this.buf.subarray(r.consumed);
    const p = this.pending;
    this.pending = undefined;
    p.resolve(r.response);
  }
}

/** Parses one response at the start of `buf`; undefined while incomplete. */
export function parseResponse(buf: Buffer, ended: boolean, head = false): { response: RawResponse; consumed: number } | undefined {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const lines = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? NaN);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  let at = headEnd + 4;
  if (head) return { response: { status, headers, body: Buffer.alloc(0) }, consumed: at };
  if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf("\r\n", at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
      if (Number.isNaN(size)) throw new Error("malformed chunked encoding");
      if (buf.length < lineEnd + 2 + size + 2) return undefined;
      if (size === 0) {
        // no trailers are sent by the servers under test
        return { response: { status, headers, body: Buffer.concat(parts) }, consumed: lineEnd + 4 };
      }
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const len = headers["content-length"];
  if (len !== undefined) {
    const n = Number(len);
    if (buf.length < at + n) return undefined;
    return { response: { status, headers, body: Buffer.from(buf.subarray(at, at + n)) }, consumed: at + n };
  }
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return { response: { status, headers, body: Buffer.alloc(0) }, consumed: at };
  // no length: the body runs to the end of the connection
  if (!ended) return undefined;
  return { response: { status, headers, body: Buffer.from(buf.subarray(at)) }, consumed: buf.length };
}
