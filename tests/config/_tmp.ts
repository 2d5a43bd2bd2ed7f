/**
 * A temp dir for the config tests that removes itself: `using dir = new TempDir()`.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class TempDir implements Disposable {
  readonly path = mkdtempSync(join(tmpdir(), "mid-config-"));

  /** Writes `data` to `name` in the dir and returns its path. */
  write(name: string, data: string, mode = 0o600): string {
    const p = join(this.path, name);
    writeFileSync(p, data, { mode });
    return p;
  }

  [Symbol.dispose](): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
