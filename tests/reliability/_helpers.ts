/**
 * Shared pieces of the reliability suite: sizes (small in CI, full with SOAK=1) and the
 * agent daemon with its diagnostics endpoint. Raw sockets are in tests/_support/sockets.ts,
 * the daemon's config in tests/_support/agent_config.ts.
 */

import { join } from "node:path";
import type { AuthClient } from "../../src/protocol/index.ts";
import { writeAgentConfig } from "../_support/agent_config.ts";
import { freePort } from "../_support/clients.ts";
import { Proc } from "../agent/procs.ts";
import { waitFor } from "../agent/wait.ts";

/** Full sizes under `bun run soak` (SOAK=1); small ones in CI. */
export const SOAK = process.env.SOAK === "1";

/** `ci` in CI, `soak` under SOAK=1. */
export function size<T>(ci: T, soak: T): T {
  return SOAK ? soak : ci;
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
