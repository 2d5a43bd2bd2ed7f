/**
 * Bound keypair joining, auth side, in process: the challenge and its checks,
 * recovery limits and modes, join state, cloned keypairs, rotation, registration
 * secrets, races, and hostile challenge responses (fast-check).
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { CompactSign, SignJWT } from "jose";
import { formatSshPublicKey, generateKeyPair, type KeyPair } from "../../src/crypto/index.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { identityOf, keyRequest, startHarness, type Harness } from "./harness.ts";

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
  await h.call(h.admin, "POST", "/v1/resources", { resources: [{ kind: "bot", version: "v1", metadata: { name: "edge" }, spec: { roles: [] } }] });
});
afterEach(async () => {
  await h.close();
});

function token(name: string, bk: Record<string, unknown>) {
  return { kind: "token", version: "v2", metadata: { name }, spec: { roles: ["Bot"], bot_name: "edge", join_method: "bound_keypair", bound_keypair: bk } };
}

async function createToken(name: string, bk: Record<string, unknown>) {
  const r = await h.call(h.admin, "POST", "/v1/resources", { resources: [token(name, bk)], force: true });
  expect(r.status).toBe(200);
}

async function sign(claims: unknown, key: KeyPair): Promise<string> {
  const alg = key.algorithm === "ed25519" ? "EdDSA" : "ES256";
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg }).sign(key.privateKey);
}

interface JoinOpts {
  joinState?: string;
  registrationSecret?: string;
  newKey?: KeyPair;
  presentKey?: boolean;
}

async function begin(name: string, key: KeyPair, o: JoinOpts = {}) {
  return h.call(h.anon, "POST", "/v1/join/bound-keypair/begin", {
    ...keyRequest().body,
    token_name: name,
    ...(o.presentKey === false ? {} : { public_key: formatSshPublicKey(key.publicKey) }),
    ...(o.joinState ? { join_state: o.joinState } : {}),
    ...(o.registrationSecret ? { registration_secret: o.registrationSecret } : {}),
  });
}

async function join(name: string, key: KeyPair, o: JoinOpts = {}) {
  const b = await begin(name, key, o);
  if (b.status !== 200) return b;
  const body: Record<string, unknown> = { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) };
  if (o.newKey) {
    body.new_public_key = formatSshPublicKey(o.newKey.publicKey);
    body.new_key_solution = await sign(b.json.challenge, o.newKey);
  }
  return h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", body);
}

async function status(name: string) {
  return (await h.call(h.admin, "GET", `/v1/resources/token/${name}`)).json.status.bound_keypair;
}

async function events(type: string) {
  return (await h.call(h.admin, "GET", `/v1/events?type=${type}`)).json as { fields: Record<string, unknown> }[];
}

describe("challenge", () => {
  test("the challenge names the cluster, the key id and a one-minute window", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-a", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 1, mode: "standard" } });
    const b = await begin("bkp-a", key);
    expect(b.status).toBe(200);
    const c = b.json.challenge;
    expect(c.iss).toBe("test.example");
    expect(c.aud).toBe("test.example");
    expect(c.exp - c.iat).toBe(60);
    expect(c.iat - c.nbf).toBe(10);
    expect(c.nonce.length).toBeGreaterThanOrEqual(43);
    expect(b.json.recovery_mode).toBe("standard");
  });

  test("first join binds the key, consumes a recovery and returns a join state", async () => {
    const key = generateKeyPair("ecdsa-p256");
    await createToken("bkp-b", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 1, mode: "standard" } });
    const r = await join("bkp-b", key);
    expect(r.status).toBe(200);
    expect(r.json.join_state).toMatch(/^ey/);
    expect(identityOf(r.json.certs)).toMatchObject({ botName: "edge", generation: 1, renewable: true, joinMethod: "bound_keypair" });
    const s = await status("bkp-b");
    expect(s).toMatchObject({ recovery_count: 1, bound_bot_instance_id: r.json.bot_instance_id });
    expect(s.bound_public_key).toBe(formatSshPublicKey(key.publicKey));
  });

  test("a challenge is accepted at most once", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-c", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 5, mode: "standard" } });
    const b = await begin("bkp-c", key);
    const body = { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) };
    expect((await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", body)).status).toBe(200);
    const again = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", body);
    expect(again.status).toBe(403);
    expect(again.json.error.message).toContain("already used");
  });

  test("a lock on the token or the bot, or the bot deleted, between begin and solve refuses the answer", async () => {
    // solve reads the token, the locks and the bot together, by the bot the challenge recorded
    const key = generateKeyPair("ed25519");
    await createToken("bkp-l", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 9, mode: "insecure" } });
    const solve = async (b: Awaited<ReturnType<typeof begin>>) =>
      h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
    for (const target of [{ token: "bkp-l" }, { bot: "edge" }]) {
      const b = await begin("bkp-l", key);
      expect(b.status).toBe(200);
      expect((await h.call(h.admin, "POST", "/v1/locks", { ...target, message: "incident" })).status).toBe(200);
      const r = await solve(b);
      expect(r.status).toBe(423);
      expect(r.json.error.code).toBe("LOCKED");
      const name = "token" in target ? `token/${target.token}` : `bot/${target.bot}`;
      expect((await h.call(h.admin, "DELETE", `/v1/locks/${name}`)).status).toBe(200);
    }
    const b = await begin("bkp-l", key);
    expect((await h.call(h.admin, "DELETE", "/v1/resources/bot/edge")).status).toBe(200);
    const r = await solve(b); // deleting the bot deleted its tokens too
    expect(r.status).toBe(403);
  });

  test("an answer after the challenge expired is refused", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-d", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 5, mode: "standard" } });
    const b = await begin("bkp-d", key);
    h.clock.advance(61_000);
    const r = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
  });

  test("a key that does not match the bound key is refused and audited with the address", async () => {
    const key = generateKeyPair("ed25519");
    const other = generateKeyPair("ed25519");
    await createToken("bkp-e", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 1, mode: "standard" } });
    const r = await join("bkp-e", other);
    expect(r.status).toBe(403);
    expect(r.json.error.message).toContain("does not match the public key bound");
    const f = await events("join.failed");
    // the token by its fingerprint only: a token's name may be its secret (this assertion named it in clear before)
    expect(f.at(-1)!.fields).toMatchObject({ remote_addr: "10.0.0.9", token: tokenFingerprint("bkp-e"), join_method: "bound_keypair" });
    // signing with another key while claiming the right one fails too
    const b = await begin("bkp-e", key);
    const s = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, other) });
    expect(s.status).toBe(403);
    expect((await status("bkp-e")).recovery_count).toBe(0);
  });
});

describe("recovery", () => {
  test("standard mode: the limit is enforced with the count in the message", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-f", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 2, mode: "standard" } });
    const first = await join("bkp-f", key);
    const second = await join("bkp-f", key, { joinState: first.json.join_state });
    expect(second.status).toBe(200);
    const third = await join("bkp-f", key, { joinState: second.json.join_state });
    expect(third.status).toBe(429);
    expect(third.json.error.message).toContain("2 of 2");
    // raising the limit allows one more
    await createToken("bkp-f", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 3, mode: "standard" } });
    expect((await status("bkp-f")).recovery_count).toBe(2);
    expect((await join("bkp-f", key, { joinState: second.json.join_state })).status).toBe(200);
  });

  test("relaxed mode ignores the limit but not the join state", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-g", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 0, mode: "relaxed" } });
    const first = await join("bkp-g", key);
    expect(first.status).toBe(200);
    expect((await join("bkp-g", key, { joinState: first.json.join_state })).status).toBe(200);
    expect((await join("bkp-g", key)).status).toBe(423);
  });

  test("insecure mode ignores the limit and the join state (static keys on ephemeral hosts)", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-h", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 0, mode: "insecure" } });
    for (let i = 0; i < 4; i++) expect((await join("bkp-h", key)).status).toBe(200);
    expect((await status("bkp-h")).recovery_count).toBe(4);
  });

  test("a cloned keypair with an old join state locks the token for both copies", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-i", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 10, mode: "standard" } });
    const first = await join("bkp-i", key);
    const original = await join("bkp-i", key, { joinState: first.json.join_state });
    expect(original.status).toBe(200);
    // a second host copied id_bkp and the join state from after the first join
    const clone = await join("bkp-i", key, { joinState: first.json.join_state });
    expect(clone.status).toBe(423);
    expect(clone.json.error.message).toContain("stale join state");
    // the rightful host is locked out too until an admin looks
    const rightful = await join("bkp-i", key, { joinState: original.json.join_state });
    expect(rightful.status).toBe(423);
    expect(await events("token.locked")).toHaveLength(1);
    expect((await h.call(h.admin, "DELETE", "/v1/locks/token/bkp-i")).status).toBe(200);
    expect((await join("bkp-i", key, { joinState: original.json.join_state })).status).toBe(200);
  });

  test("a join state newer than the stored one (a restored database) catches the token up instead of locking it", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-r", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 3, mode: "standard" } });
    const first = await join("bkp-r", key);
    const backup = (await h.ctx.backend.get<any>("/tokens/bkp-r"))!.value;
    const second = await join("bkp-r", key, { joinState: first.json.join_state });
    expect(second.status).toBe(200);
    await h.ctx.backend.put("/tokens/bkp-r", backup); // the restore
    const third = await join("bkp-r", key, { joinState: second.json.join_state });
    expect(third.status).toBe(200);
    expect((await events("join_state.rollback"))[0]!.fields).toMatchObject({ token: tokenFingerprint("bkp-r"), presented: 2, stored: 1 });
    expect((await status("bkp-r")).recovery_count).toBe(3);
    // the limit counts the joins that really happened: 3 of 3 are used
    const fourth = await join("bkp-r", key, { joinState: third.json.join_state });
    expect(fourth.status).toBe(429);
    expect(fourth.json.error.message).toContain("3 of 3");
  });

  test("a join state from another cluster is refused", async () => {
    const other = await startHarness();
    try {
      const key = generateKeyPair("ed25519");
      const mk = async (hh: Harness) => {
        await hh.call(hh.admin, "POST", "/v1/resources", {
          resources: [{ kind: "bot", version: "v1", metadata: { name: "edge" }, spec: { roles: [] } }, token("bkp-j", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 9, mode: "standard" } })],
          force: true,
        });
      };
      await mk(other);
      await createToken("bkp-j", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 9, mode: "standard" } });
      await join("bkp-j", key);
      const b = await other.call(other.anon, "POST", "/v1/join/bound-keypair/begin", { ...keyRequest().body, token_name: "bkp-j", public_key: formatSshPublicKey(key.publicKey) });
      const s = await other.call(other.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
      const r = await join("bkp-j", key, { joinState: s.json.join_state });
      expect(r.status).toBe(423);
      expect(r.json.error.message).toContain("did not issue");
    } finally {
      await other.close();
    }
  });

  test("two agents racing with the same key cannot both win", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-k", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 10, mode: "insecure" } });
    const bs = await Promise.all([begin("bkp-k", key), begin("bkp-k", key)]);
    const solutions = await Promise.all(bs.map((b) => sign(b.json.challenge, key)));
    // Force the race: neither solve reads the token until both are about to, so both
    // decide from the same revision and only the compare-and-swap can stop the second.
    const backend = h.ctx.backend;
    const realGet = backend.get.bind(backend);
    let waiting: (() => void)[] = [];
    backend.get = (async (k: string) => {
      if (k === "/tokens/bkp-k") {
        await new Promise<void>((resolve) => {
          waiting.push(resolve);
          if (waiting.length === 2) for (const r of waiting) r();
        });
      }
      return realGet(k);
    }) as typeof backend.get;
    try {
      const rs = await Promise.all(
        bs.map((b, i) => h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: solutions[i] })),
      );
      expect(rs.map((r) => r.status).sort()).toEqual([200, 403]);
      expect(rs.find((r) => r.status === 403)!.json.error.message).toContain("same time");
    } finally {
      backend.get = realGet;
      waiting = [];
    }
    expect((await status("bkp-k")).recovery_count).toBe(1);
    expect((await h.call(h.admin, "GET", "/v1/bot-instances?bot=edge")).json).toHaveLength(1);
  });
});

describe("onboarding", () => {
  test("must_register_before in the past refuses the first join", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-l", {
      onboarding: { initial_public_key: formatSshPublicKey(key.publicKey), must_register_before: "2026-11-22T09:00:00Z" },
      recovery: { limit: 1, mode: "standard" },
    });
    const r = await join("bkp-l", key);
    expect(r.status).toBe(401);
    expect(r.json.error.message).toContain("2026-11-22T09:00:00Z");
  });

  test("registration secret: the agent proves the secret, the service binds the agent's new key", async () => {
    await createToken("bkp-m", { onboarding: {}, recovery: { limit: 2, mode: "standard" } });
    const secret = (await status("bkp-m")).registration_secret;
    expect(secret).toMatch(/^[0-9a-f]{32}$/);
    const key = generateKeyPair("ed25519");
    expect((await join("bkp-m", key, { registrationSecret: "wrong-secret" })).status).toBe(403);
    const r = await join("bkp-m", key, { registrationSecret: secret });
    expect(r.status).toBe(200);
    const s = await status("bkp-m");
    expect(s.bound_public_key).toBe(formatSshPublicKey(key.publicKey));
    expect(s.registration_secret).toBeUndefined();
    // the secret is single use: another key cannot register with it
    expect((await join("bkp-m", generateKeyPair("ed25519"), { registrationSecret: secret })).status).toBe(403);
    expect((await join("bkp-m", key, { joinState: r.json.join_state })).status).toBe(200);
  });

  test("bots add with --initial-public-key creates the bot and its token in one step", async () => {
    const key = generateKeyPair("ed25519");
    const r = await h.call(h.admin, "POST", "/v1/bots", { name: "edge2", roles: [], initial_public_key: formatSshPublicKey(key.publicKey), recovery_mode: "insecure", recovery_limit: 0 });
    expect(r.status).toBe(200);
    expect(r.json.join_method).toBe("bound_keypair");
    expect((await join(r.json.token, key)).status).toBe(200);
  });
});

describe("rotation", () => {
  test("rotate_after in the past: the join binds the new key and the old one stops working", async () => {
    const key = generateKeyPair("ed25519");
    const spec = { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 10, mode: "standard" } };
    await createToken("bkp-n", spec);
    const first = await join("bkp-n", key);
    await createToken("bkp-n", { ...spec, rotate_after: "2026-11-22T09:59:00Z" });
    const b = await begin("bkp-n", key, { joinState: first.json.join_state });
    expect(b.json.rotate).toBe(true);
    // without a new key the join is refused, saying why
    const noKey = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
    expect(noKey.status).toBe(400);
    expect(noKey.json.error.message).toContain("rotation");
    const next = generateKeyPair("ecdsa-p256");
    const rotated = await join("bkp-n", key, { joinState: first.json.join_state, newKey: next });
    expect(rotated.status).toBe(200);
    const s = await status("bkp-n");
    expect(s.bound_public_key).toBe(formatSshPublicKey(next.publicKey));
    expect(s.last_rotated_at).toBeString();
    expect((await join("bkp-n", key, { joinState: rotated.json.join_state })).status).toBe(403);
    const again = await begin("bkp-n", next, { joinState: rotated.json.join_state });
    expect(again.json.rotate).toBe(false);
  });
});

describe("hostile input", () => {
  /**
   * Whether a mutated compact JWS is the same JWS: unchanged, or changed only in a spare
   * bit of a segment's last base64url character, which decodes to the same bytes (the
   * same signature over the same claims, so not a forgery).
   */
  const sameJws = (jws: string, good: string) => {
    const a = jws.split(".");
    const b = good.split(".");
    return a.length === 3 && a.every((p, i) => Buffer.from(p, "base64url").equals(Buffer.from(b[i]!, "base64url")) && /^[A-Za-z0-9_-]*$/.test(p));
  };

  test("mutated challenge responses and join requests are refused with 4xx, never 5xx", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-p", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 0, mode: "insecure" } });
    const mutate = (s: string, i: number, c: string) => s.slice(0, i % s.length) + c + s.slice((i % s.length) + 1);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ kind: fc.constant("bytes" as const), i: fc.nat(), c: fc.constantFrom("A", "_", "-", ".", "x", "") }),
          fc.record({ kind: fc.constant("claim" as const), k: fc.constantFrom("iss", "aud", "sub", "nbf", "iat", "exp", "nonce", "extra"), v: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) }),
          fc.record({ kind: fc.constant("any" as const), v: fc.anything() }),
        ),
        async (m) => {
          // every case answers a fresh challenge, so each mutation meets the full verification
          // (a body that is not an answer asks for none: unanswered challenges count against the token)
          const b = m.kind === "any" ? undefined : await begin("bkp-p", key);
          const good = b ? await sign(b.json.challenge, key) : "";
          const body =
            m.kind === "bytes"
              ? { challenge_id: b!.json.challenge_id, solution: mutate(good, m.i, m.c) }
              : m.kind === "claim"
                ? { challenge_id: b!.json.challenge_id, solution: await sign({ ...b!.json.challenge, [m.k]: m.v }, key) }
                : m.v;
          const r = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", body);
          if (m.kind === "bytes" && sameJws((body as { solution: string }).solution, good)) return; // a no-op mutation
          expect(r.status).toBeGreaterThanOrEqual(400);
          expect(r.status).toBeLessThan(500);
        },
      ),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom("token_name", "public_key", "public_tls_key", "public_ssh_key", "join_state", "registration_secret", "ttl_seconds", "x"), fc.anything()), async (body) => {
        const r = await h.call(h.anon, "POST", "/v1/join/bound-keypair/begin", body);
        expect(r.status).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
    // the service still works afterwards
    expect((await join("bkp-p", key)).status).toBe(200);
  }, 60_000);
});

