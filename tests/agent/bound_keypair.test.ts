/**
 * The bound_keypair join method against a real auth service in process: static keys
 * (environment and file) and every refusal, the keypair in storage with its join
 * state, registration secrets, rotation (also with a lost answer), cloned keypairs,
 * recovery limits, and rejoining when the identity expired — by our clock or the
 * service's.
 */

import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { cp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Bot, BotStore, DirectoryDestination, MemoryDestination, registerJoinMethod, type Destination } from "../../src/agent/index.ts";
import { botSettings } from "../../src/agent/agent.ts";
import {
  BOUND_KEY_FILE,
  BOUND_PUBLIC_KEY_FILE,
  BOUND_STATE_FILE,
  BoundKeyStore,
  boundKeypairJoinMethod,
  STATIC_KEY_ENV,
} from "../../src/agent/bound_keypair/index.ts";
import { formatSshPublicKey, generateKeyPair, keyId, privateKeyToPem, sshFingerprint, type KeyPair } from "../../src/crypto/index.ts";
import { FakeClock, type Clock } from "../../src/lib/clock.ts";
import { AppError, connectionProblem, isAppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { AuthClient } from "../../src/protocol/index.ts";
import type { TokenResource } from "../../src/resources/index.ts";
import { ADMIN, agentConfig, startTestAuth, tempDir, type TestAuth } from "./harness.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { adminOf } from "../_support/admin.ts";

/** The environment the registered method reads; each test sets what it needs. */
const env: Record<string, string | undefined> = {};
let undo: () => void;
beforeAll(() => {
  undo = registerJoinMethod(boundKeypairJoinMethod({ env }));
});
afterAll(() => undo());
beforeEach(() => {
  delete env[STATIC_KEY_ENV];
});

const HOUR = 3_600_000;
const pub = (k: KeyPair) => formatSshPublicKey(k.publicKey);
const envValue = (k: KeyPair) => Buffer.from(privateKeyToPem(k.privateKey)).toString("base64");
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a failure"); }, (e: unknown) => e as AppError);

/** Creates bot `edge` (no roles) and a bound_keypair token `name` with `bk` as its spec. */
async function bkToken(auth: TestAuth, name: string, bk: Record<string, unknown>): Promise<void> {
  await adminOf(auth.auth.ctx).createResources(
    [
      { kind: "bot", version: "v1", metadata: { name: "edge" }, spec: { roles: [] } },
      { kind: "token", version: "v2", metadata: { name }, spec: { roles: ["Bot"], bot_name: "edge", join_method: "bound_keypair", bound_keypair: bk } },
    ],
    true,
    ADMIN,
  );
}

async function tokenStatus(auth: TestAuth, name: string) {
  return ((await adminOf(auth.auth.ctx).getResource("token", name)) as TokenResource).status?.bound_keypair ?? {};
}

/** The token was never used: no key bound, no recovery consumed. */
async function expectUnbound(auth: TestAuth, name: string): Promise<void> {
  const s = await tokenStatus(auth, name);
  expect(s.bound_public_key).toBeUndefined();
  expect(s.recovery_count ?? 0).toBe(0);
}

interface BotOpts {
  staticPath?: string;
  secret?: string;
  secretPath?: string;
  clock?: Clock;
  client?: (addr: string, tls: ConstructorParameters<typeof AuthClient>[0]["tls"]) => AuthClient;
}

function bkBot(auth: TestAuth, token: string, storage: Destination, o: BotOpts = {}): Bot {
  const cfg = agentConfig(auth, token, undefined, []);
  cfg.onboarding = {
    ...cfg.onboarding,
    joinMethod: "bound_keypair",
    boundKeypair: {
      ...(o.staticPath ? { staticPrivateKeyPath: o.staticPath } : {}),
      ...(o.secret ? { registrationSecret: o.secret } : {}),
      ...(o.secretPath ? { registrationSecretPath: o.secretPath } : {}),
    },
  };
  return new Bot({
    settings: botSettings(cfg),
    store: new BotStore(storage),
    clock: o.clock ?? auth.clock,
    log: silentLogger,
    ...(o.client ? { client: o.client } : {}),
  });
}

const dir = (path: string) => new DirectoryDestination({ path, acls: "off", log: silentLogger });

async function storedKeypair(path: string, key: KeyPair): Promise<void> {
  const store = new BotStore(dir(path));
  await store.init();
  await new BoundKeyStore(store).saveKey(key);
}

describe("static keys", () => {
  test("a key from the environment joins an insecure token, again and again on fresh memory storage", async () => {
    await using auth = await startTestAuth();
    const key = generateKeyPair("ed25519");
    await bkToken(auth, "ci-static", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } });
    env[STATIC_KEY_ENV] = envValue(key);
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const bot = bkBot(auth, "ci-static", new MemoryDestination());
      expect(await bot.refresh()).toBe("joined");
      expect(bot.identity!.botName).toBe("edge");
      expect(bot.identity!.joinMethod).toBe("bound_keypair");
      ids.add(bot.identity!.instanceId);
    }
    expect(ids.size).toBe(3);
    expect(await tokenStatus(auth, "ci-static")).toMatchObject({ recovery_count: 3, bound_public_key: pub(key) });
  });

  test("an ECDSA P-256 key from a file joins, and the config's file wins over the environment", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ecdsa-p256");
    await bkToken(auth, "ci-file", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } });
    const path = join(t.path, "key");
    await writeFile(path, privateKeyToPem(key.privateKey), { mode: 0o600 });
    env[STATIC_KEY_ENV] = envValue(generateKeyPair("ed25519")); // another key: would be refused
    expect(await bkBot(auth, "ci-file", new MemoryDestination(), { staticPath: path }).refresh()).toBe("joined");
  });

  test("a key that is not the bound key is refused with its fingerprint, audited with the address, and nothing changes", async () => {
    await using auth = await startTestAuth();
    const bound = generateKeyPair("ed25519");
    const other = generateKeyPair("ed25519");
    await bkToken(auth, "ci-other", { onboarding: { initial_public_key: pub(bound) }, recovery: { limit: 0, mode: "insecure" } });
    env[STATIC_KEY_ENV] = envValue(other);
    const storage = new MemoryDestination();
    const e = await errorOf(bkBot(auth, "ci-other", storage).refresh());
    expect(isAppError(e, "ACCESS_DENIED")).toBe(true);
    expect(e.message).toBe(
      `The key presented (${sshFingerprint(other.publicKey)}) does not match the public key bound to join token "ci-other" (${sshFingerprint(bound.publicKey)}); ` +
        `use the private key of ${sshFingerprint(bound.publicKey)} (ssh-keygen -lf prints a key's fingerprint), or ask an admin for a new token; ` +
        `the key presented is the static key in $${STATIC_KEY_ENV} (${sshFingerprint(other.publicKey)})`,
    );
    const failed = await auth.events("join.failed");
    expect(failed.at(-1)!.fields).toMatchObject({ token: tokenFingerprint("ci-other"), join_method: "bound_keypair", remote_addr: "127.0.0.1" });
    await expectUnbound(auth, "ci-other");
    expect(storage.files.size).toBe(0);
  });

  test("a token in standard recovery mode is refused before the challenge is answered", async () => {
    await using auth = await startTestAuth();
    const key = generateKeyPair("ed25519");
    await bkToken(auth, "ci-std", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 5, mode: "standard" } });
    env[STATIC_KEY_ENV] = envValue(key);
    const e = await errorOf(bkBot(auth, "ci-std", new MemoryDestination()).refresh());
    expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
    expect(e.message).toBe(
      `Join token "ci-std" uses recovery mode "standard", but a static key needs "insecure": a host without storage cannot present the previous join state; set spec.bound_keypair.recovery.mode to insecure`,
    );
    await expectUnbound(auth, "ci-std");
    expect(await auth.events("bot.join")).toEqual([]);
  });

  test("a token asking for rotation is refused: a static key cannot rotate", async () => {
    await using auth = await startTestAuth();
    const key = generateKeyPair("ed25519");
    const spec = { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } };
    await bkToken(auth, "ci-rot", spec);
    env[STATIC_KEY_ENV] = envValue(key);
    await bkBot(auth, "ci-rot", new MemoryDestination()).refresh();
    await bkToken(auth, "ci-rot", { ...spec, rotate_after: new Date(auth.clock.now().getTime() - 60_000).toISOString() });
    const before = await tokenStatus(auth, "ci-rot");
    const e = await errorOf(bkBot(auth, "ci-rot", new MemoryDestination()).refresh());
    expect(e.message).toStartWith(`Join token "ci-rot" asks for a new key (spec.bound_keypair.rotate_after), but a static key cannot rotate`);
    expect(await tokenStatus(auth, "ci-rot")).toEqual(before);
  });

  test("a bad static key is refused before anything is sent", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await bkToken(auth, "ci-bad", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } });
    env[STATIC_KEY_ENV] = "%%%";
    expect((await errorOf(bkBot(auth, "ci-bad", new MemoryDestination()).refresh())).message).toContain("is not valid base64");
    const path = join(t.path, "key");
    await writeFile(path, privateKeyToPem(key.privateKey), { mode: 0o644 });
    expect((await errorOf(bkBot(auth, "ci-bad", new MemoryDestination(), { staticPath: path }).refresh())).message).toBe(
      `Cannot read static key "${path}": mode 0644 lets others read it; run chmod 600 "${path}"`,
    );
    expect(await auth.events("join.failed")).toEqual([]);
    await expectUnbound(auth, "ci-bad");
  });

  test("must_register_before in the past, and a locked token, are refused with the service's reason", async () => {
    await using auth = await startTestAuth();
    const key = generateKeyPair("ed25519");
    const before = new Date(auth.clock.now().getTime() - 1000).toISOString().replace(/\.\d+Z$/, "Z");
    await bkToken(auth, "ci-late", { onboarding: { initial_public_key: pub(key), must_register_before: before }, recovery: { limit: 0, mode: "insecure" } });
    env[STATIC_KEY_ENV] = envValue(key);
    const late = await errorOf(bkBot(auth, "ci-late", new MemoryDestination()).refresh());
    expect(isAppError(late, "EXPIRED")).toBe(true);
    expect(late.message).toBe(`Join token "ci-late" had to be registered before ${before}: ask an admin for a new token`);

    await bkToken(auth, "ci-locked", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } });
    await adminOf(auth.auth.ctx).lock({ token: "ci-locked", message: "host decommissioned" }, ADMIN);
    const lockedErr = await errorOf(bkBot(auth, "ci-locked", new MemoryDestination()).refresh());
    expect(isAppError(lockedErr, "LOCKED")).toBe(true);
    expect(lockedErr.message).toBe("Access is locked for token ci-locked: host decommissioned");
    await expectUnbound(auth, "ci-locked");
  });
});

