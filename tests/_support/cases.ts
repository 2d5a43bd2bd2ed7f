/**
 * Helpers shared by the resource, config and CI token tests: catching the AppError a call
 * throws, table-driven error cases, and golden files (UPDATE_GOLDEN=1 rewrites them).
 */

import { expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { AppError } from "../../src/lib/errors.ts";

/** The AppError `fn` throws; fails the test when it returns or throws anything else. */
export function failure(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected an AppError, got success");
}

/** Compares `actual` with the golden file at `path`, writing it when absent or asked to. */
export function golden(path: string, actual: string): void {
  if (process.env.UPDATE_GOLDEN === "1" || !existsSync(path)) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, "utf8"));
}

/** One bad input and exactly what parsing it must report. */
export interface ErrorCase {
  name: string;
  text: string;
  message: string;
  line: number;
  column?: number;
  field?: string;
}

/** One test per case: `parse(text, file)` throws BAD_PARAMETER with that message at that place. */
export function errorCases(cases: readonly ErrorCase[], file: string, parse: (text: string, file: string) => unknown): void {
  for (const c of cases) {
    test(c.name, () => {
      const e = failure(() => parse(c.text, file));
      expect(e.code).toBe("BAD_PARAMETER");
      expect(e.message).toBe(c.message);
      expect(e.position?.file).toBe(file);
      expect(e.position?.line).toBe(c.line);
      if (c.column !== undefined) expect(e.position?.column).toBe(c.column);
      if (c.field !== undefined) expect(e.field).toBe(c.field);
    });
  }
}
