// Property tests: parsers fed random and mutated input throw nothing but AppError, and a
// mutated certificate never verifies.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { AppError } from "../../src/lib/errors.ts";
import { pemEncode } from "../../src/lib/pem.ts";
import {
  createCA,
  decodeIdentity,
  formatSshPublicKey,
  generateKeyPair,
  issueCertificate,
  parseCertificate,
  parsePrivateKey,
  parsePublicKey,
  parseSshCertificate,
  privateKeyToOpenSsh,
  privateKeyToPem,
  publicKeySpkiDer,
  verifyCertificate,
  verifySshCertificate,
} from "../../src/crypto/index.ts";
import { sampleSshCertificate, SSH_T0 } from "./_tools.ts";

const T0 = new Date(Date.UTC(2030, 0, 1));
const T1 = new Date(Date.UTC(2030, 0, 2));
const RUNS = { numRuns: 300 };

/** Runs `f`; an AppError is an acceptable outcome, anything else fails the property. */
function onlyAppErrors<T>(f: () => T): T | AppError {
  try {
    return f();
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
}

async function onlyAppErrorsAsync<T>(f: () => Promise<T>): Promise<T | AppError> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
}

type Edit =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; byte: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "cut"; at: number; length: number };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
);

/** `seed` with one to four random edits; positions wrap around the current length. */
function mutated(seed: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let b = Buffer.from(seed);
    for (const e of edits) {
      const at = b.length ? e.at % b.length : 0;
      if (e.kind === "flip") b[at] = (b[at] ?? 0) ^ (1 << e.bit);
      else if (e.kind === "set") b[at] = e.byte;
      else if (e.kind === "insert") b = Buffer.concat([b.subarray(0, at), e.bytes, b.subarray(at)]);
      else b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)]);
    }
    return new Uint8Array(b);
  });
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const blobOf = (line: string) => new Uint8Array(Buffer.from(line.split(" ")[1]!, "base64"));
const bodyOf = (pem: string) => new Uint8Array(Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64"));
const anyText = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "binary", maxLength: 300 }));

const caPair = generateKeyPair("ecdsa-p256");
const caPem = await createCA({ commonName: "fuzz CA", keyPair: caPair, notBefore: T0, notAfter: T1 });
const leafPem = await issueCertificate({
  caCertPem: caPem,
  caKey: caPair.privateKey,
  publicKey: generateKeyPair("ed25519").publicKey,
  commonName: "bot-fuzz",
  dnsNames: ["a.example.com"],
  ipAddresses: ["10.0.0.1", "::1"],
  uris: ["machine-id://c/bot/fuzz"],
  notBefore: T0,
  notAfter: T1,
  usage: "client",
  identity: { cluster: "c", username: "bot-fuzz", kind: "bot", renewable: true, roles: ["r"], logins: ["l"], generation: 1 },
});
const leafDer = parseCertificate(leafPem).der;
const sshCa = generateKeyPair("ed25519");
const sshLine = sampleSshCertificate(sshCa.privateKey, {
  publicKey: generateKeyPair("ecdsa-p256").publicKey,
  principals: ["a", "b"],
  criticalOptions: { "force-command": "/bin/true" },
});
const sshBlob = blobOf(sshLine);
const sshType = sshLine.split(" ")[0]!;

