/**
 * The agent's Prometheus metrics, kept with prom-client (it runs under Bun and in
 * the compiled executable): task iterations and failures, iteration duration, and
 * the seconds left before the bot's identity expires.
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Clock } from "../../lib/clock.ts";

export interface AgentMetricsOptions {
  clock: Clock;
  /** The bot and expiry of the current renewable identity, read at scrape time. */
  identityExpiry: () => { bot: string; expires: Date } | undefined;
}

/** The agent's metrics; one registry per agent so tests stay independent. */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly iterations: Counter<"task">;
  private readonly failures: Counter<"task">;
  private readonly duration: Histogram<"task">;

  constructor(options: AgentMetricsOptions) {
    const registers = [this.registry];
    this.iterations = new Counter({
      name: "machine_id_task_iterations_total",
      help: "Iterations of each agent task (identity renewal, each output), successful or not",
      labelNames: ["task"],
      registers,
    });
    this.failures = new Counter({
      name: "machine_id_task_iterations_failed_total",
      help: "Iterations of each agent task that failed",
      labelNames: ["task"],
      registers,
    });
    this.duration = new Histogram({
      name: "machine_id_task_iteration_duration_seconds",
      help: "How long one iteration of each agent task took",
      labelNames: ["task"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: "machine_id_identity_expires_in_seconds",
      help: "Seconds until the bot's current renewable identity expires (negative once expired; absent before the first join)",
      // A label, so that before the first join there is no sample at all rather than a misleading 0.
      labelNames: ["bot"],
      registers,
      collect() {
        const id = options.identityExpiry();
        this.reset();
        if (id) this.set({ bot: id.bot }, (id.expires.getTime() - options.clock.now().getTime()) / 1000);
      },
    });
  }

  /** Records one iteration of `task`. */
  record(task: string, ok: boolean, seconds: number): void {
    this.iterations.inc({ task });
    if (!ok) this.failures.inc({ task });
    this.duration.observe({ task }, seconds);
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
