/**
 * An agent whose destination sits on a small tmpfs that fills up, then on the same
 * tmpfs remounted read-only: the agent reports the failure (/readyz 503, a log line),
 * the files of its last good identity stay intact and consistent (the key matches the
 * certificate), and it recovers by itself once space returns or the mount is writable.
 * Needs root and permission to mount a tmpfs: without them the tests fail saying so
 * (tests/_prereq.ts: a skipped test proves nothing).
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { AuthClient } from "../../src/protocol/index.ts";
import { adminClient } from "../_support/clients.ts";
import { waitFor } from "../agent/wait.ts";
import { isRoot, requirePrereqs } from "../_prereq.ts";
import { sh, startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";
import { startAgent, type RunningAgent } from "./_helpers.ts";

const INTERVAL_MS = 1000;
const IDENTITY_FILES = ["identity", "key", "key-cert.pub", "key.pub", "known_hosts", "ssh_config", "sshcacerts", "tlscacerts", "tlscert"];

let work: ReturnType<typeof tempDir>;
let mnt: string;
let mounted = false;
let auth: AuthProcess;
let admin: AuthClient;

/** Mounts the small tmpfs when this process may (root in a namespace that allows it); the error when it may not. */
function mountTmpfs(dir: string): string | undefined {
  if (!isRoot) return "not root";
  const r = sh(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", dir]);
  if (r.code !== 0) return r.stderr.trim() || `mount exited ${r.code}`;
  mounted = true;
  return undefined;
}

let mountError: string | undefined;

beforeAll(async () => {
  work = tempDir("mid-fs-");
  mnt = join(work.path, "mnt");
  mkdirSync(mnt);
  mountError = mountTmpfs(mnt);
  if (mountError) return;
  auth = await startAuth(join(work.path, "auth"));
  admin = adminClient(join(work.path, "auth"), auth.addr);
}, 60_000);

afterAll(async () => {
  if (mounted) sh(["umount", "-l", mnt]);
  await auth?.[Symbol.asyncDispose]();
  work?.[Symbol.dispose]();
});

function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).filter((f) => IDENTITY_FILES.includes(f)).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
}

/** The public key of the certificate and of the private key, as OpenSSL prints them: equal when the pair belongs together. */
function consistent(dir: string): boolean {
  const fromCert = sh(["openssl", "x509", "-noout", "-pubkey", "-in", join(dir, "tlscert")]);
  const fromKey = sh(["openssl", "pkey", "-pubout", "-in", join(dir, "key")]);
  return fromCert.code === 0 && fromKey.code === 0 && fromCert.stdout === fromKey.stdout;
}

/**
 * Fills the filesystem of `dir` to the last page, then gives `leavePages` pages back
 * (so a write can get part of the way: some files staged, the next one refused).
 * Returns the filler's path.
 */
function fill(dir: string, leavePages = 0): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(4096, 1);
  let pages = 0;
  try {
    for (;;) {
      writeSync(fd, block);
      pages++;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
  } finally {
    closeSync(fd);
  }
  if (leavePages > 0) truncateSync(path, Math.max(0, pages - leavePages) * 4096);
  return path;
}

/** Waits until the agent reports the destination broken, then checks the files stay as they were for three intervals. */
async function expectKeptWhileBroken(a: RunningAgent, reason: RegExp): Promise<Record<string, string>> {
  await waitFor("/readyz 503", async () => (await a.diag.readyz()) === 503, 30_000);
  const r = await a.diag.readiness();
  const broken = Object.entries(r.services).find(([name]) => name !== "identity");
  expect(broken?.[1].status).toBe("unhealthy");
  expect(broken?.[1].reason ?? "").toMatch(reason);
  console.log(`/readyz: ${broken?.[0]} unhealthy: ${broken?.[1].reason}`);
  const kept = snapshot(a.out);
  expect(Object.keys(kept).sort()).toEqual(IDENTITY_FILES);
  expect(consistent(a.out)).toBe(true);
  const since = Date.now();
  const failedBefore = await a.diag.metric('machine_id_task_iterations_failed_total{task="identity"}');
  await waitFor("three more intervals", async () => {
    expect(snapshot(a.out)).toEqual(kept);
    return Date.now() - since > 3 * INTERVAL_MS;
  }, 30_000);
  // renewal itself still works: only the output fails
  expect(await a.diag.metric('machine_id_task_iterations_failed_total{task="identity"}')).toBe(failedBefore);
  expect(a.agent.stderr).toMatch(/"msg":"Cannot write output"/);
  await noStagedLeftovers(a.out);
  return kept;
}

/**
 * A failed write removes what it staged. Staged files are visible while a write is in
 * progress, so this waits for a listing without any: a leftover would never go away.
 */
async function noStagedLeftovers(dir: string): Promise<void> {
  await waitFor("a listing without staged files", () => readdirSync(dir).sort().join() === IDENTITY_FILES.join(), 20_000);
}

async function expectRecovered(a: RunningAgent, kept: Record<string, string>): Promise<void> {
  await waitFor("/readyz 200 again", async () => (await a.diag.readyz()) === 200, 30_000);
  await waitFor("fresh files", () => snapshot(a.out).tlscert !== kept.tlscert, 30_000);
  // files are renamed into place one after the other: a listing can fall between two renames
  await waitFor("the new key and certificate to match", () => consistent(a.out), 10_000);
  await noStagedLeftovers(a.out);
}

describe("destination filesystem", () => {
  test.each([
    ["full to the last page", 0],
    ["nearly full (room for some of the files)", 3],
  ])("%s tmpfs: reported, last identity kept intact, recovery when space returns", async (_, leavePages) => {
    requirePrereqs({ "root and a tmpfs mount": [mountError === undefined, `run as root where mount(8) is allowed (${mountError})`] });
    const name = `full-${leavePages}`;
    await using a = await startAgent({ admin, authAddr: auth.addr, dir: work.path, name, intervalMs: INTERVAL_MS, out: join(mnt, name) }).then((r) => Object.assign(r, { [Symbol.asyncDispose]: () => r.agent[Symbol.asyncDispose]() }));
    expect(consistent(a.out)).toBe(true);
    const filler = fill(mnt, leavePages);
    let kept: Record<string, string>;
    try {
      kept = await expectKeptWhileBroken(a, /space|ENOSPC/i);
    } finally {
      rmSync(filler);
    }
    await expectRecovered(a, kept);
  }, 120_000);

  test("read-only remount: reported, last identity kept intact, recovery when writable again", async () => {
    requirePrereqs({ "root and a tmpfs mount": [mountError === undefined, `run as root where mount(8) is allowed (${mountError})`] });
    await using a = await startAgent({ admin, authAddr: auth.addr, dir: work.path, name: "readonly", intervalMs: INTERVAL_MS, out: join(mnt, "readonly") }).then((r) => Object.assign(r, { [Symbol.asyncDispose]: () => r.agent[Symbol.asyncDispose]() }));
    expect(sh(["mount", "-o", "remount,ro", mnt]).code).toBe(0);
    let kept: Record<string, string>;
    try {
      kept = await expectKeptWhileBroken(a, /read-only|EROFS/i);
    } finally {
      expect(sh(["mount", "-o", "remount,rw", mnt]).code).toBe(0);
    }
    await expectRecovered(a, kept);
  }, 120_000);
});
