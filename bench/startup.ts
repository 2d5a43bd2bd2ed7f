/**
 * What each module costs at startup: one executable per import, compiled with the build's
 * flags (`--compile --minify --bytecode`), each run alternated with a compiled hello world;
 * the cost of a module is its median CPU and peak RSS minus the hello world's. This is how
 * the table "Startup: which modules cost what" in RESULTS.md is made.
 *
 *   bun bench/startup.ts [--runs 15] [module …]
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, fmt, helloWorld, median, runMeasured, table, tempDir } from "./_lib.ts";

const DEFAULT = [
  "commander",
  "zod",
  "yaml",
  "hono",
  "jose",
  "prom-client",
  "reflect-metadata",
  "src/lib/errors.ts",
  "src/crypto/index.ts",
  "src/resources/index.ts",
  "src/config/index.ts",
  "src/protocol/index.ts",
  "src/agent/commands.ts",
  "src/agent/index.ts",
  "src/auth/command.ts",
  "src/ctl/index.ts",
];

const { values, positionals } = parseArgs({ options: { runs: { type: "string", default: "15" } }, allowPositionals: true });
const modules = positionals.length ? positionals : DEFAULT;
using dir = tempDir("bench-startup-");
const hello = helloWorld(dir.path);
const bins: [string, string][] = modules.map((mod, i) => {
  const src = join(dir.path, `m${i}.ts`);
  const spec = Bun.resolveSync(mod.startsWith("src/") ? `./${mod}` : mod, ROOT);
  // a namespace import that is used, so the bundler keeps the module's evaluation
  writeFileSync(src, `import * as m from ${JSON.stringify(spec)};\nif (Object.keys(m).length < 0) console.log(m);\nconsole.log("hello world");\n`);
  const out = join(dir.path, `m${i}`);
  const r = Bun.spawnSync([process.execPath, "build", "--compile", "--minify", "--bytecode", src, "--outfile", out], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`compiling an import of ${mod} failed: ${r.stderr.toString()}`);
  return [mod, out];
});
const runs = Number(values.runs);
const base: { cpu: number[]; rss: number[] } = { cpu: [], rss: [] };
const per = new Map<string, { cpu: number[]; rss: number[] }>(modules.map((m) => [m, { cpu: [], rss: [] }]));
for (const b of [hello, ...bins.map(([, b]) => b)]) await runMeasured([b]);
for (let i = 0; i < runs; i++) {
  const h = await runMeasured([hello], { cpu: 1 });
  base.cpu.push(h.cpuMs);
  base.rss.push(h.rssMiB);
  for (const [mod, b] of bins) {
    const u = await runMeasured([b], { cpu: 1 });
    per.get(mod)!.cpu.push(u.cpuMs);
    per.get(mod)!.rss.push(u.rssMiB);
  }
}
const hc = median(base.cpu);
const hr = median(base.rss);
console.log(`hello world: ${fmt(hc, 1)} ms CPU, ${fmt(hr, 1)} MiB peak RSS (medians of ${runs})\n`);
console.log(
  table(
    ["import (with everything it imports)", "CPU ms over hello world", "peak RSS MiB over hello world"],
    [...per].map(([mod, v]) => [`\`${mod}\``, fmt(median(v.cpu) - hc, 1), fmt(median(v.rss) - hr, 1)]),
  ),
);
