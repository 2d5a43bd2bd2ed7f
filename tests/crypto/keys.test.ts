// Key generation, encodings and parsing, checked against keys made by openssl and ssh-keygen.

import { describe, expect, test } from "bun:test";
import { createHash, generateKeyPairSync, sign, verify } from "node:crypto";
import { pemEncode } from "../../src/lib/pem.ts";
import {
  formatSshPublicKey,
  generateKeyPair,
  keyAlgorithmOf,
  keyId,
  parsePrivateKey,
  parsePublicKey,
  privateKeyToOpenSsh,
  privateKeyToPem,
  publicKeySpkiDer,
  publicKeyToPem,
  sshFingerprint,
} from "../../src/crypto/index.ts";
import { expectAppError, run, sshKeygen, TempDir } from "./_tools.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

/**
 * The check integer of an unencrypted OpenSSH key: after the magic (15 bytes), "none",
 * "none", empty KDF options, the key count (39 bytes so far), the public key string and
 * the private section's length.
 */
function openSshCheckInt(text: string): number {
  const body = Buffer.from(text.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
  return body.readUInt32BE(39 + 4 + body.readUInt32BE(39) + 4);
}

describe("generateKeyPair()", () => {
  test.each(["ed25519", "ecdsa-p256"] as const)("makes a %s pair whose halves belong together", (alg) => {
    const pair = generateKeyPair(alg);
    expect(pair.algorithm).toBe(alg);
    expect(keyAlgorithmOf(pair.privateKey)).toBe(alg);
    expect(keyAlgorithmOf(pair.publicKey)).toBe(alg);
    const data = Buffer.from("machine-id");
    const digest = alg === "ed25519" ? null : "sha256";
    expect(verify(digest, data, pair.publicKey, sign(digest, data, pair.privateKey))).toBe(true);
  });

  test("rejects an unknown algorithm", async () => {
    await expectAppError(() => generateKeyPair("rsa" as never), "BAD_PARAMETER", /Unsupported key type "rsa"/);
  });
});

describe("RFC 8032 Ed25519 known answers through node:crypto", () => {
  // RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72)
  const vectors = [
    {
      secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
      message: "",
      signature:
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    {
      secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
      message: "72",
      signature:
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
  ];

  test.each(vectors)("seed $secret signs as the RFC says", (v) => {
    const pem = pemEncode("PRIVATE KEY", Buffer.concat([hex("302e020100300506032b657004220420"), hex(v.secret)]));
    const pair = parsePrivateKey(pem);
    expect(Buffer.from(publicKeySpkiDer(pair.publicKey).subarray(12)).toString("hex")).toBe(v.public);
    const sig = sign(null, hex(v.message), pair.privateKey);
    expect(Buffer.from(sig).toString("hex")).toBe(v.signature);
    // the same key through the OpenSSH container round-trips to the same signature
    const again = parsePrivateKey(privateKeyToOpenSsh(pair.privateKey));
    expect(Buffer.from(sign(null, hex(v.message), again.privateKey)).toString("hex")).toBe(v.signature);
  });
});

describe("parsePrivateKey() with openssl keys", () => {
  test("reads an Ed25519 PKCS#8 key from openssl genpkey", () => {
    using dir = new TempDir();
    run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", dir.file("k.pem")]);
    const pair = parsePrivateKey(dir.read("k.pem"));
    expect(pair.algorithm).toBe("ed25519");
    const pub = run(["openssl", "pkey", "-in", dir.file("k.pem"), "-pubout"]).stdout;
    expect(parsePublicKey(pub).equals(pair.publicKey)).toBe(true);
    expect(publicKeyToPem(pair.privateKey)).toBe(pub);
  });

  test("reads a P-256 key in PKCS#8 and in SEC1 form as the same key", () => {
    using dir = new TempDir();
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir.file("k.pem")]);
    run(["openssl", "ec", "-in", dir.file("k.pem"), "-out", dir.file("sec1.pem")]);
    expect(dir.read("sec1.pem")).toContain("BEGIN EC PRIVATE KEY");
    const a = parsePrivateKey(dir.read("k.pem"));
    const b = parsePrivateKey(dir.read("sec1.pem"));
    expect(a.algorithm).toBe("ecdsa-p256");
    expect(b.algorithm).toBe("ecdsa-p256");
    expect(a.privateKey.equals(b.privateKey)).toBe(true);
    const pubDer = run(["openssl", "pkey", "-in", dir.file("k.pem"), "-pubout", "-outform", "der"]).stdoutBytes;
    expect(publicKeySpkiDer(a.publicKey)).toEqual(pubDer);
  });

  test("finds the key in a file that also holds a certificate", () => {
    const pair = generateKeyPair("ecdsa-p256");
    const text = pemEncode("CERTIFICATE", new Uint8Array([1, 2, 3])) + privateKeyToPem(pair.privateKey);
    expect(parsePrivateKey(text).privateKey.equals(pair.privateKey)).toBe(true);
  });

  test("refuses RSA keys in every container, naming the source", async () => {
    using dir = new TempDir();
    run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", dir.file("rsa.pem")]);
    run(["openssl", "rsa", "-in", dir.file("rsa.pem"), "-traditional", "-out", dir.file("rsa1.pem")]);
    const expected = 'Unsupported key type "rsa" in static key "/etc/key": use Ed25519 or ECDSA P-256';
    await expectAppError(() => parsePrivateKey(dir.read("rsa.pem"), 'static key "/etc/key"'), "BAD_PARAMETER", expected);
    expect(dir.read("rsa1.pem")).toContain("BEGIN RSA PRIVATE KEY");
    await expectAppError(() => parsePrivateKey(dir.read("rsa1.pem"), 'static key "/etc/key"'), "BAD_PARAMETER", expected);
    await expectAppError(() => parsePrivateKey(sshKeygen(dir, "id_rsa", "rsa"), 'static key "/etc/key"'), "BAD_PARAMETER", expected);
  });

  test("refuses other curves", async () => {
    using dir = new TempDir();
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", dir.file("k.pem")]);
    await expectAppError(() => parsePrivateKey(dir.read("k.pem"), "bot key"), "BAD_PARAMETER", 'Unsupported curve "P-384" in bot key: use Ed25519 or ECDSA P-256');
    const ssh384 = run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f", dir.file("id384")]);
    expect(ssh384.code).toBe(0);
    await expectAppError(() => parsePrivateKey(dir.read("id384"), "bot key"), "BAD_PARAMETER", /Unsupported curve "P-384" in bot key/);
  });

  test("refuses encrypted keys in all three forms", async () => {
    using dir = new TempDir();
    run(["openssl", "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:secret", "-out", dir.file("p8.pem")]);
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", dir.file("ec.pem")]);
    run(["openssl", "ec", "-in", dir.file("ec.pem"), "-aes256", "-passout", "pass:secret", "-out", dir.file("ec-enc.pem")]);
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", dir.file("id_enc")]);
    for (const f of ["p8.pem", "ec-enc.pem", "id_enc"]) {
      await expectAppError(() => parsePrivateKey(dir.read(f), "key"), "BAD_PARAMETER", "Cannot read key: it is encrypted; machine-id needs an unencrypted key");
    }
  });

  test("says what is wrong with text that is not a private key", async () => {
    const pair = generateKeyPair("ed25519");
    await expectAppError(() => parsePrivateKey("hello", "key"), "BAD_PARAMETER", "Cannot read key: it is not a PEM or OpenSSH private key");
    await expectAppError(() => parsePrivateKey(publicKeyToPem(pair.publicKey), "key"), "BAD_PARAMETER", 'Cannot read key: it holds a "PUBLIC KEY" PEM block, not a private key');
    await expectAppError(() => parsePrivateKey(pemEncode("PRIVATE KEY", new Uint8Array([0x30, 0x03, 1, 2, 3])), "key"), "BAD_PARAMETER", "Cannot read key: malformed PKCS#8 private key");
    await expectAppError(() => parsePrivateKey("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "key"), "BAD_PARAMETER", "Cannot read key: a PEM block is not valid base64");
  });
});

describe("OpenSSH private keys from ssh-keygen", () => {
  test.each(["ed25519", "ecdsa"] as const)("%s: parse, then re-encode byte for byte", (type) => {
    using dir = new TempDir();
    const text = sshKeygen(dir, "id", type);
    const pair = parsePrivateKey(text);
    expect(pair.algorithm).toBe(type === "ed25519" ? "ed25519" : "ecdsa-p256");
    const pub = dir.read("id.pub").trim();
    expect(formatSshPublicKey(pair.publicKey, "id@test")).toBe(pub);
    expect(parsePublicKey(pub).equals(pair.publicKey)).toBe(true);
    // the check integer is the only random part of the container
    expect(privateKeyToOpenSsh(pair.privateKey, "id@test", openSshCheckInt(text))).toBe(text);
  });

  test.each(["ed25519", "ecdsa-p256"] as const)("ssh-keygen reads a %s key written by privateKeyToOpenSsh", (alg) => {
    using dir = new TempDir();
    const pair = generateKeyPair(alg);
    dir.write("id", privateKeyToOpenSsh(pair.privateKey, "bot@example"));
    const derived = run(["ssh-keygen", "-y", "-f", dir.file("id")]).stdout.trim();
    expect(derived).toBe(formatSshPublicKey(pair.publicKey, "bot@example"));
  });

  test("refuses a key whose stored public half was swapped", async () => {
    const a = generateKeyPair("ed25519");
    const b = generateKeyPair("ed25519");
    const textA = privateKeyToOpenSsh(a.privateKey, "", 7);
    const body = Buffer.from(textA.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
    const rawA = Buffer.from(publicKeySpkiDer(a.publicKey).subarray(12));
    const rawB = Buffer.from(publicKeySpkiDer(b.publicKey).subarray(12));
    // replace only the outer public key copy (its first occurrence)
    rawB.copy(body, body.indexOf(rawA));
    const forged = pemEncode("OPENSSH PRIVATE KEY", body);
    await expectAppError(() => parsePrivateKey(forged, "key"), "BAD_PARAMETER", "Cannot parse key: the public key does not match the private key");
  });
});

describe("parsePublicKey()", () => {
  test("reads authorized_keys lines with and without comments, and SPKI PEM", () => {
    for (const alg of ["ed25519", "ecdsa-p256"] as const) {
      const pair = generateKeyPair(alg);
      expect(parsePublicKey(formatSshPublicKey(pair.publicKey)).equals(pair.publicKey)).toBe(true);
      expect(parsePublicKey(`  ${formatSshPublicKey(pair.publicKey, "a comment with spaces")}\n`).equals(pair.publicKey)).toBe(true);
      expect(parsePublicKey(publicKeyToPem(pair.publicKey)).equals(pair.publicKey)).toBe(true);
    }
  });

  test("refuses RSA, certificates, private keys and mismatched type names clearly", async () => {
    using dir = new TempDir();
    sshKeygen(dir, "id_rsa", "rsa");
    await expectAppError(() => parsePublicKey(dir.read("id_rsa.pub"), "initial_public_key"), "BAD_PARAMETER", 'Unsupported key type "rsa" in initial_public_key: use Ed25519 or ECDSA P-256');
    const rsaSpki = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }) as string;
    await expectAppError(() => parsePublicKey(rsaSpki, "k"), "BAD_PARAMETER", 'Unsupported key type "rsa" in k: use Ed25519 or ECDSA P-256');

    const ed = generateKeyPair("ed25519");
    const ec = generateKeyPair("ecdsa-p256");
    await expectAppError(() => parsePublicKey(privateKeyToPem(ed.privateKey), "k"), "BAD_PARAMETER", "Cannot read k: it is a private key, expected a public key");
    const blob = formatSshPublicKey(ed.publicKey).split(" ")[1];
    await expectAppError(() => parsePublicKey(`ssh-ed25519-cert-v01@openssh.com ${blob}`, "k"), "BAD_PARAMETER", "Cannot read k: it is an SSH certificate, not a public key");
    await expectAppError(() => parsePublicKey(`ecdsa-sha2-nistp256 ${blob}`, "k"), "BAD_PARAMETER", 'Cannot read k: the line says "ecdsa-sha2-nistp256" but holds a "ssh-ed25519" key');
    await expectAppError(() => parsePublicKey("ssh-ed25519 AAAA... (the public key printed by keypair create)", "k"), "BAD_PARAMETER", "Cannot decode k: not valid base64");
    await expectAppError(() => parsePublicKey("not a key", "k"), "BAD_PARAMETER", /^Cannot read k: expected an authorized_keys line/);
    await expectAppError(() => parsePublicKey(`${formatSshPublicKey(ed.publicKey)}\n${formatSshPublicKey(ec.publicKey)}`, "k"), "BAD_PARAMETER", "Cannot read k: expected one key, found several lines");
  });

  test("refuses a P-256 point that is not on the curve", async () => {
    const line = formatSshPublicKey(generateKeyPair("ecdsa-p256").publicKey);
    const blob = Buffer.from(line.split(" ")[1]!, "base64");
    blob[blob.length - 1]! ^= 1;
    await expectAppError(() => parsePublicKey(`ecdsa-sha2-nistp256 ${blob.toString("base64")}`, "k"), "BAD_PARAMETER", "Cannot read k: the public key is not a valid P-256 point");
  });
});

describe("key ids and fingerprints", () => {
  test.each(["ed25519", "ecdsa"] as const)("sshFingerprint() matches ssh-keygen -lf for %s", (type) => {
    using dir = new TempDir();
    sshKeygen(dir, "id", type);
    const printed = run(["ssh-keygen", "-l", "-E", "sha256", "-f", dir.file("id.pub")]).stdout.split(" ")[1];
    expect(sshFingerprint(parsePublicKey(dir.read("id.pub")))).toBe(printed!);
    expect(sshFingerprint(parsePrivateKey(dir.read("id")).privateKey)).toBe(printed!);
  });

  test("keyId() is base64url SHA-256 of the SPKI DER that openssl writes", () => {
    using dir = new TempDir();
    const pair = generateKeyPair("ecdsa-p256");
    dir.write("k.pem", privateKeyToPem(pair.privateKey));
    const der = run(["openssl", "pkey", "-in", dir.file("k.pem"), "-pubout", "-outform", "der"]).stdoutBytes;
    expect(keyId(pair.publicKey)).toBe(createHash("sha256").update(der).digest("base64url"));
    expect(keyId(pair.privateKey)).toBe(keyId(pair.publicKey));
    expect(keyId(pair.publicKey)).not.toContain("=");
  });

  test("publicKeySpkiDer() hands out copies", () => {
    const pair = generateKeyPair("ed25519");
    const a = publicKeySpkiDer(pair.publicKey);
    a.fill(0);
    expect(publicKeySpkiDer(pair.publicKey)).not.toEqual(a);
  });
});

describe("formatSshPublicKey()", () => {
  test("refuses a comment that would add a line", async () => {
    const pair = generateKeyPair("ed25519");
    await expectAppError(() => formatSshPublicKey(pair.publicKey, "x\nssh-ed25519 AAAA evil"), "BAD_PARAMETER", /control characters are not allowed/);
  });

  test("refuses unsupported keys passed in directly", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
    await expectAppError(() => formatSshPublicKey(rsa.publicKey), "BAD_PARAMETER", 'Unsupported key type "rsa": use Ed25519 or ECDSA P-256');
    await expectAppError(() => keyAlgorithmOf(generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey), "BAD_PARAMETER", 'Unsupported curve "P-384": use Ed25519 or ECDSA P-256');
  });

  test("privateKeyToPem() output is read by openssl", () => {
    using dir = new TempDir();
    for (const alg of ["ed25519", "ecdsa-p256"] as const) {
      const pair = generateKeyPair(alg);
      dir.write(`${alg}.pem`, privateKeyToPem(pair.privateKey));
      const pub = run(["openssl", "pkey", "-in", dir.file(`${alg}.pem`), "-pubout"]).stdout;
      expect(pub).toBe(publicKeyToPem(pair.publicKey));
    }
  });
});