describe("join state binding (issue 12)", () => {
  const bk = (key: KeyPair, mode = "standard", limit = 10) => ({ onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit, mode } });

  /** Joins `times` times in a row with `key`, each with the previous state; the last answer. */
  async function joins(name: string, key: KeyPair, times: number) {
    let last = await join(name, key);
    expect(last.status).toBe(200);
    for (let i = 1; i < times; i++) {
      last = await join(name, key, { joinState: last.json.join_state });
      expect(last.status).toBe(200);
    }
    return last;
  }

  test("a sibling token's newer join state does not pass for this token's restored database", async () => {
    const key = generateKeyPair("ed25519");
    const ciKey = generateKeyPair("ed25519");
    await createToken("bkp-t1", bk(key, "standard"));
    await createToken("bkp-t2", bk(ciKey, "insecure"));
    await joins("bkp-t1", key, 1);
    const t2 = await joins("bkp-t2", ciKey, 3); // recovery_sequence 3, higher than T1's 1
    // a clone of T1's key presents T2's latest state
    const clone = await join("bkp-t1", key, { joinState: t2.json.join_state });
    expect(clone.status).toBe(423);
    expect(clone.json.error.message).toContain("another token");
    expect(await events("join_state.rollback")).toHaveLength(0);
    expect((await status("bkp-t1")).recovery_count).toBe(1);
  });

  test("a join state of a deleted token does not pass for a new token of the same name", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-re", bk(key));
    const old = await joins("bkp-re", key, 3);
    const before = (await status("bkp-re")).incarnation;
    expect((await h.call(h.admin, "DELETE", "/v1/resources/token/bkp-re")).status).toBe(200);
    await createToken("bkp-re", bk(key));
    expect((await status("bkp-re")).incarnation).not.toBe(before);
    await joins("bkp-re", key, 1);
    const stale = await join("bkp-re", key, { joinState: old.json.join_state });
    expect(stale.status).toBe(423);
    expect(await events("join_state.rollback")).toHaveLength(0);
  });

  test("a join state of a deleted bot does not pass for a new bot and token of the same names", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-rb", bk(key));
    const old = await joins("bkp-rb", key, 3);
    expect((await h.call(h.admin, "DELETE", "/v1/resources/bot/edge")).status).toBe(200);
    await h.call(h.admin, "POST", "/v1/resources", { resources: [{ kind: "bot", version: "v1", metadata: { name: "edge" }, spec: { roles: [] } }] });
    await createToken("bkp-rb", bk(key));
    await joins("bkp-rb", key, 1);
    const stale = await join("bkp-rb", key, { joinState: old.json.join_state });
    expect(stale.status).toBe(423);
    expect(await events("join_state.rollback")).toHaveLength(0);
  });

  test("the restored-database case still holds for the token and incarnation that issued the state", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-rs", bk(key));
    const first = await joins("bkp-rs", key, 1);
    const backup = (await h.ctx.backend.get<any>("/tokens/bkp-rs"))!.value;
    const second = await join("bkp-rs", key, { joinState: first.json.join_state });
    await h.ctx.backend.put("/tokens/bkp-rs", backup);
    expect((await join("bkp-rs", key, { joinState: second.json.join_state })).status).toBe(200);
    expect(await events("join_state.rollback")).toHaveLength(1);
  });

  /**
   * A token and a join state as written before join states named their token: the
   * token has no incarnation, and `legacyState` signs a claim-less state with the
   * cluster's key (the stored state's claims, changed by `change`).
   */
  async function legacyToken(name: string, key: KeyPair) {
    await createToken(name, bk(key));
    const first = await joins(name, key, 1);
    const item = (await h.ctx.backend.get<any>(`/tokens/${name}`))!;
    delete item.value.status.bound_keypair.incarnation;
    await h.ctx.backend.put(`/tokens/${name}`, item.value);
    const { token_name: _n, token_incarnation: _i, ...claims } = JSON.parse(Buffer.from(first.json.join_state.split(".")[1], "base64url").toString());
    return (change: Record<string, unknown> = {}) =>
      new SignJWT({ ...claims, ...change }).setProtectedHeader({ alg: "EdDSA", typ: "JWT" }).sign(h.ctx.authorities.jwt.privateKey);
  }

  test("a token from before incarnations accepts only its exact current legacy state, then gets an incarnation", async () => {
    const key = generateKeyPair("ed25519");
    const legacyState = await legacyToken("bkp-old", key);
    const ok = await join("bkp-old", key, { joinState: await legacyState() });
    expect(ok.status).toBe(200);
    expect((await status("bkp-old")).incarnation).toMatch(/^[0-9a-f]{32}$/);
    expect((await join("bkp-old", key, { joinState: ok.json.join_state })).status).toBe(200);
  });

  test("a legacy state cannot take the restored-database branch", async () => {
    const key = generateKeyPair("ed25519");
    const legacyState = await legacyToken("bkp-old2", key);
    const higher = await legacyState({ bot_instance_id: "from-a-sibling", recovery_sequence: 5 });
    expect((await join("bkp-old2", key, { joinState: higher })).status).toBe(423);
  });
});

