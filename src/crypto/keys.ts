/**
 * Key pairs: generation, PEM / OpenSSH / authorized_keys encodings and parsing, key ids
 * and SSH fingerprints. Ed25519 and ECDSA P-256 only; everything else is refused clearly.
 */

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { badParameter } from "../lib/errors.ts";
import { base64DecodeStrict, pemDecodeAll, type PemBlock } from "../lib/pem.ts";
import { sameBytes } from "./_bytes.ts";
import { algorithmOf, publicOf, rememberSpki, spkiOf, unsupportedKeyType, type KeyAlgorithm, type KeyPair } from "./_keymaterial.ts";
import { decodeOpenSshPrivateKey, encodeOpenSshPrivateKey } from "./_openssh.ts";
import { algorithmOfSshType, SSH_KEY_TYPE, sshPublicKeyBlob, sshPublicKeyFromBlob } from "./_sshkeys.ts";

/** Key algorithm names and the key pair shape (defined with the key material helpers). */
export type { KeyAlgorithm, KeyPair } from "./_keymaterial.ts";

/** Generates a fresh key pair with node:crypto (synchronous). */
export function generateKeyPair(alg: KeyAlgorithm): KeyPair {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  if (alg === "ed25519") pair = generateKeyPairSync("ed25519");
  else if (alg === "ecdsa-p256") pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  else throw unsupportedKeyType(String(alg));
  return { ...pair, algorithm: alg };
}

/** The key's algorithm; a key of another type (RSA, P-384 …) is a BAD_PARAMETER. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm {
  return algorithmOf(key);
}

/** A private key as PKCS#8 PEM ("PRIVATE KEY"). */
export function privateKeyToPem(key: KeyObject): string {
  if (key.type !== "private") throw badParameter("Cannot encode a private key PEM: the key is not a private key");
  algorithmOf(key);
  return key.export({ type: "pkcs8", format: "pem" }) as string;
}

/** The public half of a key (private keys accepted) as SPKI PEM ("PUBLIC KEY"). */
export function publicKeyToPem(key: KeyObject): string {
  return publicOf(key).export({ type: "spki", format: "pem" }) as string;
}

/** The DER SubjectPublicKeyInfo of a key's public half (a fresh copy). */
export function publicKeySpkiDer(key: KeyObject): Uint8Array {
  return spkiOf(key).slice();
}

/**
 * A private key in OpenSSH's own format ("OPENSSH PRIVATE KEY", unencrypted), the form
 * `ssh -i` and `ssh-keygen -y` read for every key type. `checkInt` is random unless given.
 */
export function privateKeyToOpenSsh(key: KeyObject, comment = "", checkInt?: number): string {
  return encodeOpenSshPrivateKey(key, checkComment(comment), checkInt);
}

/** RFC 1421 encrypted PEMs carry headers, not base64, so they are recognised before decoding. */
const ENCRYPTED_PEM_RE = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;

const encryptedKey = (what: string) =>
  badParameter(`Cannot read ${what}: it is encrypted; machine-id needs an unencrypted key`);

function decodePem(text: string, what: string): PemBlock[] {
  try {
    return pemDecodeAll(text);
  } catch (e) {
    throw badParameter(`Cannot read ${what}: a PEM block is not valid base64`, { cause: e });
  }
}

function fromDer(der: Uint8Array, type: "pkcs8" | "sec1", what: string): KeyPair {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der), format: "der", type });
  } catch (e) {
    throw badParameter(`Cannot read ${what}: malformed ${type === "pkcs8" ? "PKCS#8" : "SEC1"} private key`, { cause: e });
  }
  return { privateKey: key, publicKey: publicOf(key), algorithm: algorithmOf(key, what) };
}

/**
 * Reads a private key from PKCS#8 PEM, SEC1 "EC PRIVATE KEY" PEM or an unencrypted
 * OpenSSH private key. The first private-key block in `text` is used. Errors are
 * BAD_PARAMETER and name `what` (e.g. `static key "/etc/key"`).
 */
export function parsePrivateKey(text: string, what = "private key"): KeyPair {
  if (typeof text !== "string") throw badParameter(`Cannot read ${what}: expected text`);
  if (ENCRYPTED_PEM_RE.test(text)) throw encryptedKey(what);
  const blocks = decodePem(text, what);
  const block = blocks.find((b) => b.label.endsWith("PRIVATE KEY"));
  if (!block) {
    if (blocks.length === 0) throw badParameter(`Cannot read ${what}: it is not a PEM or OpenSSH private key`);
    throw badParameter(`Cannot read ${what}: it holds a "${blocks[0]!.label}" PEM block, not a private key`);
  }
  switch (block.label) {
    case "PRIVATE KEY":
      return fromDer(block.der, "pkcs8", what);
    case "EC PRIVATE KEY":
      return fromDer(block.der, "sec1", what);
    case "OPENSSH PRIVATE KEY": {
      const { privateKey, publicKey, algorithm } = decodeOpenSshPrivateKey(block.der, what, () => encryptedKey(what));
      return { privateKey, publicKey, algorithm };
    }
    case "RSA PRIVATE KEY":
      throw unsupportedKeyType("rsa", what);
    case "DSA PRIVATE KEY":
      throw unsupportedKeyType("dsa", what);
    default:
      throw badParameter(`Cannot read ${what}: unsupported PEM block "${block.label}"`);
  }
}

