/**
 * The auth service's own loops on its clock: a failed refresh of the service
 * certificate and admin identity is retried within seconds (not at the next 12-hour
 * refresh), and succeeds once the cause is gone.
 */

import { expect, test } from "bun:test";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startAuthService } from "../../src/auth/service.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { memoryLogger, tempDir } from "../agent/harness.ts";
import { waitFor } from "../agent/wait.ts";

const HOUR = 3_600_000;

test("a failed certificate refresh is retried after a second, then two, and recovers", async () => {
  await using dir = await tempDir("auth-loops-");
  const clock = new FakeClock(Date.now());
  const { log, lines } = memoryLogger("info");
  const auth = await startAuthService({ dataDir: dir.path, listenAddr: "127.0.0.1:0", storage: { type: "memory" }, log, clock, clusterName: "loops.test" });
  try {
    const failures = () => lines.filter((l) => l.includes("Cannot refresh the service certificate or admin identity")).length;
    const written = async () => (await stat(auth.adminIdentityPath)).mtimeMs;
    const before = await written();
    // a directory where the admin identity goes: the atomic rename over it fails
    await rm(auth.adminIdentityPath);
    await mkdir(auth.adminIdentityPath);
    await writeFile(join(auth.adminIdentityPath, "keep"), "");

    clock.advance(12 * HOUR);
    await waitFor("the refresh to fail", () => failures() === 1);
    clock.advance(1200); // 1 s ± 20 % jitter
    await waitFor("the first retry, a second later", () => failures() === 2);
    expect(JSON.parse(lines.findLast((l) => l.includes("Cannot refresh"))!)).toMatchObject({ attempt: 2, retry_in_ms: expect.any(Number) });

    await rm(auth.adminIdentityPath, { recursive: true });
    clock.advance(2400); // the second retry: 2 s ± 20 % jitter
    await waitFor("the admin identity written again", async () => (await stat(auth.adminIdentityPath).catch(() => undefined))?.isFile());
    expect(await written()).toBeGreaterThanOrEqual(before);
    expect(failures()).toBe(2);
  } finally {
    await auth.close();
  }
});
