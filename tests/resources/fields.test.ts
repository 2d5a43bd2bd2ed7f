// The small pieces under the messages: edit distance and suggestions, RFC 3339 times,
// durations, field paths, and the YAML source positions.

import { describe, expect, test } from "bun:test";
import {
  closest,
  durationProblem,
  editDistance,
  formatPath,
  parseRfc3339,
  parseSource,
} from "../../src/resources/index.ts";
import { failure } from "../_support/cases.ts";

describe("editDistance() and closest()", () => {
  test("counts insertions, deletions, substitutions and adjacent swaps as one edit each", () => {
    expect(editDistance("logns", "logins")).toBe(1);
    expect(editDistance("lgoins", "logins")).toBe(1);
    expect(editDistance("login", "logins")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("same", "same")).toBe(0);
  });

  test("suggests only plausible typos, ignoring case and -/_", () => {
    const fields = ["logins", "node_labels", "kubernetes_labels", "kubernetes_groups", "kubernetes_users", "kubernetes_resources"];
    expect(closest("logns", fields)).toBe("logins");
    expect(closest("Logins", fields)).toBe("logins");
    expect(closest("kubernetes-groups", fields)).toBe("kubernetes_groups");
    expect(closest("kuberentes_labels", fields)).toBe("kubernetes_labels");
    expect(closest("rules", fields)).toBeUndefined();
    expect(closest("x", fields)).toBeUndefined();
  });
});

describe("parseRfc3339()", () => {
  test("accepts UTC, offsets and fractions", () => {
    expect(parseRfc3339("2025-06-30T12:00:00Z")!.toISOString()).toBe("2025-06-30T12:00:00.000Z");
    expect(parseRfc3339("2025-06-30T14:00:00.5+02:00")!.toISOString()).toBe("2025-06-30T12:00:00.500Z");
    expect(parseRfc3339("2024-02-29t00:00:00z")!.toISOString()).toBe("2024-02-29T00:00:00.000Z");
  });

  test("refuses other shapes and impossible dates", () => {
    for (const s of ["2025-06-30", "2025-06-30 12:00:00Z", "2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-06-30T24:00:00Z", "2025-06-30T12:00:00+25:00", "2025-06-30T12:00:00", "June 30 2025"]) {
      expect(parseRfc3339(s)).toBeUndefined();
    }
  });
});

describe("durationProblem()", () => {
  test("words the rules", () => {
    expect(durationProblem("1h30m")).toBeUndefined();
    expect(durationProblem("1 hour")).toBe(`expected a number and a unit such as "90s", "20m" or "1h30m"`);
    expect(durationProblem("0s", { positive: true })).toBe("must be longer than 0s");
    expect(durationProblem("8d", { maxMs: 7 * 86_400_000 })).toBe("must be at most 168h (7 days)");
  });
});

describe("formatPath()", () => {
  test("dots for identifiers, brackets for indexes and other keys", () => {
    expect(formatPath(["spec", "allow", "logins", 0])).toBe("spec.allow.logins[0]");
    expect(formatPath(["metadata", "labels", "app.kubernetes.io/name"])).toBe(`metadata.labels["app.kubernetes.io/name"]`);
    expect(formatPath(["spec", "allow", "kubernetes_labels", "*"])).toBe(`spec.allow.kubernetes_labels["*"]`);
    expect(formatPath([])).toBe("");
  });
});

describe("parseSource()", () => {
  test("locates keys and values, in later documents too", () => {
    const docs = parseSource("a: 1\n---\n# comment\nspec:\n  allow:\n    logins: [root, x]\n", "f.yaml");
    expect(docs).toHaveLength(2);
    expect(docs[1]!.index).toBe(1);
    expect(docs[1]!.locate(["spec", "allow", "logins", 1])).toEqual({ file: "f.yaml", line: 6, column: 20 });
    expect(docs[1]!.locate(["spec", "allow"], "key")).toEqual({ file: "f.yaml", line: 5, column: 3 });
    // A missing field points at the key of its nearest existing parent.
    expect(docs[1]!.locate(["spec", "allow", "nope", "deeper"])).toEqual({ file: "f.yaml", line: 5, column: 3 });
  });

  test("follows aliases", () => {
    const [doc] = parseSource("base: &b\n  x: 1\nuse: *b\n", "f.yaml");
    expect(doc!.value).toEqual({ base: { x: 1 }, use: { x: 1 } });
    expect(doc!.locate(["use", "x"])).toEqual({ file: "f.yaml", line: 2, column: 6 });
  });

  test("drops empty values from mappings but not from lists", () => {
    const [doc] = parseSource("a:\nb: ~\nc: [~]\nd: {e: null}\n", "f.yaml");
    expect(doc!.value).toEqual({ c: [null], d: {} });
  });

  test("skips empty documents", () => {
    expect(parseSource("---\n# nothing\n---\n", "f.yaml")).toEqual([]);
  });

  test("JSON the YAML parser rejects is still read, without positions", () => {
    const [doc] = parseSource('{"a":\t{"b":\t1}}', "f.json");
    expect(doc!.value).toEqual({ a: { b: 1 } });
  });

  test("lists every syntax error in details", () => {
    const e = failure(() => parseSource("a: 'x\n", "f.yaml"));
    expect(e.message).toBe("Invalid YAML: missing closing quote");
    expect((e.details!.errors as unknown[]).length).toBeGreaterThanOrEqual(1);
  });
});
