/**
 * The bot's identity against a real auth service in process: token joins behind
 * CA verification, renewals, recovery from a lost renewal answer through the
 * persisted pending key, copied identities being caught, and expiry.
 */

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { cp, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Bot, BotStore, DirectoryDestination } from "../../src/agent/index.ts";
import { botSettings } from "../../src/agent/agent.ts";
import { generateKeyPair } from "../../src/crypto/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { silentLogger, type Logger } from "../../src/lib/log.ts";
import { AuthClient } from "../../src/protocol/index.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { identityTLS, publicKeys } from "../../src/agent/bot/index.ts";
import { agentConfig, memoryLogger, startTestAuth, tempDir, type TestAuth } from "./harness.ts";
import type { AgentConfig } from "../../src/config/index.ts";
import { adminOf } from "../_support/admin.ts";

function makeBot(auth: TestAuth, cfg: AgentConfig, storageDir: string, log: Logger = silentLogger): Bot {
  return new Bot({
    settings: botSettings(cfg),
    store: new BotStore(new DirectoryDestination({ path: storageDir, log })),
    clock: auth.clock,
    log,
  });
}

const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

describe("joining", () => {
  test("joins with a token after checking the CA pin, stores the identity, then renews it", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const state = join(t.path, "state");
    const cfg = agentConfig(auth, await auth.addBot(), state, []);
    const bot = makeBot(auth, cfg, state);
    expect(await bot.refresh()).toBe("joined");
    const first = bot.identity!;
    expect(first.botName).toBe("ci");
    expect(first.generation).toBe(1);
    expect(await Bun.file(join(state, "identity.json")).exists()).toBe(true);

    // a new process with the same storage (and the same, now spent, token) renews the stored identity
    const again = makeBot(auth, cfg, state);
    expect(await again.refresh()).toBe("renewed");
    expect(again.identity!.generation).toBe(2);
    expect(again.identity!.instanceId).toBe(first.instanceId);
    expect((await adminOf(auth.auth.ctx).listBotInstances("ci"))[0]!.generation).toBe(2);
  });

  test("a wrong CA pin is refused before the token is sent", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const token = await auth.addBot();
    const cfg = agentConfig(auth, token, undefined, []);
    cfg.onboarding.caPins = ["sha256:" + "ab".repeat(32)];
    const err = await errorOf(makeBot(auth, cfg, t.path).refresh());
    expect(isAppError(err, "TRUST_FAILURE")).toBe(true);
    expect(err!.message).toContain(`Auth service at "${auth.addr}" is not the expected cluster: its CA pin ${auth.pin} matches none of the configured ca_pins`);
    // and what to do about it
    expect(err!.message).toContain(`take the pin from "machine-id ctl status" on that cluster's auth host and pass it as --ca-pin`);
    expect(await auth.events("join.failed")).toEqual([]);
    expect(await auth.events("bot.join")).toEqual([]);
    // the token was never used: it still joins with the right pin
    expect(await makeBot(auth, agentConfig(auth, token, undefined, []), join(t.path, "s2")).refresh()).toBe("joined");
  });

  test("without pins or ca_path the join is refused unless insecure is set, which warns", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const token = await auth.addBot();
    const cfg = agentConfig(auth, token, undefined, []);
    cfg.onboarding.caPins = [];
    const err = await errorOf(makeBot(auth, cfg, t.path).refresh());
    expect(isAppError(err, "TRUST_FAILURE")).toBe(true);
    expect(err!.message).toStartWith(`Cannot join through "${auth.addr}" safely: no ca_pins or ca_path is configured`);
    expect(await auth.events("join.failed")).toEqual([]);

    const { log, lines } = memoryLogger();
    expect(await makeBot(auth, { ...cfg, insecure: true }, t.path, log).refresh()).toBe("joined");
    expect(lines.join("")).toContain("Trusting the auth service's CA without verification (insecure: true)");
  });

  test("ca_path is trusted instead of a pin; a CA that does not match fails TLS before the token is sent", async () => {
    await using auth = await startTestAuth();
    await using other = await startTestAuth();
    await using t = await tempDir();
    const token = await auth.addBot();
    const wrong = join(t.path, "wrong.pem");
    await writeFile(wrong, other.auth.ctx.authorities.host.tlsCertPem);
    const cfg = agentConfig(auth, token, undefined, []);
    cfg.onboarding = { ...cfg.onboarding, caPins: [], caPath: wrong };
    const err = await errorOf(makeBot(auth, cfg, join(t.path, "a")).refresh());
    expect(isAppError(err, "TRUST_FAILURE")).toBe(true);
    expect(await auth.events("join.failed")).toEqual([]);

    const right = join(t.path, "right.pem");
    await writeFile(right, auth.auth.ctx.authorities.host.tlsCertPem);
    cfg.onboarding = { ...cfg.onboarding, caPath: right };
    expect(await makeBot(auth, cfg, join(t.path, "b")).refresh()).toBe("joined");
  });

  test("a used token is refused with the service's message", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const token = await auth.addBot();
    await makeBot(auth, agentConfig(auth, token, undefined, []), join(t.path, "a")).refresh();
    const err = await errorOf(makeBot(auth, agentConfig(auth, token, undefined, []), join(t.path, "b")).refresh());
    expect(isAppError(err, "ACCESS_DENIED")).toBe(true);
    expect(err!.message).toBe("The join token is not valid: it does not exist or was already used; ask an admin for a new one (machine-id ctl bots add, or ctl tokens add)");
  });

  test("an identity stored with the old full-SHA-256 token fingerprint renews, not rejoins", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const token = await auth.addBot();
    const cfg = agentConfig(auth, token, t.path, []);
    await makeBot(auth, cfg, t.path).refresh();
    // how the agent wrote the fingerprint before it shared tokenFingerprint with the auth service
    const file = join(t.path, "identity.json");
    const doc = JSON.parse(await Bun.file(file).text());
    expect(doc.token_fingerprint).toBe(tokenFingerprint(token));
    doc.token_fingerprint = createHash("sha256").update(token).digest("hex");
    await writeFile(file, JSON.stringify(doc));
    expect(await makeBot(auth, cfg, t.path).refresh()).toBe("renewed");
  });

  test("a new token in the config makes a stored identity join again as a new instance", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const bot = makeBot(auth, agentConfig(auth, await auth.addBot(), t.path, []), t.path);
    await bot.refresh();
    const before = bot.identity!.instanceId;
    const next = makeBot(auth, agentConfig(auth, await auth.addBot(), t.path, []), t.path);
    expect(await next.refresh()).toBe("joined");
    expect(next.identity!.instanceId).not.toBe(before);
  });
});

