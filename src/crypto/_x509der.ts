/**
 * X.509 v3 certificate structures (RFC 5280) over the DER codec: building a
 * TBSCertificate and its extensions, and decoding a certificate into its parts.
 */

import { createHash, sign, verify, type KeyObject } from "node:crypto";
import { badParameter } from "../lib/errors.ts";
import {
  bitString,
  boolean,
  decodeString,
  decodeTime,
  decodeUnsigned,
  DerElement,
  DerReader,
  encode,
  explicit,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  readBoolean,
  sequence,
  set,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
  type Der,
  type DerNode,
} from "./_der.ts";
import { sameBytes } from "./_bytes.ts";
import { ipFromBytes, ipToBytes } from "./_ip.ts";
import type { KeyAlgorithm } from "./_keymaterial.ts";
import { IDENTITY_OID } from "./identity.ts";

/** The object identifiers this code writes or reads. */
export const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  ed25519: "1.3.101.112",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyId: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyId: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** Extensions this code understands; an unknown critical one makes a certificate unusable (RFC 5280 §4.2). */
export const HANDLED_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.subjectKeyId,
  OID.keyUsage,
  OID.subjectAltName,
  OID.basicConstraints,
  OID.authorityKeyId,
  OID.extKeyUsage,
  IDENTITY_OID,
]);

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

// ---------------------------------------------------------------- building

/** A Name of one RDN per attribute, most significant first: O=… then CN=…, all UTF8String. */
export function encodeName(commonName: string, organizations: string[] = []): DerNode {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  return sequence(...organizations.map((o) => rdn(OID.organization, o)), rdn(OID.commonName, commonName));
}

