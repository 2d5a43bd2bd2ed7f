/**
 * X.509 for machine-id's own CAs: self-signed CA certificates, leaf issuance, parsing,
 * verification against trusted CAs, and CA pins.
 *
 * Certificates are built and read with the DER codec in `_der.ts` and signed with
 * node:crypto rather than with @peculiar/x509: on this stack the library measured
 * ~1.8 ms per issuance and ~0.27 ms per parse (its ASN.1 layer), against a target of
 * thousands of issuances per second on one core. The tests use it as an independent
 * reader of what this module writes, next to openssl.
 */

import { createHash, createPublicKey, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import { accessDenied, badParameter, expired } from "../lib/errors.ts";
import { pemDecodeAll, pemEncode } from "../lib/pem.ts";
import { hex, sameBytes } from "./_bytes.ts";
import { encode, type Der } from "./_der.ts";
import { algorithmOf, spkiOf, type KeyAlgorithm, type KeyPair } from "./_keymaterial.ts";
import {
  authorityKeyId,
  basicConstraints,
  decodeAuthorityKeyId,
  decodeBasicConstraints,
  decodeCertificate,
  decodeExtKeyUsage,
  decodeSubjectAltName,
  decodeSubjectKeyId,
  encodeCertificate,
  encodeName,
  encodeTbs,
  extension,
  extKeyUsage,
  HANDLED_EXTENSIONS,
  KEY_USAGE,
  keyIdentifier,
  keyUsage,
  OID,
  signatureAlgorithm,
  signTbs,
  subjectAltName,
  subjectKeyId,
  verifyTbs,
  type DecodedCertificate,
} from "./_x509der.ts";
import { decodeIdentity, encodeIdentity, IDENTITY_OID, type CertIdentity } from "./identity.ts";

/** Options of {@link createCA}. */
export interface CreateCAOptions {
  commonName: string;
  organization?: string;
  keyPair: KeyPair;
  notBefore: Date;
  notAfter: Date;
  /** Hex; random 128 bits when absent. */
  serialNumber?: string;
}

/** Options of {@link issueCertificate}. */
export interface IssueCertificateOptions {
  caCertPem: string;
  /** The CA's private key; it must match `caCertPem` (checked once per key and CA). */
  caKey: KeyObject;
  /** The subject's public key (Ed25519 or ECDSA P-256). */
  publicKey: KeyObject;
  commonName: string;
  organization?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  uris?: string[];
  notBefore: Date;
  notAfter: Date;
  /** Sets the extended key usage: serverAuth or clientAuth. */
  usage: "server" | "client";
  identity?: CertIdentity;
  /** Hex; random 128 bits when absent. */
  serialNumber?: string;
}

/** A decoded certificate. Byte fields are copies the caller may keep. */
export interface ParsedCertificate {
  der: Uint8Array;
  pem: string;
  subjectCommonName: string;
  issuerCommonName: string;
  /** Lowercase hex of the serial's magnitude, no leading zero byte. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  spkiDer: Uint8Array;
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
  isCA: boolean;
  /** Present when the certificate carries the machine-id identity extension. */
  identity?: CertIdentity;
  /** Extra: the subject's O= values, in order. */
  subjectOrganizations: string[];
  /** Extra: extended key usages, "serverAuth"/"clientAuth" or the OID for others. */
  extKeyUsages: string[];
  /** Extra: subject and authority key identifiers, lowercase hex. */
  subjectKeyId?: string;
  authorityKeyId?: string;
}

/** Options of {@link verifyCertificate}. */
export interface VerifyCertificateOptions {
  /** Require this extended key usage when the leaf restricts its usages. */
  usage?: "server" | "client";
}

const when = (d: Date) => d.toISOString().replace(/\.000Z$/, "Z");
const EKU_NAMES: Record<string, string> = { [OID.serverAuth]: "serverAuth", [OID.clientAuth]: "clientAuth" };

function serialBytes(hex: string | undefined): Uint8Array {
  if (hex === undefined) return new Uint8Array(randomBytes(16));
  if (!/^[0-9a-fA-F]{1,40}$/.test(hex) || /^0+$/.test(hex)) {
    throw badParameter(`Invalid serial number "${hex}": expected 1 to 40 hex digits, not all zero`);
  }
  return new Uint8Array(Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex"));
}

function checkValidity(notBefore: Date, notAfter: Date): void {
  if (!(notBefore instanceof Date) || !(notAfter instanceof Date) || isNaN(+notBefore) || isNaN(+notAfter)) {
    throw badParameter("Invalid certificate validity: notBefore and notAfter must be valid dates");
  }
  if (+notAfter <= +notBefore) {
    throw badParameter(`Invalid certificate validity: notAfter ${when(notAfter)} is not after notBefore ${when(notBefore)}`);
  }
}

function checkCommonName(cn: string): void {
  if (typeof cn !== "string" || cn.length === 0) throw badParameter("Invalid certificate subject: the common name is empty");
}

// the parts every leaf shares, encoded once
const LEAF_BASIC_CONSTRAINTS = encode(basicConstraints(false));
const LEAF_KEY_USAGE = encode(keyUsage([KEY_USAGE.digitalSignature]));
const SERVER_EXT_KEY_USAGE = encode(extKeyUsage([OID.serverAuth]));
const CLIENT_EXT_KEY_USAGE = encode(extKeyUsage([OID.clientAuth]));

/** Self-signed CA certificate: basicConstraints CA:true and keyUsage keyCertSign+cRLSign (both critical), SKI. */
export async function createCA(opts: CreateCAOptions): Promise<string> {
  checkCommonName(opts.commonName);
  checkValidity(opts.notBefore, opts.notAfter);
  const alg = algorithmOf(opts.keyPair.privateKey, "CA key");
  const spki = spkiOf(opts.keyPair.publicKey);
  if (!sameBytes(spkiOf(opts.keyPair.privateKey), spki)) {
    throw badParameter("Cannot create a CA: the key pair's public key does not match its private key");
  }
  const name = encodeName(opts.commonName, opts.organization === undefined ? [] : [opts.organization]);
  const sigAlg = signatureAlgorithm(alg);
  const tbs = encodeTbs({
    serial: serialBytes(opts.serialNumber),
    signatureAlgorithm: sigAlg,
    issuer: name,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    subject: name,
    spki,
    extensions: [
      basicConstraints(true),
      keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
      subjectKeyId(keyIdentifier(spki)),
    ],
  });
  return pemEncode("CERTIFICATE", encodeCertificate(tbs, sigAlg, signTbs(alg, opts.keyPair.privateKey, tbs)));
}

/** A trusted or issuing CA certificate, decoded once and kept (issuance and verification are hot paths). */
interface CaEntry {
  decoded: DecodedCertificate;
  parsed: ParsedCertificate;
  /** Undefined when the CA's key type is one machine-id does not sign or verify with. */
  algorithm: KeyAlgorithm | undefined;
  /** The AuthorityKeyIdentifier extension of the leaves it signs (from its SKI), encoded. */
  authorityKeyIdExtension: Uint8Array;
  /** Private keys already checked to match this CA. */
  matchedKeys: WeakSet<KeyObject>;
}

const CA_CACHE_LIMIT = 64;
const caCache = new Map<string, CaEntry>();

function caEntry(pem: string): CaEntry {
  const hit = caCache.get(pem);
  if (hit) return hit;
  const decoded = decodeCertificate(certificateDer(pem, "CA certificate"));
  const parsed = toParsed(decoded);
  let algorithm: KeyAlgorithm | undefined;
  try {
    algorithm = algorithmOf(parsed.publicKey);
  } catch {
    algorithm = undefined;
  }
  const ski = decoded.extensions.find((e) => e.oid === OID.subjectKeyId);
  const entry: CaEntry = {
    decoded,
    parsed,
    algorithm,
    authorityKeyIdExtension: encode(authorityKeyId(ski ? decodeSubjectKeyId(ski.value) : keyIdentifier(decoded.spki))),
    matchedKeys: new WeakSet(),
  };
  // a handful of CAs exist at a time (rotation keeps two); the bound only guards misuse
  if (caCache.size >= CA_CACHE_LIMIT) caCache.delete(caCache.keys().next().value!);
  caCache.set(pem, entry);
  return entry;
}

/**
 * Issues a leaf certificate signed by the CA: random 128-bit serial unless given,
 * basicConstraints CA:false and keyUsage digitalSignature (critical), EKU serverAuth or
 * clientAuth, SKI/AKI, SANs, and the identity extension when `identity` is set.
 */
export async function issueCertificate(opts: IssueCertificateOptions): Promise<string> {
  const ca = caEntry(opts.caCertPem);
  const caName = ca.parsed.subjectCommonName;
  if (!ca.parsed.isCA) throw badParameter(`Cannot issue from "${caName}": it is not a CA certificate`);
  if (opts.caKey?.type !== "private") throw badParameter("Cannot issue a certificate: the CA key is not a private key");
  const alg = algorithmOf(opts.caKey, "CA key");
  if (!ca.matchedKeys.has(opts.caKey)) {
    // checked once per key: a mixed-up key would sign certificates nobody can verify
    if (!sameBytes(spkiOf(opts.caKey), ca.decoded.spki)) {
      throw badParameter(`Cannot issue a certificate: the CA key does not match CA certificate "${caName}"`);
    }
    ca.matchedKeys.add(opts.caKey);
  }
  checkCommonName(opts.commonName);
  checkValidity(opts.notBefore, opts.notAfter);
  if (opts.usage !== "server" && opts.usage !== "client") throw badParameter(`Invalid certificate usage "${opts.usage}": expected "server" or "client"`);
  algorithmOf(opts.publicKey, "the certificate's public key");
  const spki = spkiOf(opts.publicKey);

  const extensions: Der[] = [
    LEAF_BASIC_CONSTRAINTS,
    LEAF_KEY_USAGE,
    opts.usage === "server" ? SERVER_EXT_KEY_USAGE : CLIENT_EXT_KEY_USAGE,
    subjectKeyId(keyIdentifier(spki)),
    ca.authorityKeyIdExtension,
  ];
  const san = subjectAltName(opts.dnsNames, opts.ipAddresses, opts.uris);
  if (san) extensions.push(san);
  if (opts.identity) extensions.push(extension(IDENTITY_OID, false, encodeIdentity(opts.identity)));

  const sigAlg = signatureAlgorithm(alg);
  const tbs = encodeTbs({
    serial: serialBytes(opts.serialNumber),
    signatureAlgorithm: sigAlg,
    issuer: ca.decoded.subject,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    subject: encodeName(opts.commonName, opts.organization),
    spki,
    extensions,
  });
  return pemEncode("CERTIFICATE", encodeCertificate(tbs, sigAlg, signTbs(alg, opts.caKey, tbs)));
}

function certificateDer(input: string | Uint8Array, what: string): Uint8Array {
  if (input instanceof Uint8Array) return input;
  if (typeof input !== "string") throw badParameter(`Cannot parse ${what}: expected PEM text or DER bytes`);
  let blocks;
  try {
    blocks = pemDecodeAll(input);
  } catch (e) {
    throw badParameter(`Cannot parse ${what}: a PEM block is not valid base64`, { cause: e });
  }
  const block = blocks.find((b) => b.label === "CERTIFICATE");
  if (!block) throw badParameter(`Cannot parse ${what}: no "CERTIFICATE" PEM block`);
  return block.der;
}

function publicKeyOf(spki: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch (e) {
    throw badParameter("Cannot parse certificate: unsupported or malformed public key", { cause: e });
  }
}

function toParsed(d: DecodedCertificate): ParsedCertificate {
  const ext = (id: string) => d.extensions.find((e) => e.oid === id)?.value;
  const publicKey = publicKeyOf(d.spki);
  const bc = ext(OID.basicConstraints);
  const san = ext(OID.subjectAltName);
  const eku = ext(OID.extKeyUsage);
  const ski = ext(OID.subjectKeyId);
  const aki = ext(OID.authorityKeyId);
  const id = ext(IDENTITY_OID);
  const names = san ? decodeSubjectAltName(san) : { dnsNames: [], ipAddresses: [], uris: [] };
  const akiBytes = aki ? decodeAuthorityKeyId(aki) : undefined;
  const der = d.der.slice();
  const parsed: ParsedCertificate = {
    der,
    pem: "", // replaced by a lazy property below
    subjectCommonName: d.subjectName.commonName,
    issuerCommonName: d.issuerName.commonName,
    serialNumber: hex(d.serial),
    notBefore: d.notBefore,
    notAfter: d.notAfter,
    publicKey,
    spkiDer: d.spki.slice(),
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    uris: names.uris,
    isCA: bc ? decodeBasicConstraints(bc) : false,
    subjectOrganizations: d.subjectName.organizations,
    extKeyUsages: eku ? decodeExtKeyUsage(eku).map((o) => EKU_NAMES[o] ?? o) : [],
  };
  if (ski) parsed.subjectKeyId = hex(decodeSubjectKeyId(ski));
  if (akiBytes) parsed.authorityKeyId = hex(akiBytes);
  if (id) parsed.identity = decodeIdentity(id);
  // verification on every request never reads it, and encoding it was a tenth of a verification
  lazyProperty(parsed, "pem", () => pemEncode("CERTIFICATE", der));
  return parsed;
}

/**
 * Makes `obj[name]` computed on first read. It stays an own, enumerable and assignable
 * property, so spreading, JSON and equality see a plain value.
 */
function lazyProperty<T extends object, K extends keyof T>(obj: T, name: K, compute: () => T[K]): void {
  const settle = (value: T[K]) => {
    Object.defineProperty(obj, name, { value, enumerable: true, configurable: true, writable: true });
    return value;
  };
  Object.defineProperty(obj, name, { enumerable: true, configurable: true, get: () => settle(compute()), set: settle });
}

/**
 * Decodes a certificate (PEM text — the first CERTIFICATE block — or DER bytes). Does
 * not verify anything; garbage and malformed extensions are a BAD_PARAMETER.
 */
export function parseCertificate(pemOrDer: string | Uint8Array): ParsedCertificate {
  return toParsed(decodeCertificate(certificateDer(pemOrDer, "certificate")));
}

/**
 * Verifies `leaf` against trusted CA certificates at `now`: signed by one of them,
 * within its (and the CA's) validity window, not a CA itself, no unknown critical
 * extension, and the EKU `opts.usage` asks for. Expiry is EXPIRED (the message gives
 * the time); every other refusal is ACCESS_DENIED; unreadable input is BAD_PARAMETER.
 */
export async function verifyCertificate(
  leaf: string | Uint8Array,
  caCertPems: string[],
  now: Date,
  opts: VerifyCertificateOptions = {},
): Promise<ParsedCertificate> {
  const d = decodeCertificate(certificateDer(leaf, "certificate"));
  const label = `Certificate "${d.subjectName.commonName}"`;
  let issuer: CaEntry | undefined;
  for (const pem of caCertPems) {
    const ca = caEntry(pem);
    if (!ca.algorithm || !sameBytes(ca.decoded.subject, d.issuer)) continue;
    if (verifyTbs(d.signatureAlgorithmOid, ca.algorithm, ca.parsed.publicKey, d.tbs, d.signature)) {
      issuer = ca;
      break;
    }
  }
  if (!issuer) throw accessDenied(`${label} is not signed by a trusted certificate authority`);
  // only a verified certificate gets its identity decoded
  const parsed = toParsed(d);
  const caLabel = `certificate authority "${issuer.parsed.subjectCommonName}"`;
  if (!issuer.parsed.isCA) throw accessDenied(`${label} is signed by "${issuer.parsed.subjectCommonName}", which is not a CA certificate`);
  const unknownCritical = d.extensions.find((e) => e.critical && !HANDLED_EXTENSIONS.has(e.oid));
  if (unknownCritical) throw accessDenied(`${label} has an unsupported critical extension "${unknownCritical.oid}"`);
  if (parsed.isCA) throw accessDenied(`${label} is a CA certificate, not a leaf certificate`);
  if (+now < +issuer.parsed.notBefore) throw accessDenied(`The ${caLabel} is not valid before ${when(issuer.parsed.notBefore)}`);
  if (+now > +issuer.parsed.notAfter) throw expired(`The ${caLabel} expired at ${when(issuer.parsed.notAfter)}`);
  if (+now < +parsed.notBefore) throw accessDenied(`${label} is not valid before ${when(parsed.notBefore)}`);
  if (+now > +parsed.notAfter) throw expired(`${label} expired at ${when(parsed.notAfter)}`);
  if (opts.usage && parsed.extKeyUsages.length > 0) {
    const wanted = opts.usage === "server" ? "serverAuth" : "clientAuth";
    if (!parsed.extKeyUsages.includes(wanted)) throw accessDenied(`${label} is not valid for ${wanted}`);
  }
  return parsed;
}

/** A parsed CA pin. */
export interface CaPin {
  algorithm: "sha256";
  digest: Uint8Array;
  /** Normalised form: `sha256:` and lowercase hex. */
  text: string;
}

const PIN_RE = /^sha256:([0-9a-f]{64})$/i;

/** Parses `sha256:<64 hex digits>` (case-insensitive); anything else is a BAD_PARAMETER. */
export function parsePin(pin: string): CaPin {
  const m = typeof pin === "string" ? PIN_RE.exec(pin.trim()) : null;
  if (!m) {
    const shown = typeof pin === "string" ? pin.slice(0, 100) : typeof pin;
    throw badParameter(`Invalid CA pin "${shown}": expected "sha256:" followed by 64 hex digits`);
  }
  const hex = m[1]!.toLowerCase();
  return { algorithm: "sha256", digest: new Uint8Array(Buffer.from(hex, "hex")), text: `sha256:${hex}` };
}

const spkiDigest = (certPem: string) =>
  createHash("sha256").update(decodeCertificate(certificateDer(certPem, "CA certificate")).spki).digest();

/** `sha256:` + hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (Teleport's CA pin). */
export function caPin(certPem: string): string {
  return `sha256:${spkiDigest(certPem).toString("hex")}`;
}

/**
 * Whether the certificate matches one of `pins`. Every pin is parsed first, so a
 * malformed one is an error even when another matches; digests compare in constant time.
 */
export function matchesPin(certPem: string, pins: string[]): boolean {
  const parsed = pins.map(parsePin);
  const digest = spkiDigest(certPem);
  let match = false;
  for (const p of parsed) match = timingSafeEqual(p.digest, digest) || match;
  return match;
}

/** Every CERTIFICATE block in `text`, each re-encoded as its own PEM (other blocks ignored). */
export function splitCertificatesPem(text: string): string[] {
  let blocks;
  try {
    blocks = pemDecodeAll(text);
  } catch (e) {
    throw badParameter("Cannot read certificates: a PEM block is not valid base64", { cause: e });
  }
  return blocks.filter((b) => b.label === "CERTIFICATE").map((b) => pemEncode("CERTIFICATE", b.der));
}

/** One bundle of certificates (leaf first, then intermediates/CAs, as TLS sends them). */
export function certChainPem(pems: string[]): string {
  return pems.flatMap(splitCertificatesPem).join("");
}
