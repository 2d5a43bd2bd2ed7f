/**
 * OpenSSH certificates (PROTOCOL.certkeys): signing, parsing and verifying user and host
 * certificates for Ed25519 and ECDSA P-256 keys, plus `@cert-authority` known_hosts lines.
 *
 * Hand-written on node:crypto: the npm packages for this format (sshpk and kin) are
 * unmaintained and carry their own slow pure-JS crypto, while the format is a short
 * sequence of SSH wire fields.
 */

import { randomBytes, type KeyObject } from "node:crypto";
import { accessDenied, badParameter, expired } from "../lib/errors.ts";
import { base64DecodeStrict } from "../lib/pem.ts";
import { algorithmOf, type KeyAlgorithm } from "./_keymaterial.ts";
import {
  algorithmOfSshType,
  readSshKeyFields,
  SSH_KEY_TYPE,
  sshPublicKeyBlob,
  sshPublicKeyFromBlob,
  sshSign,
  sshVerify,
  writeSshKeyFields,
} from "./_sshkeys.ts";
import { SshReader, SshWriter } from "./_sshwire.ts";
import { formatSshPublicKey } from "./keys.ts";

const CERT_SUFFIX = "-cert-v01@openssh.com";
const CERT_TYPE = { user: 1, host: 2 } as const;
const MAX_U64 = (1n << 64n) - 1n;
/** The latest instant a Date can hold; "forever" (2^64-1 s) is shown as this. */
const MAX_DATE_MS = 8.64e15;

/** The extensions `ssh-keygen` gives user certificates by default; machine-id does the same. */
export const DEFAULT_USER_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({
  "permit-X11-forwarding": "",
  "permit-agent-forwarding": "",
  "permit-port-forwarding": "",
  "permit-pty": "",
  "permit-user-rc": "",
});

/** Options of {@link signSshCertificate}. */
export interface SignSshCertificateOptions {
  /** The CA's private key: Ed25519 (what machine-id's SSH CAs use) or ECDSA P-256. */
  caKey: KeyObject;
  /** The certified key: Ed25519 or ECDSA P-256. */
  publicKey: KeyObject;
  certType: "user" | "host";
  keyId: string;
  /** At least one: OpenSSH treats a host certificate without principals as valid for any host. */
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  /** Random 64-bit when absent, so certificates can be told apart in audit logs and revocation lists. */
  serial?: bigint;
  /** Name → value ("" for a flag). */
  criticalOptions?: Record<string, string>;
  /** Name → value ("" for a flag); user certificates default to {@link DEFAULT_USER_EXTENSIONS}. */
  extensions?: Record<string, string>;
  /** 32 random bytes when absent (at least 16 when given). */
  nonce?: Uint8Array;
}

/** Every field of an OpenSSH certificate. `validBefore` of "forever" is the latest Date. */
export interface ParsedSshCertificate {
  /** e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  certKeyType: string;
  nonce: Uint8Array;
  publicKey: KeyObject;
  keyAlgorithm: KeyAlgorithm;
  serial: bigint;
  certType: "user" | "host";
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  /** The raw validity fields, seconds since the epoch (2^64-1 means forever). */
  validAfterSeconds: bigint;
  validBeforeSeconds: bigint;
  criticalOptions: Record<string, string>;
  extensions: Record<string, string>;
  signatureKey: KeyObject;
  /** The signature's algorithm name, e.g. `ssh-ed25519`. */
  signatureAlgorithm: string;
  /** The text after the base64 blob on the line. */
  comment: string;
  /** The certificate's wire blob. */
  blob: Uint8Array;
}

/** Values from a certificate shown in messages: no control characters, bounded. */
const shown = (s: string) => s.replace(/[\x00-\x1f\x7f]/g, "?").slice(0, 200);
const CONTROL_RE = /[\x00-\x1f\x7f]/;

/**
 * Orders names by their UTF-8 bytes, as OpenSSH sorts options. UTF-16 order agrees with
 * it up to the first differing unit unless that unit is a surrogate, so only then (and
 * for a prefix ending in one) are the strings encoded and compared as bytes.
 */
function byteOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i < n) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x < 0xd800 && y < 0xd800) return x - y;
  } else if (a.length !== b.length && (n === 0 || a.charCodeAt(n - 1) < 0xd800) && (a.length > n ? a : b).charCodeAt(n) < 0xd800) {
    return a.length - b.length; // one is a prefix of the other, and not mid-pair
  }
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function toSeconds(d: Date, field: string): bigint {
  if (!(d instanceof Date) || isNaN(+d) || +d < 0) throw badParameter(`Invalid SSH certificate ${field}: expected a date after 1970`);
  return BigInt(Math.floor(+d / 1000));
}

const fromSeconds = (s: bigint) => new Date(s > BigInt(MAX_DATE_MS / 1000) ? MAX_DATE_MS : Number(s) * 1000);

/** DEFAULT_USER_EXTENSIONS encoded (it is frozen): most certificates carry exactly these. */
let defaultExtensions: Uint8Array | undefined;