describe("token lifecycle (issue 12)", () => {
  const pub = (k: KeyPair) => formatSshPublicKey(k.publicKey);

  test("an expired bound_keypair token is refused at begin", async () => {
    const key = generateKeyPair("ed25519");
    const t = token("bkp-exp", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 5, mode: "standard" } });
    (t.metadata as Record<string, unknown>).expires = "2026-11-22T09:00:00Z";
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [t] })).status).toBe(200);
    const r = await begin("bkp-exp", key);
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("EXPIRED");
    expect(r.json.error.message).toContain("2026-11-22T09:00:00Z");
  });

  test("a bound_keypair token that expires between begin and solve is refused at solve", async () => {
    const key = generateKeyPair("ed25519");
    const t = token("bkp-exp2", { onboarding: { initial_public_key: pub(key) }, recovery: { limit: 5, mode: "standard" } });
    (t.metadata as Record<string, unknown>).expires = "2026-11-22T10:00:30Z";
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [t] })).status).toBe(200);
    const b = await begin("bkp-exp2", key);
    expect(b.status).toBe(200);
    h.clock.advance(40_000);
    const r = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("EXPIRED");
    expect((await status("bkp-exp2")).bound_public_key).toBeUndefined();
  });

  test("must_register_before is checked at solve too", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-mrb", { onboarding: { initial_public_key: pub(key), must_register_before: "2026-11-22T10:00:30Z" }, recovery: { limit: 1, mode: "standard" } });
    const b = await begin("bkp-mrb", key);
    expect(b.status).toBe(200);
    h.clock.advance(40_000);
    const r = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: b.json.challenge_id, solution: await sign(b.json.challenge, key) });
    expect(r.status).toBe(401);
    expect(r.json.error.message).toContain("2026-11-22T10:00:30Z");
    expect((await status("bkp-mrb")).recovery_count).toBe(0);
  });

  test("create --force with a new initial_public_key resets the binding: the old key is refused, the new one joins", async () => {
    const oldKey = generateKeyPair("ed25519");
    const newKey = generateKeyPair("ed25519");
    await createToken("bkp-force", { onboarding: { initial_public_key: pub(oldKey) }, recovery: { limit: 5, mode: "standard" } });
    const first = await join("bkp-force", oldKey);
    expect(first.status).toBe(200);
    const instance = first.json.bot_instance_id;
    // the same spec again (a get | create -f round trip) changes nothing
    await createToken("bkp-force", { onboarding: { initial_public_key: pub(oldKey) }, recovery: { limit: 5, mode: "standard" } });
    expect((await status("bkp-force")).bound_public_key).toBe(pub(oldKey));
    expect(await events("token.binding_reset")).toHaveLength(0);
    // the admin evicts the old key
    await createToken("bkp-force", { onboarding: { initial_public_key: pub(newKey) }, recovery: { limit: 5, mode: "standard" } });
    const s = await status("bkp-force");
    expect(s.bound_public_key).toBeUndefined();
    expect(s.recovery_count).toBe(0);
    const reset = await events("token.binding_reset");
    expect(reset).toHaveLength(1);
    expect(reset[0]!.fields).toMatchObject({ token: tokenFingerprint("bkp-force"), bot: "edge", bot_instance_id: instance, user: "admin" });
    // the old key is refused, with or without its join state; its instance no longer renews
    expect((await join("bkp-force", oldKey, { joinState: first.json.join_state })).status).toBe(403);
    const instances = (await h.call(h.admin, "GET", "/v1/bot-instances?bot=edge")).json as { instance_id: string }[];
    expect(instances.map((i) => i.instance_id)).not.toContain(instance);
    const fresh = await join("bkp-force", newKey);
    expect(fresh.status).toBe(200);
    expect((await status("bkp-force")).bound_public_key).toBe(pub(newKey));
    expect((await join("bkp-force", oldKey)).status).toBe(403);
  });
});

