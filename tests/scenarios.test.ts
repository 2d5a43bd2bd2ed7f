/**
 * The scenario files the tests use are the seed scenarios, byte for byte: the copy
 * matches the checksums recorded from ../shared/scenarios, and, where the originals
 * are present, the originals themselves.
 */

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SCENARIOS, SCENARIO_SUMS, SHARED_SCENARIOS } from "./_scenarios.ts";

const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
const recorded = Object.fromEntries(
  readFileSync(SCENARIO_SUMS, "utf8")
    .trim()
    .split("\n")
    .map((l) => l.split(/\s+/))
    .map(([sum, name]) => [name!, sum!]),
);

describe("scenario fixtures", () => {
  test("every recorded scenario is in the copy with the recorded checksum, and nothing else is", () => {
    expect(readdirSync(SCENARIOS).sort()).toEqual(Object.keys(recorded).sort());
    for (const [name, sum] of Object.entries(recorded)) expect(`${name} ${sha(join(SCENARIOS, name))}`).toBe(`${name} ${sum}`);
    expect(Object.keys(recorded)).toContain("tbot-static-env.yaml");
  });

  test("where the shared originals are present, the copy is identical to them", () => {
    if (!existsSync(SHARED_SCENARIOS)) return; // a clean clone: the recorded checksums above stand in for them
    expect(readdirSync(SHARED_SCENARIOS).sort()).toEqual(readdirSync(SCENARIOS).sort());
    for (const name of readdirSync(SHARED_SCENARIOS)) expect(sha(join(SCENARIOS, name))).toBe(sha(join(SHARED_SCENARIOS, name)));
  });
});
