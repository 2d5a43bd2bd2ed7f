/**
 * Compact JWS (RFC 7515) with node:crypto, for the two algorithms bound-keypair joins
 * use: EdDSA (Ed25519) and ES256. Written by hand because jose goes through WebCrypto,
 * which imports the key again on every call: on a join that cost ~11 % of the auth
 * service's CPU, about three times the signature itself. The output is byte for byte
 * what jose's CompactSign/SignJWT produce (tests/crypto/jws.test.ts checks it against jose).
 */

import { sign, verify, type KeyObject } from "node:crypto";

/** The JWS algorithms supported here. */
export type JwsAlgorithm = "EdDSA" | "ES256";

const B64URL = /^[A-Za-z0-9_-]*$/;

function b64url(data: string | Uint8Array): string {
  return (typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).toString("base64url");
}

/** Strict base64url without padding; undefined for anything else. */
function unb64url(s: string): Buffer | undefined {
  return B64URL.test(s) && s.length % 4 !== 1 ? Buffer.from(s, "base64url") : undefined;
}

/** Whether `key` is a key of `alg`: Ed25519 for EdDSA, P-256 for ES256. */
function fits(key: KeyObject, alg: JwsAlgorithm): boolean {
  if (alg === "EdDSA") return key.asymmetricKeyType === "ed25519";
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

/**
 * Signs `payload` as a compact JWS with `header` as its protected header (JSON in the
 * header's own key order, as jose writes it). `header.alg` must name the key's algorithm.
 */
export function signCompactJws(header: { alg: JwsAlgorithm } & Record<string, unknown>, payload: string | Uint8Array, key: KeyObject): string {
  if (key.type !== "private" || !fits(key, header.alg)) throw new TypeError(`Cannot sign a JWS with alg "${header.alg}": the key is not a private key of that algorithm`);
  const input = `${b64url(JSON.stringify(header))}.${b64url(payload)}`;
  const sig = header.alg === "EdDSA" ? sign(null, Buffer.from(input), key) : sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(sig)}`;
}

/**
 * Verifies a compact JWS signed by `key` with exactly `alg`, and returns its payload;
 * undefined when it is malformed, names another algorithm, carries a `crit` header (no
 * extension is understood here, RFC 7515 §4.1.11), or the signature does not verify.
 * Accepts what jose's `compactVerify(jws, key, { algorithms: [alg] })` accepts, less
 * the `b64` extension, which no client of ours sends.
 */
export function verifyCompactJws(jws: string, key: KeyObject, alg: JwsAlgorithm): Uint8Array | undefined {
  if (typeof jws !== "string" || !fits(key, alg)) return undefined;
  const parts = jws.split(".");
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  const headerBytes = unb64url(h);
  const payload = unb64url(p);
  const signature = unb64url(s);
  if (!headerBytes || !payload || !signature || signature.length !== 64) return undefined;
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString("utf8"));
  } catch {
    return undefined;
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) return undefined;
  const fields = header as Record<string, unknown>;
  if (fields.alg !== alg || fields.crit !== undefined) return undefined;
  const input = Buffer.from(`${h}.${p}`);
  let ok: boolean;
  try {
    ok = alg === "EdDSA" ? verify(null, input, key, signature) : verify("sha256", input, { key, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return undefined;
  }
  return ok ? new Uint8Array(payload) : undefined;
}
