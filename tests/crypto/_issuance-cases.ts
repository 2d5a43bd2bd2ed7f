/**
 * Fixed-input issuance cases for the golden test (issuance-golden.test.ts): each builds a
 * certificate from fixed keys, serials, times and names, so the bytes can be compared
 * with what the encoder produced when the fixture was recorded. Regenerate the fixture
 * only on purpose: `bun tests/crypto/_issuance-cases.ts > tests/crypto/fixtures/issuance-golden.json`.
 */

import { generateKeyPair, parsePrivateKey, privateKeyToPem, type CertIdentity, type KeyPair } from "../../src/crypto/index.ts";
import { createCA, issueCertificate, parseCertificate, parseSshCertificate, signSshCertificate } from "../../src/crypto/index.ts";

/** The keys the cases use, as PKCS#8 PEM (recorded in the fixture). */
export interface GoldenKeys {
  caP256: string;
  caEd25519: string;
  subjectP256: string;
  subjectEd25519: string;
}

/**
 * One case's output. X.509 with a P-256 CA and SSH with a P-256 CA carry random ECDSA
 * signatures, so those compare the signed part only; Ed25519 signatures are
 * deterministic, so those cases compare every byte.
 */
export interface GoldenOutput {
  name: string;
  kind: "x509" | "ssh";
  /** Whether the whole output is deterministic (Ed25519 signer). */
  deterministic: boolean;
  /** PEM certificate or SSH certificate line. */
  output: string;
}

const T0 = new Date(Date.UTC(2030, 0, 1, 0, 0, 0));
const T1 = new Date(Date.UTC(2030, 0, 2, 12, 30, 15));
const T_2050 = new Date(Date.UTC(2051, 5, 30, 23, 59, 59));
const T_1999 = new Date(Date.UTC(1999, 11, 31, 23, 59, 59));
const NONCE = new Uint8Array(32).map((_, i) => i * 7 + 1);

const FULL_IDENTITY: CertIdentity = {
  cluster: "example.teleport.sh",
  username: "bot-example",
  kind: "bot",
  botName: "example",
  botInstanceId: "0b8c1c6e-7d1b-4c2f-9a55-2b7f8b1a9e01",
  generation: 12,
  renewable: true,
  roles: ["bot-example", "machine-id-kube-role"],
  logins: ["ubuntu", "ec2-user"],
  kubernetesUsers: ["kube-user"],
  kubernetesGroups: ["system:masters", "viewers"],
  kubernetesCluster: "prod",
  joinMethod: "bound_keypair",
  tokenName: "tok-1",
};

/** Fresh keys, for recording a new fixture. */
export function newGoldenKeys(): GoldenKeys {
  const pem = (kp: KeyPair) => privateKeyToPem(kp.privateKey);
  return {
    caP256: pem(generateKeyPair("ecdsa-p256")),
    caEd25519: pem(generateKeyPair("ed25519")),
    subjectP256: pem(generateKeyPair("ecdsa-p256")),
    subjectEd25519: pem(generateKeyPair("ed25519")),
  };
}