describe("the token name is a secret (issue 12)", () => {
  test("begin answers a token of another join method exactly like an unknown token", async () => {
    const add = await h.call(h.admin, "POST", "/v1/bots", { name: "ci", roles: [] }); // a `token` token: its name is the secret
    expect(add.status).toBe(200);
    const key = generateKeyPair("ed25519");
    const wrongMethod = await begin(add.json.token, key);
    const unknown = await begin("0123456789abcdef0123456789abcdef", key);
    expect(wrongMethod.status).toBe(403);
    expect([wrongMethod.status, wrongMethod.json.error]).toEqual([unknown.status, unknown.json.error]);
    // the token is still there and unspent
    expect((await h.call(h.anon, "POST", "/v1/join", { ...keyRequest().body, join_method: "token", token_name: add.json.token })).status).toBe(200);
  });

  test("join answers a token of another join method exactly like an unknown token", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-secret-name", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 1, mode: "standard" } });
    const j = (name: string) => h.call(h.anon, "POST", "/v1/join", { ...keyRequest().body, join_method: "token", token_name: name });
    const wrongMethod = await j("bkp-secret-name");
    const unknown = await j("no-such-token-0123456789");
    expect(wrongMethod.status).toBe(403);
    expect([wrongMethod.status, wrongMethod.json.error]).toEqual([unknown.status, unknown.json.error]);
  });

  test("audit events name tokens only by fingerprint", async () => {
    const add = await h.call(h.admin, "POST", "/v1/bots", { name: "ci", roles: [] });
    const secret = add.json.token as string;
    const key = generateKeyPair("ed25519");
    await begin(secret, key); // wrong method
    await begin("bkp-unknown", key);
    await createToken("bkp-audited", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 5, mode: "standard" } });
    const first = await join("bkp-audited", key);
    expect(first.status).toBe(200);
    expect((await join("bkp-audited", key)).status).toBe(423); // no join state: locked, audited
    // refusals whose message names the token for the caller: the audit reason must not (it did, as the message)
    await createToken("bkp-audited-key", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 5, mode: "standard" } });
    const wrongKey = await join("bkp-audited-key", generateKeyPair("ed25519"));
    expect([wrongKey.status, wrongKey.json.error.message]).toEqual([403, expect.stringContaining('bound to join token "bkp-audited-key"')]);
    await createToken("bkp-audited-secret", { onboarding: {}, recovery: { limit: 2, mode: "standard" } });
    const wrongSecret = await join("bkp-audited-secret", key, { registrationSecret: "wrong-secret" });
    expect([wrongSecret.status, wrongSecret.json.error.message]).toEqual([403, expect.stringContaining('join token "bkp-audited-secret"')]);
    const all = (await h.call(h.admin, "GET", "/v1/events")).json as { type: string; fields: Record<string, unknown> }[];
    const text = JSON.stringify(all);
    const reasons = all.filter((e) => e.type === "join.failed").map((e) => String(e.fields.reason));
    expect(reasons).toContain(`Wrong registration secret for join token ${tokenFingerprint("bkp-audited-secret")}`);
    for (const name of [secret, "bkp-unknown", "bkp-audited", "bkp-audited-key", "bkp-audited-secret"]) {
      expect(text).not.toContain(name);
      expect(text).toContain(tokenFingerprint(name));
    }
    expect(all.filter((e) => e.type === "join.failed").every((e) => typeof e.fields.token === "string" && (e.fields.token as string).startsWith("sha256:"))).toBe(true);
  });
});

