/**
 * Waiting for a condition with a deadline, instead of sleeping a guessed time: the one
 * polling helper of the tests. The deadline only guards against a hang; make it generous.
 */

/**
 * Polls `cond` until it returns a truthy value (returned) or `deadlineMs` passes (throws
 * naming `what`).
 */
export async function waitFor<T>(what: string, cond: () => T | Promise<T>, deadlineMs = 10_000): Promise<NonNullable<T>> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`Timed out after ${deadlineMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The value of one Prometheus sample, e.g. `metric{task="identity"}`; 0 when absent. */
export function metricValue(text: string, sample: string): number {
  const line = text.split("\n").find((l) => l.startsWith(sample + " "));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}
