// X.509 issuance, parsing, verification and pins; openssl and @peculiar/x509 read what we write.

import "reflect-metadata";
import { describe, expect, test } from "bun:test";
import * as x509 from "@peculiar/x509";
import { createHash, createPrivateKey, webcrypto } from "node:crypto";
import { pemEncode } from "../../src/lib/pem.ts";
import {
  caPin,
  certChainPem,
  createCA,
  decodeIdentity,
  encodeIdentity,
  generateKeyPair,
  IDENTITY_OID,
  issueCertificate,
  matchesPin,
  parseCertificate,
  parsePin,
  privateKeyToPem,
  splitCertificatesPem,
  verifyCertificate,
  type CertIdentity,
  type KeyAlgorithm,
  type KeyPair,
} from "../../src/crypto/index.ts";
import { expectAppError, run, TempDir } from "./_tools.ts";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const T0 = new Date(Date.UTC(2030, 0, 1));
const DAY = 86_400_000;
const at = (ms: number) => new Date(+T0 + ms);
const epoch = (d: Date) => String(Math.floor(+d / 1000));

/** A DER UTF8String holding `value` as JSON (short or one/two-byte long-form length). */
function jsonUtf8String(value: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(value));
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return new Uint8Array([0x0c, ...len, ...body]);
}

const IDENTITY: CertIdentity = {
  cluster: "example.teleport.sh",
  username: "bot-example",
  kind: "bot",
  botName: "example",
  botInstanceId: "0b8c1c6e-7d1b-4c2f-9a55-2b7f8b1a9e01",
  generation: 3,
  renewable: true,
  roles: ["bot-example", "machine-id-kube-role"],
  logins: ["ubuntu"],
  kubernetesUsers: ["bot"],
  kubernetesGroups: ["system:masters"],
  kubernetesCluster: "example-k8s-cluster",
  joinMethod: "bound_keypair",
  tokenName: "example-token",
};

async function makeCA(alg: KeyAlgorithm = "ecdsa-p256", name = "example user CA", from = T0, to = at(365 * DAY)) {
  const keyPair = generateKeyPair(alg);
  const pem = await createCA({ commonName: name, organization: "example.teleport.sh", keyPair, notBefore: from, notAfter: to });
  return { keyPair, pem };
}

type LeafOptions = Omit<Parameters<typeof issueCertificate>[0], "caCertPem" | "caKey" | "publicKey">;

/** A leaf signed by `ca` for a fresh key, with exactly the fields `opts` gives. */
async function issueLeaf(ca: { keyPair: KeyPair; pem: string }, opts: LeafOptions) {
  const leafKey = generateKeyPair("ecdsa-p256");
  const pem = await issueCertificate({ caCertPem: ca.pem, caKey: ca.keyPair.privateKey, publicKey: leafKey.publicKey, ...opts });
  return { pem, leafKey };
}

/** A bot's client leaf signed by `ca`, identity included; `extra` overrides the defaults. */
function issue(ca: { keyPair: KeyPair; pem: string }, extra: Partial<LeafOptions> = {}) {
  return issueLeaf(ca, {
    commonName: "bot-example",
    organization: ["example.teleport.sh"],
    uris: ["machine-id://example.teleport.sh/bot/example"],
    notBefore: T0,
    notAfter: at(DAY),
    usage: "client",
    identity: IDENTITY,
    ...extra,
  });
}

function openssl(dir: TempDir, args: string[], allowFailure = false) {
  return run(["openssl", ...args], { allowFailure });
}

