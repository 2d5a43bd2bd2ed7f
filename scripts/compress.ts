/**
 * The compressed forms of a built executable the auth service serves beside it
 * (/downloads/machine-id-linux-<arch>.gz|.xz|.zst), made with the host's own tools:
 * build.ts writes them, bench/download.ts measures installs from them.
 */

import { renameSync, rmSync, statSync } from "node:fs";

/** A compressed format: its file extension, the command that makes it, and whether it is made by default. */
export interface Format {
  ext: "gz" | "xz" | "zst";
  /** argv that reads the file named last and writes the compressed bytes to stdout */
  argv: string[];
  tool: string;
}

/**
 * The formats, in the order install.sh prefers them. Measured on the 110 MiB executable (2-core VM, bench/RESULTS.md):
 * gzip -6 47 % of the raw size in ~5 s; zstd -9 42 % in ~2 s (-19: 38 % in ~80 s, not worth
 * a build's time for 4 points); xz -6 36 % in ~65 s. A default build makes gzip (every host
 * can undo it) and zstd when the host has it (the form that brings a download under 45 %
 * at the cost of two seconds); xz only when asked (`--compress gz,xz,zst`), for a release.
 */
export const FORMATS: readonly Format[] = [
  { ext: "zst", tool: "zstd", argv: ["zstd", "-q", "-9", "-T2", "-c"] },
  { ext: "xz", tool: "xz", argv: ["xz", "-6", "-T2", "-c"] },
  { ext: "gz", tool: "gzip", argv: ["gzip", "-6", "-c", "-n"] },
];

/** Whether `tool` is on PATH. */
export function have(tool: string): boolean {
  return Bun.which(tool) !== null;
}

/**
 * Writes `<file>.<ext>` for each format in `exts` whose tool is installed (staged and
 * renamed, so a service never serves half a file) and removes the other formats' stale
 * files; returns what was written, with sizes. Throws when a compressor fails.
 */
export function compressAll(file: string, exts: readonly string[], log: (line: string) => void = () => {}): { ext: string; bytes: number }[] {
  const out: { ext: string; bytes: number }[] = [];
  for (const f of FORMATS) {
    const target = `${file}.${f.ext}`;
    if (!exts.includes(f.ext) || !have(f.tool)) {
      rmSync(target, { force: true });
      if (exts.includes(f.ext)) log(`skipped ${f.ext}: ${f.tool} is not installed`);
      continue;
    }
    out.push({ ext: f.ext, bytes: compress(file, f) });
  }
  return out;
}

/** Writes `<file>.<ext>` in format `f` (staged and renamed); returns its size. Throws when the compressor fails. */
export function compress(file: string, f: Format): number {
  const target = `${file}.${f.ext}`;
  const staged = `${target}.tmp`;
  const r = Bun.spawnSync([...f.argv, file], { stdout: Bun.file(staged), stderr: "pipe" });
  if (r.exitCode !== 0) {
    rmSync(staged, { force: true });
    throw new Error(`${f.argv.join(" ")} ${file} failed: ${r.stderr.toString()}`);
  }
  renameSync(staged, target);
  return statSync(target).size;
}
