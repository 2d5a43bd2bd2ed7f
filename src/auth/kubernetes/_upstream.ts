/**
 * Requests to one Kubernetes API server, as the identity the auth service holds for
 * it. Written on node:https rather than fetch because impersonation needs one
 * `Impersonate-Group` header line per group, and fetch folds repeated headers into
 * one comma-joined line, which the API server would read as a single group.
 */

import https from "node:https";
import { isIP } from "node:net";
import tls, { type TLSSocket } from "node:tls";
import type { IncomingMessage } from "node:http";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError, connectionProblem, errorMessage } from "../../lib/errors.ts";
import { fsError } from "../../lib/fs.ts";
import { readCapped } from "../../lib/stream.ts";
import { sameClusterConfig, type KubernetesClusterConfig } from "../../config/index.ts";

/** Header values as node:http takes them: an array is sent as repeated lines. */
export type HeaderMap = Record<string, string | string[]>;

/** The answer of the API server, body still streaming. */
export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  body: ReadableStream<Uint8Array>;
}

/** Where the service account's token, CA and namespace are mounted in a pod; tests point it elsewhere. */
export const SERVICE_ACCOUNT_DIR_ENV = "MACHINE_ID_SERVICE_ACCOUNT_DIR";
export const DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How long the API server has to send response headers (a watch sends them at once). */
const HEADERS_TIMEOUT_MS = 30_000;

/**
 * The cluster the process runs in, as client libraries find it: the API server from
 * KUBERNETES_SERVICE_HOST/PORT, trusted through the service account's ca.crt and
 * called with its token. TLS is always verified.
 */
export function inClusterConfig(env: Record<string, string | undefined>): KubernetesClusterConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new AppError("NOT_IMPLEMENTED", "The auth service is not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set");
  }
  const dir = env[SERVICE_ACCOUNT_DIR_ENV] || DEFAULT_SERVICE_ACCOUNT_DIR;
  return {
    name: "in-cluster",
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    caPath: join(dir, "ca.crt"),
    insecureSkipTlsVerify: false,
    tokenPath: join(dir, "token"),
    labels: {},
  };
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw fsError(`read ${what}`, path, e);
  }
}

/** One API server and the credentials to call it with. */
export class Upstream {
  private readonly agent: https.Agent;

  private constructor(
    readonly config: KubernetesClusterConfig,
    private readonly server: URL,
    private readonly tls: { ca?: string; cert?: string; key?: string },
  ) {
    this.agent = new https.Agent({ keepAlive: true, rejectUnauthorized: !config.insecureSkipTlsVerify, ...tls });
  }

  /** Reads the CA and client certificate files now, so a bad path fails at start-up rather than at the first request. */
  static async load(config: KubernetesClusterConfig): Promise<Upstream> {
    const tls: { ca?: string; cert?: string; key?: string } = {};
    if (config.caPath) tls.ca = await readPem(config.caPath, `the CA of Kubernetes cluster "${config.name}"`);
    if (config.clientCertPath) tls.cert = await readPem(config.clientCertPath, `the client certificate for Kubernetes cluster "${config.name}"`);
    if (config.clientKeyPath) tls.key = await readPem(config.clientKeyPath, `the client key for Kubernetes cluster "${config.name}"`);
    const up = new Upstream(config, new URL(config.server), tls);
    if (config.tokenPath) await up.token();
    return up;
  }

  /** The bearer token, read again for every request: projected tokens are rotated on disk. */
  private async token(): Promise<string | undefined> {
    if (!this.config.tokenPath) return undefined;
    let text: string;
    try {
      text = await readFile(this.config.tokenPath, "utf8");
    } catch (e) {
      throw fsError(`read the token for Kubernetes cluster "${this.config.name}"`, this.config.tokenPath, e);
    }
    const token = text.trim();
    if (!token) throw new AppError("BAD_PARAMETER", `Cannot use the token for Kubernetes cluster "${this.config.name}": "${this.config.tokenPath}" is empty`);
    return token;
  }

