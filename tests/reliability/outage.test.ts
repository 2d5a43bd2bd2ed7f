/**
 * Outages, with the compiled binary: an agent keeps its outputs while the auth service
 * is down for three renewal intervals, reports unhealthy, and renews within its backoff
 * ceiling once the service is back; and a service restored from an older copy of its
 * database catches the generation counter up (audited as cert.generation_rollback)
 * instead of locking its bots, while an instance that joined after the backup is
 * refused as unknown, and a bound-keypair agent that joined again after the backup is
 * taken for a clone at its next join (docs/reliability.md tells the operator what to do).
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { formatSshPublicKey } from "../../src/crypto/index.ts";
import type { AuthClient } from "../../src/protocol/index.ts";
import { RenewingBot, prepareKeys, type Target } from "../_support/bot.ts";
import { adminClient } from "../_support/clients.ts";
import type { Proc } from "../agent/procs.ts";
import { waitFor } from "../agent/wait.ts";
import { startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";
import { startAgent, type RunningAgent } from "./_helpers.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";

const INTERVAL_MS = 1000;
/** The agent's retry delays: 1, 2, 4, 8, 16 s (src/lib/retry.ts defaults), each ±20 % jitter. */
const BACKOFF_CEILING_MS = 16_000 * 1.2;

let work: ReturnType<typeof tempDir>;
let authDir: string;
let auth: AuthProcess | undefined;
let admin: AuthClient;
const agents: Proc[] = [];

beforeEach(async () => {
  work = tempDir("mid-outage-");
  authDir = join(work.path, "auth");
  auth = await startAuth(authDir);
  admin = adminClient(authDir, auth.addr);
});

afterEach(async () => {
  for (const a of agents.splice(0)) await a[Symbol.asyncDispose]();
  await auth?.[Symbol.asyncDispose]();
  work[Symbol.dispose]();
});

async function agentFor(name: string): Promise<RunningAgent> {
  const a = await startAgent({ admin, authAddr: auth!.addr, dir: work.path, name, intervalMs: INTERVAL_MS });
  agents.push(a.agent);
  return a;
}

/** A cold backup of the service's SQLite files: stop, copy, start again on the same port. Returns the copy's directory. */
async function coldBackup(): Promise<string> {
  const port = auth!.port;
  expect(await auth!.stop("SIGTERM")).toBe(0);
  const backup = join(work.path, `backup-${Date.now()}`);
  mkdirSync(backup);
  for (const f of readdirSync(authDir).filter((f) => f.startsWith("machine-id.db"))) copyFileSync(join(authDir, f), join(backup, f));
  auth = await startAuth(authDir, { port });
  admin = adminClient(authDir, auth.addr);
  return backup;
}

/** Stops the service, puts the backup's files in place of the database, starts it again on the same port. */
async function restore(backup: string): Promise<void> {
  const port = auth!.port;
  expect(await auth!.stop("SIGTERM")).toBe(0);
  for (const f of readdirSync(authDir).filter((f) => f.startsWith("machine-id.db"))) rmSync(join(authDir, f));
  for (const f of readdirSync(backup)) copyFileSync(join(backup, f), join(authDir, f));
  auth = await startAuth(authDir, { port });
  admin = adminClient(authDir, auth.addr);
}

