/**
 * Crypto hot paths, one at a time on one core: X.509 client-certificate issuance (the
 * work of every join and renewal), its verification, and SSH user-certificate signing.
 *
 *   bun bench/crypto-issue.ts [--seconds 2]
 *
 * `--library` adds the same issuance through @peculiar/x509, for the comparison that
 * decided src/crypto/x509.ts to encode DER itself.
 */

import { parseArgs } from "node:util";
import {
  createCA,
  generateKeyPair,
  issueCertificate,
  signSshCertificate,
  verifyCertificate,
  type CertIdentity,
} from "../src/crypto/index.ts";

const { values: flags } = parseArgs({
  options: { seconds: { type: "string", default: "2" }, library: { type: "boolean", default: false } },
});
const seconds = Number(flags.seconds);

/** Runs `op` back to back for `seconds` after a warm-up; returns operations per second. */
async function rate(op: () => unknown): Promise<number> {
  for (let i = 0; i < 300; i++) await op();
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) await op();
    n += 50;
  }
  return n / ((performance.now() - start) / 1000);
}

const now = new Date();
const later = new Date(+now + 3600_000);
const identity: CertIdentity = {
  cluster: "example.teleport.sh",
  username: "bot-example",
  kind: "bot",
  botName: "example",
  botInstanceId: "0b8c1c6e-7d1b-4c2f-9a55-2b7f8b1a9e01",
  generation: 12,
  renewable: true,
  roles: ["bot-example", "machine-id-kube-role"],
  logins: ["ubuntu"],
  joinMethod: "bound_keypair",
};
const ca = generateKeyPair("ecdsa-p256");
const caPem = await createCA({ commonName: "user CA", organization: "example.teleport.sh", keyPair: ca, notBefore: now, notAfter: later });
const subject = generateKeyPair("ecdsa-p256").publicKey;
const issue = () =>
  issueCertificate({
    caCertPem: caPem,
    caKey: ca.privateKey,
    publicKey: subject,
    commonName: "bot-example",
    organization: ["example.teleport.sh"],
    uris: ["machine-id://example.teleport.sh/bot/example"],
    notBefore: now,
    notAfter: later,
    usage: "client",
    identity,
  });
const leaf = await issue();
const sshCa = generateKeyPair("ed25519");
const sshSubject = generateKeyPair("ed25519").publicKey;

const rows: [string, number][] = [
  ["X.509 issue (P-256 CA, identity)", await rate(issue)],
  ["X.509 verify (chain + identity)", await rate(() => verifyCertificate(leaf, [caPem], now))],
  [
    "SSH user certificate (Ed25519 CA)",
    await rate(() =>
      signSshCertificate({
        caKey: sshCa.privateKey,
        publicKey: sshSubject,
        certType: "user",
        keyId: "bot-example",
        principals: ["ubuntu"],
        validAfter: now,
        validBefore: later,
      }),
    ),
  ],
];

if (flags.library) {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  const { webcrypto, createHash } = await import("node:crypto");
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  const signingKey = await webcrypto.subtle.importKey("pkcs8", ca.privateKey.export({ type: "pkcs8", format: "der" }), { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const issuer = new x509.X509Certificate(caPem).subjectName;
  const spki = subject.export({ type: "spki", format: "der" });
  const libraryIssue = () =>
    x509.X509CertificateGenerator.create({
      subject: [{ O: ["example.teleport.sh"] }, { CN: ["bot-example"] }],
      issuer,
      publicKey: spki,
      signingKey,
      notBefore: now,
      notAfter: later,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectKeyIdentifierExtension(createHash("sha1").update(spki.subarray(-65)).digest("hex")),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: "machine-id://example.teleport.sh/bot/example" }]),
        new x509.Extension("1.3.9999.77.1", false, new Uint8Array(Buffer.from(JSON.stringify(identity)))),
      ],
    });
  rows.push(["X.509 issue via @peculiar/x509 (comparison)", await rate(libraryIssue)]);
}

for (const [name, perSecond] of rows) {
  console.log(`${name.padEnd(46)} ${Math.round(perSecond).toString().padStart(8)}/s  ${(1e6 / perSecond).toFixed(1).padStart(8)} µs`);
}