describe("createCA()", () => {
  test.each(["ecdsa-p256", "ed25519"] as const)("a %s CA has the extensions a CA needs and verifies itself", async (alg) => {
    using dir = new TempDir();
    const ca = await makeCA(alg);
    dir.write("ca.pem", ca.pem);
    const text = openssl(dir, ["x509", "-in", dir.file("ca.pem"), "-noout", "-text"]).stdout;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign/);
    expect(text).toContain("X509v3 Subject Key Identifier");
    expect(text).toContain("Subject: O = example.teleport.sh, CN = example user CA");
    expect(openssl(dir, ["verify", "-attime", epoch(at(DAY)), "-CAfile", dir.file("ca.pem"), dir.file("ca.pem")]).stdout).toContain("OK");
    const p = parseCertificate(ca.pem);
    expect(p.isCA).toBe(true);
    expect(p.subjectCommonName).toBe("example user CA");
    expect(p.issuerCommonName).toBe("example user CA");
    expect(p.notBefore).toEqual(T0);
    expect(p.publicKey.equals(ca.keyPair.publicKey)).toBe(true);
  });

  test("uses GeneralizedTime from 2050 on, as RFC 5280 requires", async () => {
    using dir = new TempDir();
    const until = new Date(Date.UTC(2050, 0, 1, 0, 0, 1));
    const ca = await makeCA("ecdsa-p256", "long CA", T0, until);
    const der = parseCertificate(ca.pem).der;
    expect(Buffer.from(der).includes(Buffer.from("20500101000001Z"))).toBe(true); // GeneralizedTime
    expect(Buffer.from(der).includes(Buffer.from("300101000000Z"))).toBe(true); // UTCTime for 2030
    expect(parseCertificate(ca.pem).notAfter).toEqual(until);
    dir.write("ca.pem", ca.pem);
    expect(openssl(dir, ["x509", "-in", dir.file("ca.pem"), "-noout", "-enddate"]).stdout.trim()).toBe("notAfter=Jan  1 00:00:01 2050 GMT");
  });

  test("refuses a key pair whose halves differ and an empty name", async () => {
    const a = generateKeyPair("ecdsa-p256");
    const b = generateKeyPair("ecdsa-p256");
    await expectAppError(
      () => createCA({ commonName: "x", keyPair: { ...a, publicKey: b.publicKey }, notBefore: T0, notAfter: at(DAY) }),
      "BAD_PARAMETER",
      "Cannot create a CA: the key pair's public key does not match its private key",
    );
    await expectAppError(() => createCA({ commonName: "", keyPair: a, notBefore: T0, notAfter: at(DAY) }), "BAD_PARAMETER", "Invalid certificate subject: the common name is empty");
    await expectAppError(() => createCA({ commonName: "x", keyPair: a, notBefore: T0, notAfter: T0 }), "BAD_PARAMETER", /notAfter 2030-01-01T00:00:00Z is not after notBefore/);
  });
});

