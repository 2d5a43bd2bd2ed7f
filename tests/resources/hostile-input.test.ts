// Property tests: whatever text or JSON value arrives, parsing either succeeds or
// throws an AppError with a usable message — never a TypeError, never a hang.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AppError } from "../../src/lib/errors.ts";
import { parseResource, parseResources, serializeResources } from "../../src/resources/index.ts";

import { SCENARIOS } from "../_scenarios.ts";

// Each property does a fixed amount of work (numRuns inputs): 0.7-2 s alone on this
// 2-core machine, over 5 s with other processes on the cores. Bun's default 5 s limit
// made the result depend on machine load; the limit here only guards against a hang.
const HANG_GUARD_MS = 120_000;

const SEEDS = ["bot.yaml", "role-kube.yaml", "token-bound-keypair.yaml", "token-kubernetes.yaml"].map((f) =>
  readFileSync(join(SCENARIOS, f), "utf8"),
);

function onlyAppError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    expect(e.code).toBe("BAD_PARAMETER");
    expect(e.message.length).toBeGreaterThan(0);
    expect(e.message.endsWith(".")).toBe(false);
  }
}

// Pieces that make YAML parsers and the validator work hard.
const FRAGMENTS = [
  "kind", "role", "bot", "token", "version", "v6", "v7", "metadata", "name", "spec", "allow", "logins",
  "kubernetes_resources", "join_method", "bound_keypair", "recovery", "limit", "__proto__", "constructor",
  ":", ": ", "- ", "\n", "  ", "    ", "\t", "'", '"', "{", "}", "[", "]", ",", "*", "&a ", "*a", "!!binary ",
  "!!str ", "---", "...", "#", "?", "|", ">", "~", "null", "-1", "1e999", ".nan", "0x1F", "2025-02-30T00:00:00Z",
  "\u0000", "\uFEFF", "\u2028", "é", "\\", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "!local ", "<<: ",
];

const yamlish = fc.array(fc.oneof(fc.constantFrom(...FRAGMENTS), fc.string({ maxLength: 6 })), { maxLength: 60 }).map((parts) => parts.join(""));

// A scenario file with a few random edits: inserted, deleted or replaced characters.
const mutated = fc
  .tuple(
    fc.constantFrom(...SEEDS),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 4 }), fc.constantFrom(...FRAGMENTS)), { minLength: 1, maxLength: 4 }),
  )
  .map(([seed, edits]) => {
    let s = seed;
    for (const [at, del, ins] of edits) {
      const i = at % (s.length + 1);
      s = s.slice(0, i) + ins + s.slice(i + del);
    }
    return s;
  });

describe("hostile input", () => {
  test("random strings into parseResources only ever throw AppError", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => onlyAppError(() => parseResources(s, "fuzz.yaml"))), {
      numRuns: 500,
    });
  }, HANG_GUARD_MS);

  test("YAML-ish strings into parseResources only ever throw AppError", () => {
    fc.assert(fc.property(yamlish, (s) => onlyAppError(() => parseResources(s, "fuzz.yaml"))), { numRuns: 1500 });
  }, HANG_GUARD_MS);

  test("mutated scenario files only ever throw AppError, and what parses round-trips", () => {
    fc.assert(
      fc.property(mutated, (s) => {
        let rs;
        try {
          rs = parseResources(s, "fuzz.yaml");
        } catch (e) {
          if (!(e instanceof AppError)) throw e;
          return;
        }
        expect(parseResources(serializeResources(rs, "yaml"), "again.yaml")).toEqual(rs);
      }),
      { numRuns: 1500 },
    );
  }, HANG_GUARD_MS);

  test("random JSON values into parseResource only ever throw AppError", () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => onlyAppError(() => parseResource(v))), { numRuns: 1000 });
  }, HANG_GUARD_MS);

  test("arbitrary JS values (odd prototypes, symbols, sparse arrays) into parseResource only ever throw AppError", () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withSparseArray: true, withBigInt: true, withDate: true, withMap: true, withSet: true }), (v) =>
        onlyAppError(() => parseResource(v)),
      ),
      { numRuns: 1000 },
    );
  }, HANG_GUARD_MS);

  test("resource-shaped objects with random leaves only ever throw AppError", () => {
    const leaf = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom("*", "^[$", "", "v6", "Bot", "bound_keypair", "1h", "200h"));
    const shaped = fc.record({
      kind: fc.constantFrom("role", "bot", "token", "user", 5),
      version: fc.constantFrom("v1", "v2", "v5", "v6", "v7", undefined),
      metadata: fc.record({ name: leaf, expires: leaf, labels: fc.dictionary(fc.string(), leaf, { maxKeys: 3 }) }, { requiredKeys: ["name"] }),
      spec: fc.dictionary(
        fc.constantFrom("allow", "deny", "options", "roles", "traits", "bot_name", "join_method", "bound_keypair", "kubernetes", "max_session_ttl"),
        fc.oneof(leaf, fc.dictionary(fc.constantFrom("logins", "kubernetes_labels", "kubernetes_resources", "recovery", "onboarding", "allow", "type"), leaf)),
      ),
    });
    fc.assert(fc.property(shaped, (v) => onlyAppError(() => parseResource(v))), { numRuns: 1500 });
  }, HANG_GUARD_MS);

  test("an alias bomb is refused rather than expanded", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const next = String.fromCharCode(97 + i);
      bomb.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(", ")}]`);
    }
    onlyAppError(() => parseResources(bomb.join("\n") + "\n", "bomb.yaml"));
    expect(() => parseResources(bomb.join("\n") + "\n", "bomb.yaml")).toThrow(/alias/i);
  }, HANG_GUARD_MS);
});
