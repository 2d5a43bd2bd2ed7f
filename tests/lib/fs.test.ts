/**
 * Atomic, owner-only file writes and the symlink guard.
 */

import { describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isAppError } from "../../src/lib/errors.ts";
import { assertNoSymlinks, ensureDir, formatMode, readFileIfExists, writeFileAtomic } from "../../src/lib/fs.ts";

function temp() {
  const path = mkdtempSync(join(tmpdir(), "mid-fs-"));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

describe("writeFileAtomic()", () => {
  test("creates the file 0600 whatever the umask, and leaves no temp file", async () => {
    using t = temp();
    const old = process.umask(0);
    try {
      await writeFileAtomic(join(t.path, "key"), "secret");
    } finally {
      process.umask(old);
    }
    expect(statSync(join(t.path, "key")).mode & 0o777).toBe(0o600);
    expect(readdirSync(t.path)).toEqual(["key"]);
  });

  test("replaces an existing file in one step and keeps the requested mode", async () => {
    using t = temp();
    const f = join(t.path, "cert");
    writeFileSync(f, "old");
    chmodSync(f, 0o644);
    await writeFileAtomic(f, "new", { mode: 0o640 });
    expect(readFileSync(f, "utf8")).toBe("new");
    expect(statSync(f).mode & 0o777).toBe(0o640);
  });

  test("a failed write leaves the previous file whole and names the path", async () => {
    using t = temp();
    const f = join(t.path, "cert");
    writeFileSync(f, "old");
    chmodSync(t.path, 0o500);
    try {
      if (process.getuid?.() === 0) {
        // root ignores directory permissions: make the directory a file's child instead
        chmodSync(t.path, 0o700);
        const err = await writeFileAtomic(join(f, "x"), "new").catch((e) => e);
        expect(isAppError(err)).toBe(true);
        expect(err.message).toContain(`Cannot write "${join(f, "x")}"`);
      } else {
        const err = await writeFileAtomic(f, "new").catch((e) => e);
        expect(err.message).toContain("permission denied");
      }
    } finally {
      chmodSync(t.path, 0o700);
    }
    expect(readFileSync(f, "utf8")).toBe("old");
    expect(readdirSync(t.path)).toEqual(["cert"]);
  });

  test("refuseSymlinks refuses a symlinked directory on the way", async () => {
    using t = temp();
    mkdirSync(join(t.path, "real"));
    symlinkSync(join(t.path, "real"), join(t.path, "link"));
    const err = await writeFileAtomic(join(t.path, "link", "f"), "x", { refuseSymlinks: true }).catch((e) => e);
    expect(isAppError(err, "ACCESS_DENIED")).toBe(true);
    expect(err.message).toContain("is a symlink");
    expect(readdirSync(join(t.path, "real"))).toEqual([]);
  });
});

describe("ensureDir() and friends", () => {
  test("creates parents and forces the leaf to 0700", async () => {
    using t = temp();
    const d = join(t.path, "a", "b");
    mkdirSync(join(t.path, "a"));
    mkdirSync(d, { mode: 0o755 });
    await ensureDir(d);
    expect(statSync(d).mode & 0o777).toBe(0o700);
    expect(lstatSync(d).isDirectory()).toBe(true);
  });

  test("a file in the way is a clear error", async () => {
    using t = temp();
    writeFileSync(join(t.path, "f"), "");
    const err = await ensureDir(join(t.path, "f")).catch((e) => e);
    expect(err.message).toContain("it is a file");
  });

  test("assertNoSymlinks passes a plain path and one that does not exist yet", async () => {
    using t = temp();
    await assertNoSymlinks(join(t.path, "not", "yet"));
  });

  test("readFileIfExists and formatMode", async () => {
    using t = temp();
    expect(await readFileIfExists(join(t.path, "none"))).toBeUndefined();
    writeFileSync(join(t.path, "x"), "y");
    expect(await readFileIfExists(join(t.path, "x"))).toBe("y");
    expect(formatMode(0o100644)).toBe("0644");
  });
});