describe("issueCertificate() checked by openssl", () => {
  test.each(["ecdsa-p256", "ed25519"] as const)("server and client leaves from a %s CA pass openssl verify with the right purpose", async (alg) => {
    using dir = new TempDir();
    const ca = await makeCA(alg);
    dir.write("ca.pem", ca.pem);
    const server = await issueLeaf(ca, {
      commonName: "auth.example.com",
      organization: ["example.teleport.sh"],
      notBefore: T0,
      notAfter: at(DAY),
      usage: "server",
      dnsNames: ["auth.example.com", "localhost"],
      ipAddresses: ["127.0.0.1", "::1", "2001:db8::8a2e:370:7334"],
      uris: [],
    });
    const client = await issue(ca);
    dir.write("server.pem", server.pem);
    dir.write("client.pem", client.pem);
    const when = epoch(at(DAY / 2));
    expect(openssl(dir, ["verify", "-attime", when, "-purpose", "sslserver", "-CAfile", dir.file("ca.pem"), dir.file("server.pem")]).stdout).toContain("server.pem: OK");
    expect(openssl(dir, ["verify", "-attime", when, "-purpose", "sslclient", "-CAfile", dir.file("ca.pem"), dir.file("client.pem")]).stdout).toContain("client.pem: OK");
    // the EKU is exclusive: a client certificate is no server certificate
    expect(openssl(dir, ["verify", "-attime", when, "-purpose", "sslserver", "-CAfile", dir.file("ca.pem"), dir.file("client.pem")], true).code).not.toBe(0);

    const text = openssl(dir, ["x509", "-in", dir.file("server.pem"), "-noout", "-text"]).stdout;
    expect(text).toContain("DNS:auth.example.com, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:0:8A2E:370:7334");
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);
    expect(text).toContain("X509v3 Authority Key Identifier");
    const clientText = openssl(dir, ["x509", "-in", dir.file("client.pem"), "-noout", "-text"]).stdout;
    expect(clientText).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication/);
    expect(clientText).toContain("URI:machine-id://example.teleport.sh/bot/example");
    expect(clientText).toContain("Subject: O = example.teleport.sh, CN = bot-example");
  });

  test("the AKI of a leaf is the SKI of its CA, and serials are random 128-bit by default", async () => {
    const ca = await makeCA();
    const a = parseCertificate((await issue(ca)).pem);
    const b = parseCertificate((await issue(ca)).pem);
    expect(a.authorityKeyId).toBe(parseCertificate(ca.pem).subjectKeyId!);
    expect(a.subjectKeyId).toMatch(/^[0-9a-f]{40}$/);
    expect(a.serialNumber).not.toBe(b.serialNumber);
    expect(a.serialNumber.length).toBeGreaterThan(24);
    expect(a.serialNumber.length).toBeLessThanOrEqual(32);
  });

  test("keeps a given serial, including one with the high bit set", async () => {
    using dir = new TempDir();
    const ca = await makeCA();
    const { pem } = await issue(ca, { serialNumber: "ff01" });
    expect(parseCertificate(pem).serialNumber).toBe("ff01");
    dir.write("leaf.pem", pem);
    expect(openssl(dir, ["x509", "-in", dir.file("leaf.pem"), "-noout", "-serial"]).stdout.trim()).toBe("serial=FF01");
    await expectAppError(() => issue(ca, { serialNumber: "00" }), "BAD_PARAMETER", 'Invalid serial number "00": expected 1 to 40 hex digits, not all zero');
  });

  test("@peculiar/x509 reads the same fields, identity extension included", async () => {
    const ca = await makeCA();
    const { pem, leafKey } = await issue(ca, { dnsNames: ["a.example.com"], ipAddresses: ["10.1.2.3"] });
    const theirs = new x509.X509Certificate(pem);
    expect(theirs.subject).toBe("O=example.teleport.sh, CN=bot-example");
    expect(theirs.issuer).toBe("O=example.teleport.sh, CN=example user CA");
    expect(theirs.notAfter).toEqual(at(DAY));
    const san = theirs.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.names.items.map((n) => `${n.type}:${n.value}`)).toEqual(["dns:a.example.com", "ip:10.1.2.3", "url:machine-id://example.teleport.sh/bot/example"]);
    const ext = theirs.getExtension(IDENTITY_OID)!;
    expect(ext.critical).toBe(false);
    expect(decodeIdentity(new Uint8Array(ext.value))).toEqual(IDENTITY);
    expect(await theirs.verify({ publicKey: new x509.X509Certificate(ca.pem).publicKey, signatureOnly: true })).toBe(true);
    expect(Buffer.from(theirs.publicKey.rawData)).toEqual(Buffer.from(parseCertificate(pem).spkiDer));
    expect(parseCertificate(pem).publicKey.equals(leafKey.publicKey)).toBe(true);
  });

  test("refuses a CA key that does not match the CA certificate, and a non-CA issuer", async () => {
    const ca = await makeCA();
    const stranger = generateKeyPair("ecdsa-p256");
    await expectAppError(() => issue({ pem: ca.pem, keyPair: stranger }), "BAD_PARAMETER", 'Cannot issue a certificate: the CA key does not match CA certificate "example user CA"');
    const leaf = await issue(ca);
    await expectAppError(() => issue({ pem: leaf.pem, keyPair: leaf.leafKey }), "BAD_PARAMETER", 'Cannot issue from "bot-example": it is not a CA certificate');
  });

  test("refuses to issue from a CA whose key type machine-id does not use", async () => {
    using dir = new TempDir();
    openssl(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("k.pem"), "-subj", "/CN=RSA CA", "-days", "2", "-out", dir.file("c.pem")]);
    const rsaKey = createPrivateKey(dir.read("k.pem"));
    await expectAppError(
      () => issueCertificate({ caCertPem: dir.read("c.pem"), caKey: rsaKey, publicKey: generateKeyPair("ed25519").publicKey, commonName: "x", notBefore: T0, notAfter: at(DAY), usage: "client" }),
      "BAD_PARAMETER",
      'Unsupported key type "rsa" in CA key: use Ed25519 or ECDSA P-256',
    );
  });

  test.each([
    [{ dnsNames: ["bad name"] }, 'Invalid DNS name "bad name" for a certificate'],
    [{ ipAddresses: ["300.1.1.1"] }, 'Invalid IP address "300.1.1.1" for a certificate'],
    [{ ipAddresses: ["fe80::1%eth0"] }, 'Invalid IP address "fe80::1%eth0" for a certificate'],
    [{ uris: ["not a uri"] }, 'Invalid URI "not a uri" for a certificate: it must be an absolute ASCII URI'],
    [{ usage: "both" }, 'Invalid certificate usage "both": expected "server" or "client"'],
    [{ identity: { ...IDENTITY, kind: "root" } }, /^Invalid certificate identity to encode: kind: /],
  ] as [Record<string, unknown>, string | RegExp][])("refuses %j", async (change, message) => {
    const ca = await makeCA();
    await expectAppError(() => issue(ca, change), "BAD_PARAMETER", message);
  });
});

