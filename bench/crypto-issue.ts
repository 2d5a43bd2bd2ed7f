/**
 * Crypto hot paths, one at a time on one core: X.509 client-certificate issuance (the
 * work of every join and renewal), its verification, SSH user-certificate signing, and
 * the auth service's issueCerts as a renewal calls it (request keys parsed from text,
 * then both certificates).
 *
 *   bun bench/crypto-issue.ts [--seconds 2] [--runs 3]
 *
 * `--runs n` measures each row n times and prints the median. The last rows time
 * node:crypto's signature alone on messages of the same size: what no encoder work can go below.
 * `--library` adds the same issuance through @peculiar/x509, for the comparison that
 * decided src/crypto/x509.ts to encode DER itself.
 */

import { sign, verify } from "node:crypto";
import { parseArgs } from "node:util";
import type { Authorities, Authority } from "../src/auth/authorities.ts";
import { issueCerts, requestKeys } from "../src/auth/issuer.ts";
import {
  createCA,
  formatSshPublicKey,
  generateKeyPair,
  issueCertificate,
  publicKeyToPem,
  signSshCertificate,
  verifyCertificate,
  type CertIdentity,
} from "../src/crypto/index.ts";
import { pemDecodeOne } from "../src/lib/pem.ts";

const { values: flags } = parseArgs({
  options: {
    seconds: { type: "string", default: "2" },
    runs: { type: "string", default: "1" },
    library: { type: "boolean", default: false },
  },
});
const seconds = Number(flags.seconds);
const runs = Math.max(1, Number(flags.runs));

/**
 * Runs `op` back to back for `seconds` after a warm-up, `runs` times; returns the median
 * operations per second. The warm-up lasts at least a second: with less, whichever row
 * came first measured up to half again slower than when run later.
 */
async function rate(op: () => unknown): Promise<number> {
  const warm = performance.now() + 1000;
  for (let i = 0; i < 300 || performance.now() < warm; i++) await op();
  const rates: number[] = [];
  for (let run = 0; run < runs; run++) {
    let n = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    while (performance.now() < end) {
      for (let i = 0; i < 50; i++) await op();
      n += 50;
    }
    rates.push(n / ((performance.now() - start) / 1000));
  }
  return rates.sort((a, b) => a - b)[Math.floor(rates.length / 2)]!;
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
const leafDer = pemDecodeOne(leaf, ["CERTIFICATE"]).der;
const sshCa = generateKeyPair("ed25519");
const sshSubject = generateKeyPair("ed25519").publicKey;

// issueCerts as the auth service runs it: a user and a host authority, and a renewal's
// key request (P-256 keys as the agent sends them) parsed afresh each time
const authority = async (type: "user" | "host"): Promise<Authority> => {
  const tls = generateKeyPair("ecdsa-p256");
  const ssh = generateKeyPair("ed25519");
  const name = `example.teleport.sh ${type} CA`;
  return {
    type,
    tlsCertPem: await createCA({ commonName: name, organization: "example.teleport.sh", keyPair: tls, notBefore: now, notAfter: later }),
    tlsKey: tls.privateKey,
    sshKey: ssh,
    sshPublicLine: formatSshPublicKey(ssh.publicKey, name),
  };
};
const user = await authority("user");
const host = await authority("host");
const authorities: Authorities = { cluster: "example.teleport.sh", user, host, jwt: generateKeyPair("ed25519"), caPin: "" };
const requestKey = generateKeyPair("ecdsa-p256").publicKey;
const keyRequest = { public_tls_key: publicKeyToPem(requestKey), public_ssh_key: formatSshPublicKey(requestKey) };
const renewalIssue = () => {
  const keys = requestKeys(keyRequest);
  return issueCerts(authorities, { identity, publicTlsKey: keys.tls, publicSshKey: keys.ssh, notAfter: later, now });
};

const rows: [string, number][] = [
  ["X.509 issue (P-256 CA, identity)", await rate(issue)],
  ["X.509 verify (chain + identity)", await rate(() => verifyCertificate(leaf, [caPem], now))],
  ["X.509 verify from DER (as the service does)", await rate(() => verifyCertificate(leafDer, [caPem], now))],
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
  ["issueCerts (request keys + X.509 + SSH)", await rate(renewalIssue)],
];

// What node:crypto alone costs for the same messages: the floor under the rows above
const tbs = leafDer.subarray(4, leafDer.length - 80);
const leafSignature = sign("sha256", tbs, ca.privateKey);
const sshMessage = tbs.subarray(0, 300);
rows.push(
  ["floor: P-256 sign (X.509 issue)", await rate(() => sign("sha256", tbs, ca.privateKey))],
  ["floor: P-256 verify (X.509 verify)", await rate(() => verify("sha256", tbs, ca.publicKey, leafSignature))],
  ["floor: Ed25519 sign (SSH certificate)", await rate(() => sign(null, sshMessage, sshCa.privateKey))],
);

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
