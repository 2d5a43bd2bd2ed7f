/**
 * node:crypto KeyObjects ↔ raw key bytes for the two algorithms machine-id supports
 * (Ed25519, ECDSA P-256), with the caches the hot paths rely on.
 */

import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { AppError, badParameter } from "../lib/errors.ts";

/** The key algorithms machine-id issues and accepts. */
export type KeyAlgorithm = "ecdsa-p256" | "ed25519";

/** A private key with its public half. */
export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  algorithm: KeyAlgorithm;
}

const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

/** SPKI DER = prefix ‖ raw public key, for both supported algorithms (fixed-size encodings). */
const SPKI_PREFIX: Record<KeyAlgorithm, Uint8Array> = {
  ed25519: hex("302a300506032b6570032100"),
  "ecdsa-p256": hex("3059301306072a8648ce3d020106082a8648ce3d030107034200"),
};
const RAW_PUBLIC_LENGTH: Record<KeyAlgorithm, number> = { ed25519: 32, "ecdsa-p256": 65 };
/** PKCS#8 DER of an Ed25519 private key = prefix ‖ 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = hex("302e020100300506032b657004220420");

const SUPPORTED = "use Ed25519 or ECDSA P-256";
const inWhat = (what?: string) => (what ? ` in ${what}` : "");

/** `Unsupported key type "rsa" in <what>: use Ed25519 or ECDSA P-256` */
export function unsupportedKeyType(type: string, what?: string): AppError {
  return badParameter(`Unsupported key type "${type}"${inWhat(what)}: ${SUPPORTED}`);
}

/** `Unsupported curve "P-384" in <what>: use Ed25519 or ECDSA P-256` */
export function unsupportedCurve(curve: string, what?: string): AppError {
  return badParameter(`Unsupported curve "${curve}"${inWhat(what)}: ${SUPPORTED}`);
}

const CURVE_NAMES: Record<string, string> = {
  prime256v1: "P-256",
  secp384r1: "P-384",
  secp521r1: "P-521",
  secp256k1: "secp256k1",
};

/** Algorithms of keys already seen: an issuance asks about the same few keys a dozen times, and the KeyObject getters call into native code (asymmetricKeyDetails builds an object each time). */
const algorithms = new WeakMap<KeyObject, KeyAlgorithm>();

/** The algorithm of a private or public key; other key types are a BAD_PARAMETER. */
export function algorithmOf(key: KeyObject, what?: string): KeyAlgorithm {
  const known = algorithms.get(key);
  if (known) return known;
  const type = key.asymmetricKeyType;
  let alg: KeyAlgorithm;
  if (type === "ed25519") alg = "ed25519";
  else if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? "unknown";
    if (curve !== "prime256v1") throw unsupportedCurve(CURVE_NAMES[curve] ?? curve, what);
    alg = "ecdsa-p256";
  } else throw unsupportedKeyType(type ?? key.type, what);
  algorithms.set(key, alg);
  return alg;
}

const publicCache = new WeakMap<KeyObject, KeyObject>();

/** The public half of a key (a public key is returned as is); cached per KeyObject. */
export function publicOf(key: KeyObject): KeyObject {
  if (key.type === "public") return key;
  if (key.type !== "private") throw badParameter(`Expected an asymmetric key, got a "${key.type}" key`);
  let pub = publicCache.get(key);
  if (!pub) {
    pub = createPublicKey(key);
    publicCache.set(key, pub);
  }
  return pub;
}

const spkiCache = new WeakMap<KeyObject, Uint8Array>();

/**
 * The DER SubjectPublicKeyInfo of a key. Cached (KeyObjects are immutable); callers
 * must not modify the returned bytes — the public wrapper hands out copies.
 */
export function spkiOf(key: KeyObject): Uint8Array {
  const pub = publicOf(key);
  let der = spkiCache.get(pub);
  if (!der) {
    der = new Uint8Array(pub.export({ type: "spki", format: "der" }));
    spkiCache.set(pub, der);
  }
  return der;
}

