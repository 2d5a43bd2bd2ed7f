/**
 * Structured logging to stderr, as text for people or JSON lines for collectors.
 * Secrets never go through here: callers log names, ids and fingerprints only.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LogSink {
  write(line: string): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  component?: string;
  sink?: LogSink;
  /** Fields added to every record. */
  fields?: Record<string, unknown>;
}

/**
 * Lines go to stderr through Bun's console, which writes to the descriptor directly:
 * the first `process.stderr.write` sets up a Node stream, which cost a oneshot ~8 ms of
 * CPU and ~8 MiB of RSS (a compiled program writing one line each way, bench/RESULTS.md).
 * console.error given one string prints it as is (no %-formatting) and adds the newline.
 */
const stderrSink: LogSink = { write: (line) => console.error(line.endsWith("\n") ? line.slice(0, -1) : line) };

/** A leveled logger; `child()` adds a component name and fields without copying state. */
export class Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  private readonly component: string | undefined;
  private readonly sink: LogSink;
  private readonly fields: Record<string, unknown>;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? "info";
    this.format = options.format ?? "text";
    this.component = options.component;
    this.sink = options.sink ?? stderrSink;
    this.fields = options.fields ?? {};
  }

  child(component: string, fields: Record<string, unknown> = {}): Logger {
    return new Logger({
      level: this.level,
      format: this.format,
      component,
      sink: this.sink,
      fields: { ...this.fields, ...fields },
    });
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level];
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }

  log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    const all = { ...this.fields, ...fields };
    const time = new Date().toISOString();
    if (this.format === "json") {
      const rec: Record<string, unknown> = { time, level, msg };
      if (this.component) rec.component = this.component;
      for (const [k, v] of Object.entries(all)) rec[k] = v instanceof Error ? v.message : v;
      this.sink.write(JSON.stringify(rec) + "\n");
      return;
    }
    const parts = [time, level.toUpperCase().padEnd(5)];
    if (this.component) parts.push(`[${this.component}]`);
    parts.push(msg);
    for (const [k, v] of Object.entries(all)) parts.push(`${k}=${formatValue(v)}`);
    this.sink.write(parts.join(" ") + "\n");
  }
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:/@+-]*$/.test(v) && v !== "" ? v : JSON.stringify(v);
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v) ?? "undefined";
}

/** A logger that drops everything; for tests and library callers. */
export const silentLogger = new Logger({ level: "error", sink: { write() {} } });
