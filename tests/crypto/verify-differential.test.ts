/**
 * Differential test of verifyCertificate(), the only client-certificate check the auth
 * service makes (TLS-level verification is off), against node's X509Certificate
 * (OpenSSL): `checkIssued`, `verify` with the CA key, CA flags, validity windows and the
 * extended key usage. Over valid certificates from our CAs, the same bytes with one byte
 * changed, and foreign certificates (openssl-made, other key types, twin-named CAs), at
 * arbitrary times: whatever ours accepts OpenSSL accepts, ours never fails with anything
 * but an AppError, and on the unmutated certificates of the CA types machine-id uses the
 * two agree both ways.
 */

import { beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import fc from "fast-check";
import { createCA, generateKeyPair, issueCertificate, parseCertificate, privateKeyToPem, verifyCertificate, type KeyAlgorithm } from "../../src/crypto/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { pemEncode } from "../../src/lib/pem.ts";
import { run, TempDir } from "./_tools.ts";

const DAY = 86_400_000;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

interface Case {
  name: string;
  der: Uint8Array;
  /** Whether ours is expected to decide exactly as OpenSSL does (see the module comment). */
  exact: boolean;
}

let T0: Date;
let trusted: { name: string; pem: string }[];
let cases: Case[];

/** Ours: accepted (true), refused with an AppError (false); anything else fails the test. */
async function ours(der: string | Uint8Array, cas: string[], now: Date): Promise<boolean> {
  try {
    await verifyCertificate(der, cas, now, { usage: "client" });
    return true;
  } catch (e) {
    if (!isAppError(e)) throw new Error(`verifyCertificate() threw a non-AppError: ${String(e)}`, { cause: e });
    return false;
  }
}

const within = (c: X509Certificate, now: Date) => +now >= +new Date(c.validFrom) && +now <= +new Date(c.validTo);

/** OpenSSL's view of the same decision. */
function openssl(der: Uint8Array, cas: string[], now: Date): boolean {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(der);
  } catch {
    return false;
  }
  if (leaf.ca) return false;
  for (const pem of cas) {
    const ca = new X509Certificate(pem);
    if (!leaf.checkIssued(ca)) continue;
    let signed = false;
    try {
      signed = leaf.verify(ca.publicKey);
    } catch {
      signed = false;
    }
    if (!signed) continue;
    const eku = leaf.keyUsage ?? [];
    return ca.ca && within(ca, now) && within(leaf, now) && (eku.length === 0 || eku.includes(CLIENT_AUTH));
  }
  return false;
}

beforeAll(async () => {
  // whole seconds: certificate times have no milliseconds
  T0 = new Date(Math.floor(Date.now() / 1000) * 1000);
  const at = (ms: number) => new Date(+T0 + ms);
  const makeCA = async (alg: KeyAlgorithm, name: string, from = at(-DAY), to = at(30 * DAY)) => {
    const keyPair = generateKeyPair(alg);
    return { keyPair, pem: await createCA({ commonName: name, keyPair, notBefore: from, notAfter: to }) };
  };
  const p256 = await makeCA("ecdsa-p256", "user CA");
  const ed = await makeCA("ed25519", "ed25519 CA");
  const twin = await makeCA("ecdsa-p256", "user CA"); // same name, other key
  const short = await makeCA("ecdsa-p256", "short CA", at(-DAY), at(DAY));
  const issue = async (ca: typeof p256, usage: "client" | "server", from: Date, to: Date) =>
    parseCertificate(
      await issueCertificate({
        caCertPem: ca.pem,
        caKey: ca.keyPair.privateKey,
        publicKey: generateKeyPair("ecdsa-p256").publicKey,
        commonName: "bot-ci",
        uris: ["machine-id://example/bot/ci"],
        notBefore: from,
        notAfter: to,
        usage,
        identity: { cluster: "example", username: "bot-ci", kind: "bot", botName: "ci", renewable: true, roles: ["r"], logins: [] },
      }),
    ).der;

  // foreign: an openssl-made RSA CA and leaf, and a leaf openssl signed with our CA key
  using dir = new TempDir();
  dir.write("ca.key", privateKeyToPem(p256.keyPair.privateKey));
  dir.write("ca.pem", p256.pem);
  const ssl = (args: string[]) => run(["openssl", ...args]);
  ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("rsa.key"), "-subj", "/CN=rsa CA", "-days", "2", "-out", dir.file("rsa.pem")]);
  ssl(["genpkey", "-algorithm", "ed25519", "-out", dir.file("leaf.key")]);
  ssl(["req", "-new", "-key", dir.file("leaf.key"), "-subj", "/CN=from-openssl", "-out", dir.file("leaf.csr")]);
  dir.write("leaf.cnf", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n");
  ssl(["x509", "-req", "-in", dir.file("leaf.csr"), "-CA", dir.file("rsa.pem"), "-CAkey", dir.file("rsa.key"), "-set_serial", "7", "-days", "1", "-extfile", dir.file("leaf.cnf"), "-out", dir.file("rsa-leaf.pem")]);
  ssl(["x509", "-req", "-in", dir.file("leaf.csr"), "-CA", dir.file("ca.pem"), "-CAkey", dir.file("ca.key"), "-set_serial", "8", "-days", "1", "-extfile", dir.file("leaf.cnf"), "-out", dir.file("ossl-leaf.pem")]);
  const rsaPem = dir.read("rsa.pem");

  trusted = [
    { name: "p256", pem: p256.pem },
    { name: "ed25519", pem: ed.pem },
    { name: "twin", pem: twin.pem },
    { name: "short", pem: short.pem },
    { name: "rsa", pem: rsaPem },
  ];
  const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
  cases = [
    { name: "p256 client leaf", der: await issue(p256, "client", at(-1000), at(DAY)), exact: true },
    { name: "p256 server leaf", der: await issue(p256, "server", at(-1000), at(DAY)), exact: true },
    { name: "p256 future leaf", der: await issue(p256, "client", at(DAY), at(2 * DAY)), exact: true },
    { name: "ed25519 client leaf", der: await issue(ed, "client", at(-DAY), at(DAY)), exact: true },
    { name: "twin client leaf", der: await issue(twin, "client", at(-1000), at(DAY)), exact: true },
    { name: "leaf outliving its CA", der: await issue(short, "client", at(-1000), at(3 * DAY)), exact: true },
    { name: "a CA as leaf", der: der(p256.pem), exact: true },
    { name: "openssl leaf of our CA", der: der(dir.read("ossl-leaf.pem")), exact: true },
    // ours does not verify RSA signatures: machine-id's CAs are P-256 or Ed25519
    { name: "openssl RSA CA leaf", der: der(dir.read("rsa-leaf.pem")), exact: false },
    { name: "openssl RSA CA", der: der(rsaPem), exact: false },
  ];
});

