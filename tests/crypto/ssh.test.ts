// OpenSSH certificates: ssh-keygen is the oracle for the encoding, the signature and the defaults.

import { describe, expect, test } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  DEFAULT_USER_EXTENSIONS,
  formatSshPublicKey,
  generateKeyPair,
  knownHostsCertAuthorityLine,
  parsePrivateKey,
  parsePublicKey,
  parseSshCertificate,
  signSshCertificate,
  sshFingerprint,
  verifySshCertificate,
  type KeyPair,
} from "../../src/crypto/index.ts";
import { expectAppError, run, sampleSshCertificate, SSH_T0 as T0, SSH_T1 as T1, sshKeygen, TempDir } from "./_tools.ts";

const VALIDITY = "20300101000000:20300102123015"; // T0:T1, read as UTC (run() sets TZ=UTC)

/** The base64 blob of a certificate line. */
const blobOf = (line: string) => line.trim().split(/\s+/)[1]!;

/** ssh-keygen -L output, which also proves ssh-keygen accepted the CA signature. */
function describeCert(dir: TempDir, line: string): string {
  return run(["ssh-keygen", "-L", "-f", dir.write("cert.pub", `${line}\n`)]).stdout;
}

/** A certificate signed by ssh-keygen for a fresh key of `userType`, plus the CA used. */
function keygenCert(dir: TempDir, userType: "ed25519" | "ecdsa", args: string[]) {
  const caText = sshKeygen(dir, "ca", "ed25519");
  sshKeygen(dir, "user", userType);
  run(["ssh-keygen", "-q", "-s", dir.file("ca"), ...args, dir.file("user.pub")]);
  return { ca: parsePrivateKey(caText), user: parsePublicKey(dir.read("user.pub")), line: dir.read("user-cert.pub").trim() };
}

/** Signs with our encoder using every field of `parsed` (the nonce included). */
function resign(ca: KeyPair, line: string): string {
  const p = parseSshCertificate(line);
  return signSshCertificate({
    caKey: ca.privateKey,
    publicKey: p.publicKey,
    certType: p.certType,
    keyId: p.keyId,
    principals: p.principals,
    validAfter: p.validAfter,
    validBefore: p.validBefore,
    serial: p.serial,
    criticalOptions: p.criticalOptions,
    extensions: p.extensions,
    nonce: p.nonce,
  });
}

describe("signSshCertificate() against ssh-keygen -s", () => {
  test.each(["ed25519", "ecdsa"] as const)("re-signs an ssh-keygen user certificate for an %s key byte for byte", (userType) => {
    using dir = new TempDir();
    const { ca, user, line } = keygenCert(dir, userType, ["-I", "bot-example", "-n", "alice,bob", "-V", VALIDITY, "-z", "4242"]);
    const p = parseSshCertificate(line);
    expect(p.certKeyType).toBe(userType === "ed25519" ? "ssh-ed25519-cert-v01@openssh.com" : "ecdsa-sha2-nistp256-cert-v01@openssh.com");
    expect(p.certType).toBe("user");
    expect(p.keyId).toBe("bot-example");
    expect(p.principals).toEqual(["alice", "bob"]);
    expect(p.serial).toBe(4242n);
    expect(p.validAfter).toEqual(T0);
    expect(p.validBefore).toEqual(T1);
    expect(p.publicKey.equals(user)).toBe(true);
    expect(p.signatureKey.equals(ca.publicKey)).toBe(true);
    expect(p.signatureAlgorithm).toBe("ssh-ed25519");
    expect(p.nonce.length).toBe(32);
    expect(p.criticalOptions).toEqual({});
    // ssh-keygen's defaults are ours, in the same order
    expect(p.extensions).toEqual({ ...DEFAULT_USER_EXTENSIONS });
    expect(Object.keys(p.extensions)).toEqual(Object.keys(DEFAULT_USER_EXTENSIONS));
    expect(blobOf(resign(ca, line))).toBe(blobOf(line));
  });

  test("without extensions given, a user certificate gets ssh-keygen's default set", () => {
    using dir = new TempDir();
    const { ca, line } = keygenCert(dir, "ed25519", ["-I", "id", "-n", "a", "-V", VALIDITY, "-z", "1"]);
    const p = parseSshCertificate(line);
    const ours = signSshCertificate({
      caKey: ca.privateKey,
      publicKey: p.publicKey,
      certType: "user",
      keyId: "id",
      principals: ["a"],
      validAfter: T0,
      validBefore: T1,
      serial: 1n,
      nonce: p.nonce,
    });
    expect(blobOf(ours)).toBe(blobOf(line));
  });

  test("re-signs a host certificate and critical options with values byte for byte", () => {
    using dir = new TempDir();
    const host = keygenCert(dir, "ed25519", ["-h", "-I", "host-1", "-n", "host1.example.com,10.0.0.1", "-V", VALIDITY, "-z", "9"]);
    const hp = parseSshCertificate(host.line);
    expect(hp.certType).toBe("host");
    expect(hp.extensions).toEqual({});
    expect(blobOf(resign(host.ca, host.line))).toBe(blobOf(host.line));

    using dir2 = new TempDir();
    const opts = keygenCert(dir2, "ecdsa", [
      "-I", "restricted", "-n", "deploy", "-V", VALIDITY, "-z", "18446744073709551615",
      "-O", "clear", "-O", "force-command=/usr/bin/true", "-O", "source-address=10.0.0.0/8", "-O", "permit-pty",
    ]);
    const op = parseSshCertificate(opts.line);
    expect(op.serial).toBe(18446744073709551615n);
    expect(op.criticalOptions).toEqual({ "force-command": "/usr/bin/true", "source-address": "10.0.0.0/8" });
    expect(op.extensions).toEqual({ "permit-pty": "" });
    expect(blobOf(resign(opts.ca, opts.line))).toBe(blobOf(opts.line));
  });

  test("reads validity 'forever' as the latest Date and keeps the raw seconds", () => {
    using dir = new TempDir();
    const { line } = keygenCert(dir, "ed25519", ["-I", "id", "-n", "a", "-V", "always:forever"]);
    const p = parseSshCertificate(line);
    expect(p.validAfterSeconds).toBe(0n);
    expect(p.validBeforeSeconds).toBe((1n << 64n) - 1n);
    expect(p.validBefore.getTime()).toBe(8.64e15);
  });
});