/** Names that start an authorized_keys key (to tell a key from free text in messages). */
const SSH_TYPE_RE = /^(ssh-|ecdsa-sha2-|sk-|rsa-sha2-)[A-Za-z0-9@.-]*$/;

/** `candidate` when it is a supported public key whose SSH blob is `blob`, else undefined. */
function sameSshKey(candidate: KeyObject | undefined, blob: Uint8Array): KeyObject | undefined {
  if (candidate?.type !== "public") return undefined;
  try {
    return sameBytes(sshPublicKeyBlob(candidate), blob) ? candidate : undefined;
  } catch {
    return undefined; // a key type SSH has no blob for is simply not the same key
  }
}

function parseAuthorizedKey(line: string, what: string, sameAs?: KeyObject): KeyObject {
  const [type = "", b64, ..._comment] = line.split(/[ \t]+/);
  if (!SSH_TYPE_RE.test(type) || b64 === undefined) {
    throw badParameter(`Cannot read ${what}: expected an authorized_keys line ("ssh-ed25519 AAAA… comment") or a PEM public key`);
  }
  if (type.endsWith("-cert-v01@openssh.com")) {
    throw badParameter(`Cannot read ${what}: it is an SSH certificate, not a public key`);
  }
  const alg = algorithmOfSshType(type, what);
  const blob = base64DecodeStrict(b64, what);
  const key = sameSshKey(sameAs, blob) ?? sshPublicKeyFromBlob(blob, what);
  if (algorithmOf(key) !== alg) {
    throw badParameter(`Cannot read ${what}: the line says "${type}" but holds a "${SSH_KEY_TYPE[algorithmOf(key)]}" key`);
  }
  return key;
}

/**
 * Reads a public key from one authorized_keys line (`ssh-ed25519 AAAA… comment`,
 * `ecdsa-sha2-nistp256 …`, without options) or an SPKI PEM ("PUBLIC KEY").
 *
 * `sameAs` is a public key read before, such as the other encoding of the same request's
 * key: when `text` holds exactly that key, `sameAs` itself is returned. Each KeyObject is
 * a native object the garbage collector must finalize, which made a renewal's second key
 * cost twice its parse time.
 */
export function parsePublicKey(text: string, what = "public key", sameAs?: KeyObject): KeyObject {
  if (typeof text !== "string") throw badParameter(`Cannot read ${what}: expected text`);
  const trimmed = text.trim();
  if (!trimmed.startsWith("-----BEGIN ")) {
    if (/[\r\n]/.test(trimmed)) throw badParameter(`Cannot read ${what}: expected one key, found several lines`);
    return parseAuthorizedKey(trimmed, what, sameAs);
  }
  const block = decodePem(trimmed, what)[0];
  if (!block) throw badParameter(`Cannot read ${what}: malformed PEM`);
  if (block.label === "PUBLIC KEY") {
    if (sameAs?.type === "public" && sameSpki(sameAs, block.der)) return sameAs;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: block.der, format: "der", type: "spki" });
    } catch (e) {
      throw badParameter(`Cannot read ${what}: malformed SubjectPublicKeyInfo`, { cause: e });
    }
    algorithmOf(key, what);
    rememberSpki(key, block.der);
    return key;
  }
  if (block.label === "RSA PUBLIC KEY") throw unsupportedKeyType("rsa", what);
  if (block.label.endsWith("PRIVATE KEY")) throw badParameter(`Cannot read ${what}: it is a private key, expected a public key`);
  if (block.label === "CERTIFICATE") throw badParameter(`Cannot read ${what}: it is a certificate, expected a public key`);
  throw badParameter(`Cannot read ${what}: unsupported PEM block "${block.label}"`);
}

/** Whether `der` is exactly the SPKI of `key` (false for key types machine-id does not use). */
function sameSpki(key: KeyObject, der: Uint8Array): boolean {
  try {
    algorithmOf(key);
  } catch {
    return false;
  }
  return sameBytes(spkiOf(key), der);
}

function checkComment(comment: string): string {
  // a newline would let a comment smuggle a second entry into authorized_keys/known_hosts
  if (/[\x00-\x1f\x7f]/.test(comment)) throw badParameter(`Invalid key comment ${JSON.stringify(comment)}: control characters are not allowed`);
  return comment;
}

/** The authorized_keys form of a public key (private keys accepted): `type base64 [comment]`. */
export function formatSshPublicKey(key: KeyObject, comment?: string): string {
  const line = `${SSH_KEY_TYPE[algorithmOf(key)]} ${Buffer.from(sshPublicKeyBlob(key)).toString("base64")}`;
  return comment ? `${line} ${checkComment(comment)}` : line;
}

/** base64url (no padding) of SHA-256 over the SPKI DER: a stable id for a public key. */
export function keyId(key: KeyObject): string {
  return createHash("sha256").update(spkiOf(key)).digest("base64url");
}

/** `SHA256:…` exactly as `ssh-keygen -lf` prints it (unpadded base64 of SHA-256 over the SSH blob). */
export function sshFingerprint(key: KeyObject): string {
  return "SHA256:" + createHash("sha256").update(sshPublicKeyBlob(key)).digest("base64").replace(/=+$/, "");
}
