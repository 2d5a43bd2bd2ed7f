/**
 * Spawning the compiled executable in tests: output collected as it comes, waits
 * on what a process printed with a deadline, and disposal that always kills and
 * reaps it.
 */

import { existsSync } from "node:fs";
import { join } from "node:path";

/** The executable under test: `dist/machine-id` from `bun run build`, or $MACHINE_ID_BIN. */
export const BIN = process.env.MACHINE_ID_BIN ?? join(import.meta.dir, "../../dist/machine-id");

/** Throws a clear message when the executable has not been built. */
export function requireBinary(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: run "bun run build" first`);
}

/** A running process whose stdout and stderr are collected. */
export class Proc {
  readonly proc: ReturnType<typeof Bun.spawn>;
  stdout = "";
  stderr = "";
  private readonly pumps: Promise<void>[];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.proc = Bun.spawn([BIN, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, ...env } });
    const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this[key] += dec.decode(chunk, { stream: true });
    };
    this.pumps = [pump(this.proc.stdout as ReadableStream<Uint8Array>, "stdout"), pump(this.proc.stderr as ReadableStream<Uint8Array>, "stderr")];
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Waits until stderr matches `re` (returns the match), the process exits, or the deadline passes. */
  async waitForStderr(re: RegExp, deadlineMs = 20_000): Promise<RegExpMatchArray> {
    const until = Date.now() + deadlineMs;
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null) throw new Error(`process exited with ${this.proc.exitCode} before printing ${re}:\n${this.stderr}`);
      if (Date.now() > until) throw new Error(`timed out after ${deadlineMs}ms waiting for ${re} in:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Waits for exit; returns the exit code with everything printed. */
  async wait(): Promise<{ code: number; stdout: string; stderr: string }> {
    const code = await this.proc.exited;
    await Promise.all(this.pumps);
    return { code, stdout: this.stdout, stderr: this.stderr };
  }

  /** Sends a signal (default SIGTERM) and waits for exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    if (this.proc.exitCode === null) this.proc.kill(signal);
    return (await this.wait()).code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await this.wait();
  }
}

/** Runs the executable to completion. */
export async function runBin(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  await using p = new Proc(args, env);
  return await p.wait(); // await before the scope (and its dispose) ends
}