describe("certificates from signSshCertificate() in ssh-keygen -L", () => {
  test.each(["ed25519", "ecdsa-p256"] as const)("shows the fields of a user certificate for an %s key", (alg) => {
    using dir = new TempDir();
    const ca = generateKeyPair("ed25519");
    const user = generateKeyPair(alg);
    const line = signSshCertificate({
      caKey: ca.privateKey,
      publicKey: user.publicKey,
      certType: "user",
      keyId: "bot-example",
      principals: ["root", "ubuntu"],
      validAfter: T0,
      validBefore: T1,
      serial: 77n,
    });
    expect(line.endsWith(" bot-example")).toBe(true);
    const text = describeCert(dir, line);
    expect(text).toContain(`${alg === "ed25519" ? "ssh-ed25519" : "ecdsa-sha2-nistp256"}-cert-v01@openssh.com user certificate`);
    expect(text).toContain(`Public key: ${alg === "ed25519" ? "ED25519" : "ECDSA"}-CERT ${sshFingerprint(user.publicKey)}`);
    expect(text).toContain(`Signing CA: ED25519 ${sshFingerprint(ca.publicKey)} (using ssh-ed25519)`);
    expect(text).toContain('Key ID: "bot-example"');
    expect(text).toContain("Serial: 77");
    expect(text).toContain("Valid: from 2030-01-01T00:00:00 to 2030-01-02T12:30:15");
    expect(text).toMatch(/Principals: \n\s+root\n\s+ubuntu\n/);
    expect(text).toMatch(/Critical Options: \(none\)/);
    expect(text).toMatch(/Extensions: \n\s+permit-X11-forwarding\n\s+permit-agent-forwarding\n\s+permit-port-forwarding\n\s+permit-pty\n\s+permit-user-rc\n/);
  });

  test("an ECDSA P-256 CA signs certificates ssh-keygen accepts, and verifies ssh-keygen's", () => {
    using dir = new TempDir();
    const caText = sshKeygen(dir, "ca", "ecdsa");
    const ca = parsePrivateKey(caText);
    const user = generateKeyPair("ed25519");
    const line = signSshCertificate({
      caKey: ca.privateKey,
      publicKey: user.publicKey,
      certType: "host",
      keyId: "h",
      principals: ["h.example.com"],
      validAfter: T0,
      validBefore: T1,
    });
    expect(describeCert(dir, line)).toContain("Signing CA: ECDSA");
    expect(verifySshCertificate(line, [ca.publicKey], T0).principals).toEqual(["h.example.com"]);

    sshKeygen(dir, "user", "ed25519");
    run(["ssh-keygen", "-q", "-s", dir.file("ca"), "-I", "x", "-n", "y", "-V", VALIDITY, dir.file("user.pub")]);
    const theirs = dir.read("user-cert.pub");
    expect(verifySshCertificate(theirs, [ca.publicKey], T0).signatureAlgorithm).toBe("ecdsa-sha2-nistp256");
  });

  test("ssh-keygen refuses a certificate whose signature was altered", async () => {
    using dir = new TempDir();
    const ca = generateKeyPair("ed25519");
    const line = sampleSshCertificate(ca.privateKey);
    const blob = Buffer.from(blobOf(line), "base64");
    blob[blob.length - 5]! ^= 0x01;
    const bad = `ssh-ed25519-cert-v01@openssh.com ${blob.toString("base64")} k`;
    expect(run(["ssh-keygen", "-L", "-f", dir.write("bad.pub", `${bad}\n`)], { allowFailure: true }).code).not.toBe(0);
    await expectAppError(() => verifySshCertificate(bad, [ca.publicKey], T0), "ACCESS_DENIED", 'SSH certificate "k" has an invalid signature');
  });
});

