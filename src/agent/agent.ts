/**
 * The agent at run time: the bot's identity and the configured outputs, driven by
 * one IntervalLoop. Each iteration renews the identity when it is due and then
 * writes every output still waiting for fresh certificates; a failure leaves the
 * last good files in place and the loop backs off and retries.
 */

import { systemClock, type Clock } from "../lib/clock.ts";
import { errorMessage } from "../lib/errors.ts";
import { IntervalLoop, type BackoffOptions } from "../lib/retry.ts";
import type { Logger } from "../lib/log.ts";
import type { AgentConfig } from "../config/index.ts";
import type { AuthClient, ClientTLS } from "../protocol/index.ts";
import { Bot, BotStore, type BotSettings } from "./bot/index.ts";
import { createDestination } from "./destinations/index.ts";
import { AgentMetrics, HealthRegistry } from "./diag/index.ts";
import { buildOutput, type Output, type OutputDeps } from "./outputs/index.ts";

/** A long-running part of the agent. `run` resolves when `signal` aborts (after finishing the current write). */
export interface Service {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

export interface AgentOptions {
  /** A config that passed checkAgentConfig. */
  config: AgentConfig;
  log: Logger;
  clock?: Clock;
  /** Retry timing of the loop (tests shorten it). */
  backoff?: BackoffOptions;
  random?: () => number;
  /** Builds HTTPS clients (tests may inject one). */
  client?: (addr: string, tls: ClientTLS) => AuthClient;
}

/** The health entry of the bot's own identity. */
export const IDENTITY_TASK = "identity";

/** The bot-facing settings of a config. */
export function botSettings(cfg: AgentConfig): BotSettings {
  return {
    addr: (cfg.authServer ?? cfg.proxyServer)!,
    onboarding: cfg.onboarding,
    insecure: cfg.insecure,
    credentialTtlMs: cfg.credentialTtlMs,
  };
}

/** Joins, renews and writes outputs; see the module comment. */
export class Agent {
  readonly health = new HealthRegistry();
  readonly metrics: AgentMetrics;
  readonly bot: Bot;
  private config: AgentConfig;
  private outputs: Output[] = [];
  /** Outputs that need fresh certificates (by name), and those whose destination is prepared. */
  private readonly dirty = new Set<string>();
  private readonly ready = new Set<string>();
  private pendingConfig: AgentConfig | undefined;
  private loop: IntervalLoop | undefined;
  private lastRenewalMs: number | undefined;
  private identityFailed = false;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly options: AgentOptions) {
    this.clock = options.clock ?? systemClock;
    this.log = options.log;
    this.config = options.config;
    const storageLog = this.log.child("storage");
    this.bot = new Bot({
      settings: botSettings(this.config),
      store: new BotStore(createDestination(this.config.storage, { log: storageLog })),
      clock: this.clock,
      log: this.log.child("identity"),
      ...(options.client ? { client: options.client } : {}),
    });
    this.metrics = new AgentMetrics({ clock: this.clock, identityExpiry: () => {
        const id = this.bot.identity;
        return id ? { bot: id.botName, expires: id.validBefore } : undefined;
      },
    });
    this.health.set(IDENTITY_TASK, "initializing");
    this.setOutputs(this.config);
  }

  /** Names of the configured outputs, in config order. */
  get outputNames(): string[] {
    return this.outputs.map((o) => o.name);
  }

  private outputDeps(cfg: AgentConfig): OutputDeps {
    return {
      botCerts: (req) => this.bot.botCerts(req),
      identity: () => this.bot.identity,
      destination: (d) => createDestination(d, { log: this.log.child("destination") }),
      credentialTtlMs: cfg.credentialTtlMs,
      clock: this.clock,
      log: this.log.child("output"),
    };
  }

  private setOutputs(cfg: AgentConfig): void {
    const deps = this.outputDeps(cfg);
    const outputs = [...cfg.outputs, ...cfg.services].map((o, i) => buildOutput(o, deps, i));
    for (const old of this.outputs) if (!outputs.some((o) => o.name === old.name)) this.health.remove(old.name);
    this.outputs = outputs;
    this.dirty.clear();
    this.ready.clear();
    for (const o of outputs) {
      this.dirty.add(o.name);
      this.health.set(o.name, "initializing");
    }
  }

  /**
   * Takes a new config (SIGHUP): outputs are rebuilt and all written again at the next
   * iteration, which starts now. Storage changes need a restart.
   */
  reload(cfg: AgentConfig): void {
    this.pendingConfig = cfg;
    this.loop?.trigger();
  }

