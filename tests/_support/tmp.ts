/**
 * The tests' one temp directory: created at once (mode 0700, as mkdtemp makes it) and
 * removed with everything in it by `using` or `await using`.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A temp directory removed on dispose: `using dir = tempDir()` (or `await using`). */
export class TempDir implements Disposable, AsyncDisposable {
  readonly path: string;

  constructor(prefix = "mid-test-") {
    this.path = mkdtempSync(join(tmpdir(), prefix));
  }

  /** The path of `name` in the directory. */
  file(name: string): string {
    return join(this.path, name);
  }

  /** Writes `data` to `name` (mode 0600 unless given) and returns its path. */
  write(name: string, data: string | Uint8Array, mode = 0o600): string {
    const p = this.file(name);
    writeFileSync(p, data, { mode });
    return p;
  }

  read(name: string): string {
    return readFileSync(this.file(name), "utf8");
  }

  readBytes(name: string): Uint8Array {
    return new Uint8Array(readFileSync(this.file(name)));
  }

  [Symbol.dispose](): void {
    rmSync(this.path, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this[Symbol.dispose]();
  }
}

/** A new TempDir; `await tempDir()` works too, for callers written for an async helper. */
export function tempDir(prefix?: string): TempDir {
  return new TempDir(prefix);
}
