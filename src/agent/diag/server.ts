/**
 * The diagnostics listener on `diag_addr`: /livez, /readyz and /metrics over plain
 * HTTP. Meant for loopback or a pod network; it serves no secrets.
 */

import { badParameter } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log.ts";
import type { HealthRegistry } from "./health.ts";
import type { AgentMetrics } from "./metrics.ts";

export interface DiagOptions {
  /** `host:port`; port 0 picks a free one. */
  addr: string;
  health: HealthRegistry;
  metrics: AgentMetrics;
  log: Logger;
}

export interface DiagServer {
  /** `host:port` actually bound. */
  addr: string;
  port: number;
  stop(): Promise<void>;
}

/** Splits `host:port` / `[v6]:port`; BAD_PARAMETER when the port is missing or invalid. */
export function parseListenAddr(addr: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw badParameter(`Invalid diag_addr "${addr}": expected "host:port", such as "127.0.0.1:3001"`);
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** The diagnostics request handler, testable without a socket. */
export function diagHandler(opts: Pick<DiagOptions, "health" | "metrics">): (req: Request) => Promise<Response> {
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    switch (path) {
      case "/livez":
        return new Response("OK", { headers: { "content-type": "text/plain; charset=utf-8" } });
      case "/readyz": {
        const r = opts.health.snapshot();
        return Response.json(r, { status: r.status === "healthy" ? 200 : 503 });
      }
      case "/metrics":
        return new Response(await opts.metrics.text(), { headers: { "content-type": opts.metrics.contentType } });
      default:
        return new Response("Not found: try /livez, /readyz or /metrics\n", { status: 404 });
    }
  };
}

/** Starts serving; resolves once the port is bound. */
export async function startDiagServer(opts: DiagOptions): Promise<DiagServer> {
  const { hostname, port } = parseListenAddr(opts.addr);
  const server = Bun.serve({ hostname, port, fetch: diagHandler(opts) });
  const bound = server.port ?? port;
  const shown = hostname.includes(":") ? `[${hostname}]:${bound}` : `${hostname}:${bound}`;
  opts.log.info("Diagnostics listening", { diag_addr: shown });
  return { addr: shown, port: bound, stop: () => server.stop(true) };
}
