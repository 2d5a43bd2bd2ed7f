/**
 * Go-style durations ("1h", "20m", "1h30m", "500ms"), the form tbot configs and
 * Teleport resources use. Hand-written: the npm parsers either lack compound units
 * ("1h30m") or accept loose English ("1 hour") that a config file should reject.
 */

import { badParameter } from "./errors.ts";

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/y;

/**
 * Parses a duration into milliseconds. One rule for flags and YAML alike, Go's
 * (`time.ParseDuration`, which tbot and Teleport use): every number carries a unit,
 * and only "0" may stand alone. A bare "10" is refused with a hint to add a unit
 * rather than guessed as seconds (Go reads YAML integers as nanoseconds).
 * Throws BAD_PARAMETER with `details.reason` "missing_unit" or "invalid".
 */
export function parseDuration(input: string | number, what = "duration"): number {
  const s = String(input).trim();
  if (s === "0") return 0;
  if (/^\d+(\.\d+)?$/.test(s)) {
    throw badParameter(`Invalid ${what} ${JSON.stringify(s)}: ${missingUnit(s)}`, { details: { reason: "missing_unit" } });
  }
  const invalid = () => badParameter(`Invalid ${what} ${JSON.stringify(s)}: ${DURATION_FORMS}`, { details: { reason: "invalid" } });
  let total = 0;
  PART.lastIndex = 0;
  let matched = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== start) throw invalid();
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched++;
  }
  if (matched === 0) throw invalid();
  return Math.round(total);
}

/** What to do about a bare number such as "10". */
export const missingUnit = (n: string): string => `a number needs a unit: write "${n}s" for seconds or "${n}m" for minutes`;

/** The accepted forms, for messages. */
export const DURATION_FORMS = `expected a number and a unit such as "90s", "20m" or "1h30m"`;

/** Formats milliseconds compactly, largest units first: 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const neg = ms < 0;
  let rest = Math.abs(Math.round(ms));
  let out = "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  if (rest > 0) out += `${rest}ms`;
  return (neg ? "-" : "") + out;
}
