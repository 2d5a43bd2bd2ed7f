/**
 * The one interval-and-retry loop, driven by a FakeClock: interval, exponential
 * backoff with jitter, the retry budget, trigger() and stopping.
 */

import { describe, expect, test } from "bun:test";
import { FakeClock } from "../../src/lib/clock.ts";
import { backoffDelay, IntervalLoop } from "../../src/lib/retry.ts";

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
