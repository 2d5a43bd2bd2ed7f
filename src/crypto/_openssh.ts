/**
 * The OpenSSH private key container ("openssh-key-v1", OpenSSH PROTOCOL.key), unencrypted
 * only: read for `parsePrivateKey`, written so SSH outputs are files `ssh -i` accepts.
 */

import { randomBytes, type KeyObject } from "node:crypto";
import { badParameter } from "../lib/errors.ts";
import { algorithmOf, privateKeyFromRaw, publicOf, rawPrivateKey, rawPublicKey, type KeyPair } from "./_keymaterial.ts";
import { algorithmOfSshType, readSshKeyFields, SSH_KEY_TYPE, sshPublicKeyBlob, writeSshKeyFields } from "./_sshkeys.ts";
import { SshReader, SshWriter } from "./_sshwire.ts";

const MAGIC = new Uint8Array(Buffer.from("openssh-key-v1\0", "latin1"));
/** The cipher block size for "none"; the private section is padded to it. */
const BLOCK = 8;

/**
 * Decodes the body (base64-decoded) of an "OPENSSH PRIVATE KEY" block; `encrypted`
 * builds the error for a passphrase-protected key so the caller words it.
 */
export function decodeOpenSshPrivateKey(der: Uint8Array, what: string, encrypted: () => Error): KeyPair & { comment: string } {
  if (der.length < MAGIC.length || !Buffer.from(MAGIC).equals(der.subarray(0, MAGIC.length))) {
    throw badParameter(`Cannot read ${what}: not an "openssh-key-v1" key`);
  }
  const r = new SshReader(der.subarray(MAGIC.length), what);
  const cipher = r.text("cipher name");
  const kdf = r.text("KDF name");
  r.string("KDF options");
  if (cipher !== "none" || kdf !== "none") throw encrypted();
  const count = r.u32("key count");
  if (count !== 1) r.fail(`it holds ${count} keys, expected one`);
  const publicBlob = r.string("public key");
  const section = r.string("private section");
  r.end("the private section");

  const p = new SshReader(section, what);
  // unencrypted keys still carry the two check integers; different ones mean corruption
  if (p.u32("check integer") !== p.u32("check integer")) p.fail("check integers differ");
  const alg = algorithmOfSshType(p.text("key type"), what);
  const pub = rawPublicKey(readSshKeyFields(p, alg, what));
  let scalar: Uint8Array;
  if (alg === "ed25519") {
    const sk = p.string("Ed25519 private key");
    // OpenSSH stores seed ‖ public key
    if (sk.length !== 64 || !Buffer.from(sk.subarray(32)).equals(pub)) p.fail("malformed Ed25519 private key");
    scalar = sk.subarray(0, 32);
  } else {
    scalar = p.mpint("ECDSA private scalar");
  }
  const comment = p.text("comment");
  const padding = p.rest();
  if (padding.length >= BLOCK || padding.some((b, i) => b !== i + 1)) p.fail("malformed padding");

  const privateKey = privateKeyFromRaw(alg, scalar, pub, what);
  if (!Buffer.from(sshPublicKeyBlob(privateKey)).equals(publicBlob)) {
    p.fail("the public key does not match the private key");
  }
  return { privateKey, publicKey: publicOf(privateKey), algorithm: alg, comment };
}

/**
 * Encodes a private key as an "OPENSSH PRIVATE KEY" PEM, wrapped at 70 columns like
 * ssh-keygen. `checkInt` is random unless given (tests pass one for byte equality).
 */
export function encodeOpenSshPrivateKey(key: KeyObject, comment: string, checkInt?: number): string {
  if (key.type !== "private") throw badParameter("Cannot encode an OpenSSH private key from a public key");
  const alg = algorithmOf(key);
  const check = checkInt ?? randomBytes(4).readUInt32BE(0);
  const w = new SshWriter().u32(check).u32(check).string(SSH_KEY_TYPE[alg]);
  writeSshKeyFields(w, key);
  const scalar = rawPrivateKey(key);
  if (alg === "ed25519") w.string(Buffer.concat([scalar, rawPublicKey(key)]));
  else w.mpint(scalar);
  w.string(comment);
  let section = w.finish();
  const padLength = (BLOCK - (section.length % BLOCK)) % BLOCK;
  section = Buffer.concat([section, Uint8Array.from({ length: padLength }, (_, i) => i + 1)]);
  const body = new SshWriter()
    .raw(MAGIC)
    .string("none")
    .string("none")
    .string("")
    .u32(1)
    .string(sshPublicKeyBlob(key))
    .string(section)
    .finish();
  const lines = Buffer.from(body).toString("base64").match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}