/** OpenSSH requires options sorted by name, each once; values are wrapped in a string. */
function writeOptions(w: SshWriter, options: Record<string, string>, field: string): void {
  const isDefault = options === DEFAULT_USER_EXTENSIONS;
  if (isDefault && defaultExtensions) {
    w.string(defaultExtensions);
    return;
  }
  const names = Object.keys(options);
  if (names.length === 0) {
    w.u32(0);
    return;
  }
  const encoded = new SshWriter();
  for (const name of names.sort(byteOrder)) {
    const value = options[name];
    if (!name || CONTROL_RE.test(name)) throw badParameter(`Invalid SSH certificate ${field} name ${JSON.stringify(name)}`);
    if (typeof value !== "string") throw badParameter(`Invalid SSH certificate ${field} "${name}": the value must be a string`);
    encoded.string(name);
    if (value === "") encoded.u32(0);
    else encoded.nested((inner) => inner.string(value));
  }
  const bytes = encoded.finish();
  if (isDefault) defaultExtensions = bytes;
  w.string(bytes);
}

function decodeOptions(data: Uint8Array, field: string): Record<string, string> {
  const r = new SshReader(data, `SSH certificate ${field}`);
  const entries: [string, string][] = [];
  let previous: string | undefined;
  while (r.remaining > 0) {
    const name = r.text("name");
    if (previous !== undefined && byteOrder(previous, name) >= 0) r.fail(`"${shown(name)}" is out of order or repeated`);
    const data = r.string("value");
    let value = "";
    if (data.length > 0) {
      const inner = new SshReader(data, `SSH certificate ${field} "${shown(name)}"`);
      value = inner.text("value");
      inner.end("the value");
    }
    entries.push([name, value]);
    previous = name;
  }
  // fromEntries defines own properties, so a "__proto__" option cannot reach the prototype
  return Object.fromEntries(entries);
}

/**
 * Signs an OpenSSH certificate and returns its one-line form
 * `<type>-cert-v01@openssh.com AAAA… <keyId>`. Ed25519 CA signatures are deterministic,
 * so equal fields and nonce give equal bytes (the tests compare with ssh-keygen).
 */
export function signSshCertificate(opts: SignSshCertificateOptions): string {
  if (opts.caKey?.type !== "private") throw badParameter("Cannot sign an SSH certificate: the CA key is not a private key");
  algorithmOf(opts.caKey, "SSH CA key");
  const alg = algorithmOf(opts.publicKey, "the certified key");
  if (opts.certType !== "user" && opts.certType !== "host") {
    throw badParameter(`Invalid SSH certificate type "${opts.certType}": expected "user" or "host"`);
  }
  if (typeof opts.keyId !== "string" || CONTROL_RE.test(opts.keyId)) {
    throw badParameter(`Invalid SSH certificate key id ${JSON.stringify(opts.keyId)}: control characters are not allowed`);
  }
  if (!Array.isArray(opts.principals) || opts.principals.length === 0) {
    throw badParameter("Invalid SSH certificate principals: at least one is required");
  }
  for (const p of opts.principals) {
    if (typeof p !== "string" || !p || CONTROL_RE.test(p)) throw badParameter(`Invalid SSH certificate principal ${JSON.stringify(p)}`);
  }
  const validAfter = toSeconds(opts.validAfter, "validAfter");
  const validBefore = toSeconds(opts.validBefore, "validBefore");
  if (validBefore <= validAfter) throw badParameter("Invalid SSH certificate validity: validBefore is not after validAfter");
  const serial = opts.serial ?? randomBytes(8).readBigUInt64BE(0);
  if (typeof serial !== "bigint" || serial < 0n || serial > MAX_U64) throw badParameter(`Invalid SSH certificate serial "${serial}": expected an unsigned 64-bit integer`);
  const nonce = opts.nonce ?? new Uint8Array(randomBytes(32));
  if (!(nonce instanceof Uint8Array) || nonce.length < 16) throw badParameter("Invalid SSH certificate nonce: expected at least 16 bytes");
  const extensions = opts.extensions ?? (opts.certType === "user" ? DEFAULT_USER_EXTENSIONS : {});

  const certKeyType = SSH_KEY_TYPE[alg] + CERT_SUFFIX;
  const w = new SshWriter().string(certKeyType).string(nonce);
  writeSshKeyFields(w, opts.publicKey)
    .u64(serial)
    .u32(CERT_TYPE[opts.certType])
    .string(opts.keyId)
    .nested((p) => {
      for (const principal of opts.principals) p.string(principal);
    })
    .u64(validAfter)
    .u64(validBefore);
  writeOptions(w, opts.criticalOptions ?? {}, "critical option");
  writeOptions(w, extensions, "extension");
  w.u32(0) // reserved
    .string(sshPublicKeyBlob(opts.caKey));
  const signed = w.finish();
  const line = `${certKeyType} ${w.string(sshSign(opts.caKey, signed)).base64()}`;
  return opts.keyId ? `${line} ${opts.keyId}` : line;
}

interface DecodedSshCertificate {
  parsed: ParsedSshCertificate;
  signed: Uint8Array;
  signature: Uint8Array;
}

