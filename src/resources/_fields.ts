/**
 * Field schemas shared by every resource kind and config file: names, durations,
 * RFC 3339 times, string lists, and the helper refinements use to raise problems.
 */

import * as z from "zod";
import { DURATION_FORMS, formatDuration, missingUnit, parseDuration } from "../lib/duration.ts";
import { isAppError } from "../lib/errors.ts";
import { expecting, type ProblemParams } from "./_issues.ts";

/** Raises a worded problem from a superRefine at `path` (relative to the refined value). */
export function raise(
  ctx: z.RefinementCtx,
  path: PropertyKey[],
  problem: ProblemParams["problem"],
  message: string,
  what?: string,
): void {
  const params: ProblemParams = what === undefined ? { problem } : { problem, what };
  ctx.addIssue({ code: "custom", path, message, params });
}

/** A non-empty string. */
export const text = () => expecting(z.string().min(1), "a string");

/** A list of strings. */
export const stringList = () => z.array(z.string());

/** The resource name rule: DNS-like, lowercase, at most 253 characters. */
export const NAME_PATTERN = /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/;
export const MAX_NAME_LENGTH = 253;

/** Why `name` is not a valid resource name, or undefined when it is. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > MAX_NAME_LENGTH) return `must be at most ${MAX_NAME_LENGTH} characters long`;
  if (!NAME_PATTERN.test(name)) {
    return `expected lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit`;
  }
  return undefined;
}

/** A resource name (role, bot, and the names that refer to them). */
export const resourceName = () =>
  z.string().superRefine((s, ctx) => {
    const p = nameProblem(s);
    if (p) raise(ctx, [], "invalid", p, "name");
  });

export interface DurationRules {
  /** Reject zero (and so allow only positive durations). */
  positive?: boolean;
  /** The largest allowed value in ms; the message names it. */
  maxMs?: number;
}

/** A Go-style duration kept as the string the user wrote ("1h30m"). */
export const durationString = (rules: DurationRules = {}) =>
  // a YAML number ("renewal_interval: 10") is read as its text so that it gets the
  // same "add a unit" answer as the flag "--renewal-interval 10"
  z.preprocess(
    (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? String(v) : v),
    expecting(
      z.string().superRefine((s, ctx) => {
        const p = durationProblem(s, rules);
        if (p) raise(ctx, [], "invalid", p, "duration");
      }),
      `a duration such as "1h" or "30m"`,
      `durations such as "1h" or "30m"`,
    ),
  );

/** Why `s` is not an acceptable duration, or undefined. */
export function durationProblem(s: string, rules: DurationRules = {}): string | undefined {
  let ms: number;
  try {
    ms = parseDuration(s);
  } catch (e) {
    return isAppError(e) && e.details?.reason === "missing_unit" ? missingUnit(s.trim()) : DURATION_FORMS;
  }
  if (rules.positive && ms <= 0) return "must be longer than 0s";
  if (rules.maxMs !== undefined && ms > rules.maxMs) return `must be at most ${formatDuration(rules.maxMs)} (${describeSpan(rules.maxMs)})`;
  return undefined;
}

function describeSpan(ms: number): string {
  const days = ms / 86_400_000;
  return Number.isInteger(days) ? `${days} day${days === 1 ? "" : "s"}` : formatDuration(ms);
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 timestamp ("2025-06-30T12:00:00Z", "2025-06-30T14:00:00.5+02:00").
 * Hand-written because `Date.parse` also accepts many other shapes and rolls
 * "2025-02-30" over into March.
 */
export function parseRfc3339(s: string): Date | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return undefined;
  // Date keeps milliseconds only; finer fractions are dropped.
  const t = Date.parse(s.toUpperCase());
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** An RFC 3339 time kept as the string the user wrote. */
export const timeString = () =>
  expecting(
    z.string().superRefine((s, ctx) => {
      if (!parseRfc3339(s)) raise(ctx, [], "invalid", `expected an RFC 3339 time such as "2025-06-30T12:00:00Z"`, "time");
    }),
    `an RFC 3339 time such as "2025-06-30T12:00:00Z"`,
  );

/** A mapping of label names to values. */
export const labelMap = () => expecting(z.record(z.string(), z.string()), "a mapping of label names to strings");
