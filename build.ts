/**
 * Compiles the one executable: `bun build --compile` of src/main.ts into
 * dist/machine-id-linux-<arch> for the host's arch (`--all`: x64 and arm64, the
 * other one when Bun can fetch that runtime; ~110 MiB and ~20 s each), with the
 * version and git commit embedded, a `.sha256` next to each, and dist/machine-id
 * pointing at the host's build.
 *
 * Beside each executable: `.gz` (always), `.zst` when the host has zstd (~2 s), and `.xz`
 * with `--compress gz,xz,zst` (or MACHINE_ID_COMPRESS; ~1 min of CPU, so not by default)
 * — the compressed downloads the auth service serves (scripts/compress.ts).
 *
 * `--bytecode` precompiles the JavaScript: cold start drops from ~110 ms to ~35 ms
 * for ~10% more size; `--format=esm --splitting` makes each dynamic import its own chunk,
 * so a command loads only the code it imports (bench/RESULTS.md, "Startup"). MACHINE_ID_ARCHES=x64 (or arm64, or "x64 arm64") picks arches.
 */

import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "./package.json" with { type: "json" };
import { compressAll } from "./scripts/compress.ts";

const root = import.meta.dir;
const dist = join(root, "dist");
mkdirSync(dist, { recursive: true });

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: root, stderr: "ignore" });
  if (r.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: root }).stdout.toString().trim();
  return r.stdout.toString().trim() + (dirty ? "-dirty" : "");
}

const hostArch = process.arch === "arm64" ? "arm64" : "x64";
const otherArch = hostArch === "x64" ? "arm64" : "x64";
const all = process.argv.includes("--all");
const arches = (process.env.MACHINE_ID_ARCHES ?? (all ? `${hostArch} ${otherArch}` : hostArch)).split(/[\s,]+/).filter(Boolean);
const commit = process.env.MACHINE_ID_COMMIT ?? gitCommit();
const compressFlag = process.argv.indexOf("--compress");
const compress = (compressFlag > 0 ? process.argv[compressFlag + 1] : process.env.MACHINE_ID_COMPRESS) ?? "gz,zst";

function compile(arch: string): boolean {
  const name = `machine-id-linux-${arch}`;
  const outfile = join(dist, name);
  const args = [
    process.execPath,
    "build",
    "--compile",
    `--target=bun-linux-${arch}`,
    "--minify",
    "--bytecode",
    // JavaScriptCore compiles a function once it has run often enough; for a oneshot or ctl
    // command that is compile work on code that never runs again (JIT threads' CPU included:
    // oneshot 101 -> 70 ms CPU), and for the agent, which renews every few minutes, JIT code
    // and compiler pages held for nothing (daemon RSS 73 -> 61 MiB). Scaled thresholds keep
    // such code in the interpreter; `auth start` sets the normal policy once it listens.
    "--compile-jit-policy=1000",
    // ESM with code splitting: each dynamically imported role, command and method is a chunk
    // of its own, parsed only when imported (`version` 8.0 → 5.8 ms CPU, a hello world's 5.9)
    "--format=esm",
    "--splitting",
    // an executable that reads .env or bunfig.toml from the directory it is started in would
    // take settings from wherever it runs; not reading them also saves their lookups at startup
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    "--sourcemap",
    "--define",
    `MACHINE_ID_VERSION=${JSON.stringify(pkg.version)}`,
    "--define",
    `MACHINE_ID_COMMIT=${JSON.stringify(commit)}`,
    join(root, "src/main.ts"),
    "--outfile",
    outfile,
  ];
  const r = Bun.spawnSync(args, { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    const why = (r.stderr.toString() + r.stdout.toString()).trim().split("\n").slice(-3).join(" ");
    if (arch === hostArch) {
      console.error(`build: bun build --compile for linux-${arch} failed:\n${why}`);
      process.exit(1);
    }
    console.log(`build: skipped linux-${arch}: the Bun runtime for it is not available (${why})`);
    return false;
  }
  // each chunk's source map is embedded in the executable; the copies bun leaves beside it go
  for (const f of readdirSync(dist)) if (f.endsWith(".js.map")) rmSync(join(dist, f), { force: true });
  const sum = createHash("sha256").update(readFileSync(outfile)).digest("hex");
  writeFileSync(`${outfile}.sha256`, `${sum}  ${name}\n`);
  const size = statSync(outfile).size;
  console.log(`built dist/${name} (${(size / 1024 / 1024).toFixed(1)} MiB) sha256 ${sum}`);
  const compressed = compressAll(outfile, compress.split(/[\s,]+/), (l) => console.log(`build: ${l}`));
  for (const c of compressed) console.log(`  dist/${name}.${c.ext} (${(c.bytes / 1024 / 1024).toFixed(1)} MiB, ${((100 * c.bytes) / size).toFixed(1)} % of the executable)`);
  return true;
}

const builtHost = arches.map((a) => compile(a) && a === hostArch).some(Boolean);
if (!builtHost) process.exit(0);

// dist/machine-id: the host's build, under the name the README and tests use
const link = join(dist, "machine-id");
rmSync(link, { force: true });
rmSync(`${link}.sha256`, { force: true });
rmSync(`${link}.map`, { force: true });
symlinkSync(`machine-id-linux-${hostArch}`, link);
console.log(`version ${pkg.version} commit ${commit}; dist/machine-id -> machine-id-linux-${hostArch}`);
