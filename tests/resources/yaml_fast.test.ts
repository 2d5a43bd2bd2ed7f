// parseSource reads plain documents with Bun's YAML parser and the rest with the yaml
// package: both must give the same values, and the same errors, for every file we ship.

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { AppError } from "../../src/lib/errors.ts";
import { parseSource } from "../../src/resources/index.ts";
import { stripNulls } from "../../src/resources/_yaml.ts";

const ROOT = join(import.meta.dir, "../..");

function yamlFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules" && !e.name.startsWith(".")) yamlFiles(p, out);
    } else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out;
}

/** What the yaml package alone reads, as parseSource returned it before the fast path. */
function packageValues(text: string): unknown[] | "error" {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  if (list.some((d) => d.errors.length > 0)) return "error";
  return list.filter((d) => d.contents !== null).map((d) => d.toJS({ maxAliasCount: 100 })).filter((v) => v !== null && v !== undefined).map(stripNulls);
}

describe("parseSource's fast path", () => {
  const files = [...yamlFiles("/work/shared/scenarios"), ...["tests", "docs", "deploy"].flatMap((d) => yamlFiles(join(ROOT, d)))];

  test("reads every YAML file of the repository and the scenarios as the yaml package does", () => {
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const text = readFileSync(f, "utf8");
      const want = packageValues(text);
      let got: unknown[] | "error";
      try {
        got = parseSource(text, f).map((d) => d.value);
      } catch {
        got = "error";
      }
      expect({ file: f, value: got }).toEqual({ file: f, value: want });
    }
  });

  test.each([
    ["a: 1\nb: [x, ~]\nc:\n  - d: e\n    f: 'it''s'\n", { a: 1, b: ["x", null], c: [{ d: "e", f: "it's" }] }],
    ["k: -0x1F\nn: +0o7\n", { k: "-0x1F", n: "+0o7" }],
    ["\"quoted: key\": 1\nplain: \"x: y\"\n", { "quoted: key": 1, plain: "x: y" }],
    ["a:\n  b:\n  c: 2\n", { a: { c: 2 } }],
  ])("reads %j like the yaml package", (text, value) => {
    expect(parseSource(text, "f.yaml").map((d) => d.value)).toEqual([value]);
    expect(packageValues(text)).toEqual([value]);
  });

  test("still refuses a duplicate key, with its position", () => {
    const text = "a: 1\nb:\n  c: 2\n  c: 3\n";
    expect(() => parseSource(text, "dup.yaml")).toThrow(AppError);
    try {
      parseSource(text, "dup.yaml");
    } catch (e) {
      expect((e as AppError).message).toBe(`Invalid YAML: duplicate key "c"`);
      expect((e as AppError).position).toMatchObject({ file: "dup.yaml", line: 4 });
    }
  });

  test("a document read by the fast path still locates its nodes", () => {
    const [doc] = parseSource("outputs:\n  - type: identity\n    destination:\n      path: /x\n", "cfg.yaml");
    expect(doc!.locate(["outputs", 0, "destination", "path"], "value")).toEqual({ file: "cfg.yaml", line: 4, column: 13 });
    expect(doc!.locate(["outputs", 0, "type"], "key")).toEqual({ file: "cfg.yaml", line: 2, column: 5 });
  });
});