function decodeSshCertificate(line: string): DecodedSshCertificate {
  const what = "SSH certificate";
  if (typeof line !== "string") throw badParameter(`Cannot parse ${what}: expected text`);
  const trimmed = line.trim();
  const [lineType = "", b64, ...comment] = trimmed.split(/[ \t]+/);
  if (/[\r\n]/.test(trimmed) || !lineType.endsWith(CERT_SUFFIX) || b64 === undefined) {
    throw badParameter(`Cannot parse ${what}: expected one line "<type>${CERT_SUFFIX} AAAA… [comment]"`);
  }
  const blob = base64DecodeStrict(b64, what);
  const r = new SshReader(blob, what);
  const certKeyType = r.text("key type");
  if (certKeyType !== lineType) r.fail(`the line says "${shown(lineType)}" but the blob holds "${shown(certKeyType)}"`);
  const keyAlgorithm = algorithmOfSshType(certKeyType.slice(0, -CERT_SUFFIX.length), what);
  const nonce = r.string("nonce");
  const publicKey = readSshKeyFields(r, keyAlgorithm, `${what} public key`);
  const serial = r.u64("serial");
  const typeCode = r.u32("certificate type");
  const certType = typeCode === CERT_TYPE.user ? "user" : typeCode === CERT_TYPE.host ? "host" : r.fail(`unknown certificate type ${typeCode}`);
  const keyId = r.text("key id");
  const pr = new SshReader(r.string("principals"), `${what} principals`);
  const principals: string[] = [];
  while (pr.remaining > 0) principals.push(pr.text("principal"));
  const validAfterSeconds = r.u64("valid after");
  const validBeforeSeconds = r.u64("valid before");
  const criticalOptions = decodeOptions(r.string("critical options"), "critical option");
  const extensions = decodeOptions(r.string("extensions"), "extension");
  r.string("reserved");
  const signatureKeyBlob = r.string("signature key");
  const signed = blob.subarray(0, blob.length - r.remaining);
  const signature = r.string("signature");
  r.end("the signature");
  const signatureKey = sshPublicKeyFromBlob(signatureKeyBlob, `${what} signature key`);
  const signatureAlgorithm = new SshReader(signature, `${what} signature`).text("signature algorithm");
  return {
    parsed: {
      certKeyType,
      nonce: nonce.slice(),
      publicKey,
      keyAlgorithm,
      serial,
      certType,
      keyId,
      principals,
      validAfter: fromSeconds(validAfterSeconds),
      validBefore: fromSeconds(validBeforeSeconds),
      validAfterSeconds,
      validBeforeSeconds,
      criticalOptions,
      extensions,
      signatureKey,
      signatureAlgorithm,
      comment: comment.join(" "),
      blob: blob.slice(),
    },
    signed,
    signature,
  };
}

/** Decodes a certificate line without verifying it; malformed input is a BAD_PARAMETER. */
export function parseSshCertificate(line: string): ParsedSshCertificate {
  return decodeSshCertificate(line).parsed;
}

/**
 * Verifies a certificate line at `now`: signed by one of `caPublicKeys` with a valid
 * signature (else ACCESS_DENIED), valid from `validAfter` (ACCESS_DENIED before) until
 * `validBefore` exclusive, as OpenSSH counts it (EXPIRED after).
 */
export function verifySshCertificate(line: string, caPublicKeys: KeyObject[], now: Date): ParsedSshCertificate {
  const { parsed, signed, signature } = decodeSshCertificate(line);
  const label = `SSH certificate "${shown(parsed.keyId)}"`;
  const caBlob = sshPublicKeyBlob(parsed.signatureKey);
  if (!caPublicKeys.some((k) => Buffer.from(sshPublicKeyBlob(k)).equals(caBlob))) {
    throw accessDenied(`${label} is not signed by a trusted certificate authority`);
  }
  let valid: boolean;
  try {
    valid = sshVerify(parsed.signatureKey, signed, signature);
  } catch {
    valid = false; // a malformed signature blob is an invalid signature
  }
  if (!valid) throw accessDenied(`${label} has an invalid signature`);
  const seconds = BigInt(Math.floor(+now / 1000));
  if (seconds < parsed.validAfterSeconds) throw accessDenied(`${label} is not valid before ${parsed.validAfter.toISOString()}`);
  if (seconds >= parsed.validBeforeSeconds) throw expired(`${label} expired at ${parsed.validBefore.toISOString()}`);
  return parsed;
}

/** A known_hosts line trusting `caPublicKey` for hosts matching `hostPattern` (e.g. `*.example.com`). */
export function knownHostsCertAuthorityLine(caPublicKey: KeyObject, hostPattern: string, comment?: string): string {
  // whitespace or a newline in the pattern would let it inject a second known_hosts entry
  if (typeof hostPattern !== "string" || !/^[^\s\x00-\x1f\x7f@#][^\s\x00-\x1f\x7f]*$/.test(hostPattern)) {
    throw badParameter(`Invalid known_hosts host pattern ${JSON.stringify(hostPattern)}: expected comma-separated patterns without spaces`);
  }
  return `@cert-authority ${hostPattern} ${formatSshPublicKey(caPublicKey, comment)}`;
}