/** Every output file's content, by name. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
}

describe("outage", () => {
  test("outputs stay intact while the service is down for three intervals; /readyz 503; renewal within the backoff ceiling after", async () => {
    const { diag, out } = await agentFor("outage");
    await waitFor("two renewals", async () => (await diag.renewals()) >= 3, 30_000);

    const port = auth!.port;
    expect(await auth!.stop("SIGKILL")).not.toBe(0);
    auth = undefined;
    const downAt = Date.now();
    // an iteration that renewed just before the kill may still be writing: compare from the first failure on
    await waitFor("/readyz 503", async () => (await diag.readyz()) === 503, 30_000);
    const before = snapshot(out);
    expect(Object.keys(before).sort()).toEqual(["identity", "key", "key-cert.pub", "key.pub", "known_hosts", "ssh_config", "sshcacerts", "tlscacerts", "tlscert"]);
    // three renewal intervals of outage, the files checked all along
    await waitFor("three renewal intervals to pass", async () => {
      expect(snapshot(out)).toEqual(before);
      return Date.now() - downAt >= 3 * INTERVAL_MS;
    }, 30_000);
    const body = await diag.readiness();
    expect(body.services.identity!.status).toBe("unhealthy");
    expect(body.services.identity!.reason).toContain("Cannot reach auth service");
    expect(snapshot(out)).toEqual(before);

    const renewed = await diag.renewals();
    auth = await startAuth(authDir, { port });
    const backAt = Date.now();
    await waitFor("a renewal after the service is back", async () => (await diag.renewals()) > renewed && (await diag.readyz()) === 200, BACKOFF_CEILING_MS + 10_000);
    const took = Date.now() - backAt;
    console.log(`outage of ${backAt - downAt} ms; renewed ${took} ms after the service came back (ceiling ${BACKOFF_CEILING_MS} ms)`);
    expect(took).toBeLessThanOrEqual(BACKOFF_CEILING_MS + 2000);
    // the agent is writing again: read the one file (a rename replaces it whole) rather than the
    // directory, whose staged ".name.tmp-…" files come and go between readdir and read
    await waitFor("fresh files", () => readFileSync(join(out, "tlscert"), "utf8") !== before.tlscert, 10_000);
  }, 90_000);

  test("a database restored from an older copy: the generation catches up and is audited; a later instance is refused as unknown", async () => {
    const early = await agentFor("early");
    await waitFor("renewals before the backup", async () => (await early.diag.renewals()) >= 3, 30_000);

    const backup = await coldBackup();
    const [atBackup] = await admin.listBotInstances("early");

    const late = await agentFor("late");
    const renewedSince = await early.diag.renewals();
    await waitFor("renewals after the backup", async () => (await early.diag.renewals()) >= renewedSince + 3, 30_000);
    const [beforeRestore] = await admin.listBotInstances("early");
    expect(beforeRestore!.generation).toBeGreaterThan(atBackup!.generation);

    await restore(backup);
    expect((await admin.listBotInstances("early"))[0]!.generation).toBe(atBackup!.generation);

    // the early agent presents a newer generation than the database holds: caught up, audited, not locked
    const n = await early.diag.renewals();
    await waitFor("the early agent to renew against the restored database", async () => (await early.diag.renewals()) >= n + 2, 30_000);
    const [after] = await admin.listBotInstances("early");
    expect(after!.locked).toBe(false);
    expect(after!.generation).toBeGreaterThan(beforeRestore!.generation);
    const rollbacks = await admin.listEvents({ type: "cert.generation_rollback" });
    expect(rollbacks.length).toBe(1);
    expect(rollbacks[0]!.fields).toMatchObject({ bot: "early", bot_instance_id: atBackup!.instance_id, stored: atBackup!.generation });
    expect(Number(rollbacks[0]!.fields.presented)).toBeGreaterThanOrEqual(beforeRestore!.generation);
    expect(await admin.listEvents({ type: "cert.generation_mismatch" })).toEqual([]);

    // the late agent joined after the backup: its instance is unknown to the restored service
    await waitFor("the late agent to report the unknown instance", async () => {
      const r = await late.diag.readiness().catch(() => undefined);
      return r?.services.identity?.status === "unhealthy" && /is not known \(deleted, or the database was restored from before it joined\): join again/.test(r.services.identity.reason ?? "");
    }, 30_000);
    expect(existsSync(join(late.out, "tlscert"))).toBe(true); // its last outputs stay in place
    expect(await admin.listBotInstances("late")).toEqual([]);
  }, 120_000);

  test("a database restored from an older copy: a bound-keypair agent that joined again since catches the token up at its next join; an older state is still a clone", async () => {
    const target: Target = { host: "127.0.0.1", port: auth!.port, caPem: [await admin.exportCA("tls-host")] };
    const bound = generateKeyPairSync("ed25519");
    const keys = prepareKeys(3);
    await admin.addBot({ name: "edge", roles: [] });
    await admin.createResources([
      {
        kind: "token",
        version: "v2",
        metadata: { name: "edge-key" },
        spec: { roles: ["Bot"], bot_name: "edge", join_method: "bound_keypair", bound_keypair: { onboarding: { initial_public_key: formatSshPublicKey(bound.publicKey) }, recovery: { mode: "standard", limit: 10 } } },
      },
    ]);
    const first = await RenewingBot.boundKeypairJoin(target, "edge-key", bound.privateKey, keys[0]!);

    const backup = await coldBackup();
    const second = await RenewingBot.boundKeypairJoin(target, "edge-key", bound.privateKey, keys[1]!, undefined, first.joinState);
    await restore(backup);

    // the restored token expects the first join's state; the agent holds the second's, which
    // only this cluster could have signed: the database went back in time, not the agent
    const third = await RenewingBot.boundKeypairJoin({ ...target, port: auth!.port }, "edge-key", bound.privateKey, keys[2]!, undefined, second.joinState);
    expect(third.joinState).toBeString();
    const rollbacks = await admin.listEvents({ type: "join_state.rollback" });
    expect(rollbacks.map((e) => [e.fields.token, e.fields.presented, e.fields.stored])).toEqual([[tokenFingerprint("edge-key"), 2, 1]]);
    expect(await admin.listEvents({ type: "token.locked" })).toEqual([]);
    // a copy still holding the first join's state is now stale and locks the token
    const clone = RenewingBot.boundKeypairJoin({ ...target, port: auth!.port }, "edge-key", bound.privateKey, keys[0]!, undefined, first.joinState);
    await expect(clone).rejects.toThrow(/HTTP 423 .*stale join state \(sequence 1, expected 3\)/);
    expect((await admin.listEvents({ type: "token.locked" })).map((e) => e.fields.token)).toEqual([tokenFingerprint("edge-key")]);
  }, 60_000);
});
