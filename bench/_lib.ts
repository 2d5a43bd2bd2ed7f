/**
 * What the benchmark suites share: the machine's description, statistics, a private
 * copy of the compiled binary (so a rebuild in the shared tree cannot swap it mid-run),
 * processes pinned to a core with their CPU time and RSS read from /proc, and an admin
 * client for a service the benchmark started.
 */

import { copyFileSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem, tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");

/** The machine a figure was measured on. */
export interface Machine {
  nproc: number;
  cpu: string;
  ramGiB: number;
  kernel: string;
  bun: string;
  cfssl: string;
  date: string;
}

export function machine(): Machine {
  const sh = (cmd: string[]) => Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  const cfssl = sh(["cfssl", "version"]);
  return {
    nproc: Number(sh(["nproc"]).stdout.toString().trim()),
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: sh(["uname", "-r"]).stdout.toString().trim(),
    bun: Bun.version,
    cfssl: cfssl.exitCode === 0 ? cfssl.stdout.toString().split("\n")[0]!.replace(/^Version:\s*/, "").trim() : "not installed",
    date: new Date().toISOString(),
  };
}

/** Median of `xs` (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The `p`-th percentile (0–100) of an ascending array, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** A temp directory removed on dispose. */
export function tempDir(prefix: string): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** Copies the compiled executable into `dir` and returns its path; fails clearly when it was not built. */
export function privateBinary(dir: string): string {
  const built = join(ROOT, "dist", "machine-id");
  if (!existsSync(built)) throw new Error(`${built} does not exist: run "bun run build" first`);
  const target = join(dir, "machine-id");
  copyFileSync(realpathSync(built), target);
  return target;
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[11] and [12] are utime and stime (the 14th and 15th of the whole line), in clock ticks
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of a process in MiB, from /proc/<pid>/status. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** What one process cost, from exec to exit. */
export interface Usage {
  /** user + system CPU, ms (wait4's rusage, µs resolution) */
  cpuMs: number;
  wallMs: number;
  /** peak resident set, MiB (GNU time's %M: see runMeasured) */
  rssMiB: number;
}

/**
 * Runs `argv` (pinned to `cpu`) to its end and returns its CPU time, wall time and peak RSS;
 * throws when it fails. The peak RSS comes from GNU time, a small C parent that forks the
 * command: the rusage Bun reports for its own child counts the Bun process it was spawned
 * from too (26 MiB for `cfssl version`, which peaks at 9). CPU and wall include GNU time's
 * own fork and exec (~0.3 ms), the same for every command measured.
 */
export async function runMeasured(argv: string[], opts: { cpu?: number; env?: Record<string, string>; stdout?: string } = {}): Promise<Usage> {
  const t0 = performance.now();
  const p = Bun.spawn(pinned(opts.cpu, ["/usr/bin/time", "-f", "maxrss=%M", ...argv]), {
    stdout: opts.stdout ? Bun.file(opts.stdout) : "ignore",
    stderr: "pipe",
    stdin: "ignore",
    env: { ...process.env, ...opts.env },
  });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  const wallMs = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err}`);
  const ru = p.resourceUsage()!;
  const rss = /maxrss=(\d+)\s*$/.exec(err);
  if (!rss) throw new Error(`${argv.join(" ")}: no figure from /usr/bin/time (is GNU time installed?): ${err}`);
  return { cpuMs: Number(ru.cpuTime.total) / 1000, wallMs, rssMiB: Number(rss[1]) / 1024 };
}

/** Compiles a Bun "hello world" into `dir` with the build's own flags; returns its path. */
export function helloWorld(dir: string): string {
  const src = join(dir, "hello.ts");
  const out = join(dir, "hello");
  writeFileSync(src, 'console.log("hello world");\n');
  const r = Bun.spawnSync([process.execPath, "build", "--compile", "--minify", "--bytecode", src, "--outfile", out], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bun build --compile hello.ts failed: ${r.stderr.toString()}`);
  return out;
}

/** `taskset -c <cpu>` in front of a command, when a core is given. */
export function pinned(cpu: number | undefined, argv: string[]): string[] {
  return cpu === undefined ? argv : ["taskset", "-c", String(cpu), ...argv];
}

/** A long-running process whose output goes to a file (not a pipe this process must drain). */
export class Service {
  private constructor(
    readonly proc: ReturnType<typeof Bun.spawn>,
    readonly logPath: string,
  ) {}

  /** Starts `argv` (pinned to `cpu`) and waits until its log matches `ready`. */
  static async start(argv: string[], opts: { cpu?: number; logPath: string; ready: RegExp; env?: Record<string, string>; timeoutMs?: number }): Promise<{ service: Service; match: RegExpMatchArray }> {
    const proc = Bun.spawn(pinned(opts.cpu, argv), {
      stdout: Bun.file(opts.logPath),
      stderr: Bun.file(opts.logPath + ".err"),
      stdin: "ignore",
      env: { ...process.env, ...opts.env },
    });
    const s = new Service(proc, opts.logPath);
    const until = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      const m = s.log().match(opts.ready);
      if (m) return { service: s, match: m };
      if (proc.exitCode !== null) throw new Error(`${argv.join(" ")} exited with ${proc.exitCode}:\n${s.log()}`);
      if (Date.now() > until) {
        proc.kill("SIGKILL");
        await proc.exited;
        throw new Error(`${argv.join(" ")} did not become ready:\n${s.log()}`);
      }
      await Bun.sleep(20);
    }
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Everything the process printed on stdout and stderr so far. */
  log(): string {
    const read = (p: string) => (existsSync(p) ? readFileSync(p, "utf8") : "");
    return read(this.logPath) + read(this.logPath + ".err");
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  rssMiB(): number {
    return rssMiB(this.pid);
  }

  /** Stops with `signal` and waits for the exit; always reaps. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    const code = await this.proc.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Starts `machine-id auth start` on loopback port 0 in `dataDir`; returns the service and its address. */
export async function startAuth(bin: string, dataDir: string, opts: { cpu?: number; port?: number } = {}): Promise<{ service: Service; addr: string; port: number }> {
  const { service, match } = await Service.start(
    [bin, "auth", "start", "--data-dir", dataDir, "--listen-addr", `127.0.0.1:${opts.port ?? 0}`, "--cluster-name", "bench.example"],
    { ...(opts.cpu !== undefined ? { cpu: opts.cpu } : {}), logPath: `${dataDir}-${Date.now()}.log`, ready: /Auth service started .*listen=[\d.]+:(\d+)/ },
  );
  const port = Number(match[1]);
  return { service, addr: `127.0.0.1:${port}`, port };
}

// shared with the tests
export { adminClient, freePort } from "../tests/_support/clients.ts";

/** Prints a markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** Formats a number with a fixed count of decimals and thousands separators. */
export function fmt(n: number, decimals = 0): string {
  return Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals }) : "–";
}