function hasPrefix(bytes: Uint8Array, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Records `der` as the SPKI of a public key just made from it, when it is already in the
 * form export() gives (fixed prefix, uncompressed point), so issuing to a key parsed
 * from a request needs no export() round trip. Callers must not modify `der` afterwards.
 */
export function rememberSpki(key: KeyObject, der: Uint8Array): void {
  if (key.type === "public" && isCanonicalSpki(der) === algorithmOf(key)) spkiCache.set(key, der);
}

/** The algorithm when `der` is an SPKI in the layout export() writes (uncompressed point for P-256), else undefined. */
function isCanonicalSpki(der: Uint8Array): KeyAlgorithm | undefined {
  for (const alg of ["ed25519", "ecdsa-p256"] as const) {
    const prefix = SPKI_PREFIX[alg];
    if (der.length !== prefix.length + RAW_PUBLIC_LENGTH[alg] || !hasPrefix(der, prefix)) continue;
    return alg === "ed25519" || der[prefix.length] === 0x04 ? alg : undefined;
  }
  return undefined;
}

/** The raw public key: 32 bytes for Ed25519, the 65-byte uncompressed point for P-256. */
export function rawPublicKey(key: KeyObject, what?: string): Uint8Array {
  const alg = algorithmOf(key, what);
  const der = spkiOf(key);
  const prefix = SPKI_PREFIX[alg];
  if (der.length !== prefix.length + RAW_PUBLIC_LENGTH[alg] || !hasPrefix(der, prefix)) {
    // node:crypto always exports uncompressed points; anything else is a bug worth a clear message
    throw badParameter(`Cannot encode ${what ?? "public key"}: unexpected SubjectPublicKeyInfo layout`);
  }
  return der.subarray(prefix.length);
}

/** A public KeyObject from raw bytes; an invalid point is a BAD_PARAMETER naming `what`. */
export function publicKeyFromRaw(alg: KeyAlgorithm, raw: Uint8Array, what: string): KeyObject {
  if (raw.length !== RAW_PUBLIC_LENGTH[alg] || (alg === "ecdsa-p256" && raw[0] !== 0x04)) {
    throw badParameter(`Cannot read ${what}: ${alg === "ed25519" ? "Ed25519 key is not 32 bytes" : "not an uncompressed P-256 point"}`);
  }
  const spki = new Uint8Array(SPKI_PREFIX[alg].length + raw.length);
  spki.set(SPKI_PREFIX[alg]);
  spki.set(raw, SPKI_PREFIX[alg].length);
  try {
    const key = createPublicKey({ key: spki, format: "der", type: "spki" });
    spkiCache.set(key, spki);
    return key;
  } catch {
    throw badParameter(`Cannot read ${what}: the public key is not a valid ${alg === "ed25519" ? "Ed25519" : "P-256"} point`);
  }
}

/** The 32-byte private scalar: the Ed25519 seed or the P-256 `d`. */
export function rawPrivateKey(key: KeyObject): Uint8Array {
  algorithmOf(key);
  const jwk = key.export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.d!, "base64url"));
}

/**
 * A private KeyObject from its 32-byte scalar; `publicRaw` (when the format stores it
 * too) must match the key derived from the scalar, so a tampered file is refused.
 */
export function privateKeyFromRaw(alg: KeyAlgorithm, scalar: Uint8Array, publicRaw: Uint8Array, what: string): KeyObject {
  let key: KeyObject;
  try {
    if (alg === "ed25519") {
      if (scalar.length !== 32) throw new Error("seed length");
      key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, scalar]), format: "der", type: "pkcs8" });
    } else {
      if (scalar.length > 32 || publicRaw.length !== 65) throw new Error("scalar length");
      const d = Buffer.concat([Buffer.alloc(32 - scalar.length), scalar]);
      const x = Buffer.from(publicRaw.subarray(1, 33)).toString("base64url");
      const y = Buffer.from(publicRaw.subarray(33)).toString("base64url");
      key = createPrivateKey({ key: { kty: "EC", crv: "P-256", x, y, d: d.toString("base64url") }, format: "jwk" });
    }
  } catch {
    throw badParameter(`Cannot read ${what}: the private key is not a valid ${alg === "ed25519" ? "Ed25519" : "P-256"} key`);
  }
  if (!Buffer.from(rawPublicKey(key)).equals(publicRaw)) {
    throw badParameter(`Cannot read ${what}: the public key does not match the private key`);
  }
  return key;
}