describe("keypair in storage", () => {
  test("joins, keeps the join state, and rejoins with it once the identity expired", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-std", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 3, mode: "standard" } });
    const bot = bkBot(auth, "ci-std", dir(t.path));
    expect(await bot.refresh()).toBe("joined");
    const first = JSON.parse(await readFile(join(t.path, BOUND_STATE_FILE), "utf8"));
    expect(first.join_state).toMatch(/^ey/);
    expect((await readdir(t.path)).sort()).toEqual([BOUND_STATE_FILE, BOUND_KEY_FILE, BOUND_PUBLIC_KEY_FILE, "identity.json"].sort());

    // renewals do not touch the keypair
    expect(await bkBot(auth, "ci-std", dir(t.path)).refresh()).toBe("renewed");
    auth.clock.advance(HOUR + 60_000);
    const again = bkBot(auth, "ci-std", dir(t.path));
    expect(await again.refresh()).toBe("joined");
    expect(again.identity!.instanceId).not.toBe(bot.identity!.instanceId);
    const second = JSON.parse(await readFile(join(t.path, BOUND_STATE_FILE), "utf8"));
    expect(second.join_state).not.toBe(first.join_state);
    expect(await tokenStatus(auth, "ci-std")).toMatchObject({ recovery_count: 2, bound_bot_instance_id: again.identity!.instanceId });
  });

  test("a damaged state file is reported with its name, before anything is sent", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-damaged", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 1, mode: "standard" } });
    await writeFile(join(t.path, BOUND_STATE_FILE), "{not json", { mode: 0o600 });
    expect((await errorOf(bkBot(auth, "ci-damaged", dir(t.path)).refresh())).message).toBe(
      `Cannot read the bound keypair state "${BOUND_STATE_FILE}" in directory "${t.path}": it is not JSON`,
    );
    await writeFile(join(t.path, BOUND_STATE_FILE), JSON.stringify({ version: 2 }), { mode: 0o600 });
    expect((await errorOf(bkBot(auth, "ci-damaged", dir(t.path)).refresh())).message).toStartWith(
      `Invalid bound keypair state "${BOUND_STATE_FILE}" in directory "${t.path}": field "version"`,
    );
    await expectUnbound(auth, "ci-damaged");
  });

  test("without a key in storage and without a registration secret it says what to do", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    await bkToken(auth, "ci-none", { onboarding: { initial_public_key: pub(generateKeyPair("ed25519")) }, recovery: { limit: 1, mode: "standard" } });
    const e = await errorOf(bkBot(auth, "ci-none", dir(t.path)).refresh());
    expect(e.message).toStartWith(`No bound keypair in directory "${t.path}": run "machine-id keypair create --storage DIR"`);
  });

  test("a copy of id_bkp with an old join state is refused on a second host and the token is locked for both", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const a = join(t.path, "a");
    const b = join(t.path, "b");
    const key = generateKeyPair("ed25519");
    await storedKeypair(a, key);
    await bkToken(auth, "ci-clone", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 10, mode: "standard" } });
    await bkBot(auth, "ci-clone", dir(a)).refresh();
    // host B gets the keypair and the join state as they are now, without the identity
    await cp(a, b, { recursive: true });
    await rm(join(b, "identity.json"));
    // host A's identity expires; it rejoins and its join state moves on
    auth.clock.advance(HOUR + 60_000);
    expect(await bkBot(auth, "ci-clone", dir(a)).refresh()).toBe("joined");

    const e = await errorOf(bkBot(auth, "ci-clone", dir(b)).refresh());
    expect(isAppError(e, "LOCKED")).toBe(true);
    expect(e.message).toContain(`Join token "ci-clone" is now locked: a stale join state (sequence 1, expected 2)`);
    expect((await adminOf(auth.auth.ctx).listLocks()).map((l) => l.name)).toEqual(["token/ci-clone"]);
    auth.clock.advance(HOUR + 60_000);
    expect(isAppError(await errorOf(bkBot(auth, "ci-clone", dir(a)).refresh()), "LOCKED")).toBe(true);
  });

  test("standard mode: once the recovery limit is reached the join is refused with the count", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-limit", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 1, mode: "standard" } });
    await bkBot(auth, "ci-limit", dir(t.path)).refresh();
    auth.clock.advance(HOUR + 60_000);
    const e = await errorOf(bkBot(auth, "ci-limit", dir(t.path)).refresh());
    expect(isAppError(e, "LIMIT_EXCEEDED")).toBe(true);
    expect(e.message).toBe(`Recovery limit reached for token "ci-limit": 1 of 1 joins used; raise spec.bound_keypair.recovery.limit to allow another`);
    expect((await tokenStatus(auth, "ci-limit")).recovery_count).toBe(1);
  });

  test("a renewal the service refuses as expired (its clock is ahead) turns into a rejoin", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-skew", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 3, mode: "standard" } });
    const ours = new FakeClock(auth.clock.now());
    const bot = bkBot(auth, "ci-skew", dir(t.path), { clock: ours });
    await bot.refresh();
    auth.clock.advance(HOUR + 60_000); // only the service's clock
    expect(await bot.refresh()).toBe("joined");
    expect((await auth.events("bot.join")).length).toBe(2);
    expect((await tokenStatus(auth, "ci-skew")).recovery_count).toBe(2);
  });

  test("an instance the service no longer knows (deleted, or a restored database) turns into a rejoin", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-gone", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 3, mode: "standard" } });
    const bot = bkBot(auth, "ci-gone", dir(t.path));
    await bot.refresh();
    const first = bot.identity!.instanceId;
    // the instance record disappears, as a restore from before the join would make it
    const backend = auth.auth.ctx.backend;
    for (const i of await backend.list("/bot_instances/")) await backend.delete(i.key);
    expect(await bot.refresh()).toBe("joined");
    expect(bot.identity!.instanceId).not.toBe(first);
  });

  test("with the token join method an unknown instance is reported, not rejoined", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const cfg = agentConfig(auth, await auth.addBot(), t.path, []);
    const bot = new Bot({ settings: botSettings(cfg), store: new BotStore(dir(t.path)), clock: auth.clock, log: silentLogger });
    await bot.refresh();
    const backend = auth.auth.ctx.backend;
    for (const i of await backend.list("/bot_instances/")) await backend.delete(i.key);
    const e = await errorOf(bot.refresh());
    expect(isAppError(e, "NOT_FOUND")).toBe(true);
    expect(e.message).toContain("is not known");
  });

  test("with the token join method the same refusal still asks for a new token", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const ours = new FakeClock(auth.clock.now());
    const cfg = agentConfig(auth, await auth.addBot(), t.path, []);
    const bot = new Bot({ settings: botSettings(cfg), store: new BotStore(dir(t.path)), clock: ours, log: silentLogger });
    await bot.refresh();
    auth.clock.advance(HOUR + 60_000);
    const e = await errorOf(bot.refresh());
    expect(isAppError(e, "EXPIRED")).toBe(true);
    expect(e.message).toContain('join method "token" cannot renew an expired identity');
  });
});

