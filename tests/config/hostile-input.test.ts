// Property tests: any text into the config parsers either loads or throws an AppError.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AppError } from "../../src/lib/errors.ts";
import { parseAgentConfig, parseAuthConfig, serializeAgentConfig, type AgentConfig } from "../../src/config/index.ts";

import { SCENARIOS } from "../_scenarios.ts";
const SEEDS = ["tbot-v1.yaml", "tbot-static-env.yaml", "tbot-static-file.yaml", "tbot-kubernetes.yaml"].map((f) =>
  readFileSync(join(SCENARIOS, f), "utf8"),
);
const FRAGMENTS = [
  "version: v2\n", "version: v1\n", "onboarding:\n", "  token: ", "  join_method: ", "storage:\n", "  type: ", "memory",
  "directory", "kubernetes_secret", "outputs:\n", "  - ", "destinations:\n", "    ", ": ", "\n", "'", '"', "[", "]", "{", "}",
  "*a", "&a ", "---\n", "1h", "0", "-1", "~", "true", "/", "./", "\t", "#",
];

function onlyAppError(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    expect(e.message.length).toBeGreaterThan(0);
    expect(e.message.endsWith(".")).toBe(false);
  }
}

const yamlish = fc.array(fc.oneof(fc.constantFrom(...FRAGMENTS), fc.string({ maxLength: 5 })), { maxLength: 40 }).map((p) => p.join(""));
const mutated = fc
  .tuple(fc.constantFrom(...SEEDS), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 4 }), fc.constantFrom(...FRAGMENTS)), { minLength: 1, maxLength: 3 }))
  .map(([seed, edits]) => edits.reduce((s, [at, del, ins]) => s.slice(0, at % (s.length + 1)) + ins + s.slice((at % (s.length + 1)) + del), seed));

describe("config hostile input", () => {
  test("YAML-ish text into parseAgentConfig and parseAuthConfig only ever throws AppError", () => {
    fc.assert(
      fc.property(yamlish, (s) => {
        onlyAppError(() => parseAgentConfig(s, "fuzz.yaml"));
        onlyAppError(() => parseAuthConfig(s, "fuzz.yaml"));
      }),
      { numRuns: 1500 },
    );
  });

  test("mutated scenario configs only ever throw AppError, and what loads round-trips", () => {
    fc.assert(
      fc.property(mutated, (s) => {
        let cfg: AgentConfig;
        try {
          cfg = parseAgentConfig(s, "fuzz.yaml");
        } catch (e) {
          if (!(e instanceof AppError)) throw e;
          return;
        }
        expect(parseAgentConfig(serializeAgentConfig(cfg), "again.yaml")).toEqual({ ...cfg, warnings: [] });
      }),
      { numRuns: 1500 },
    );
  });
});
