/**
 * Small helpers the storage tests share: asserting an AppError code, waiting for a
 * condition without sleeping a fixed time, temp dirs, and a log sink to read.
 */

import { expect } from "bun:test";
import type { Backend } from "../../src/auth/storage/index.ts";
import { AppError, isAppError, type ErrorCode } from "../../src/lib/errors.ts";
import { Logger } from "../../src/lib/log.ts";
import { TempDir } from "../_support/tmp.ts";
import { waitFor as waitForCondition } from "../_support/wait.ts";

/** Awaits `p`, expects it to reject with an AppError of `code`, and returns the error. */
export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: string | RegExp): Promise<AppError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(AppError);
  const err = caught as AppError;
  expect(err.code).toBe(code);
  if (typeof message === "string") expect(err.message).toBe(message);
  else if (message) expect(err.message).toMatch(message);
  return err;
}

/** @deprecated the old argument order, for tests written before tests/_support/wait.ts; use that. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  await waitForCondition(what, cond, timeoutMs);
}

/** A temp directory (mode 0700, as mkdtemp makes it) removed on dispose. */
export function tempDir(prefix = "storage-test-"): TempDir {
  return new TempDir(prefix);
}

/** A debug logger whose lines the test can read. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ level: "debug", sink: { write: (l) => void lines.push(l) } }), lines };
}

/**
 * Reads a child's stdout line by line as it arrives. A last line without its newline
 * (cut off by a kill) is dropped: it was never fully reported.
 */
export class LineReader {
  private buf = "";
  private done = false;
  private readonly reader: { read(): Promise<{ value?: Uint8Array | undefined; done: boolean }> };
  private readonly decoder = new TextDecoder();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** The next complete line, or undefined at end of stream. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.buf.indexOf("\n");
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return line;
      }
      if (this.done) return undefined;
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else this.buf += this.decoder.decode(value, { stream: true });
    }
  }
}

/** A spawned `bun <script> …args` with its stdout as lines; dispose kills and reaps it. */
export function spawnBun(script: string, args: string[]): {
  proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  out: LineReader;
  stderr: () => Promise<string>;
} & AsyncDisposable {
  const proc = Bun.spawn([process.execPath, script, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  let err: Promise<string> | undefined;
  const stderr = () => (err ??= new Response(proc.stderr).text());
  return {
    proc,
    out: new LineReader(proc.stdout),
    stderr,
    [Symbol.asyncDispose]: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}

/**
 * Read-modify-write `attempts` times: read the counter at `key`, compareAndSwap it to
 * value + 1. Counts the wins and the COMPARE_FAILED losses; any other error throws.
 */
export async function incrementByCas(b: Backend, key: string, attempts: number): Promise<{ wins: number; conflicts: number }> {
  let wins = 0;
  let conflicts = 0;
  for (let i = 0; i < attempts; i++) {
    const cur = await b.get<number>(key);
    if (!cur) throw new Error(`${key} is missing`);
    try {
      await b.compareAndSwap(key, cur.revision, cur.value + 1);
      wins++;
    } catch (e) {
      if (!isAppError(e, "COMPARE_FAILED")) throw e;
      conflicts++;
    }
  }
  return { wins, conflicts };
}
