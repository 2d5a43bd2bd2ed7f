/**
 * Output helpers for ctl: aligned text tables, and the one switch between text,
 * YAML and JSON that every listing command offers.
 */

import type { Command } from "commander";
import { badParameter } from "../lib/errors.ts";

export const FORMATS = ["text", "yaml", "json"] as const;
export type Format = (typeof FORMATS)[number];

/** Checks a `--format` value; `allowed` narrows the choice for commands without YAML. */
export function parseFormat(value: string | undefined, allowed: readonly Format[] = FORMATS): Format {
  const v = (value ?? "text").toLowerCase();
  if (!(allowed as readonly string[]).includes(v)) {
    throw badParameter(`Invalid --format "${value}": allowed values are ${allowed.map((f) => `"${f}"`).join(", ")}`);
  }
  return v as Format;
}

/** Renders rows under headers with columns padded to their widest cell. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n") + "\n";
}

/** "in 59 minutes" / "2 hours ago" style text for a time relative to now. */
export function relativeTime(iso: string | undefined, now = new Date()): string {
  if (!iso) return "never";
  const ms = new Date(iso).getTime() - now.getTime();
  const abs = Math.abs(ms);
  const [n, unit] =
    abs < 60_000 ? [Math.round(abs / 1000), "second"] : abs < 3_600_000 ? [Math.round(abs / 60_000), "minute"] : abs < 172_800_000 ? [Math.round(abs / 3_600_000), "hour"] : [Math.round(abs / 86_400_000), "day"];
  const s = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return ms >= 0 ? `in ${s}` : `${s} ago`;
}

/**
 * Gives every `--format` option in the tree the short form `-o`, as kubectl and tctl
 * users type it (`get bot/x -o yaml`). Done once over the built tree so a command
 * added later gets it too.
 */
export function addOutputAlias(cmd: Command): void {
  for (const opt of cmd.options) {
    if (opt.long === "--format" && opt.short === undefined) {
      opt.short = "-o";
      opt.flags = `-o, ${opt.flags}`;
    }
  }
  for (const sub of cmd.commands) addOutputAlias(sub);
}
