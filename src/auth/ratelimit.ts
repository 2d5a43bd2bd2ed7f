/**
 * Rate limiting of failed joins by remote address: guessing tokens, replaying
 * challenges or sending junk to the join endpoints earns a 429 with Retry-After
 * after a burst, and the moment an address is limited is audited. Successful joins
 * cost nothing and renewals are never limited. A join method may add a limit of its own
 * per address ({@link AddressLimit}: bound keypair limits its unanswered challenges).
 */

import type { MiddlewareHandler } from "hono";
import type { Clock } from "../lib/clock.ts";
import { AppError } from "../lib/errors.ts";
import { STATUS_BY_CODE, errorBody } from "../protocol/index.ts";
import { EVENT } from "./audit.ts";
import type { AuthContext } from "./context.ts";
import type { Env } from "./request.ts";

export interface FailureLimiterOptions {
  /** Failures an address may have in a row before it is limited; default 10. */
  burst?: number;
  /** One more failure is allowed every this long (the sustained rate); default 6s, i.e. 10 a minute. */
  refillMs?: number;
  /** Addresses remembered at most; the least recently failing are forgotten first. Default 100,000. */
  maxAddresses?: number;
  clock: Clock;
}

interface Bucket {
  /** Failures still allowed, fractional while refilling. */
  allowance: number;
  /** When `allowance` was last brought up to date (ms). */
  updatedMs: number;
}

/**
 * A token bucket per remote address, spent only by failures. Hand-written rather than
 * a library: the whole policy is a dozen lines, and it must run on the service's clock
 * so tests drive it with a FakeClock.
 */
export class FailureLimiter {
  readonly burst: number;
  readonly refillMs: number;
  private readonly maxAddresses: number;
  private readonly clock: Clock;
  private readonly buckets = new Map<string, Bucket>();

  constructor(opts: FailureLimiterOptions) {
    this.burst = opts.burst ?? 10;
    this.refillMs = opts.refillMs ?? 6000;
    this.maxAddresses = opts.maxAddresses ?? 100_000;
    this.clock = opts.clock;
  }

  /** Addresses with failures on record (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private current(addr: string, now: number): Bucket | undefined {
    const b = this.buckets.get(addr);
    if (!b) return undefined;
    b.allowance = Math.min(this.burst, b.allowance + (now - b.updatedMs) / this.refillMs);
    b.updatedMs = now;
    if (b.allowance >= this.burst) {
      // fully recovered: nothing left to remember
      this.buckets.delete(addr);
      return undefined;
    }
    return b;
  }

  /** Milliseconds until `addr` may try to join again; 0 when it may now. */
  retryAfterMs(addr: string): number {
    const now = this.clock.now().getTime();
    const b = this.current(addr, now);
    if (!b || b.allowance >= 1) return 0;
    return Math.ceil((1 - b.allowance) * this.refillMs);
  }

  /** Gives back one spent allowance of `addr` (a challenge it was issued was answered). */
  refund(addr: string): void {
    const b = this.current(addr, this.clock.now().getTime());
    if (b) b.allowance = Math.min(this.burst, b.allowance + 1);
  }

  /** Counts one failure from `addr`; true when it spent the last allowance (the address is limited from now). */
  recordFailure(addr: string): boolean {
    const now = this.clock.now().getTime();
    const b = this.current(addr, now) ?? { allowance: this.burst, updatedMs: now };
    b.allowance = Math.max(0, b.allowance - 1);
    // re-insert so the Map's order runs from least to most recently failing
    this.buckets.delete(addr);
    this.buckets.set(addr, b);
    if (this.buckets.size > this.maxAddresses) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    return b.allowance < 1;
  }
}

/**
 * A join method's own limit per address on its routes (`JoinMethod.addressLimit`), which
 * {@link limitFailedJoins} consults after the failed-join limit, in the same middleware:
 * a method's own 429 is then not counted as a failed join too.
 */
export interface AddressLimit {
  /** How long `addr` must wait before `path` is served, and for what (the 429's message); undefined when it may go on. */
  wait(addr: string, path: string): { ms: number; what: string } | undefined;
  /** Accounts the answer `status` that `path` gave `addr`. */
  answered(addr: string, path: string, status: number): Promise<void>;
}

/**
 * The app's middleware on the join routes (app.ts mounts it, outermost, on the join
 * registry's JOIN_PATHS: every way to join without a certificate): an address with
 * too many failed joins gets 429 LIMIT_EXCEEDED with Retry-After until its allowance
 * refills. A failure is any 4xx answer from a join route (413 and bad
 * JSON included: junk is how guessing looks). Behind a proxy every client shares the
 * proxy's address, so the limit applies to all of them together. `methods` are the
 * registered methods' own limits (bound keypair: its unanswered challenges).
 */
export function limitFailedJoins(ctx: AuthContext, limiter: FailureLimiter, methods: readonly AddressLimit[] = []): MiddlewareHandler<Env> {
  return async (c, next) => {
    const path = c.req.path;
    const addr = c.env.conn.remoteAddr;
    const waitMs = limiter.retryAfterMs(addr);
    if (waitMs > 0) return tooMany(waitMs, "Too many failed joins from this address");
    for (const m of methods) {
      const wait = m.wait(addr, path);
      if (wait && wait.ms > 0) return tooMany(wait.ms, wait.what);
    }
    await next();
    const status = c.res.status;
    for (const m of methods) await m.answered(addr, path, status);
    if (status >= 400 && status < 500 && limiter.recordFailure(addr)) {
      const retryAfter = Math.ceil(limiter.retryAfterMs(addr) / 1000);
      // Audited once per limited period, not per refused request: a flood must not turn into a flood of writes.
      await ctx.audit.emit(EVENT.joinFailed, ctx.clock.now(), {
        reason: `rate limited: ${limiter.burst} failed joins from this address`,
        remote_addr: addr,
        error: "LIMIT_EXCEEDED",
        retry_after_seconds: retryAfter,
      });
    }
  };
}

function tooMany(waitMs: number, what: string): Response {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  const e = new AppError("LIMIT_EXCEEDED", `${what}: try again in ${seconds}s`, {
    details: { retry_after_seconds: seconds },
  });
  return Response.json(errorBody(e), { status: STATUS_BY_CODE[e.code], headers: { "retry-after": String(seconds) } });
}
