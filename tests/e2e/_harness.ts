/**
 * End-to-end helpers: the compiled binary (built once per test run), an auth
 * service it runs on port 0 in a temp dir, and `ctl` invocations against it.
 * Every process started here is killed and reaped by its disposer.
 */

import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { TempDir } from "../_support/tmp.ts";
import { waitFor as waitForCondition } from "../_support/wait.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const BIN = join(ROOT, "dist", "machine-id");

let built = false;
/** Builds dist/machine-id unless a build newer than every source file is there already. */
export function ensureBinary(): string {
  if (built) return BIN;
  const stale = !existsSync(BIN) || newestSource() > statSync(BIN).mtimeMs;
  if (stale) {
    const r = Bun.spawnSync([process.execPath, "build.ts"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`build failed:\n${r.stderr.toString()}`);
  }
  built = true;
  return BIN;
}

function newestSource(): number {
  let newest = 0;
  const glob = new Bun.Glob("src/**/*.ts");
  for (const f of glob.scanSync({ cwd: ROOT })) newest = Math.max(newest, statSync(join(ROOT, f)).mtimeMs);
  for (const f of ["install.sh", "package.json", "build.ts"]) if (existsSync(join(ROOT, f))) newest = Math.max(newest, statSync(join(ROOT, f)).mtimeMs);
  return newest;
}

/** A temp directory removed on dispose. */
export function tempDir(prefix = "mid-e2e-"): TempDir {
  return new TempDir(prefix);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the binary to completion. */
export async function run(args: string[], opts: { env?: Record<string, string>; stdin?: string; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const p = Bun.spawn([ensureBinary(), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
    env: { ...process.env, ...opts.env },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** @deprecated the old argument order, for tests written before tests/_support/wait.ts; use that. */
export function waitFor<T>(cond: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  return waitForCondition(what, cond, timeoutMs);
}

/** A running auth service from the compiled binary. */
export interface AuthProcess {
  dataDir: string;
  addr: string;
  port: number;
  proc: ReturnType<typeof Bun.spawn>;
  logs(): string;
  ctl(...args: string[]): Promise<RunResult>;
  /** ctl that must succeed; returns stdout. */
  ctlOk(...args: string[]): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts `machine-id auth start` on 127.0.0.1 (port 0 unless given) and waits until it listens. */
export async function startAuth(dataDir: string, opts: { port?: number; args?: string[]; env?: Record<string, string> } = {}): Promise<AuthProcess> {
  const proc = Bun.spawn(
    [ensureBinary(), "auth", "start", "--data-dir", dataDir, "--listen-addr", `127.0.0.1:${opts.port ?? 0}`, ...(opts.args ?? [])],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...opts.env } },
  );
  let log = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of s) log += dec.decode(chunk);
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  let exited = false;
  void proc.exited.then(() => (exited = true));
  const m = await waitFor(() => {
    if (exited) throw new Error(`auth service exited with ${proc.exitCode}:\n${log}`);
    return /Auth service started .*listen=([\d.]+):(\d+)/.exec(log);
  }, "the auth service to listen");
  const port = Number(m[2]);
  const addr = `127.0.0.1:${port}`;
  const ctl = (...args: string[]) => run(["ctl", "--data-dir", dataDir, ...args], opts.env ? { env: opts.env } : {});
  const self: AuthProcess = {
    dataDir,
    addr,
    port,
    proc,
    logs: () => log,
    ctl,
    async ctlOk(...args) {
      const r = await ctl(...args);
      if (r.code !== 0) throw new Error(`ctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    async stop(signal = "SIGTERM") {
      if (!exited) proc.kill(signal);
      return proc.exited;
    },
    async [Symbol.asyncDispose]() {
      if (!exited) proc.kill("SIGKILL");
      await proc.exited;
    },
  };
  return self;
}

/** Runs a shell command (a real tool checking an artifact). */
export function sh(cmd: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): RunResult {
  const r = Bun.spawnSync(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    ...(opts.stdin !== undefined ? { stdin: new TextEncoder().encode(opts.stdin) } : {}),
    env: { ...process.env, ...opts.env },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
