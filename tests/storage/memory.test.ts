/**
 * The in-memory backend (SQLite ":memory:") against the conformance suite, plus what
 * is particular to it.
 */

import { expect, test } from "bun:test";
import { openBackend } from "../../src/auth/storage/index.ts";
import { runBackendConformance } from "./conformance.ts";

runBackendConformance("memory", (opts) => openBackend({ type: "memory" }, opts), async () => {});

test("two memory backends do not share data", async () => {
  const a = await openBackend({ type: "memory" }, { sweepIntervalMs: 0 });
  const b = await openBackend({ type: "memory" }, { sweepIntervalMs: 0 });
  try {
    await a.put("/k", 1);
    expect(await b.get("/k")).toBeUndefined();
    expect(a.kind).toBe("memory");
  } finally {
    await a.close();
    await b.close();
  }
});