describe("parseCertificate() on hostile input", () => {
  test("random bytes and text", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => void onlyAppErrors(() => parseCertificate(b))), RUNS);
    fc.assert(fc.property(anyText, (t) => void onlyAppErrors(() => parseCertificate(t))), RUNS);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => void onlyAppErrors(() => parseCertificate(pemEncode("CERTIFICATE", b)))), RUNS);
  });

  test("mutations of a real leaf and CA", () => {
    for (const seed of [leafDer, parseCertificate(caPem).der]) {
      fc.assert(fc.property(mutated(seed), (b) => void onlyAppErrors(() => parseCertificate(b))), { numRuns: 1000 });
    }
  });

  test("a mutated leaf never verifies", async () => {
    await fc.assert(
      fc.asyncProperty(mutated(leafDer), async (b) => {
        const r = await onlyAppErrorsAsync(() => verifyCertificate(b, [caPem], new Date(+T0 + 1000)));
        if (!(r instanceof AppError)) expect(Buffer.from(b).equals(leafDer)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("parseSshCertificate() on hostile input", () => {
  test("random text and random blobs", () => {
    fc.assert(fc.property(anyText, (t) => void onlyAppErrors(() => parseSshCertificate(t))), RUNS);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1024 }), (b) => void onlyAppErrors(() => parseSshCertificate(`${sshType} ${b64(b)}`))), RUNS);
  });

  test("mutations of a real certificate never parse into a crash, and never verify", () => {
    fc.assert(
      fc.property(mutated(sshBlob), (b) => {
        onlyAppErrors(() => parseSshCertificate(`${sshType} ${b64(b)}`));
        const r = onlyAppErrors(() => verifySshCertificate(`${sshType} ${b64(b)}`, [sshCa.publicKey], SSH_T0));
        if (!(r instanceof AppError)) expect(Buffer.from(b).equals(sshBlob)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("parsePublicKey() on hostile input", () => {
  const ed = generateKeyPair("ed25519").publicKey;
  const ec = generateKeyPair("ecdsa-p256").publicKey;

  test("random text", () => {
    fc.assert(fc.property(anyText, (t) => void onlyAppErrors(() => parsePublicKey(t))), RUNS);
  });

  test("mutated authorized_keys blobs and SPKI DER", () => {
    for (const key of [ed, ec]) {
      const [type] = formatSshPublicKey(key).split(" ");
      fc.assert(fc.property(mutated(blobOf(formatSshPublicKey(key))), (b) => void onlyAppErrors(() => parsePublicKey(`${type} ${b64(b)}`))), RUNS);
      fc.assert(fc.property(mutated(publicKeySpkiDer(key)), (b) => void onlyAppErrors(() => parsePublicKey(pemEncode("PUBLIC KEY", b)))), RUNS);
    }
  });
});

describe("parsePrivateKey() on hostile input", () => {
  test("random text", () => {
    fc.assert(fc.property(anyText, (t) => void onlyAppErrors(() => parsePrivateKey(t))), RUNS);
  });

  test("mutated OpenSSH, PKCS#8 and SEC1 keys", () => {
    for (const alg of ["ed25519", "ecdsa-p256"] as const) {
      const pair = generateKeyPair(alg);
      const openssh = bodyOf(privateKeyToOpenSsh(pair.privateKey, "c"));
      fc.assert(fc.property(mutated(openssh), (b) => void onlyAppErrors(() => parsePrivateKey(pemEncode("OPENSSH PRIVATE KEY", b)))), RUNS);
      const pkcs8 = bodyOf(privateKeyToPem(pair.privateKey));
      fc.assert(fc.property(mutated(pkcs8), (b) => void onlyAppErrors(() => parsePrivateKey(pemEncode("PRIVATE KEY", b)))), RUNS);
      if (alg === "ecdsa-p256") {
        const sec1 = new Uint8Array(pair.privateKey.export({ type: "sec1", format: "der" }));
        fc.assert(fc.property(mutated(sec1), (b) => void onlyAppErrors(() => parsePrivateKey(pemEncode("EC PRIVATE KEY", b)))), RUNS);
      }
    }
  });
});

describe("decodeIdentity() on hostile input", () => {
  const wrap = (json: string) => {
    const body = Buffer.from(json);
    const n = body.length;
    const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
    return new Uint8Array([0x0c, ...len, ...body]);
  };

  test("random bytes and random JSON", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => void onlyAppErrors(() => decodeIdentity(b))), RUNS);
    fc.assert(fc.property(fc.jsonValue(), (v) => void onlyAppErrors(() => decodeIdentity(wrap(JSON.stringify(v) ?? "null")))), RUNS);
  });

  test("deeply nested JSON is refused cleanly", () => {
    const deep = "[".repeat(30_000) + "]".repeat(30_000);
    expect(onlyAppErrors(() => decodeIdentity(wrap(deep)))).toBeInstanceOf(AppError);
  });
});