describe("verifySshCertificate()", () => {
  const ca = generateKeyPair("ed25519");
  const other = generateKeyPair("ed25519");
  const line = sampleSshCertificate(ca.privateKey, { publicKey: generateKeyPair("ecdsa-p256").publicKey, keyId: "bot-a" });

  test("accepts from validAfter up to one second before validBefore", () => {
    expect(verifySshCertificate(line, [other.publicKey, ca.publicKey], T0).keyId).toBe("bot-a");
    expect(verifySshCertificate(line, [ca.publicKey], new Date(+T1 - 1)).keyId).toBe("bot-a");
  });

  test("refuses before validAfter with ACCESS_DENIED and at validBefore with EXPIRED", async () => {
    await expectAppError(() => verifySshCertificate(line, [ca.publicKey], new Date(+T0 - 1000)), "ACCESS_DENIED", 'SSH certificate "bot-a" is not valid before 2030-01-01T00:00:00.000Z');
    await expectAppError(() => verifySshCertificate(line, [ca.publicKey], T1), "EXPIRED", 'SSH certificate "bot-a" expired at 2030-01-02T12:30:15.000Z');
  });

  test("refuses a certificate from an untrusted CA", async () => {
    await expectAppError(() => verifySshCertificate(line, [other.publicKey], T0), "ACCESS_DENIED", 'SSH certificate "bot-a" is not signed by a trusted certificate authority');
    await expectAppError(() => verifySshCertificate(line, [], T0), "ACCESS_DENIED");
  });

  test("refuses a certificate re-signed by a CA claiming the trusted CA's key", async () => {
    // swap the embedded signature key for the trusted one, keeping the attacker's signature
    const forged = sampleSshCertificate(other.privateKey, { keyId: "evil", principals: ["root"] });
    const blob = Buffer.from(blobOf(forged), "base64");
    const otherBlob = Buffer.from(blobOf(formatSshPublicKey(other.publicKey)), "base64");
    const caBlob = Buffer.from(blobOf(formatSshPublicKey(ca.publicKey)), "base64");
    caBlob.copy(blob, blob.indexOf(otherBlob));
    const swapped = `ssh-ed25519-cert-v01@openssh.com ${blob.toString("base64")}`;
    await expectAppError(() => verifySshCertificate(swapped, [ca.publicKey], T0), "ACCESS_DENIED", 'SSH certificate "evil" has an invalid signature');
  });
});

describe("signSshCertificate() refuses unsafe input", () => {
  const ca = generateKeyPair("ed25519");
  const user = generateKeyPair("ed25519").publicKey;
  const base = { caKey: ca.privateKey, publicKey: user, certType: "host" as const, keyId: "k", principals: ["h"], validAfter: T0, validBefore: T1 };

  test.each([
    ["no principals (valid for any host)", { principals: [] }, "Invalid SSH certificate principals: at least one is required"],
    ["an empty principal", { principals: [""] }, 'Invalid SSH certificate principal ""'],
    ["a key id with a newline", { keyId: "a\nb" }, 'Invalid SSH certificate key id "a\\nb": control characters are not allowed'],
    ["validBefore not after validAfter", { validBefore: T0 }, "Invalid SSH certificate validity: validBefore is not after validAfter"],
    ["a short nonce", { nonce: new Uint8Array(8) }, "Invalid SSH certificate nonce: expected at least 16 bytes"],
    ["a serial beyond 64 bits", { serial: 1n << 64n }, 'Invalid SSH certificate serial "18446744073709551616": expected an unsigned 64-bit integer'],
    ["a public CA key", { caKey: ca.publicKey }, "Cannot sign an SSH certificate: the CA key is not a private key"],
  ] as [string, Record<string, unknown>, string][])("%s", async (_name, change, message) => {
    await expectAppError(() => signSshCertificate({ ...base, ...change } as never), "BAD_PARAMETER", message);
  });

  test("an RSA CA key", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
    await expectAppError(() => signSshCertificate({ ...base, caKey: rsa }), "BAD_PARAMETER", 'Unsupported key type "rsa" in SSH CA key: use Ed25519 or ECDSA P-256');
  });
});