describe("registration secret", () => {
  test("the agent generates its key, proves the secret, and the service binds that key", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    await bkToken(auth, "ci-reg", { onboarding: {}, recovery: { limit: 3, mode: "standard" } });
    const secret = (await tokenStatus(auth, "ci-reg")).registration_secret!;
    expect(secret).toBeString();

    const wrong = await errorOf(bkBot(auth, "ci-reg", dir(t.path), { secret: "not-the-secret" }).refresh());
    expect(isAppError(wrong, "ACCESS_DENIED")).toBe(true);
    expect(wrong.message).toBe(`Wrong registration secret for join token "ci-reg"`);

    const bot = bkBot(auth, "ci-reg", dir(t.path), { secret });
    expect(await bot.refresh()).toBe("joined");
    const key = await new BoundKeyStore(new BotStore(dir(t.path))).loadKey();
    expect(key!.algorithm).toBe("ed25519");
    expect((await tokenStatus(auth, "ci-reg")).bound_public_key).toBe(pub(key!));
    expect((await readFile(join(t.path, BOUND_PUBLIC_KEY_FILE), "utf8")).trim()).toBe(pub(key!));

    // later joins use the key and the join state; the spent secret is not needed
    auth.clock.advance(HOUR + 60_000);
    expect(await bkBot(auth, "ci-reg", dir(t.path)).refresh()).toBe("joined");
  });

  test("the secret can come from a file", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    await bkToken(auth, "ci-regf", { onboarding: { registration_secret: "a-long-enough-secret" }, recovery: { limit: 3, mode: "standard" } });
    const secretPath = join(t.path, "secret");
    await writeFile(secretPath, "a-long-enough-secret\n", { mode: 0o600 });
    expect(await bkBot(auth, "ci-regf", dir(join(t.path, "state")), { secretPath }).refresh()).toBe("joined");
    const empty = join(t.path, "empty");
    await writeFile(empty, "\n");
    const e = await errorOf(bkBot(auth, "ci-regf", dir(join(t.path, "s2")), { secretPath: empty }).refresh());
    expect(e.message).toBe(`Cannot read registration secret "${empty}": the file is empty`);
  });
});

