/**
 * Static bound keys on the agent: $TBOT_BOUND_KEYPAIR_STATIC_KEY (base64 of a PEM)
 * and key files, every refusal with its message, the config winning over the
 * environment, and hostile values (fast-check) that must fail cleanly.
 */

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { generateKeyPairSync } from "node:crypto";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decodeStaticKeyEnv, loadStaticKey, readStaticKeyFile, STATIC_KEY_ENV } from "../../src/agent/bound_keypair/index.ts";
import { formatSshPublicKey, generateKeyPair, keyId, privateKeyToOpenSsh, privateKeyToPem } from "../../src/crypto/index.ts";
import { AppError, isAppError } from "../../src/lib/errors.ts";
import { tempDir } from "./harness.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const errorOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e as AppError;
  }
  throw new Error("expected an error");
};
const rejection = async (p: Promise<unknown>) => p.then(() => { throw new Error("expected a rejection"); }, (e: unknown) => e as AppError);

const ENV = `static key in $${STATIC_KEY_ENV}`;

describe("decodeStaticKeyEnv()", () => {
  test("reads base64 of a PKCS#8 PEM, Ed25519 and ECDSA P-256, wrapped or not", () => {
    for (const alg of ["ed25519", "ecdsa-p256"] as const) {
      const key = generateKeyPair(alg);
      const value = b64(privateKeyToPem(key.privateKey));
      expect(keyId(decodeStaticKeyEnv(value).publicKey)).toBe(keyId(key.publicKey));
      // a secret store that wraps long values at 76 columns, plus a trailing newline
      const wrapped = value.match(/.{1,76}/g)!.join("\n") + "\n";
      expect(decodeStaticKeyEnv(wrapped).algorithm).toBe(alg);
    }
  });

  test("reads base64 of a SEC1 or OpenSSH private key too", () => {
    const ec = generateKeyPair("ecdsa-p256");
    expect(keyId(decodeStaticKeyEnv(b64(ec.privateKey.export({ type: "sec1", format: "pem" }) as string)).publicKey)).toBe(keyId(ec.publicKey));
    const ed = generateKeyPair("ed25519");
    expect(keyId(decodeStaticKeyEnv(b64(privateKeyToOpenSsh(ed.privateKey))).publicKey)).toBe(keyId(ed.publicKey));
  });

  test("refuses an empty value", () => {
    expect(errorOf(() => decodeStaticKeyEnv("  \n")).message).toBe(`Cannot read ${ENV}: it is empty`);
  });

  test("refuses a value that is not base64", () => {
    const e = errorOf(() => decodeStaticKeyEnv("not base64!"));
    expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
    expect(e.message).toBe(`Cannot read ${ENV}: it is not valid base64; set it to the value "machine-id keypair create --static" printed`);
  });

  test("refuses the PEM itself, saying to base64 it", () => {
    const pem = privateKeyToPem(generateKeyPair("ed25519").privateKey);
    expect(errorOf(() => decodeStaticKeyEnv(pem)).message).toStartWith(`Cannot read ${ENV}: it holds a PEM; set it to the base64 of the PEM`);
  });

  test("refuses base64 of something that is not a PEM private key", () => {
    expect(errorOf(() => decodeStaticKeyEnv(b64("hello world"))).message).toBe(`Cannot read ${ENV}: it is not a PEM or OpenSSH private key`);
    const pub = formatSshPublicKey(generateKeyPair("ed25519").publicKey);
    expect(errorOf(() => decodeStaticKeyEnv(b64(pub))).message).toBe(`Cannot read ${ENV}: it is not a PEM or OpenSSH private key`);
    expect(errorOf(() => decodeStaticKeyEnv(Buffer.from([0xff, 0xfe, 0x00, 0x80]).toString("base64"))).message).toBe(
      `Cannot read ${ENV}: its base64 does not decode to a PEM private key`,
    );
    const spki = generateKeyPair("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string;
    expect(errorOf(() => decodeStaticKeyEnv(b64(spki))).message).toBe(`Cannot read ${ENV}: it holds a "PUBLIC KEY" PEM block, not a private key`);
  });

  test("refuses an unsupported key type (RSA, P-384)", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    expect(errorOf(() => decodeStaticKeyEnv(b64(rsa))).message).toBe(`Unsupported key type "rsa" in ${ENV}: use Ed25519 or ECDSA P-256`);
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    expect(errorOf(() => decodeStaticKeyEnv(b64(p384))).message).toStartWith(`Unsupported curve`);
  });

  test("refuses an encrypted key", () => {
    const enc = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" }) as string;
    expect(errorOf(() => decodeStaticKeyEnv(b64(enc))).message).toBe(`Cannot read ${ENV}: it is encrypted; machine-id needs an unencrypted key`);
  });
});