/** One Extension; `critical` is omitted when false, as DER requires for a DEFAULT. */
export function extension(id: string, critical: boolean, value: Der): DerNode {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

/** basicConstraints, critical; CA:false is the empty SEQUENCE (the DEFAULT is omitted). */
export const basicConstraints = (isCA: boolean) =>
  extension(OID.basicConstraints, true, isCA ? sequence(boolean(true)) : sequence());
/** keyUsage, critical, from KEY_USAGE bit numbers. */
export const keyUsage = (bits: number[]) => extension(OID.keyUsage, true, namedBits(bits));
/** extKeyUsage, non-critical. */
export const extKeyUsage = (oids: string[]) => extension(OID.extKeyUsage, false, sequence(...oids.map(oid)));
/** subjectKeyIdentifier. */
export const subjectKeyId = (id: Uint8Array) => extension(OID.subjectKeyId, false, octetString(id));
/** authorityKeyIdentifier with the keyIdentifier field only. */
export const authorityKeyId = (id: Uint8Array) => extension(OID.authorityKeyId, false, sequence(implicitPrimitive(0, id)));

const DNS_RE = /^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/;
const PRINTABLE_ASCII_RE = /^[\x21-\x7e]+$/;

/** The subjectAltName extension, or undefined when there are no names. Invalid names are a BAD_PARAMETER. */
export function subjectAltName(dnsNames: string[] = [], ipAddresses: string[] = [], uris: string[] = []): DerNode | undefined {
  const names: Der[] = [];
  for (const d of dnsNames) {
    if (d.length > 253 || !DNS_RE.test(d)) throw badParameter(`Invalid DNS name "${d}" for a certificate`);
    names.push(implicitPrimitive(2, Buffer.from(d, "latin1")));
  }
  for (const ip of ipAddresses) {
    const bytes = ipToBytes(ip);
    if (!bytes) throw badParameter(`Invalid IP address "${ip}" for a certificate`);
    names.push(implicitPrimitive(7, bytes));
  }
  for (const u of uris) {
    if (!PRINTABLE_ASCII_RE.test(u) || !URL.canParse(u)) throw badParameter(`Invalid URI "${u}" for a certificate: it must be an absolute ASCII URI`);
    names.push(implicitPrimitive(6, Buffer.from(u, "latin1")));
  }
  return names.length ? extension(OID.subjectAltName, false, sequence(...names)) : undefined;
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 over the subjectPublicKey bits. */
export function keyIdentifier(spki: Uint8Array): Uint8Array {
  const r = new DerReader(spki, "public key").enter(0x30, "SubjectPublicKeyInfo");
  r.skip(0x30, "algorithm");
  const bits = r.next(0x03, "subjectPublicKey");
  // skip the unused-bits byte; the digest is a fresh Buffer, a Uint8Array as it is
  return createHash("sha1").update(spki.subarray(bits.valueStart + 1, bits.end)).digest();
}

const SIGNATURE_ALGORITHMS: Record<KeyAlgorithm, Uint8Array> = {
  ed25519: encode(sequence(oid(OID.ed25519))),
  "ecdsa-p256": encode(sequence(oid(OID.ecdsaWithSha256))),
};

/** AlgorithmIdentifier for a signature by a key of `alg` (no parameters for either). */
export const signatureAlgorithm = (alg: KeyAlgorithm) => SIGNATURE_ALGORITHMS[alg];

/** Signs TBS bytes with node:crypto: Ed25519 directly, ECDSA over SHA-256 with a DER signature. */
export function signTbs(alg: KeyAlgorithm, key: KeyObject, tbs: Uint8Array): Uint8Array {
  // DER is node:crypto's default ECDSA signature encoding, so the key goes in as is
  return alg === "ed25519" ? sign(null, tbs, key) : sign("sha256", tbs, key);
}

/** Checks a signature whose AlgorithmIdentifier OID is `sigOid` against `key` of `alg`. */
export function verifyTbs(sigOid: string, alg: KeyAlgorithm, key: KeyObject, tbs: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (alg === "ed25519") return sigOid === OID.ed25519 && verify(null, tbs, key, signature);
    return sigOid === OID.ecdsaWithSha256 && verify("sha256", tbs, key, signature);
  } catch {
    return false; // malformed signature encodings are just invalid signatures
  }
}

/** The parts of a TBSCertificate; names, algorithm and SPKI arrive DER-encoded or as nodes. */
export interface TbsFields {
  serial: Uint8Array;
  signatureAlgorithm: Der;
  issuer: Der;
  notBefore: Date;
  notAfter: Date;
  subject: Der;
  spki: Der;
  extensions: Der[];
}

const VERSION_3 = encode(explicit(0, smallInteger(2)));

/** A v3 TBSCertificate from its parts, encoded into one buffer. */
export function encodeTbs(f: TbsFields): Uint8Array {
  return encode(
    sequence(
      VERSION_3,
      unsignedInteger(f.serial),
      f.signatureAlgorithm,
      f.issuer,
      sequence(time(f.notBefore), time(f.notAfter)),
      f.subject,
      f.spki,
      explicit(3, sequence(...f.extensions)),
    ),
  );
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
export const encodeCertificate = (tbs: Uint8Array, sigAlg: Der, signature: Uint8Array) =>
  encode(sequence(tbs, sigAlg, bitString(signature)));

// ---------------------------------------------------------------- decoding

/** What machine-id reads from a Name: the first CN and every O. */
export interface NameParts {
  commonName: string;
  organizations: string[];
}

/** One extension as found; `value` is the OCTET STRING content. */
export interface CertExtension {
  oid: string;
  critical: boolean;
  value: Uint8Array;
}

/** A certificate split into its parts; byte fields view the input. */
export interface DecodedCertificate {
  der: Uint8Array;
  tbs: Uint8Array;
  signatureAlgorithmOid: string;
  signature: Uint8Array;
  serial: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  issuerName: NameParts;
  subjectName: NameParts;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  extensions: CertExtension[];
}

const NAME_FIELDS = {
  issuer: { rdn: "issuer RDN", attribute: "issuer attribute", type: "issuer attribute type", value: "issuer attribute value" },
  subject: { rdn: "subject RDN", attribute: "subject attribute", type: "subject attribute type", value: "subject attribute value" },
};

function decodeName(name: DerElement, field: "issuer" | "subject"): NameParts {
  const f = NAME_FIELDS[field];
  const out: NameParts = { commonName: "", organizations: [] };
  const seq = new DerReader(name.buf, "certificate", name.start, name.end).enter(0x30, field);
  while (!seq.done) {
    const rdn = seq.enter(0x31, f.rdn);
    while (!rdn.done) {
      const atv = rdn.enter(0x30, f.attribute);
      const type = atv.oid(f.type);
      const value = decodeString(atv, atv.next(undefined, f.value), f.value);
      atv.end(f.attribute);
      if (value === undefined) continue;
      if (type === OID.commonName && !out.commonName) out.commonName = value;
      else if (type === OID.organization) out.organizations.push(value);
    }
  }
  return out;
}

/** Splits a DER certificate into its parts; any structural defect is a BAD_PARAMETER. */
export function decodeCertificate(der: Uint8Array): DecodedCertificate {
  const top = new DerReader(der, "certificate");
  const c = top.enter(0x30, "Certificate");
  top.end("the certificate");
  const tbsEl = c.next(0x30, "TBSCertificate");
  const sigAlgEl = c.next(0x30, "signatureAlgorithm");
  const sigEl = c.next(0x03, "signatureValue");
  c.end("the signature");
  if (sigEl.end === sigEl.valueStart || der[sigEl.valueStart] !== 0) c.fail("signatureValue has unused bits");

  const t = new DerReader(der, "certificate", tbsEl.valueStart, tbsEl.end);
  if (t.peekTag() === 0xa0) {
    const v = t.enter(0xa0, "version");
    const version = decodeUnsigned(v, v.next(0x02, "version").value, "version");
    v.end("version");
    if (version.length !== 1 || version[0]! > 2) t.fail("unknown certificate version");
  }
  const serial = decodeUnsigned(t, t.next(0x02, "serialNumber").value, "serialNumber");
  const tbsSigAlg = t.next(0x30, "signature");
  const issuerEl = t.next(0x30, "issuer");
  const validity = t.enter(0x30, "validity");
  const notBefore = decodeTime(validity, validity.next(undefined, "notBefore"), "notBefore");
  const notAfter = decodeTime(validity, validity.next(undefined, "notAfter"), "notAfter");
  validity.end("validity");
  const subjectEl = t.next(0x30, "subject");
  const spki = t.next(0x30, "subjectPublicKeyInfo").raw;
  if (t.peekTag() === 0x81) t.skip(0x81, "issuerUniqueID");
  if (t.peekTag() === 0x82) t.skip(0x82, "subjectUniqueID");
  const extsEl = t.optional(0xa3, "extensions");
  t.end("the TBSCertificate");

  // RFC 5280 §4.1.1.2: the outer and inner algorithm must be identical
  if (!sameBytes(tbsSigAlg.raw, sigAlgEl.raw)) t.fail("signature algorithms differ inside and outside the TBSCertificate");

  const extensions: CertExtension[] = [];
  if (extsEl) {
    const outer = new DerReader(der, "certificate", extsEl.valueStart, extsEl.end);
    const list = outer.enter(0x30, "extensions");
    outer.end("extensions");
    while (!list.done) {
      const e = list.enter(0x30, "extension");
      const id = e.oid("extension id");
      const critical = e.peekTag() === 0x01 ? readBoolean(e, "extension critical flag") : false;
      const value = e.next(0x04, "extension value").value;
      e.end(`extension "${id}"`);
      if (extensions.some((x) => x.oid === id)) t.fail(`extension "${id}" appears twice`);
      extensions.push({ oid: id, critical, value });
    }
  }

  return {
    der,
    tbs: tbsEl.raw,
    signatureAlgorithmOid: new DerReader(der, "certificate", sigAlgEl.start, sigAlgEl.end).enter(0x30, "signatureAlgorithm").oid("signatureAlgorithm OID"),
    signature: der.subarray(sigEl.valueStart + 1, sigEl.end),
    serial,
    issuer: issuerEl.raw,
    subject: subjectEl.raw,
    issuerName: decodeName(issuerEl, "issuer"),
    subjectName: decodeName(subjectEl, "subject"),
    notBefore,
    notAfter,
    spki,
    extensions,
  };
}

const extReader = (value: Uint8Array, name: string) => new DerReader(value, `${name} extension`);

/** basicConstraints → whether the certificate is a CA. */
export function decodeBasicConstraints(value: Uint8Array): boolean {
  const r = extReader(value, "basicConstraints");
  const s = r.enter(0x30, "BasicConstraints");
  r.end("BasicConstraints");
  const isCA = s.peekTag() === 0x01 ? readBoolean(s, "cA") : false;
  s.optional(0x02, "pathLenConstraint");
  s.end("BasicConstraints");
  return isCA;
}

/** subjectAltName → DNS names, IP addresses and URIs (other name forms are skipped). */
export function decodeSubjectAltName(value: Uint8Array): { dnsNames: string[]; ipAddresses: string[]; uris: string[] } {
  const out = { dnsNames: [] as string[], ipAddresses: [] as string[], uris: [] as string[] };
  const r = extReader(value, "subjectAltName");
  const s = r.enter(0x30, "GeneralNames");
  r.end("GeneralNames");
  while (!s.done) {
    const el = s.next(undefined, "GeneralName");
    const text = () => Buffer.from(el.value).toString("latin1");
    if (el.tag === 0x82) out.dnsNames.push(text());
    else if (el.tag === 0x86) out.uris.push(text());
    else if (el.tag === 0x87) {
      out.ipAddresses.push(ipFromBytes(el.value) ?? s.fail("iPAddress is neither 4 nor 16 bytes"));
    }
  }
  return out;
}

/** extKeyUsage → the purpose OIDs. */
export function decodeExtKeyUsage(value: Uint8Array): string[] {
  const r = extReader(value, "extKeyUsage");
  const s = r.enter(0x30, "ExtKeyUsageSyntax");
  r.end("ExtKeyUsageSyntax");
  const out: string[] = [];
  while (!s.done) out.push(s.oid("KeyPurposeId"));
  return out;
}

/** subjectKeyIdentifier → the key id bytes. */
export function decodeSubjectKeyId(value: Uint8Array): Uint8Array {
  const r = extReader(value, "subjectKeyIdentifier");
  const id = r.next(0x04, "KeyIdentifier").value;
  r.end("KeyIdentifier");
  return id;
}

/** authorityKeyIdentifier → the keyIdentifier field, when present. */
export function decodeAuthorityKeyId(value: Uint8Array): Uint8Array | undefined {
  const r = extReader(value, "authorityKeyIdentifier");
  const s = r.enter(0x30, "AuthorityKeyIdentifier");
  r.end("AuthorityKeyIdentifier");
  const id = s.optional(0x80, "keyIdentifier")?.value;
  s.optional(0xa1, "authorityCertIssuer");
  s.optional(0x82, "authorityCertSerialNumber");
  s.end("AuthorityKeyIdentifier");
  return id;
}
