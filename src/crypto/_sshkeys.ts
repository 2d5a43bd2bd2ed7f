/**
 * SSH public key blobs (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4) and SSH signature
 * blobs for Ed25519 and ECDSA P-256, on top of node:crypto.
 */

import { sign, verify, type KeyObject } from "node:crypto";
import {
  algorithmOf,
  publicKeyFromRaw,
  publicOf,
  rawPublicKey,
  unsupportedCurve,
  unsupportedKeyType,
  type KeyAlgorithm,
} from "./_keymaterial.ts";
import { SshReader, SshWriter } from "./_sshwire.ts";

/** The SSH key type name of each supported algorithm. */
export const SSH_KEY_TYPE: Record<KeyAlgorithm, string> = {
  ed25519: "ssh-ed25519",
  "ecdsa-p256": "ecdsa-sha2-nistp256",
};

const P256_CURVE = "nistp256";

/** Maps an SSH key type name to a supported algorithm, or throws the precise refusal. */
export function algorithmOfSshType(type: string, what?: string): KeyAlgorithm {
  switch (type) {
    case "ssh-ed25519":
      return "ed25519";
    case "ecdsa-sha2-nistp256":
      return "ecdsa-p256";
    case "ssh-rsa":
    case "rsa-sha2-256":
    case "rsa-sha2-512":
      throw unsupportedKeyType("rsa", what);
    case "ssh-dss":
      throw unsupportedKeyType("dsa", what);
    case "ecdsa-sha2-nistp384":
      throw unsupportedCurve("P-384", what);
    case "ecdsa-sha2-nistp521":
      throw unsupportedCurve("P-521", what);
    default:
      throw unsupportedKeyType(type, what);
  }
}

/** Writes the key fields that follow the type name (and, in certificates, the nonce). */
export function writeSshKeyFields(w: SshWriter, key: KeyObject): SshWriter {
  const alg = algorithmOf(key);
  if (alg === "ecdsa-p256") w.string(P256_CURVE);
  return w.string(rawPublicKey(key));
}

/** Reads the key fields for `alg` (the counterpart of writeSshKeyFields). */
export function readSshKeyFields(r: SshReader, alg: KeyAlgorithm, what: string): KeyObject {
  if (alg === "ecdsa-p256") {
    const curve = r.text("curve name");
    if (curve !== P256_CURVE) r.fail(`curve "${curve}" does not match key type "ecdsa-sha2-nistp256"`);
  }
  return publicKeyFromRaw(alg, r.string("public key"), what);
}

const blobCache = new WeakMap<KeyObject, Uint8Array>();

/** The SSH wire blob of a public key (also accepts a private key); cached per KeyObject. */
export function sshPublicKeyBlob(key: KeyObject): Uint8Array {
  const pub = publicOf(key);
  let blob = blobCache.get(pub);
  if (!blob) {
    blob = writeSshKeyFields(new SshWriter().string(SSH_KEY_TYPE[algorithmOf(pub)]), pub).finish();
    blobCache.set(pub, blob);
  }
  return blob;
}

/** A public KeyObject from an SSH wire blob; the blob must be exactly one key. */
export function sshPublicKeyFromBlob(blob: Uint8Array, what: string): KeyObject {
  const r = new SshReader(blob, what);
  const alg = algorithmOfSshType(r.text("key type"), what);
  const key = readSshKeyFields(r, alg, what);
  r.end("the public key");
  return key;
}

/** Splits IEEE P1363 r‖s into two halves. */
const halves = (sig: Uint8Array) => [sig.subarray(0, sig.length / 2), sig.subarray(sig.length / 2)] as const;

/** An SSH signature blob (`string alg, string sig`) over `data` (RFC 8709 §6, RFC 5656 §3.1.2). */
export function sshSign(privateKey: KeyObject, data: Uint8Array): Uint8Array {
  const alg = algorithmOf(privateKey);
  const w = new SshWriter(160).string(SSH_KEY_TYPE[alg]);
  if (alg === "ed25519") return w.string(sign(null, data, privateKey)).finish();
  const [r, s] = halves(sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" }));
  return w.nested((inner) => inner.mpint(r).mpint(s)).finish();
}

/**
 * Whether `sigBlob` is a valid signature by `publicKey` over `data`. The signature
 * algorithm must be the key's own: no algorithm confusion.
 */
export function sshVerify(publicKey: KeyObject, data: Uint8Array, sigBlob: Uint8Array): boolean {
  const r = new SshReader(sigBlob, "signature");
  const alg = algorithmOf(publicKey);
  if (r.text("signature algorithm") !== SSH_KEY_TYPE[alg]) return false;
  const sig = r.string("signature");
  r.end("signature");
  if (alg === "ed25519") return sig.length === 64 && verify(null, data, publicKey, sig);
  const inner = new SshReader(sig, "ECDSA signature");
  const rr = inner.mpint("r");
  const ss = inner.mpint("s");
  inner.end("ECDSA signature");
  if (rr.length > 32 || ss.length > 32) return false;
  const p1363 = new Uint8Array(64);
  p1363.set(rr, 32 - rr.length);
  p1363.set(ss, 64 - ss.length);
  return verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, p1363);
}