  private applyPendingConfig(): boolean {
    const cfg = this.pendingConfig;
    if (!cfg) return false;
    this.pendingConfig = undefined;
    if (JSON.stringify(cfg.storage) !== JSON.stringify(this.config.storage)) {
      this.log.warn("The storage setting changed: it takes effect after a restart");
    }
    this.config = cfg;
    this.bot.settings = botSettings(cfg);
    this.setOutputs(cfg);
    this.log.info("Configuration reloaded", { outputs: this.outputs.length });
    return true;
  }

  /** Whether the identity should be renewed now: never obtained, last attempt failed, or an interval has passed. */
  private renewalDue(): boolean {
    if (this.identityFailed || this.lastRenewalMs === undefined || !this.bot.identity) return true;
    const interval = this.config.renewalIntervalMs;
    // The loop wakes one interval after the last success; allow for timers firing a little early.
    const slack = Math.min(1000, interval / 4);
    return this.clock.now().getTime() - this.lastRenewalMs >= interval - slack;
  }

  private async timed<T>(task: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const out = await fn();
      this.metrics.record(task, true, (performance.now() - start) / 1000);
      this.health.set(task, "healthy");
      return out;
    } catch (e) {
      this.metrics.record(task, false, (performance.now() - start) / 1000);
      this.health.set(task, "unhealthy", errorMessage(e));
      throw e;
    }
  }

  /**
   * One iteration: renew when due (or when `force`), then write each output that waits
   * for certificates. Throws the first failure after trying every output, so one broken
   * destination does not hold the others back.
   */
  async iteration(signal?: AbortSignal, force = false): Promise<void> {
    this.applyPendingConfig();
    if (force || this.renewalDue()) {
      try {
        const outcome = await this.timed(IDENTITY_TASK, () => this.bot.refresh());
        this.identityFailed = false;
        this.lastRenewalMs = this.clock.now().getTime();
        for (const o of this.outputs) this.dirty.add(o.name);
        this.log.debug("Identity refreshed", { outcome });
      } catch (e) {
        this.identityFailed = true;
        throw e;
      }
    }
    let first: unknown;
    do {
      for (const o of this.outputs) {
        if (signal?.aborted) return;
        if (!this.dirty.has(o.name)) continue;
        try {
          await this.timed(o.name, async () => {
            if (!this.ready.has(o.name)) {
              await o.init();
              this.ready.add(o.name);
            }
            await o.render();
          });
          this.dirty.delete(o.name);
          this.log.info("Output written", { output: o.name });
        } catch (e) {
          this.ready.delete(o.name);
          this.log.warn("Cannot write output", { output: o.name, error: errorMessage(e) });
          first ??= e;
        }
      }
      // A reload that arrived while this ran would lose its trigger: apply it now.
    } while (!signal?.aborted && this.applyPendingConfig());
    // The agent sleeps for most of its life: hand back what this iteration allocated
    // (keys, certificates, TLS state) now rather than whenever the heap next grows.
    // A full collection costs ~10 ms of CPU per iteration — nothing at real renewal
    // intervals — and keeps the daemon's RSS ~5 MB lower (bench/RESULTS.md).
    Bun.gc(true);
    if (first !== undefined) throw first;
  }

  /** Joins or renews once and writes every output; throws the first failure. */
  async oneshot(): Promise<void> {
    await this.iteration(undefined, true);
  }

  /** Runs the loop until `signal` aborts; failures are retried with backoff, never thrown. */
  async run(signal: AbortSignal, hooks: { onIteration?: (error?: unknown) => void } = {}): Promise<void> {
    this.loop = new IntervalLoop({
      name: "agent",
      interval: () => this.config.renewalIntervalMs,
      task: (s) => this.iteration(s),
      signal,
      clock: this.clock,
      ...(this.options.backoff ? { backoff: this.options.backoff } : {}),
      ...(this.options.random ? { random: this.options.random } : {}),
      onSuccess: () => hooks.onIteration?.(),
      onFailure: (e, attempt, next) => {
        this.log.warn("Agent iteration failed; the last good outputs stay in place", {
          error: errorMessage(e),
          attempt,
          retry_in_ms: Math.round(next),
        });
        hooks.onIteration?.(e);
      },
    });
    try {
      await this.loop.run();
    } finally {
      this.loop = undefined;
    }
  }

  /** The agent loop as a Service. */
  service(hooks: { onIteration?: (error?: unknown) => void } = {}): Service {
    return { name: "agent", run: (signal) => this.run(signal, hooks) };
  }
}