  /** Sends one request; resolves once the response headers arrive. `path` is the API path with its query. */
  async request(opts: { method: string; path: string; headers: HeaderMap; body?: Uint8Array; signal?: AbortSignal }): Promise<UpstreamResponse> {
    const token = await this.token();
    const base = this.server.pathname.replace(/\/+$/, "");
    const headers: HeaderMap = { ...opts.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
    if (opts.body) headers["content-length"] = String(opts.body.length);
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const req = https.request({
        agent: this.agent,
        protocol: "https:",
        hostname: this.server.hostname.replace(/^\[|\]$/g, ""),
        port: this.server.port || 443,
        method: opts.method,
        path: base + opts.path,
        headers,
      });
      const timer = setTimeout(() => req.destroy(new AppError("CONNECTION_PROBLEM", "no response headers in time")), HEADERS_TIMEOUT_MS);
      const onAbort = () => req.destroy(new AppError("CONNECTION_PROBLEM", "the client went away"));
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      req.once("response", (res: IncomingMessage) => {
        clearTimeout(timer);
        const out: HeaderMap = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out[k] = v;
        resolve({ status: res.statusCode ?? 502, headers: out, body: toWebStream(res, () => opts.signal?.removeEventListener("abort", onAbort)) });
      });
      req.once("error", (e) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        reject(this.networkError(e));
      });
      req.end(opts.body ? Buffer.from(opts.body) : undefined);
    });
  }

  /**
   * A new TLS connection of its own to the API server (for a connection upgrade, which
   * is never pooled), with the `Host`, request target and `Authorization` header lines
   * an HTTP/1.1 request on it needs. Resolves once the handshake is done.
   */
  async connect(path: string, timeoutMs = HEADERS_TIMEOUT_MS): Promise<{ socket: TLSSocket; target: string; headerLines: [string, string][] }> {
    const token = await this.token();
    const hostname = this.server.hostname.replace(/^\[|\]$/g, "");
    const port = Number(this.server.port || 443);
    const socket = tls.connect({
      host: hostname,
      port,
      ...(isIP(hostname) ? {} : { servername: hostname }),
      rejectUnauthorized: !this.config.insecureSkipTlsVerify,
      // the upgrade is an HTTP/1.1 mechanism: never h2
      ALPNProtocols: ["http/1.1"],
      ...this.tls,
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => socket.destroy(new AppError("CONNECTION_PROBLEM", "no TLS handshake in time")), timeoutMs);
      const onError = (e: Error) => {
        clearTimeout(timer);
        reject(this.networkError(e));
      };
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        resolve();
      });
      socket.once("error", onError);
    });
    const headerLines: [string, string][] = [["Host", this.server.host]];
    if (token) headerLines.push(["Authorization", `Bearer ${token}`]);
    return { socket, target: this.server.pathname.replace(/\/+$/, "") + path, headerLines };
  }

  /** A JSON request whose whole answer is read (at most `maxBytes`); for the service's own API calls. */
  async json(method: string, path: string, body: unknown, maxBytes = 1 << 20): Promise<{ status: number; json: unknown }> {
    const res = await this.request({
      method,
      path,
      headers: { "content-type": "application/json", accept: "application/json" },
      body: new TextEncoder().encode(JSON.stringify(body)),
    });
    const text = await readCapped(res.body, maxBytes, `the answer of Kubernetes cluster "${this.config.name}"`);
    try {
      return { status: res.status, json: JSON.parse(text) };
    } catch {
      throw connectionProblem(`Unexpected answer from Kubernetes cluster "${this.config.name}" at "${this.config.server}": HTTP ${res.status}, not JSON`);
    }
  }

  private networkError(e: unknown): AppError {
    const code = (e as { code?: string })?.code ?? "";
    const reason = code === "ECONNREFUSED" ? "connection refused" : errorMessage(e);
    return connectionProblem(`Cannot reach Kubernetes cluster "${this.config.name}" at "${this.config.server}": ${reason}`, { cause: e });
  }

  /**
   * Whether `other` talks to the same API server the same way: equal config (server,
   * file paths, labels, TLS verification) and equal CA and client certificate
   * contents, so a certificate renewed on disk under the same path counts as a change.
   * The token is not compared: it is read again for every request anyway.
   */
  sameAs(other: Upstream): boolean {
    return (
      sameClusterConfig(this.config, other.config) &&
      this.tls.ca === other.tls.ca &&
      this.tls.cert === other.tls.cert &&
      this.tls.key === other.tls.key
    );
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}

/** A Node stream as a web stream, pausing the socket while the reader is behind. */
function toWebStream(res: IncomingMessage, done: () => void): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      res.on("data", (chunk: Buffer) => {
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 1) <= 0) res.pause();
      });
      res.once("end", () => {
        done();
        controller.close();
      });
      res.once("error", (e) => {
        done();
        controller.error(e);
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      done();
      res.destroy();
    },
  });
}

