/**
 * Enforces the dependency direction between src/ layers (see docs/STYLE or
 * ../shared/STYLE.md) and the absence of import cycles. Exits 1 with one line per
 * violation. Run by the test suite (tests/imports.test.ts) and `bun run check-imports`.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** importer layer → layers it may import (itself always allowed). */
export const ALLOWED: Record<string, string[]> = {
  lib: [],
  crypto: ["lib"],
  resources: ["lib", "crypto"],
  config: ["lib", "resources", "crypto"],
  protocol: ["lib", "resources", "crypto"],
  agent: ["lib", "crypto", "resources", "config", "protocol"],
  auth: ["lib", "crypto", "resources", "config", "protocol"],
  ctl: ["lib", "crypto", "resources", "config", "protocol"],
  // main.ts is the single entry that wires the three apps together
  main: ["lib", "crypto", "resources", "config", "protocol", "agent", "auth", "ctl"],
};

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|(?:^|\n)\s*import\s*["']([^"']+)["']/g;

function layerOf(srcDir: string, file: string): string {
  const rel = relative(srcDir, file);
  const first = rel.split("/")[0]!;
  return first.endsWith(".ts") ? first.replace(/\.ts$/, "") : first;
}

export interface Violation {
  file: string;
  message: string;
}

/** Checks every .ts file under `srcDir`; returns the violations found. */
export function checkImports(srcDir: string): Violation[] {
  const files = walk(srcDir);
  const graph = new Map<string, string[]>();
  const violations: Violation[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const from = layerOf(srcDir, file);
    const deps: string[] = [];
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec || !spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      // files outside src that are not code (install.sh, units, package.json) are embedded assets, not layers
      if (relative(srcDir, target).startsWith("..") && !/\.[cm]?[jt]sx?$/.test(target)) continue;
      deps.push(target);
      const to = layerOf(srcDir, target);
      if (to === from) continue;
      const allowed = ALLOWED[from];
      if (!allowed) {
        violations.push({ file, message: `unknown layer "${from}"` });
      } else if (!allowed.includes(to)) {
        violations.push({ file: relative(srcDir, file), message: `layer "${from}" must not import "${to}" ("${spec}")` });
      }
      // files named _x.ts are private to their folder
      const base = target.split("/").pop()!;
      if (base.startsWith("_") && dirname(target) !== dirname(file)) {
        violations.push({ file: relative(srcDir, file), message: `"${spec}" is private to its folder` });
      }
    }
    graph.set(file, deps);
  }
  // cycle detection over files (DFS with colours)
  const colour = new Map<string, 0 | 1 | 2>();
  const stack: string[] = [];
  const visit = (f: string) => {
    colour.set(f, 1);
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (!graph.has(d)) continue;
      const c = colour.get(d) ?? 0;
      if (c === 1) {
        const cycle = stack.slice(stack.indexOf(d)).concat(d).map((x) => relative(srcDir, x));
        violations.push({ file: relative(srcDir, f), message: `import cycle: ${cycle.join(" → ")}` });
      } else if (c === 0) visit(d);
    }
    stack.pop();
    colour.set(f, 2);
  };
  for (const f of graph.keys()) if ((colour.get(f) ?? 0) === 0) visit(f);
  return violations;
}

if (import.meta.main) {
  const src = resolve(process.argv[2] ?? join(import.meta.dir, "..", "src"));
  const v = checkImports(src);
  for (const x of v) console.error(`${x.file}: ${x.message}`);
  if (v.length) {
    console.error(`${v.length} import violation(s)`);
    process.exit(1);
  }
  console.log("imports ok");
}
