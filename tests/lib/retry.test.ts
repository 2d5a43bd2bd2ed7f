/**
 * The one interval-and-retry loop, driven by a FakeClock: interval, exponential
 * backoff with jitter, the retry budget, trigger() and stopping.
 */

import { describe, expect, test } from "bun:test";
import { FakeClock } from "../../src/lib/clock.ts";
import { AppError } from "../../src/lib/errors.ts";
import { askedDelay, backoffDelay, connectionReset, IntervalLoop, retryWhenAsked, serverRetryAfterMs } from "../../src/lib/retry.ts";
import { AuthClient } from "../../src/protocol/index.ts";

/** Lets queued promise callbacks run (the loop awaits between steps). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await settle();
  if (!cond()) throw new Error("condition never became true");
}

describe("backoffDelay()", () => {
  test("doubles from 1s to the 16s ceiling without jitter", () => {
    const d = (n: number) => backoffDelay(n, { jitter: 0 });
    expect([1, 2, 3, 4, 5, 6].map(d)).toEqual([1000, 2000, 4000, 8000, 16000, 16000]);
  });

  test("jitter stays within ±20% by default", () => {
    expect(backoffDelay(3, {}, () => 0)).toBe(3200);
    expect(backoffDelay(3, {}, () => 1)).toBe(4800);
  });
});

describe("IntervalLoop", () => {
  function loop(clock: FakeClock, task: () => Promise<void>, opts: Partial<ConstructorParameters<typeof IntervalLoop>[0]> = {}) {
    const ac = new AbortController();
    const l = new IntervalLoop({ name: "t", interval: () => 60_000, task, signal: ac.signal, clock, random: () => 0.5, ...opts });
    const done = l.run();
    return { l, ac, done };
  }

  test("runs at once, then every interval", async () => {
    const clock = new FakeClock();
    let runs = 0;
    const { ac, done } = loop(clock, async () => void runs++);
    await waitUntil(() => runs === 1 && clock.waiting === 1);
    clock.advance(59_999);
    await settle();
    expect(runs).toBe(1);
    clock.advance(1);
    await waitUntil(() => runs === 2 && clock.waiting === 1);
    ac.abort();
    await done;
  });

  test("an Infinity interval sets no timer: the task runs again only when triggered", async () => {
    const clock = new FakeClock();
    let runs = 0;
    const { l, ac, done } = loop(clock, async () => void runs++, { interval: () => Infinity });
    await waitUntil(() => runs === 1);
    clock.advance(365 * 86_400_000);
    await settle();
    expect(runs).toBe(1);
    expect(clock.waiting).toBe(0);
    l.trigger();
    await waitUntil(() => runs === 2);
    ac.abort();
    await done;
  });

  test("on failure backs off 1, 2, 4, 8, 16s, then waits a full interval and starts over", async () => {
    const clock = new FakeClock();
    const delays: number[] = [];
    let runs = 0;
    const { ac, done } = loop(
      clock,
      async () => {
        runs++;
        throw new Error("down");
      },
      { onFailure: (_e, _attempt, next) => delays.push(next) },
    );
    for (const step of [1000, 2000, 4000, 8000, 16000, 60_000, 1000]) {
      await waitUntil(() => clock.waiting === 1 && delays.length === runs);
      clock.advance(step);
    }
    await waitUntil(() => runs === 8);
    expect(delays.slice(0, 7)).toEqual([1000, 2000, 4000, 8000, 16000, 60_000, 1000]);
    ac.abort();
    await done;
  });

  test("a success resets the backoff", async () => {
    const clock = new FakeClock();
    const outcomes = [false, false, true, false];
    const delays: number[] = [];
    let runs = 0;
    const { ac, done } = loop(
      clock,
      async () => {
        const ok = outcomes[runs++] ?? true;
        if (!ok) throw new Error("x");
      },
      { onFailure: (_e, _a, next) => delays.push(next) },
    );
    await waitUntil(() => runs === 1 && clock.waiting === 1);
    clock.advance(1000);
    await waitUntil(() => runs === 2 && clock.waiting === 1);
    clock.advance(2000);
    await waitUntil(() => runs === 3 && clock.waiting === 1);
    clock.advance(60_000);
    await waitUntil(() => runs === 4 && clock.waiting === 1);
    expect(delays).toEqual([1000, 2000, 1000]);
    ac.abort();
    await done;
  });

  test("trigger() cuts a wait short", async () => {
    const clock = new FakeClock();
    let runs = 0;
    const { l, ac, done } = loop(clock, async () => void runs++);
    await waitUntil(() => runs === 1 && clock.waiting === 1);
    l.trigger();
    await waitUntil(() => runs === 2);
    ac.abort();
    await done;
  });

  test("a trigger() that arrives while the task runs is not lost", async () => {
    const clock = new FakeClock();
    let runs = 0;
    let release!: () => void;
    const { l, ac, done } = loop(clock, async () => {
      runs++;
      if (runs === 1) await new Promise<void>((r) => (release = r));
    });
    await waitUntil(() => runs === 1 && release !== undefined);
    l.trigger();
    release();
    await waitUntil(() => runs === 2);
    ac.abort();
    await done;
  });

  test("abort ends run() during a wait and during the task", async () => {
    const clock = new FakeClock();
    const { ac, done } = loop(clock, async () => {});
    await waitUntil(() => clock.waiting === 1);
    ac.abort();
    await done;

    const ac2 = new AbortController();
    const l2 = new IntervalLoop({
      name: "t2",
      interval: () => 1000,
      clock,
      signal: ac2.signal,
      task: (signal) => new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted")))),
    });
    const d2 = l2.run();
    await settle();
    ac2.abort();
    await d2;
  });
});

describe("a server's Retry-After (429 LIMIT_EXCEEDED)", () => {
  const limited = (seconds: number) => new AppError("LIMIT_EXCEEDED", `Too many: try again in ${seconds}s`, { details: { retry_after_seconds: seconds } });

  test("serverRetryAfterMs() and askedDelay() read it from the error's details, only from LIMIT_EXCEEDED", () => {
    expect(serverRetryAfterMs(limited(3))).toBe(3000);
    expect(serverRetryAfterMs(new AppError("ACCESS_DENIED", "no", { details: { retry_after_seconds: 3 } }))).toBeUndefined();
    expect(serverRetryAfterMs(new AppError("LIMIT_EXCEEDED", "no details"))).toBeUndefined();
    expect(serverRetryAfterMs(new Error("x"))).toBeUndefined();
    // never sooner than asked; up to half again later, so a crowd spreads out
    expect(askedDelay(limited(2), () => 0)).toBe(2000);
    expect(askedDelay(limited(2), () => 1)).toBe(3000);
  });

  test("retryWhenAsked() waits as asked and tries again; other errors and the last attempt throw", async () => {
    const clock = new FakeClock();
    let calls = 0;
    const waits: number[] = [];
    const done = retryWhenAsked(
      async () => {
        calls++;
        if (calls < 3) throw limited(5);
        return "joined";
      },
      { clock, random: () => 0, onRetry: (_e, _attempt, ms) => waits.push(ms) },
    );
    await waitUntil(() => clock.waiting === 1);
    clock.advance(4999);
    await settle();
    expect(calls).toBe(1); // not before the server's time
    clock.advance(1);
    await waitUntil(() => clock.waiting === 1 && calls === 2);
    clock.advance(5000);
    expect(await done).toBe("joined");
    expect(waits).toEqual([5000, 5000]);

    let other = 0;
    const denied = retryWhenAsked(async () => {
      other++;
      throw new AppError("ACCESS_DENIED", "no");
    });
    await expect(denied).rejects.toThrow("no");
    expect(other).toBe(1);

    let n = 0;
    const capped = retryWhenAsked(
      async () => {
        n++;
        throw limited(0);
      },
      { clock, attempts: 3 },
    );
    for (const attempt of [1, 2]) {
      await waitUntil(() => n === attempt && clock.waiting === 1);
      clock.advance(0);
    }
    await expect(capped).rejects.toThrow("Too many");
    expect(n).toBe(3);
  });

  test("IntervalLoop waits at least the server's Retry-After after a 429, longer than its own backoff", async () => {
    const clock = new FakeClock();
    let runs = 0;
    const ac = new AbortController();
    const task = async () => {
      runs++;
      if (runs === 1) throw limited(30);
    };
    const done = new IntervalLoop({ name: "t", interval: () => 60 * 60_000, task, signal: ac.signal, clock, random: () => 0.5 }).run();
    await waitUntil(() => runs === 1 && clock.waiting === 1);
    clock.advance(16_000); // beyond any backoff of a first retry (1 s)
    await settle();
    expect(runs).toBe(1);
    clock.advance(14_000 + 7_500); // 30 s asked, random 0.5 → 37.5 s
    await waitUntil(() => runs === 2);
    ac.abort();
    await done;
  });
});

describe("a connection the service closed at once (its connection cap)", () => {
  test("AuthClient names it connection_reset, and retryWhenAsked() comes back after the backoff", async () => {
    // a listener that closes every connection as it is accepted, as the auth service does past its cap
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.terminate(), data: () => {} } });
    try {
      const client = new AuthClient({ addr: `127.0.0.1:${server.port}`, tls: { caCertsPem: [] } as never });
      const e = await client.ping().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(connectionReset(e)).toBe(true);
      expect((e as Error).message).toContain("it closed the connection");

      const clock = new FakeClock();
      let calls = 0;
      const done = retryWhenAsked(
        async () => {
          if (++calls === 1) throw e;
          return "joined";
        },
        { clock, random: () => 0.5 },
      );
      await waitUntil(() => clock.waiting === 1);
      clock.advance(999);
      await settle();
      expect(calls).toBe(1);
      clock.advance(1);
      expect(await done).toBe("joined");
      // a refused connection (nothing listening) is not retried: a wrong address fails at once
      expect(connectionReset(new AppError("CONNECTION_PROBLEM", "refused", { details: {} }))).toBe(false);
    } finally {
      server.stop(true);
    }
  });
});
