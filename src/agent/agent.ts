/**
 * The agent at run time, as services in tbot's model: the identity service renews the
 * bot's identity on its interval, and each configured output is its own service with
 * its own loop and backoff, woken whenever the identity changes. A failing or hanging
 * destination therefore delays no other output and not the next renewal; a failure
 * leaves that output's last good files in place while it retries.
 */

import { systemClock, type Clock } from "../lib/clock.ts";
import { AppError, errorMessage, isAppError } from "../lib/errors.ts";
import { IntervalLoop, retryWhenAsked, type BackoffOptions } from "../lib/retry.ts";
import type { Logger } from "../lib/log.ts";
import type { AgentConfig } from "../config/index.ts";
import type { AuthClient, ClientTLS } from "../protocol/index.ts";
import { Bot, BotStore, type BotIdentity, type BotSettings } from "./bot/index.ts";
import { registerBuiltins } from "./builtins.ts";
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
  /** Retry timing of the loops (tests shorten it). */
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

/** What an output service needs from the agent. */
interface OutputServiceDeps {
  identity(): BotIdentity | undefined;
  /** Runs one attempt of `task`, recording metrics and health under its name. */
  timed(task: string, fn: () => Promise<void>): Promise<void>;
  /** Marks the start and end of a write (for the idle collection). */
  busy(delta: 1 | -1): void;
  loopOptions: Pick<AgentOptions, "clock" | "backoff" | "random">;
  log: Logger;
}

/**
 * One output as a service: it writes when the identity it last wrote for is not the
 * current one, then sleeps until the identity service wakes it. A failure is retried
 * with backoff (≈1, 2, 4, 8, 16 s); when the retry budget is spent it waits for the
 * next renewal. Two services for the same output never write at once: one replacing
 * another (a reload) starts after the old one has finished its write.
 */
class OutputService {
  /** The identity whose certificates this output last wrote. */
  private writtenFor: BotIdentity | undefined;
  private prepared = false;
  private loop: IntervalLoop | undefined;
  private readonly stop = new AbortController();
  /** Settles when the service has stopped. */
  done: Promise<void> = Promise.resolve();

  constructor(
    readonly output: Output,
    private readonly deps: OutputServiceDeps,
  ) {}

  get name(): string {
    return this.output.name;
  }

  /** The identity changed (or a reload wants a rewrite): write at once, or right after the write in progress. */
  wake(): void {
    this.loop?.trigger();
  }

  /** Starts the loop after `previous` (the service this one replaces) has stopped. */
  start(signal: AbortSignal, previous?: Promise<void>): void {
    const stop = AbortSignal.any([signal, this.stop.signal]);
    const { clock, backoff, random } = this.deps.loopOptions;
    this.loop = new IntervalLoop({
      name: this.name,
      interval: () => Infinity, // woken by the identity service, never by a timer
      task: () => this.writeIfStale(),
      signal: stop,
      ...(clock ? { clock } : {}),
      ...(backoff ? { backoff } : {}),
      ...(random ? { random } : {}),
      onFailure: (e, attempt, next) =>
        this.deps.log.warn("Cannot write output", {
          output: this.name,
          error: errorMessage(e),
          kept: "the last good files stay in place",
          attempt,
          ...(Number.isFinite(next) ? { retry_in_ms: Math.round(next) } : { retry: "after the next renewal" }),
        }),
    });
    const loop = this.loop;
    this.done = (async () => {
      await previous;
      await loop.run();
    })();
  }

  /** Stops the loop; `done` settles once the write in progress (if any) has finished. */
  retire(): Promise<void> {
    this.stop.abort();
    return this.done;
  }

  /** Writes the output for the current identity unless it already has; throws what the write threw. */
  async writeIfStale(): Promise<void> {
    const id = this.deps.identity();
    if (!id || id === this.writtenFor) return;
    this.deps.busy(1);
    try {
      await this.deps.timed(this.name, async () => {
        try {
          if (!this.prepared) {
            await this.output.init();
            this.prepared = true;
          }
          await this.output.render();
        } catch (e) {
          this.prepared = false; // prepare the destination again before the retry
          throw e;
        }
      });
      this.writtenFor = id;
      this.deps.log.info("Output written", { output: this.name });
    } finally {
      this.deps.busy(-1);
    }
  }

  /** Health updates from a retired service would resurrect a removed entry. */
  get retired(): boolean {
    return this.stop.signal.aborted;
  }
}

