/**
 * The layer rules of docs/design.md hold for src/, and the checker that enforces
 * them really catches a wrong-way import, a private file used from outside its
 * folder, and a cycle.
 */

import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { checkImports } from "../scripts/check-imports.ts";

function fixture(files: Record<string, string>) {
  const root = mkdtempSync(join(tmpdir(), "mid-imports-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return { root, [Symbol.dispose]: () => rmSync(root, { recursive: true, force: true }) };
}

describe("check-imports", () => {
  test("src/ follows the layer rules and has no cycles", () => {
    expect(checkImports(join(import.meta.dir, "..", "src"))).toEqual([]);
  });

  test("a lower layer importing an app is reported", () => {
    using f = fixture({ "lib/a.ts": `import { x } from "../agent/b.ts";\n`, "agent/b.ts": "export const x = 1;\n" });
    const v = checkImports(f.root);
    expect(v.map((x) => x.message)).toEqual([`layer "lib" must not import "agent" ("../agent/b.ts")`]);
  });

  test("one app importing another is reported", () => {
    using f = fixture({ "agent/a.ts": `import { y } from "../auth/b.ts";\n`, "auth/b.ts": "export const y = 1;\n" });
    expect(checkImports(f.root)[0]!.message).toContain(`layer "agent" must not import "auth"`);
  });

  test("a private _file used outside its folder is reported", () => {
    using f = fixture({ "crypto/_der.ts": "export const d = 1;\n", "auth/a.ts": `import { d } from "../crypto/_der.ts";\n` });
    expect(checkImports(f.root).map((x) => x.message)).toContain(`"../crypto/_der.ts" is private to its folder`);
  });

  test("a cycle is reported with its path", () => {
    using f = fixture({ "lib/a.ts": `import { b } from "./b.ts";\nexport const a = 1;\n`, "lib/b.ts": `import { a } from "./a.ts";\nexport const b = 2;\n` });
    const v = checkImports(f.root);
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toMatch(/^import cycle: lib\/(a|b)\.ts → lib\/(a|b)\.ts → lib\/(a|b)\.ts$/);
  });
});