describe("verifyCertificate()", () => {
  test("returns the parsed leaf, identity included, inside the validity window", async () => {
    const ca = await makeCA();
    const other = await makeCA("ed25519", "other CA");
    const { pem } = await issue(ca);
    const p = await verifyCertificate(pem, [other.pem, ca.pem], at(DAY / 2), { usage: "client" });
    expect(p.identity).toEqual(IDENTITY);
    expect(p.subjectCommonName).toBe("bot-example");
    expect(p.subjectOrganizations).toEqual(["example.teleport.sh"]);
    expect(p.extKeyUsages).toEqual(["clientAuth"]);
    expect(p.uris).toEqual(["machine-id://example.teleport.sh/bot/example"]);
    // both ends of the window are inclusive (RFC 5280)
    await verifyCertificate(pem, [ca.pem], T0);
    await verifyCertificate(new Uint8Array(p.der), [ca.pem], at(DAY));
  });

  test("refuses an expired leaf with EXPIRED and the expiry time", async () => {
    const ca = await makeCA();
    const { pem } = await issue(ca);
    await expectAppError(() => verifyCertificate(pem, [ca.pem], at(DAY + 1000)), "EXPIRED", 'Certificate "bot-example" expired at 2030-01-02T00:00:00Z');
  });

  test("refuses a leaf that is not yet valid", async () => {
    const ca = await makeCA();
    const { pem } = await issue(ca, { notBefore: at(DAY), notAfter: at(2 * DAY) });
    await expectAppError(() => verifyCertificate(pem, [ca.pem], at(DAY - 1000)), "ACCESS_DENIED", 'Certificate "bot-example" is not valid before 2030-01-02T00:00:00Z');
  });

  test("refuses a leaf from another CA, even one with the same name", async () => {
    const ca = await makeCA();
    const twin = await makeCA("ecdsa-p256", "example user CA");
    const { pem } = await issue(ca);
    await expectAppError(() => verifyCertificate(pem, [twin.pem], at(1000)), "ACCESS_DENIED", 'Certificate "bot-example" is not signed by a trusted certificate authority');
    await expectAppError(() => verifyCertificate(pem, [], at(1000)), "ACCESS_DENIED");
  });

  test("refuses a CA certificate presented as a leaf", async () => {
    const ca = await makeCA();
    await expectAppError(() => verifyCertificate(ca.pem, [ca.pem], at(1000)), "ACCESS_DENIED", 'Certificate "example user CA" is a CA certificate, not a leaf certificate');
  });

  test("refuses a leaf when its CA has expired", async () => {
    const ca = await makeCA("ecdsa-p256", "short CA", T0, at(DAY));
    const { pem } = await issue(ca, { notAfter: at(3 * DAY) });
    await expectAppError(() => verifyCertificate(pem, [ca.pem], at(2 * DAY)), "EXPIRED", 'The certificate authority "short CA" expired at 2030-01-02T00:00:00Z');
  });

  test("refuses the wrong usage", async () => {
    const ca = await makeCA();
    const { pem } = await issue(ca);
    await expectAppError(() => verifyCertificate(pem, [ca.pem], at(1000), { usage: "server" }), "ACCESS_DENIED", 'Certificate "bot-example" is not valid for serverAuth');
  });

  test("refuses a leaf whose signed part was altered", async () => {
    const ca = await makeCA();
    const { pem } = await issue(ca);
    const der = Buffer.from(parseCertificate(pem).der);
    // turn the username in the identity JSON into another one of the same length
    const at_ = der.indexOf(Buffer.from('"username":"bot-example"'));
    der.write('"username":"bot-exampl3"', at_, "latin1");
    await expectAppError(() => verifyCertificate(new Uint8Array(der), [ca.pem], at(1000)), "ACCESS_DENIED", /is not signed by a trusted certificate authority/);
  });

  test("accepts a leaf openssl signed with our CA key, refuses one with an unknown critical extension", async () => {
    using dir = new TempDir();
    const now = new Date();
    const ca = await makeCA("ecdsa-p256", "example user CA", new Date(+now - DAY), new Date(+now + DAY));
    dir.write("ca.pem", ca.pem);
    dir.write("ca.key", privateKeyToPem(ca.keyPair.privateKey));
    openssl(dir, ["genpkey", "-algorithm", "ed25519", "-out", dir.file("leaf.key")]);
    openssl(dir, ["req", "-new", "-key", dir.file("leaf.key"), "-subj", "/CN=from-openssl", "-out", dir.file("leaf.csr")]);
    dir.write("ok.cnf", "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:x.example.com\n");
    dir.write("bad.cnf", "basicConstraints=critical,CA:FALSE\n1.2.3.4=critical,ASN1:NULL\n");
    for (const name of ["ok", "bad"]) {
      openssl(dir, ["x509", "-req", "-in", dir.file("leaf.csr"), "-CA", dir.file("ca.pem"), "-CAkey", dir.file("ca.key"), "-set_serial", "5", "-days", "1", "-extfile", dir.file(`${name}.cnf`), "-out", dir.file(`${name}.pem`)]);
    }
    // openssl's notBefore is the second it signed in, which may be after `now`
    const later = new Date();
    const ok = await verifyCertificate(dir.read("ok.pem"), [ca.pem], later, { usage: "client" });
    expect(ok.subjectCommonName).toBe("from-openssl");
    expect(ok.dnsNames).toEqual(["x.example.com"]);
    expect(ok.serialNumber).toBe("05");
    await expectAppError(() => verifyCertificate(dir.read("bad.pem"), [ca.pem], later), "ACCESS_DENIED", 'Certificate "from-openssl" has an unsupported critical extension "1.2.3.4"');
  });
});

