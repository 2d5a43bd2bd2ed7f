// The fast paths of the encoders checked against plain references: option ordering by
// UTF-8 bytes, the growing SSH buffer, SPKI bytes remembered at parse time, reusing a
// request's key object, and the written-out identity check agreeing with the schema.

import { describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import {
  decodeIdentity,
  encodeIdentity,
  formatSshPublicKey,
  generateKeyPair,
  parsePublicKey,
  parseSshCertificate,
  publicKeySpkiDer,
  publicKeyToPem,
  signSshCertificate,
  type CertIdentity,
} from "../../src/crypto/index.ts";
import { IdentitySchema } from "../../src/crypto/identity.ts";
import { AppError } from "../../src/lib/errors.ts";
import { SSH_T0, SSH_T1 } from "./_tools.ts";

const caKey = generateKeyPair("ed25519").privateKey;
const subject = generateKeyPair("ed25519").publicKey;

/** The option names of an encoded option list, in wire order (independent reader). */
function optionNames(encoded: Uint8Array): Buffer[] {
  const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  const names: Buffer[] = [];
  for (let at = 0; at < encoded.length; ) {
    const n = view.getUint32(at);
    names.push(Buffer.from(encoded.subarray(at + 4, at + 4 + n)));
    at += 4 + n;
    at += 4 + view.getUint32(at); // value
  }
  return names;
}

/** The extensions field of a certificate blob signed by an Ed25519 CA for an Ed25519 key. */
function extensionsField(line: string): Uint8Array {
  const blob = new Uint8Array(Buffer.from(line.split(" ")[1]!, "base64"));
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  let at = 0;
  const skip = () => (at += 4 + view.getUint32(at));
  skip(); // type
  skip(); // nonce
  skip(); // key
  at += 12; // serial, type
  skip(); // key id
  skip(); // principals
  at += 16; // validity
  skip(); // critical options
  const n = view.getUint32(at);
  return blob.subarray(at + 4, at + 4 + n);
}

// names without control characters or lone surrogates, with non-ASCII and astral characters
// (surrogate pairs in UTF-16, whose order differs from UTF-8's against U+E000..U+FFFF)
const optionName = fc
  .string({
    unit: fc.oneof(fc.constantFrom("a", "b", "-", "@", "é", "ÿ", "\uffee", "\u{1f600}", "\u{10400}"), fc.string({ unit: "binary", minLength: 1, maxLength: 1 })),
    minLength: 1,
    maxLength: 6,
  })
  .filter((s) => !/[\x00-\x1f\x7f]|[\ud800-\udfff]/u.test(s));

describe("SSH certificate encoding", () => {
  test("extensions are written in UTF-8 byte order, whatever their characters", () => {
    fc.assert(
      fc.property(fc.uniqueArray(optionName, { minLength: 1, maxLength: 8 }), (names) => {
        const extensions = Object.fromEntries(names.map((n, i) => [n, i % 2 ? "" : `v${i}`]));
        const line = signSshCertificate({ caKey, publicKey: subject, certType: "user", keyId: "k", principals: ["p"], validAfter: SSH_T0, validBefore: SSH_T1, extensions });
        const written = optionNames(extensionsField(line));
        const expected = names.map((n) => Buffer.from(n)).sort(Buffer.compare);
        expect(written).toEqual(expected);
        expect(parseSshCertificate(line).extensions).toEqual(extensions);
      }),
      { numRuns: 200 },
    );
  });

  test("a certificate larger than the writer's first buffer round-trips", () => {
    const principals = Array.from({ length: 300 }, (_, i) => `principal-${i}-ü`);
    const line = signSshCertificate({ caKey, publicKey: subject, certType: "host", keyId: "x".repeat(2000), principals, validAfter: SSH_T0, validBefore: SSH_T1 });
    const parsed = parseSshCertificate(line);
    expect(parsed.principals).toEqual(principals);
    expect(parsed.keyId).toBe("x".repeat(2000));
  });
});

describe("public keys parsed from requests", () => {
  test.each(["ed25519", "ecdsa-p256"] as const)("a %s key's SPKI is what node:crypto exports, from PEM and from authorized_keys", (alg) => {
    const key = generateKeyPair(alg).publicKey;
    const exported = new Uint8Array(key.export({ type: "spki", format: "der" }));
    for (const text of [publicKeyToPem(key), formatSshPublicKey(key, "c")]) {
      const parsed = parsePublicKey(text);
      expect(publicKeySpkiDer(parsed)).toEqual(exported);
      expect(new Uint8Array(parsed.export({ type: "spki", format: "der" }))).toEqual(exported);
    }
  });
});

describe("parsePublicKey() with sameAs", () => {
  test.each(["ed25519", "ecdsa-p256"] as const)("returns the given %s key when the text holds exactly it, in either encoding", (alg) => {
    const key = parsePublicKey(publicKeyToPem(generateKeyPair(alg).publicKey));
    expect(parsePublicKey(formatSshPublicKey(key, "c"), "k", key)).toBe(key);
    expect(parsePublicKey(publicKeyToPem(key), "k", key)).toBe(key);
  });

  test("parses afresh for another key, a private key or an unsupported key, with the usual checks", () => {
    const key = generateKeyPair("ed25519");
    const other = generateKeyPair("ed25519").publicKey;
    const otherLine = formatSshPublicKey(other);
    const parsed = parsePublicKey(otherLine, "k", key.publicKey);
    expect(parsed).not.toBe(key.publicKey);
    expect(publicKeySpkiDer(parsed)).toEqual(publicKeySpkiDer(other));
    // a private key is never handed back as a public one
    const own = parsePublicKey(formatSshPublicKey(key.publicKey), "k", key.privateKey);
    expect(own).not.toBe(key.privateKey);
    expect(own.type).toBe("public");
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey;
    expect(parsePublicKey(otherLine, "k", rsa)).not.toBe(rsa);
    // the line's type must still match its key
    const mislabelled = otherLine.replace("ssh-ed25519", "ecdsa-sha2-nistp256");
    expect(() => parsePublicKey(mislabelled, "k", other)).toThrow(/the line says "ecdsa-sha2-nistp256" but holds a "ssh-ed25519" key/);
  });
});

describe("certificate identity validation", () => {
  const base: CertIdentity = { cluster: "c", username: "u", kind: "bot", renewable: true, roles: ["r"], logins: [] };
  const value = fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.boolean(),
    fc.constantFrom(0, -0, 1, -1, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER, NaN, Infinity),
    fc.constantFrom("", "x", "bot", "admin", "y".repeat(1024), "z".repeat(1025)),
    fc.array(fc.constantFrom("a", "", "q".repeat(1025), 1 as unknown as string), { maxLength: 3 }),
    fc.constant(Array.from({ length: 1025 }, () => "a")),
  );
  const fields = ["cluster", "username", "kind", "botName", "botInstanceId", "generation", "renewable", "roles", "logins", "kubernetesUsers", "kubernetesGroups", "kubernetesCluster", "joinMethod", "tokenName", "extra"];

  test("encoding accepts exactly what the schema accepts, and writes what it returns", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: 5 }), (changes) => {
        const candidate = { ...base, ...changes } as CertIdentity;
        const schema = IdentitySchema.safeParse(candidate);
        let written: CertIdentity | undefined;
        try {
          written = decodeIdentity(encodeIdentity(candidate));
        } catch (e) {
          if (!(e instanceof AppError)) throw e;
        }
        expect(written !== undefined).toBe(schema.success);
        if (schema.success) expect(written).toEqual(JSON.parse(JSON.stringify(schema.data)));
      }),
      { numRuns: 1000 },
    );
  });
});
