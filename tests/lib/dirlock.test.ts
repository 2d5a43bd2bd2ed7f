// lockExclusive(): flock on a lock file, refused while held (even by another open in the
// same process), free again on release, never through a symlink.

import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lockExclusive } from "../../src/lib/dirlock.ts";
import { AppError } from "../../src/lib/errors.ts";

function tempDir() {
  const path = mkdtempSync(join(tmpdir(), "dirlock-"));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

test("lockExclusive() refuses a held lock naming the holder's PID, and takes it again after release", async () => {
  using d = tempDir();
  const path = join(d.path, "x.lock");
  const held = await lockExclusive(path, "the test dir");
  expect(readFileSync(path, "utf8")).toBe(`${process.pid}\n`);
  const e = (await lockExclusive(path, "the test dir").catch((x: unknown) => x)) as AppError;
  expect(e).toBeInstanceOf(AppError);
  expect(e).toMatchObject({ code: "LOCKED", details: { reason: "held", pid: process.pid } });
  expect(e.message).toBe(`Cannot lock the test dir: it is in use by process ${process.pid} (lock file "${path}")`);
  held.release();
  held.release(); // idempotent
  const again = await lockExclusive(path, "the test dir");
  again.release();
});

test("lockExclusive() does not follow a symlinked lock file", async () => {
  using d = tempDir();
  const path = join(d.path, "x.lock");
  symlinkSync(join(d.path, "elsewhere"), path);
  const e = (await lockExclusive(path, "the test dir").catch((x: unknown) => x)) as AppError;
  expect(e).toMatchObject({ code: "BAD_PARAMETER", message: `Cannot open the lock file "${path}": it is a symlink` });
});
