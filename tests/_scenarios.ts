/**
 * The scenario YAML reconstructed from the seed documents, which machine-id must accept
 * verbatim. A byte-identical copy of ../shared/scenarios lives in tests/fixtures so a
 * clean clone (CI) has it; tests/scenarios.test.ts keeps the copy honest.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";

export const SCENARIOS = join(import.meta.dir, "fixtures", "scenarios");
/** The text of scenario file `name`. */
export const scenario = (name: string): string => readFileSync(join(SCENARIOS, name), "utf8");
/** Where the originals are in this workplace (absent in a clean clone). */
export const SHARED_SCENARIOS = join(import.meta.dir, "..", "..", "shared", "scenarios");
/** SHA-256 of the originals, recorded when they were copied. */
export const SCENARIO_SUMS = join(import.meta.dir, "fixtures", "scenarios.sha256");
