/**
 * Shared pieces of the reliability suite: sizes (small in CI, full with SOAK=1), raw
 * sockets that report when the server closes them, agent configs for the compiled
 * binary, and a small tmpfs the suite can fill up or turn read-only.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import type { AuthClient } from "../../src/protocol/index.ts";
import { freePort } from "../_support/clients.ts";
import { Proc } from "../agent/procs.ts";
import { waitFor } from "../agent/wait.ts";

export { freePort };

/** Full sizes under `bun run soak` (SOAK=1); small ones in CI. */
export const SOAK = process.env.SOAK === "1";

/** `ci` in CI, `soak` under SOAK=1. */
export function size<T>(ci: T, soak: T): T {
  return SOAK ? soak : ci;
}

/** Resolves with the milliseconds it took the peer to close `sock`, or rejects after `deadlineMs`. */
export function closedWithin(sock: net.Socket, deadlineMs: number): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    if (sock.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`the server kept the connection open for more than ${deadlineMs}ms`)), deadlineMs);
    sock.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - start);
    });
  });
}

/** A TLS connection that has finished its handshake (the server's certificate is not checked). */
export function tlsConnect(port: number, opts: { localAddress?: string; alpn?: string } = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      ALPNProtocols: [opts.alpn ?? "http/1.1"],
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

/** A plain TCP connection that never starts TLS; resolves once connected. */
export function tcpConnect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

export interface AgentConfigOptions {
  authAddr: string;
  token: string;
  caPin: string;
  storageDir: string;
  destinationDir: string;
  diagPort: number;
  renewalInterval: string;
  credentialTtl?: string;
}

/** Writes a tbot v2 config for a daemon with one identity output; returns its path. */
export function writeAgentConfig(dir: string, o: AgentConfigOptions): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "agent.yaml");
  writeFileSync(
    path,
    [
      "version: v2",
      `auth_server: "${o.authAddr}"`,
      "onboarding:",
      "  join_method: token",
      `  token: "${o.token}"`,
      "  ca_pins:",
      `    - "${o.caPin}"`,
      "storage:",
      "  type: directory",
      `  path: ${o.storageDir}`,
      `credential_ttl: ${o.credentialTtl ?? "10m"}`,
      `renewal_interval: ${o.renewalInterval}`,
      `diag_addr: "127.0.0.1:${o.diagPort}"`,
      "outputs:",
      "  - type: identity",
      "    destination:",
      "      type: directory",
      `      path: ${o.destinationDir}`,
      "",
    ].join("\n"),
  );
  return path;
}

/** The agent's diagnostics endpoint, polled by tests. */
export class Diag {
  constructor(readonly port: number) {}

  async readyz(): Promise<number | undefined> {
    return (await fetch(`http://127.0.0.1:${this.port}/readyz`).catch(() => undefined))?.status;
  }

  async readiness(): Promise<{ status: string; services: Record<string, { status: string; reason?: string }> }> {
    return (await (await fetch(`http://127.0.0.1:${this.port}/readyz`)).json()) as never;
  }

  /** The value of one Prometheus sample; 0 when absent. */
  async metric(sample: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(sample + " "));
    return line ? Number(line.slice(sample.length + 1)) : 0;
  }

  /** Successful identity renewals so far (the join included). */
  async renewals(): Promise<number> {
    return (await this.metric('machine_id_task_iterations_total{task="identity"}')) - (await this.metric('machine_id_task_iterations_failed_total{task="identity"}'));
  }
}

export interface RunningAgent {
  agent: Proc;
  diag: Diag;
  /** The identity output's directory. */
  out: string;
}

/**
 * Adds bot `name` and starts a daemon agent for it (compiled binary) renewing every
 * `intervalMs`; resolves once /readyz says 200. The caller disposes of `agent`.
 */
export async function startAgent(o: { admin: AuthClient; authAddr: string; dir: string; name: string; intervalMs: number; out?: string }): Promise<RunningAgent> {
  const bot = await o.admin.addBot({ name: o.name, roles: [] });
  const diagPort = await freePort();
  const dir = join(o.dir, o.name);
  const out = o.out ?? join(dir, "out");
  const cfg = writeAgentConfig(dir, {
    authAddr: o.authAddr,
    token: bot.token,
    caPin: bot.ca_pins[0]!,
    storageDir: join(dir, "state"),
    destinationDir: out,
    diagPort,
    renewalInterval: `${o.intervalMs}ms`,
    credentialTtl: "10m",
  });
  const agent = new Proc(["start", "-c", cfg, "--log-format", "json"]);
  const diag = new Diag(diagPort);
  try {
    await waitFor(`agent ${o.name} to join`, async () => (await diag.readyz()) === 200, 30_000);
  } catch (e) {
    await agent[Symbol.asyncDispose]();
    throw new Error(`${(e as Error).message}\n${agent.stderr.slice(-3000)}`);
  }
  return { agent, diag, out };
}