describe("rotation", () => {
  /** A keypair in `path` joined with token `name`; then the token asks for rotation and the identity expires. */
  async function joinedThenRotating(auth: TestAuth, path: string, name: string, recovery: { limit: number; mode: string }): Promise<KeyPair> {
    const key = generateKeyPair("ed25519");
    await storedKeypair(path, key);
    const spec = { onboarding: { initial_public_key: pub(key) }, recovery };
    await bkToken(auth, name, spec);
    await bkBot(auth, name, dir(path)).refresh();
    await bkToken(auth, name, { ...spec, rotate_after: new Date(auth.clock.now().getTime() - 1000).toISOString() });
    auth.clock.advance(HOUR + 60_000);
    return key;
  }

  test("rotate_after in the past: a new id_bkp, the old key in the history, and the next join does not rotate", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = await joinedThenRotating(auth, t.path, "ci-rot", { limit: 10, mode: "standard" });
    expect(await bkBot(auth, "ci-rot", dir(t.path)).refresh()).toBe("joined");

    const keys = new BoundKeyStore(new BotStore(dir(t.path)));
    const next = (await keys.loadKey())!;
    expect(keyId(next.publicKey)).not.toBe(keyId(key.publicKey));
    expect((await tokenStatus(auth, "ci-rot")).bound_public_key).toBe(pub(next));
    const state = await keys.loadState();
    expect(state.pendingKey).toBeUndefined();
    expect(state.history).toEqual([{ public_key: pub(key), key_id: keyId(key.publicKey), retired_at: auth.clock.now().toISOString(), reason: "rotated" }]);
    expect((await readFile(join(t.path, BOUND_PUBLIC_KEY_FILE), "utf8")).trim()).toBe(pub(next));

    auth.clock.advance(HOUR + 60_000);
    expect(await bkBot(auth, "ci-rot", dir(t.path)).refresh()).toBe("joined");
    expect(keyId((await keys.loadKey())!.publicKey)).toBe(keyId(next.publicKey));
    expect((await tokenStatus(auth, "ci-rot")).recovery_count).toBe(3);
  });

  test("a rotation whose answer was lost: the next join signs with the new key the service bound", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = await joinedThenRotating(auth, t.path, "ci-lost", { limit: 0, mode: "insecure" });
    const losing = (addr: string, tls: ConstructorParameters<typeof AuthClient>[0]["tls"]) => {
      const c = new AuthClient({ addr, tls });
      const solve = c.boundKeypairSolve.bind(c);
      c.boundKeypairSolve = async (req) => {
        await solve(req);
        throw connectionProblem("the answer was lost");
      };
      return c;
    };
    expect((await errorOf(bkBot(auth, "ci-lost", dir(t.path), { client: losing }).refresh())).message).toBe("the answer was lost");
    const keys = new BoundKeyStore(new BotStore(dir(t.path)));
    const pending = (await keys.loadState()).pendingKey!;
    expect((await tokenStatus(auth, "ci-lost")).bound_public_key).toBe(pub(pending));
    expect(keyId((await keys.loadKey())!.publicKey)).toBe(keyId(key.publicKey));

    expect(await bkBot(auth, "ci-lost", dir(t.path)).refresh()).toBe("joined");
    expect(keyId((await keys.loadKey())!.publicKey)).toBe(keyId(pending.publicKey));
    const state = await keys.loadState();
    expect(state.pendingKey).toBeUndefined();
    expect(state.history.map((h) => h.key_id)).toEqual([keyId(key.publicKey)]);
  });

  test("a pending key the service never bound is dropped", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    await storedKeypair(t.path, key);
    await bkToken(auth, "ci-drop", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 0, mode: "insecure" } });
    const keys = new BoundKeyStore(new BotStore(dir(t.path)));
    await keys.saveState({ pendingKey: generateKeyPair("ed25519"), history: [] });
    expect(await bkBot(auth, "ci-drop", dir(t.path)).refresh()).toBe("joined");
    const state = await keys.loadState();
    expect(state.pendingKey).toBeUndefined();
    expect(state.history).toEqual([]);
    expect(keyId((await keys.loadKey())!.publicKey)).toBe(keyId(key.publicKey));
  });
});
