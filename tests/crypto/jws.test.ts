/**
 * Differential test of the compact JWS helpers (src/crypto/jws.ts) against jose, which
 * the agent signs challenges with and the service used before: signatures are byte for
 * byte jose's (Ed25519 is deterministic), jose verifies what we sign, and over valid
 * and mutated tokens whatever we accept jose accepts, and on well-formed ones the two agree.
 */

import { describe, expect, test } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import fc from "fast-check";
import { CompactSign, SignJWT, compactVerify, jwtVerify } from "jose";
import { signCompactJws, verifyCompactJws, type JwsAlgorithm } from "../../src/crypto/index.ts";

const ed = generateKeyPairSync("ed25519");
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const other = generateKeyPairSync("ed25519");
const KEYS: { alg: JwsAlgorithm; privateKey: KeyObject; publicKey: KeyObject }[] = [
  { alg: "EdDSA", ...ed },
  { alg: "ES256", ...ec },
];

const claims = { iss: "c.example", aud: "c.example", sub: "abc", nbf: 1, iat: 2, exp: 3, nonce: "n0nce" };
const payload = new TextEncoder().encode(JSON.stringify(claims));

async function joseAccepts(jws: string, key: KeyObject, alg: JwsAlgorithm): Promise<Uint8Array | undefined> {
  try {
    return (await compactVerify(jws, key, { algorithms: [alg] })).payload;
  } catch {
    return undefined;
  }
}

describe("signCompactJws()", () => {
  test("an EdDSA JWT is byte for byte the one jose's SignJWT makes", async () => {
    const body = { token_name: "t", token_incarnation: "i", bot_instance_id: "b", recovery_sequence: 2, recovery_limit: 1, recovery_mode: "standard" };
    const theirs = await new SignJWT(body).setProtectedHeader({ alg: "EdDSA", typ: "JWT" }).setIssuer("c").setAudience("c").setSubject("bot").setIssuedAt(1_700_000_000).sign(ed.privateKey);
    const ours = signCompactJws({ alg: "EdDSA", typ: "JWT" }, JSON.stringify({ ...body, iss: "c", aud: "c", sub: "bot", iat: 1_700_000_000 }), ed.privateKey);
    expect(ours).toBe(theirs);
    const verified = await jwtVerify(ours, ed.publicKey, { issuer: "c", audience: "c", subject: "bot", algorithms: ["EdDSA"] });
    expect(verified.payload.recovery_sequence).toBe(2);
  });

  test.each(KEYS)("jose verifies an $alg JWS we sign, and we verify jose's", async ({ alg, privateKey, publicKey }) => {
    const ours = signCompactJws({ alg }, payload, privateKey);
    expect(await joseAccepts(ours, publicKey, alg)).toEqual(payload);
    const theirs = await new CompactSign(payload).setProtectedHeader({ alg }).sign(privateKey);
    expect(verifyCompactJws(theirs, publicKey, alg)).toEqual(payload);
  });

  test("refuses a key of another algorithm than the header names", () => {
    expect(() => signCompactJws({ alg: "ES256" }, payload, ed.privateKey)).toThrow(TypeError);
    expect(() => signCompactJws({ alg: "EdDSA" }, payload, ed.publicKey)).toThrow(TypeError);
  });
});

describe("verifyCompactJws()", () => {
  test("refuses another key, another algorithm, a crit header and a wrong shape", async () => {
    const good = await new CompactSign(payload).setProtectedHeader({ alg: "EdDSA" }).sign(ed.privateKey);
    expect(verifyCompactJws(good, other.publicKey, "EdDSA")).toBeUndefined();
    expect(verifyCompactJws(good, ec.publicKey, "ES256")).toBeUndefined();
    expect(verifyCompactJws(good, ed.publicKey, "ES256")).toBeUndefined();
    expect(verifyCompactJws(`${good}.x`, ed.publicKey, "EdDSA")).toBeUndefined();
    expect(verifyCompactJws(good.replace(/\.[^.]*$/, ".AAAA"), ed.publicKey, "EdDSA")).toBeUndefined();
    const crit = await new CompactSign(payload).setProtectedHeader({ alg: "EdDSA", crit: ["b64"], b64: true }).sign(ed.privateKey);
    expect(verifyCompactJws(crit, ed.publicKey, "EdDSA")).toBeUndefined();
    const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(payload).toString("base64url")}.`;
    expect(verifyCompactJws(none, ed.publicKey, "EdDSA")).toBeUndefined();
  });

  test.each(KEYS)("over mutated $alg tokens, whatever we accept jose accepts, with the same payload", async ({ alg, privateKey, publicKey }) => {
    const good = await new CompactSign(payload).setProtectedHeader({ alg, typ: "x" }).sign(privateKey);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    await fc.assert(
      fc.asyncProperty(fc.nat(good.length - 1), fc.nat(alphabet.length - 1), fc.boolean(), async (at, c, drop) => {
        const mutated = drop ? good.slice(0, at) + good.slice(at + 1) : good.slice(0, at) + alphabet[c] + good.slice(at + 1);
        const ours = verifyCompactJws(mutated, publicKey, alg);
        const theirs = await joseAccepts(mutated, publicKey, alg);
        if (ours) expect(theirs).toEqual(ours);
      }),
      { numRuns: 300 },
    );
  });
});