describe("verifyCertificate() against OpenSSL", () => {
  // every case, every subset of trusted CAs, times from two days before T0 to four after
  const input = () =>
    fc.record({
      c: fc.nat({ max: 9 }),
      cas: fc.subarray([0, 1, 2, 3, 4]),
      offset: fc.integer({ min: -2 * DAY, max: 4 * DAY }),
    });

  test("valid and foreign certificates: ours accepts exactly what OpenSSL accepts", async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(input(), async ({ c, cas, offset }) => {
        const k = cases[c]!;
        const pems = cas.map((i) => trusted[i]!.pem);
        const now = new Date(+T0 + Math.round(offset / 1000) * 1000);
        const mine = await ours(k.der, pems, now);
        const theirs = openssl(k.der, pems, now);
        if (mine) accepted++;
        if (mine) expect({ case: k.name, openssl: theirs }).toEqual({ case: k.name, openssl: true });
        if (k.exact) expect({ case: k.name, cas, now, ours: mine }).toEqual({ case: k.name, cas, now, ours: theirs });
      }),
      { numRuns: 400 },
    );
    expect(accepted).toBeGreaterThan(0); // the property saw acceptances, not only refusals
  });

  test("validity boundaries: both ends inclusive for leaf and CA, as OpenSSL has them", async () => {
    const pems = [trusted[0]!.pem, trusted[3]!.pem];
    for (const k of cases.filter((x) => x.exact)) {
      const leaf = new X509Certificate(k.der);
      for (const edge of [new Date(leaf.validFrom), new Date(leaf.validTo)]) {
        for (const d of [-1000, 0, 1000]) {
          const now = new Date(+edge + d);
          expect({ case: k.name, now, ours: await ours(k.der, pems, now) }).toEqual({ case: k.name, now, ours: openssl(k.der, pems, now) });
        }
      }
    }
  });

  test("one byte changed anywhere: ours never accepts what OpenSSL refuses, and refuses with an AppError", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 7 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (c, pos, xor) => {
        const k = cases[c]!;
        const der = new Uint8Array(k.der);
        const i = pos % der.length;
        der[i]! ^= xor;
        const pems = trusted.map((t) => t.pem);
        const mine = await ours(der, pems, T0);
        if (mine) expect({ case: k.name, byte: i, xor, openssl: openssl(der, pems, T0) }).toEqual({ case: k.name, byte: i, xor, openssl: true });
      }),
      { numRuns: 1500 },
    );
  });

  test("PEM input decides as the DER it holds", async () => {
    const k = cases[0]!;
    const pem = pemEncode("CERTIFICATE", k.der);
    expect(await ours(pem, [trusted[0]!.pem], T0)).toBe(openssl(k.der, [trusted[0]!.pem], T0));
  });
});