describe("renewal", () => {
  test("a renewal whose answer was lost is retried with the stored pending key and accepted", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const cfg = agentConfig(auth, await auth.addBot(), t.path, []);
    const bot = makeBot(auth, cfg, t.path);
    await bot.refresh();
    const id = bot.identity!;

    // The agent stored its next key and asked; the service renewed, but the answer never arrived.
    const store = new BotStore(new DirectoryDestination({ path: t.path, log: silentLogger }));
    const pending = generateKeyPair("ecdsa-p256");
    await store.savePendingKey(pending);
    const client = new AuthClient({ addr: auth.addr, tls: identityTLS(id) });
    const lost = await client.renew({ ...publicKeys(pending), ttl_seconds: 3600 });
    expect(lost.generation).toBe(2);

    // The next start presents the old certificate with the same pending key: accepted, not locked.
    const restarted = makeBot(auth, cfg, t.path);
    expect(await restarted.refresh()).toBe("renewed");
    expect(restarted.identity!.generation).toBe(2);
    expect(await restarted.refresh()).toBe("renewed");
    expect(restarted.identity!.generation).toBe(3);
    expect(await auth.events("cert.generation_mismatch")).toEqual([]);
    const reasons = (await auth.events("cert.create")).map((e) => e.fields.reason);
    expect(reasons).toContain("renew_retry");
    expect((await adminOf(auth.auth.ctx).listBotInstances("ci"))[0]!.locked).toBe(false);
  });

  test("a copy of the storage used after the original renewed is refused and locks the instance", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const original = join(t.path, "original");
    const copy = join(t.path, "copy");
    const cfg = agentConfig(auth, await auth.addBot(), original, []);
    const bot = makeBot(auth, cfg, original);
    await bot.refresh();
    await cp(original, copy, { recursive: true });
    await bot.refresh(); // generation 2

    const thief = makeBot(auth, cfg, copy);
    const err = await errorOf(thief.refresh());
    expect(isAppError(err, "LOCKED")).toBe(true);
    expect(err!.message).toContain("is now locked: it presented certificate generation 1 but generation 2 was issued since");
    const mismatch = await auth.events("cert.generation_mismatch");
    expect(mismatch.length).toBe(1);
    expect(mismatch[0]!.fields.bot_instance_id).toBe(bot.identity!.instanceId);
    expect((await adminOf(auth.auth.ctx).listBotInstances("ci"))[0]!.locked).toBe(true);
    // the lock holds for the original too, until an admin unlocks it
    expect(isAppError(await errorOf(bot.refresh()), "LOCKED")).toBe(true);
  });

  test("an expired identity from a token join asks for a new token and sends nothing", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const cfg = agentConfig(auth, await auth.addBot(), t.path, [], { credentialTtlMs: 10 * 60_000 });
    const bot = makeBot(auth, cfg, t.path);
    await bot.refresh();
    auth.clock.advance(11 * 60_000);
    const err = await errorOf(makeBot(auth, cfg, t.path).refresh());
    expect(isAppError(err, "EXPIRED")).toBe(true);
    expect(err!.message).toContain(`The bot identity in directory "${t.path}" expired at `);
    expect(err!.message).toContain('join method "token" cannot renew an expired identity: a new join token is needed');
    expect((await auth.events("join.failed")).length).toBe(0);
  });
});
