/**
 * Compiles the one executable: `bun build --compile` of src/main.ts into
 * dist/machine-id, with the version and git commit embedded, plus its SHA-256.
 */

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "./package.json" with { type: "json" };

const root = import.meta.dir;
const dist = join(root, "dist");
mkdirSync(dist, { recursive: true });

function gitCommit(): string {
  const r = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { cwd: root, stderr: "ignore" });
  if (r.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { cwd: root }).stdout.toString().trim();
  return r.stdout.toString().trim() + (dirty ? "-dirty" : "");
}

const commit = process.env.MACHINE_ID_COMMIT ?? gitCommit();
const outfile = join(dist, "machine-id");
const args = [
  process.execPath,
  "build",
  "--compile",
  "--minify",
  "--sourcemap",
  `--define`,
  `MACHINE_ID_VERSION=${JSON.stringify(pkg.version)}`,
  `--define`,
  `MACHINE_ID_COMMIT=${JSON.stringify(commit)}`,
  join(root, "src/main.ts"),
  "--outfile",
  outfile,
];
const r = Bun.spawnSync(args, { cwd: root, stdout: "inherit", stderr: "inherit" });
if (r.exitCode !== 0) {
  console.error(`build: bun build --compile failed with exit code ${r.exitCode}`);
  process.exit(1);
}
const bin = readFileSync(outfile);
const sum = createHash("sha256").update(bin).digest("hex");
writeFileSync(`${outfile}.sha256`, `${sum}  machine-id\n`);
const mb = (statSync(outfile).size / 1024 / 1024).toFixed(1);
console.log(`built ${outfile} (${mb} MiB) version ${pkg.version} commit ${commit}`);
console.log(`sha256 ${sum}`);