/** Joins, renews and writes outputs; see the module comment. */
export class Agent {
  readonly health = new HealthRegistry();
  readonly metrics: AgentMetrics;
  readonly bot: Bot;
  private config: AgentConfig;
  private outputs: OutputService[] = [];
  /** Bot settings from a reload, applied before the next renewal (never during one). */
  private pendingSettings: BotSettings | undefined;
  /** The signal of run(), while it runs: output services built by a reload start on it. */
  private running: AbortSignal | undefined;
  private busyWrites = 0;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly options: AgentOptions) {
    registerBuiltins();
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
      kubernetesClusters: () => this.bot.kubernetesClusters(),
      identity: () => this.bot.identity,
      destination: (d) => createDestination(d, { log: this.log.child("destination") }),
      credentialTtlMs: cfg.credentialTtlMs,
      clock: this.clock,
      log: this.log.child("output"),
    };
  }

  /** Replaces the output services with those `cfg` describes; running ones are retired and the new ones started. */
  private setOutputs(cfg: AgentConfig): void {
    const deps = this.outputDeps(cfg);
    const log = this.log.child("output");
    const services = [...cfg.outputs, ...cfg.services].map((o, i) => {
      const s: OutputService = new OutputService(buildOutput(o, deps, i), {
        identity: () => this.bot.identity,
        timed: (task, fn) => this.timed(task, fn, s),
        busy: (delta) => this.busy(delta),
        loopOptions: this.options,
        log,
      });
      return s;
    });
    const old = this.outputs;
    for (const o of old) if (!services.some((s) => s.name === o.name)) this.health.remove(o.name);
    this.outputs = services;
    for (const s of services) this.health.set(s.name, "initializing");
    const signal = this.running;
    if (!signal) return;
    for (const s of services) s.start(signal, old.find((o) => o.name === s.name)?.retire());
    for (const o of old) void o.retire();
  }

  /**
   * Takes a new config (SIGHUP): the outputs are rebuilt and all written again now, with
   * the current identity; the bot's settings apply from the next renewal. Storage changes
   * need a restart.
   */
  reload(cfg: AgentConfig): void {
    if (JSON.stringify(cfg.storage) !== JSON.stringify(this.config.storage)) {
      this.log.warn("The storage setting changed: it takes effect after a restart");
    }
    this.config = cfg;
    this.pendingSettings = botSettings(cfg);
    this.setOutputs(cfg);
    this.log.info("Configuration reloaded", { outputs: this.outputs.length });
  }

  private async timed(task: string, fn: () => Promise<void>, service?: OutputService): Promise<void> {
    const start = performance.now();
    const report = (status: "healthy" | "unhealthy", reason?: string) => {
      if (!service?.retired) this.health.set(task, status, reason);
    };
    try {
      await fn();
      this.metrics.record(task, true, (performance.now() - start) / 1000);
      report("healthy");
    } catch (e) {
      this.metrics.record(task, false, (performance.now() - start) / 1000);
      report("unhealthy", errorMessage(e));
      throw e;
    }
  }

  private busy(delta: 1 | -1): void {
    this.busyWrites += delta;
    // The agent sleeps for most of its life: once the last write is done, hand back what
    // the renewal and the writes allocated (keys, certificates, TLS state) now rather
    // than whenever the heap next grows. A full collection costs ~10 ms of CPU per
    // renewal — nothing at real renewal intervals — and keeps the daemon's RSS ~5 MB
    // lower (bench/RESULTS.md). A oneshot (not running) exits instead: there the
    // collection was a fifth of its CPU.
    if (this.busyWrites === 0 && this.running) Bun.gc(true);
  }

  /** Joins or renews once, recording health and metrics, and wakes every output. */
  private async renew(): Promise<void> {
    if (this.pendingSettings) {
      this.bot.settings = this.pendingSettings;
      this.pendingSettings = undefined;
    }
    await this.timed(IDENTITY_TASK, async () => {
      const outcome = await this.bot.refresh();
      this.log.debug("Identity refreshed", { outcome });
    });
    for (const o of this.outputs) o.wake();
    // with outputs, the last write collects (busy()); without, the renewal does
    if (this.outputs.length === 0 && this.running) Bun.gc(true);
  }

  /**
   * Joins or renews once, then writes every output concurrently. Throws when the
   * identity or any output failed, naming each output that did (the others are written).
   */
  async oneshot(): Promise<void> {
    // many nodes joining at once may be told to come back (429 Retry-After, or a
    // connection closed at the service's connection cap): do so
    await retryWhenAsked(() => this.renew(), {
      clock: this.clock,
      ...(this.options.random ? { random: this.options.random } : {}),
      onRetry: (e, attempt, delayMs) => this.log.warn("The auth service is busy: trying again later", { error: errorMessage(e), attempt, retry_in_ms: delayMs }),
    });
    const results = await Promise.allSettled(this.outputs.map((o) => o.writeIfStale()));
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [{ name: this.outputs[i]!.name, error: r.reason as unknown }] : []));
    if (failed.length === 0) return;
    const first = failed[0]!.error;
    const list = failed.map((f) => `"${f.name}" (${errorMessage(f.error)})`).join(", ");
    throw new AppError(
      isAppError(first) ? first.code : "INTERNAL",
      `Cannot write ${failed.length === 1 ? "output" : `${failed.length} of ${this.outputs.length} outputs`} ${list}; the others were written`,
      { cause: first, details: { outputs: failed.map((f) => f.name) } },
    );
  }

  /**
   * Runs the identity service and one service per output until `signal` aborts;
   * failures are retried with backoff, never thrown. `onIteration` reports each renewal
   * attempt. Resolves once every service has finished its write in progress.
   */
  async run(signal: AbortSignal, hooks: { onIteration?: (error?: unknown) => void } = {}): Promise<void> {
    this.running = signal;
    for (const o of this.outputs) o.start(signal);
    const identity = new IntervalLoop({
      name: IDENTITY_TASK,
      interval: () => this.config.renewalIntervalMs,
      task: () => this.renew(),
      signal,
      clock: this.clock,
      ...(this.options.backoff ? { backoff: this.options.backoff } : {}),
      ...(this.options.random ? { random: this.options.random } : {}),
      onSuccess: () => hooks.onIteration?.(),
      onFailure: (e, attempt, next) => {
        this.log.warn("Cannot renew the bot identity; the last good outputs stay in place", {
          error: errorMessage(e),
          attempt,
          retry_in_ms: Math.round(next),
        });
        hooks.onIteration?.(e);
      },
    });
    try {
      await identity.run();
    } finally {
      this.running = undefined;
      await Promise.all(this.outputs.map((o) => o.retire()));
    }
  }

  /** The identity and output services as one Service. */
  service(hooks: { onIteration?: (error?: unknown) => void } = {}): Service {
    return { name: "agent", run: (signal) => this.run(signal, hooks) };
  }
}