describe("parseCertificate()", () => {
  test("reads an RSA CA certificate made by openssl req", () => {
    using dir = new TempDir();
    openssl(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("k.pem"), "-subj", "/O=Acme/CN=Acme Root", "-days", "2", "-out", dir.file("c.pem")]);
    const p = parseCertificate(dir.read("c.pem"));
    expect(p.subjectCommonName).toBe("Acme Root");
    expect(p.subjectOrganizations).toEqual(["Acme"]);
    expect(p.isCA).toBe(true);
    expect(p.publicKey.asymmetricKeyType).toBe("rsa");
    expect(p.identity).toBeUndefined();
  });

  test("says what is wrong with input that is not a certificate", async () => {
    await expectAppError(() => parseCertificate("hello"), "BAD_PARAMETER", 'Cannot parse certificate: no "CERTIFICATE" PEM block');
    await expectAppError(() => parseCertificate(new Uint8Array([0x30, 0x82, 0x01])), "BAD_PARAMETER", "Cannot parse certificate: Certificate is truncated");
    await expectAppError(() => parseCertificate(pemEncode("CERTIFICATE", new Uint8Array([0x30, 0x80, 0, 0]))), "BAD_PARAMETER", "Cannot parse certificate: Certificate has an indefinite length");
    const ca = await makeCA();
    const der = parseCertificate(ca.pem).der;
    await expectAppError(() => parseCertificate(new Uint8Array([...der, 0])), "BAD_PARAMETER", "Cannot parse certificate: unexpected data after the certificate");
  });
});