describe("parseSshCertificate() refuses malformed certificates", () => {
  const ca = generateKeyPair("ed25519");
  const line = sampleSshCertificate(ca.privateKey, { extensions: { "permit-pty": "" } });

  test("extensions out of order, which OpenSSH rejects", async () => {
    // swap the names of two extensions in place: same lengths, wrong order
    const signed = sampleSshCertificate(ca.privateKey, { extensions: { "aaa-x": "", "bbb-x": "" } });
    const blob = Buffer.from(blobOf(signed), "base64");
    const a = blob.indexOf(Buffer.from("aaa-x"));
    const b = blob.indexOf(Buffer.from("bbb-x"));
    blob.write("bbb-x", a, "latin1");
    blob.write("aaa-x", b, "latin1");
    await expectAppError(() => parseSshCertificate(`ssh-ed25519-cert-v01@openssh.com ${blob.toString("base64")}`), "BAD_PARAMETER", 'Cannot parse SSH certificate extension: "aaa-x" is out of order or repeated');
  });

  test("a plain public key, a mismatched type name, trailing bytes, junk", async () => {
    await expectAppError(() => parseSshCertificate(formatSshPublicKey(ca.publicKey)), "BAD_PARAMETER", /^Cannot parse SSH certificate: expected one line/);
    await expectAppError(() => parseSshCertificate(line.replace(/^ssh-ed25519-cert/, "ecdsa-sha2-nistp256-cert")), "BAD_PARAMETER", /the line says "ecdsa-sha2-nistp256-cert-v01@openssh.com" but the blob holds "ssh-ed25519-cert-v01@openssh.com"/);
    const longer = Buffer.concat([Buffer.from(blobOf(line), "base64"), Buffer.from([0])]).toString("base64");
    await expectAppError(() => parseSshCertificate(`ssh-ed25519-cert-v01@openssh.com ${longer}`), "BAD_PARAMETER", "Cannot parse SSH certificate: unexpected data after the signature");
    await expectAppError(() => parseSshCertificate("ssh-ed25519-cert-v01@openssh.com AAAA"), "BAD_PARAMETER", "Cannot parse SSH certificate: key type is truncated");
  });

  test("keeps the comment and decodes a '__proto__' extension as a plain field", () => {
    const signed = sampleSshCertificate(ca.privateKey, { keyId: "key id with spaces", extensions: Object.fromEntries([["__proto__", "x"]]) });
    const p = parseSshCertificate(signed);
    expect(p.comment).toBe("key id with spaces");
    expect(Object.keys(p.extensions)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(p.extensions)).toBe(Object.prototype);
  });
});

describe("knownHostsCertAuthorityLine()", () => {
  test("writes a line ssh-keygen -F finds for a matching host", () => {
    using dir = new TempDir();
    const ca: KeyObject = generateKeyPair("ed25519").publicKey;
    const line = knownHostsCertAuthorityLine(ca, "*.example.com,10.0.0.*", "machine-id host CA");
    expect(line).toBe(`@cert-authority *.example.com,10.0.0.* ${formatSshPublicKey(ca)} machine-id host CA`);
    const found = run(["ssh-keygen", "-F", "node1.example.com", "-f", dir.write("known_hosts", `${line}\n`)]).stdout;
    expect(found).toContain(formatSshPublicKey(ca));
  });

  test("refuses patterns that could inject another entry", async () => {
    const ca = generateKeyPair("ed25519").publicKey;
    for (const bad of ["", "a b", "a\nssh-ed25519 AAAA", "@revoked", "#x"]) {
      await expectAppError(() => knownHostsCertAuthorityLine(ca, bad), "BAD_PARAMETER", /^Invalid known_hosts host pattern/);
    }
  });
});