describe("readStaticKeyFile()", () => {
  test("reads a 0600 key and a 0400 key", async () => {
    await using t = await tempDir();
    const key = generateKeyPair("ed25519");
    const path = join(t.path, "key");
    await writeFile(path, privateKeyToPem(key.privateKey), { mode: 0o600 });
    expect(keyId((await readStaticKeyFile(path)).publicKey)).toBe(keyId(key.publicKey));
    await chmod(path, 0o400);
    expect(keyId((await readStaticKeyFile(path)).publicKey)).toBe(keyId(key.publicKey));
  });

  test("refuses a key file group or others can read or change, naming the mode", async () => {
    await using t = await tempDir();
    const path = join(t.path, "key");
    await writeFile(path, privateKeyToPem(generateKeyPair("ed25519").privateKey));
    for (const [mode, why] of [[0o644, "lets others read it"], [0o640, "lets others read it"], [0o604, "lets others read it"], [0o620, "lets others change it"], [0o601, "lets others change it"]] as const) {
      await chmod(path, mode);
      const e = await rejection(readStaticKeyFile(path));
      expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
      expect(e.message).toBe(`Cannot read static key "${path}": mode 0${mode.toString(8)} ${why}; run chmod 600 "${path}"`);
    }
  });

  test("refuses a missing file, a directory and a file that is not a key", async () => {
    await using t = await tempDir();
    const missing = join(t.path, "nope");
    expect((await rejection(readStaticKeyFile(missing))).message).toContain(`"${missing}"`);
    const dir = join(t.path, "dir");
    await mkdir(dir, { mode: 0o700 });
    expect((await rejection(readStaticKeyFile(dir))).message).toBe(`Cannot read static key "${dir}": it is not a regular file`);
    const junk = join(t.path, "junk");
    await writeFile(junk, "password123\n", { mode: 0o600 });
    expect((await rejection(readStaticKeyFile(junk))).message).toBe(`Cannot read static key "${junk}": it is not a PEM or OpenSSH private key`);
  });
});

describe("loadStaticKey()", () => {
  test("the config's static_private_key_path wins over the environment", async () => {
    await using t = await tempDir();
    const fileKey = generateKeyPair("ed25519");
    const envKey = generateKeyPair("ed25519");
    const path = join(t.path, "key");
    await writeFile(path, privateKeyToPem(fileKey.privateKey), { mode: 0o600 });
    const env = { [STATIC_KEY_ENV]: b64(privateKeyToPem(envKey.privateKey)) };
    const fromFile = await loadStaticKey(path, env);
    expect(keyId(fromFile!.key.publicKey)).toBe(keyId(fileKey.publicKey));
    expect(fromFile!.source).toBe(`static key "${path}"`);
    const fromEnv = await loadStaticKey(undefined, env);
    expect(keyId(fromEnv!.key.publicKey)).toBe(keyId(envKey.publicKey));
    expect(fromEnv!.source).toBe(ENV);
    // even a broken variable does not matter when the config names a file
    expect((await loadStaticKey(path, { [STATIC_KEY_ENV]: "!!!" }))!.source).toBe(`static key "${path}"`);
  });

  test("neither: standard mode (undefined)", async () => {
    expect(await loadStaticKey(undefined, {})).toBeUndefined();
  });
});

describe("hostile values (fast-check)", () => {
  const valid = b64(privateKeyToPem(generateKeyPair("ed25519").privateKey));

  /** Either a key or a BAD_PARAMETER AppError with a message naming the source: nothing else. */
  const outcome = (value: string): "key" | "refused" => {
    try {
      decodeStaticKeyEnv(value);
      return "key";
    } catch (e) {
      expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
      expect((e as AppError).message).toMatch(/static key in \$TBOT_BOUND_KEYPAIR_STATIC_KEY/);
      return "refused";
    }
  };

  test("random strings are refused with BAD_PARAMETER, never a crash", () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => {
      expect(outcome(s)).toBe("refused");
    }), { numRuns: 500 });
  });

  test("base64 of random bytes and of random text around PEM armour is refused cleanly", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      outcome(Buffer.from(bytes).toString("base64"));
    }), { numRuns: 500 });
    fc.assert(
      fc.property(fc.constantFrom("PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "PUBLIC KEY"), fc.uint8Array({ maxLength: 300 }), (label, der) => {
        const pem = `-----BEGIN ${label}-----\n${Buffer.from(der).toString("base64")}\n-----END ${label}-----\n`;
        expect(outcome(b64(pem))).toBe("refused");
      }),
      { numRuns: 500 },
    );
  });

  test("single-character mutations of a valid value yield the key or a clean refusal", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!- \n";
    fc.assert(
      fc.property(fc.nat(), fc.constantFrom(...alphabet.split(""), ""), (i, c) => {
        const at = i % valid.length;
        outcome(valid.slice(0, at) + c + valid.slice(at + 1));
      }),
      { numRuns: 1000 },
    );
  });

  test("mutations inside the DER of a valid key yield a key or a clean refusal", () => {
    const pem = privateKeyToPem(generateKeyPair("ecdsa-p256").privateKey);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    fc.assert(
      fc.property(fc.nat(), fc.integer({ min: 0, max: 255 }), (i, byte) => {
        const copy = Buffer.from(der);
        copy[i % copy.length] = byte;
        const mutated = `-----BEGIN PRIVATE KEY-----\n${copy.toString("base64")}\n-----END PRIVATE KEY-----\n`;
        outcome(b64(mutated));
      }),
      { numRuns: 1000 },
    );
  });
});