describe("certificate identity", () => {
  test("round-trips, dropping undefined fields and fixing the field order", () => {
    const minimal: CertIdentity = { cluster: "c", username: "admin", kind: "admin", renewable: false, roles: [], logins: [] };
    expect(decodeIdentity(encodeIdentity(minimal))).toEqual(minimal);
    expect(decodeIdentity(encodeIdentity(IDENTITY))).toEqual(IDENTITY);
    const shuffled = Object.fromEntries(Object.entries(IDENTITY).reverse()) as unknown as CertIdentity;
    expect(encodeIdentity(shuffled)).toEqual(encodeIdentity(IDENTITY));
  });

  test("ignores unknown fields so an older reader accepts a newer writer", () => {
    expect(decodeIdentity(jsonUtf8String({ ...IDENTITY, futureField: 1 }))).toEqual(IDENTITY);
  });

  test.each([
    ["not a UTF8String", new Uint8Array([0x04, 0x02, 0x7b, 0x7d]), /^Cannot parse certificate identity: identity has tag 0x4, expected 0xc$/],
    ["not JSON", new Uint8Array([0x0c, 0x01, 0x7b]), "Invalid certificate identity: it is not UTF-8 JSON"],
    ["a JSON array", jsonUtf8String([]), /^Invalid certificate identity in certificate: value: /],
    ["a wrong field type", jsonUtf8String({ ...IDENTITY, roles: "admin" }), /^Invalid certificate identity in certificate: roles: /],
    ["a negative generation", jsonUtf8String({ ...IDENTITY, generation: -1 }), /^Invalid certificate identity in certificate: generation: /],
    ["an empty cluster", jsonUtf8String({ ...IDENTITY, cluster: "" }), /^Invalid certificate identity in certificate: cluster: /],
  ] as [string, Uint8Array, RegExp | string][])("refuses %s", async (_name, value, message) => {
    await expectAppError(() => decodeIdentity(value), "BAD_PARAMETER", message);
  });
});

describe("CA pins", () => {
  test("caPin() equals openssl's SPKI SHA-256 and matchesPin() accepts it in any case", async () => {
    using dir = new TempDir();
    const ca = await makeCA();
    dir.write("ca.pem", ca.pem);
    const spki = run(["sh", "-c", `openssl x509 -in ${dir.file("ca.pem")} -pubkey -noout | openssl pkey -pubin -outform der`]).stdoutBytes;
    const expected = `sha256:${createHash("sha256").update(spki).digest("hex")}`;
    expect(caPin(ca.pem)).toBe(expected);
    expect(matchesPin(ca.pem, [expected])).toBe(true);
    expect(matchesPin(ca.pem, [caPin((await makeCA()).pem), expected.toUpperCase().replace("SHA256", "sha256")])).toBe(true);
    expect(matchesPin(ca.pem, [caPin((await makeCA()).pem)])).toBe(false);
    expect(matchesPin(ca.pem, [])).toBe(false);
  });

  test("the pin follows the key, not the certificate", async () => {
    const keyPair = generateKeyPair("ecdsa-p256");
    const a = await createCA({ commonName: "a", keyPair, notBefore: T0, notAfter: at(DAY) });
    const b = await createCA({ commonName: "b", keyPair, notBefore: T0, notAfter: at(2 * DAY) });
    expect(caPin(a)).toBe(caPin(b));
  });

  test("parsePin() normalises and refuses malformed pins, even next to a matching one", async () => {
    const ca = await makeCA();
    const pin = caPin(ca.pem);
    expect(parsePin(` ${pin.toUpperCase().replace("SHA256:", "SHA256:")}\n`).text).toBe(pin);
    expect(parsePin(pin).digest.length).toBe(32);
    // the placeholder pin of scenarios/tbot-v1.yaml has non-hex letters
    const placeholder = "sha256:abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678";
    await expectAppError(() => parsePin(placeholder), "BAD_PARAMETER", `Invalid CA pin "${placeholder}": expected "sha256:" followed by 64 hex digits`);
    await expectAppError(() => matchesPin(ca.pem, [pin, "sha1:abcd"]), "BAD_PARAMETER", 'Invalid CA pin "sha1:abcd": expected "sha256:" followed by 64 hex digits');
  });
});

describe("PEM bundles", () => {
  test("splitCertificatesPem() and certChainPem() keep order and drop other blocks", async () => {
    const ca = await makeCA();
    const { pem, leafKey } = await issue(ca);
    const bundle = certChainPem([pem, ca.pem]);
    expect(bundle).toBe(pem + ca.pem);
    expect(splitCertificatesPem(privateKeyToPem(leafKey.privateKey) + bundle)).toEqual([pem, ca.pem]);
  });
});