describe("unanswered challenges (issue 12)", () => {
  test("a token has at most MAX_PENDING_CHALLENGES unanswered challenges; they free up as they expire or are answered", async () => {
    const key = generateKeyPair("ed25519");
    await createToken("bkp-pend", { onboarding: { initial_public_key: formatSshPublicKey(key.publicKey) }, recovery: { limit: 0, mode: "insecure" } });
    const ids: { challenge_id: string; challenge: unknown }[] = [];
    for (let i = 0; i < 10; i++) {
      const b = await begin("bkp-pend", key);
      expect(b.status).toBe(200);
      ids.push(b.json);
    }
    const over = await begin("bkp-pend", key);
    expect(over.status).toBe(429);
    expect(over.json.error.code).toBe("LIMIT_EXCEEDED");
    expect(over.json.error.message).toContain("unanswered challenges");
    // another token is not affected
    const other = generateKeyPair("ed25519");
    await createToken("bkp-pend2", { onboarding: { initial_public_key: formatSshPublicKey(other.publicKey) }, recovery: { limit: 0, mode: "insecure" } });
    expect((await begin("bkp-pend2", other)).status).toBe(200);
    // answering one frees a place
    const s = await h.call(h.anon, "POST", "/v1/join/bound-keypair/solve", { challenge_id: ids[0]!.challenge_id, solution: await sign(ids[0]!.challenge, key) });
    expect(s.status).toBe(200);
    expect((await begin("bkp-pend", key)).status).toBe(200);
    expect((await begin("bkp-pend", key)).status).toBe(429);
    // and they expire after a minute
    h.clock.advance(61_000);
    expect((await begin("bkp-pend", key)).status).toBe(200);
  });
});
