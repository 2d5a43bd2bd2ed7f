/**
 * The one interval-and-retry loop every renewing thing runs on: do the task, wait
 * the interval, repeat; on failure back off exponentially with jitter, and after
 * the retry budget fall back to the regular interval. Time comes from a Clock so
 * tests drive it without sleeping.
 */

import { systemClock, type Clock } from "./clock.ts";

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
