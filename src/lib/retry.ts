/**
 * The one interval-and-retry loop every renewing thing runs on: do the task, wait
 * the interval, repeat; on failure back off exponentially with jitter, and after
 * the retry budget fall back to the regular interval; never sooner than a server's
 * Retry-After. Time comes from a Clock so tests drive it without sleeping.
 */

import { systemClock, type Clock } from "./clock.ts";
import { isAppError } from "./errors.ts";

export interface BackoffOptions {
  /** First retry delay; default 1s. */
  initialMs?: number;
  /** Ceiling for one retry delay; default 16s. */
  maxMs?: number;
  /** Retries before waiting for the next regular interval; default 5 (≈1, 2, 4, 8, 16s). */
  retries?: number;
  /** Fraction of each delay added or removed at random; default 0.2. */
  jitter?: number;
}

export interface LoopOptions {
  name: string;
  /**
   * Milliseconds between successful runs; read before every wait so a reload can change it.
   * `Infinity` runs the task again only when `trigger()` is called (a service woken by
   * another one, such as an output by a renewed identity); no timer is set meanwhile.
   */
  interval: () => number;
  /** The work. Throwing counts as a failure; the signal aborts when the loop stops. */
  task: (signal: AbortSignal) => Promise<void>;
  signal: AbortSignal;
  clock?: Clock;
  backoff?: BackoffOptions;
  random?: () => number;
  /** Run the task at once (default) or wait one interval first. */
  runImmediately?: boolean;
  onSuccess?: () => void;
  onFailure?: (error: unknown, attempt: number, nextDelayMs: number) => void;
}

/** The delay before retry number `attempt` (1-based), jittered. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 1000;
  const max = options.maxMs ?? 16_000;
  const jitter = options.jitter ?? 0.2;
  const base = Math.min(max, initial * 2 ** (attempt - 1));
  return Math.max(0, Math.round(base * (1 + jitter * (2 * random() - 1))));
}

/**
 * How long a server asked to wait before the next attempt, in ms: a LIMIT_EXCEEDED
 * error (HTTP 429) whose details carry `retry_after_seconds` (the auth service's
 * Retry-After); undefined for any other error.
 */
export function serverRetryAfterMs(e: unknown): number | undefined {
  if (!isAppError(e, "LIMIT_EXCEEDED")) return undefined;
  const s = e.details?.retry_after_seconds;
  return typeof s === "number" && Number.isFinite(s) && s >= 0 ? s * 1000 : undefined;
}

/**
 * The wait before trying again after `e`, when the server asked for one: its
 * Retry-After plus up to `spread` of it more at random (never less), so that clients
 * limited together do not all come back in the same instant. Undefined otherwise.
 */
export function askedDelay(e: unknown, random: () => number = Math.random, spread = 0.5): number | undefined {
  const ms = serverRetryAfterMs(e);
  return ms === undefined ? undefined : Math.round(ms * (1 + spread * random()));
}

/**
 * Whether `e` is a connection the service closed as it was made (details.reason
 * "connection_reset"): what a service at its connection cap does to one more client.
 */
export function connectionReset(e: unknown): boolean {
  return isAppError(e, "CONNECTION_PROBLEM") && e.details?.reason === "connection_reset";
}

export interface RetryWhenAskedOptions {
  clock?: Clock;
  random?: () => number;
  /** Attempts in all, the first included; default 30. */
  attempts?: number;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `task`; while it fails because the server asked to be asked again later
 * (`askedDelay`), waits that long and runs it again, `attempts` times in all; a
 * connection the server closed at once (`connectionReset`) is retried after the usual
 * backoff (1, 2, 4… 16 s). Any other failure, or the last one, is thrown. For one-off
 * work with no loop around it (a oneshot join): a crowd of nodes joining at once is
 * told to come back, not refused.
 */
export async function retryWhenAsked<T>(task: () => Promise<T>, options: RetryWhenAskedOptions = {}): Promise<T> {
  const clock = options.clock ?? systemClock;
  const attempts = options.attempts ?? 30;
  for (let attempt = 1; ; attempt++) {
    try {
      return await task();
    } catch (e) {
      const delay = attempt >= attempts ? undefined : (askedDelay(e, options.random) ?? (connectionReset(e) ? backoffDelay(attempt, {}, options.random) : undefined));
      if (delay === undefined) throw e;
      options.onRetry?.(e, attempt, delay);
      await clock.sleep(delay);
    }
  }
}

/**
 * A running loop. `run()` resolves when the signal aborts (never rejects for task
 * failures); `trigger()` cuts the current wait short so the task runs now.
 */
export class IntervalLoop {
  private wake: AbortController | undefined;
  /** A trigger() that arrived while the task ran: the next wait ends at once. */
  private triggered = false;
  private readonly clock: Clock;
  private readonly random: () => number;

  constructor(private readonly options: LoopOptions) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
  }

  /** Runs the task as soon as the current attempt (if any) is done. */
  trigger(): void {
    if (this.wake) this.wake.abort();
    else this.triggered = true;
  }

  async run(): Promise<void> {
    const { signal } = this.options;
    const retries = this.options.backoff?.retries ?? 5;
    let failures = 0;
    // undefined = the regular interval, read at wait time so a reload can change it
    let delay: number | undefined = (this.options.runImmediately ?? true) ? 0 : undefined;
    while (!signal.aborted) {
      if (delay !== 0 && !(await this.wait(delay ?? this.options.interval()))) return;
      try {
        await this.options.task(signal);
        failures = 0;
        delay = undefined;
        this.options.onSuccess?.();
      } catch (e) {
        if (signal.aborted) return;
        failures++;
        const attempt = failures;
        if (failures <= retries) {
          delay = backoffDelay(failures, this.options.backoff, this.random);
        } else {
          failures = 0; // budget spent: wait a full interval, then back off afresh
          delay = undefined;
        }
        // never sooner than the server asked (429 with Retry-After)
        const asked = askedDelay(e, this.random);
        if (asked !== undefined && asked > (delay ?? this.options.interval())) delay = asked;
        this.options.onFailure?.(e, attempt, delay ?? this.options.interval());
      }
    }
  }

  /** Waits `ms`; true when woken by time or trigger(), false when the loop is stopping. */
  private async wait(ms: number): Promise<boolean> {
    const { signal } = this.options;
    if (signal.aborted) return false;
    if (this.triggered) {
      this.triggered = false;
      return true;
    }
    this.wake = new AbortController();
    const woken = AbortSignal.any([signal, this.wake.signal]);
    try {
      if (ms === Infinity) await new Promise<void>((resolve) => woken.addEventListener("abort", () => resolve(), { once: true }));
      else await this.clock.sleep(ms, woken);
    } catch {
      // woken early by trigger() or stopped by the signal
    } finally {
      this.wake = undefined;
    }
    return !signal.aborted;
  }
}