/** Builds every case from `keys` with the current code. */
export async function goldenCases(keys: GoldenKeys): Promise<GoldenOutput[]> {
  const caP = parsePrivateKey(keys.caP256);
  const caE = parsePrivateKey(keys.caEd25519);
  const subP = parsePrivateKey(keys.subjectP256).publicKey;
  const subE = parsePrivateKey(keys.subjectEd25519).publicKey;
  const out: GoldenOutput[] = [];
  const x509 = (name: string, deterministic: boolean, output: string) => out.push({ name, kind: "x509", deterministic, output });
  const ssh = (name: string, deterministic: boolean, output: string) => out.push({ name, kind: "ssh", deterministic, output });

  const caPemP = await createCA({ commonName: "example user CA", organization: "example.teleport.sh", keyPair: caP, notBefore: T0, notAfter: T_2050, serialNumber: "0a1b2c" });
  x509("P-256 CA", false, caPemP);
  const caPemE = await createCA({ commonName: "Ed25519 CA", keyPair: caE, notBefore: T_1999, notAfter: T1, serialNumber: "ff00ff00ff00ff00ff00ff00ff00ff00" });
  x509("Ed25519 CA, no organization, 1999 UTCTime, high-bit serial", true, caPemE);

  x509(
    "P-256 CA, P-256 client leaf with identity and URI",
    false,
    await issueCertificate({
      caCertPem: caPemP,
      caKey: caP.privateKey,
      publicKey: subP,
      commonName: "bot-example",
      organization: ["example.teleport.sh"],
      uris: ["machine-id://example.teleport.sh/bot/example"],
      notBefore: T0,
      notAfter: T1,
      usage: "client",
      identity: FULL_IDENTITY,
      serialNumber: "7fffffffffffffff",
    }),
  );
  x509(
    "Ed25519 CA, Ed25519 server leaf with DNS and IP names",
    true,
    await issueCertificate({
      caCertPem: caPemE,
      caKey: caE.privateKey,
      publicKey: subE,
      commonName: "auth.machine-id",
      organization: ["example.teleport.sh", "second org"],
      dnsNames: ["auth.machine-id", "localhost", "*.example.com", "trailing.dot."],
      ipAddresses: ["127.0.0.1", "::1", "10.1.2.3", "2001:db8::8a2e:370:7334"],
      notBefore: T0,
      notAfter: T_2050,
      usage: "server",
      serialNumber: "1",
    }),
  );
  x509(
    "Ed25519 CA, P-256 admin leaf, minimal identity, long names",
    true,
    await issueCertificate({
      caCertPem: caPemE,
      caKey: caE.privateKey,
      publicKey: subP,
      commonName: "é-admin-" + "x".repeat(300),
      organization: ["ünïcødé org"],
      uris: ["machine-id://example.teleport.sh/admin/" + "y".repeat(200), "spiffe://example/ns/a"],
      notBefore: T_1999,
      notAfter: T1,
      usage: "client",
      identity: { cluster: "c", username: "admin", kind: "admin", renewable: false, roles: [], logins: [] },
      serialNumber: "00ABCDEF0123456789abcdef0123456789ABCDEF",
    }),
  );

  ssh(
    "Ed25519 CA, Ed25519 user key, default extensions",
    true,
    signSshCertificate({ caKey: caE.privateKey, publicKey: subE, certType: "user", keyId: "bot-example/0b8c", principals: ["-machine-id-internal"], validAfter: T0, validBefore: T1, serial: 0x7fedcba987654321n, nonce: NONCE }),
  );
  ssh(
    "Ed25519 CA, P-256 host key, options and extensions",
    true,
    signSshCertificate({
      caKey: caE.privateKey,
      publicKey: subP,
      certType: "host",
      keyId: "host/a.example.com",
      principals: ["a.example.com", "10.0.0.1", "ünï"],
      validAfter: T_1999,
      validBefore: T_2050,
      serial: 0n,
      criticalOptions: { "source-address": "10.0.0.0/8,192.168.0.0/16", "force-command": "/bin/true" },
      extensions: { "z-ext@example.com": "value", "permit-pty": "", "a-ext@example.com": "ü" },
      nonce: NONCE.subarray(0, 16),
    }),
  );
  ssh(
    "Ed25519 CA, user certificate with empty key id and no extensions",
    true,
    signSshCertificate({ caKey: caE.privateKey, publicKey: subE, certType: "user", keyId: "", principals: ["ubuntu", "root"], validAfter: T0, validBefore: T1, serial: (1n << 64n) - 1n, extensions: {}, nonce: NONCE }),
  );
  ssh(
    "P-256 CA, Ed25519 user key",
    false,
    signSshCertificate({ caKey: caP.privateKey, publicKey: subE, certType: "user", keyId: "bot-x", principals: ["ubuntu"], validAfter: T0, validBefore: T1, serial: 42n, nonce: NONCE }),
  );
  ssh(
    "P-256 CA, P-256 host key",
    false,
    signSshCertificate({ caKey: caP.privateKey, publicKey: subP, certType: "host", keyId: "host/x", principals: ["x"], validAfter: T0, validBefore: T1, serial: 7n, nonce: NONCE }),
  );
  return out;
}

/**
 * What the parsers read from a case's output, as plain JSON (bytes as hex, keys as SPKI
 * hex, dates as ISO text, bigints as decimal), so decoder changes can be pinned too.
 */
export function parsedSnapshot(c: GoldenOutput): unknown {
  const plain = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
    if (v instanceof Date) return v.toISOString();
    if (typeof v === "bigint") return v.toString();
    if (v && typeof v === "object" && "export" in v && "asymmetricKeyType" in v) {
      return Buffer.from((v as import("node:crypto").KeyObject).export({ type: "spki", format: "der" })).toString("hex");
    }
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  return plain(c.kind === "x509" ? parseCertificate(c.output) : parseSshCertificate(c.output));
}

if (import.meta.main) {
  const keys = newGoldenKeys();
  const cases = await goldenCases(keys);
  console.log(JSON.stringify({ keys, cases: cases.map((c) => ({ ...c, parsed: parsedSnapshot(c) })) }, null, 2));
}
