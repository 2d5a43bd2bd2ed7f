/**
 * The agent's Prometheus metrics: task iterations and failures, iteration duration, and
 * the seconds left before the bot's identity expires.
 *
 * Written out here in the text exposition format rather than kept with prom-client:
 * loading prom-client cost every agent start ~9 ms of CPU and
 * ~15 MiB of peak RSS (bench/startup.ts), a fifth of a oneshot's CPU, for four metrics
 * a oneshot never serves. The format of these four is a few lines; the output is the
 * one prom-client wrote (same names, label order, buckets and content type).
 */

import type { Clock } from "../../lib/clock.ts";

export interface AgentMetricsOptions {
  clock: Clock;
  /** The bot and expiry of the current renewable identity, read at scrape time. */
  identityExpiry: () => { bot: string; expires: Date } | undefined;
}

const BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface TaskStats {
  iterations: number;
  failures: number;
  /** observations at or under each of BUCKETS (not cumulative) */
  buckets: number[];
  sum: number;
  count: number;
}

/** The agent's metrics; one set per agent so tests stay independent. */
export class AgentMetrics {
  private readonly tasks = new Map<string, TaskStats>();

  constructor(private readonly options: AgentMetricsOptions) {}

  /** Records one iteration of `task`. */
  record(task: string, ok: boolean, seconds: number): void {
    let t = this.tasks.get(task);
    if (!t) this.tasks.set(task, (t = { iterations: 0, failures: 0, buckets: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    t.iterations++;
    if (!ok) t.failures++;
    const i = BUCKETS.findIndex((b) => seconds <= b);
    if (i >= 0) t.buckets[i]!++;
    t.sum += seconds;
    t.count++;
  }

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    const lines: string[] = [];
    const head = (name: string, type: string, help: string) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const tasks = [...this.tasks];
    head("machine_id_task_iterations_total", "counter", "Iterations of each agent task (identity renewal, each output), successful or not");
    for (const [task, t] of tasks) lines.push(`machine_id_task_iterations_total{task="${label(task)}"} ${t.iterations}`);
    lines.push("");
    head("machine_id_task_iterations_failed_total", "counter", "Iterations of each agent task that failed");
    for (const [task, t] of tasks) if (t.failures > 0) lines.push(`machine_id_task_iterations_failed_total{task="${label(task)}"} ${t.failures}`);
    lines.push("");
    head("machine_id_task_iteration_duration_seconds", "histogram", "How long one iteration of each agent task took");
    for (const [task, t] of tasks) {
      let cumulative = 0;
      BUCKETS.forEach((b, i) => {
        cumulative += t.buckets[i]!;
        lines.push(`machine_id_task_iteration_duration_seconds_bucket{le="${b}",task="${label(task)}"} ${cumulative}`);
      });
      lines.push(`machine_id_task_iteration_duration_seconds_bucket{le="+Inf",task="${label(task)}"} ${t.count}`);
      lines.push(`machine_id_task_iteration_duration_seconds_sum{task="${label(task)}"} ${t.sum}`);
      lines.push(`machine_id_task_iteration_duration_seconds_count{task="${label(task)}"} ${t.count}`);
    }
    lines.push("");
    // A label, so that before the first join there is no sample at all rather than a misleading 0.
    head("machine_id_identity_expires_in_seconds", "gauge", "Seconds until the bot's current renewable identity expires (negative once expired; absent before the first join)");
    const id = this.options.identityExpiry();
    if (id) lines.push(`machine_id_identity_expires_in_seconds{bot="${label(id.bot)}"} ${(id.expires.getTime() - this.options.clock.now().getTime()) / 1000}`);
    return lines.join("\n") + "\n";
  }

  get contentType(): string {
    return "text/plain; version=0.0.4; charset=utf-8";
  }
}

/** A label value escaped as the exposition format asks (backslash, double quote, newline). */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
