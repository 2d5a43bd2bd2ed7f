// Issuance output is pinned to bytes recorded before the encoders were optimised
// (fixtures/issuance-golden.json): Ed25519-signed certificates must match exactly, ECDSA-signed
// ones (random signatures) in everything that is signed, with the signature checked apart;
// parsing the recorded bytes must still give the recorded fields.

import { describe, expect, test } from "bun:test";
import { X509Certificate, verify } from "node:crypto";
import { parsePrivateKey } from "../../src/crypto/index.ts";
import golden from "./fixtures/issuance-golden.json";
import { goldenCases, parsedSnapshot, type GoldenOutput } from "./_issuance-cases.ts";

const keys = golden.keys;
const recorded = golden.cases as (GoldenOutput & { parsed: unknown })[];
const current = await goldenCases(keys);
const byName = new Map(current.map((c) => [c.name, c]));

/** The DER of a PEM certificate (independent of src/lib/pem.ts). */
const certDer = (pem: string) => new Uint8Array(Buffer.from(pem.replace(/-----[A-Z ]+-----|\s+/g, ""), "base64"));

/** Header length and content length of the DER element at `at` (test-only, trusts its input). */
function derHeader(der: Uint8Array, at: number): { header: number; length: number } {
  const first = der[at + 1]!;
  if (first < 0x80) return { header: 2, length: first };
  let length = 0;
  for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + der[at + 2 + i]!;
  return { header: 2 + (first & 0x7f), length };
}

/** The TBSCertificate bytes: the first element inside the outer SEQUENCE. */
function tbsOf(pem: string): Uint8Array {
  const der = certDer(pem);
  const outer = derHeader(der, 0);
  const tbs = derHeader(der, outer.header);
  return der.subarray(outer.header, outer.header + tbs.header + tbs.length);
}

/** The SSH certificate blob split into the signed part and the signature blob. */
function sshParts(line: string): { signed: Uint8Array; signature: Uint8Array } {
  const blob = new Uint8Array(Buffer.from(line.split(" ")[1]!, "base64"));
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  let at = 0;
  const str = () => {
    const n = view.getUint32(at);
    const s = blob.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return s;
  };
  const type = Buffer.from(str()).toString();
  str(); // nonce
  if (type.startsWith("ecdsa")) str(); // curve
  str(); // public key
  at += 8 + 4; // serial, type
  str(); // key id
  str(); // principals
  at += 16; // validity
  str(); // critical options
  str(); // extensions
  str(); // reserved
  str(); // signature key
  const signed = blob.subarray(0, at);
  const signature = str();
  expect(at).toBe(blob.length);
  return { signed, signature };
}

describe("issuance matches the recorded golden output", () => {
  test("every recorded case is still produced", () => {
    expect(current.map((c) => c.name)).toEqual(recorded.map((c) => c.name));
  });

  for (const want of recorded) {
    test(`${want.kind}: ${want.name}`, () => {
      const got = byName.get(want.name)!;
      if (want.deterministic) {
        expect(got.output).toBe(want.output);
        return;
      }
      if (want.kind === "x509") {
        expect(Buffer.from(tbsOf(got.output)).toString("hex")).toBe(Buffer.from(tbsOf(want.output)).toString("hex"));
        return;
      }
      const g = sshParts(got.output);
      const w = sshParts(want.output);
      expect(Buffer.from(g.signed).toString("hex")).toBe(Buffer.from(w.signed).toString("hex"));
      expect(got.output.split(" ").slice(2)).toEqual(want.output.split(" ").slice(2));
    });
  }

  test("the parsers read the recorded certificates as they did when they were recorded", () => {
    for (const want of recorded) expect(parsedSnapshot(want)).toEqual(want.parsed);
  });

  test("the ECDSA-signed X.509 certificates carry valid signatures by the P-256 CA", () => {
    const ca = new X509Certificate(byName.get("P-256 CA")!.output);
    const caKey = parsePrivateKey(keys.caP256).publicKey;
    expect(ca.verify(caKey)).toBe(true);
    expect(new X509Certificate(byName.get("P-256 CA, P-256 client leaf with identity and URI")!.output).verify(caKey)).toBe(true);
  });

  test("the ECDSA-signed SSH certificates carry valid signatures by the P-256 CA", () => {
    const caKey = parsePrivateKey(keys.caP256).publicKey;
    for (const c of current.filter((x) => x.kind === "ssh" && !x.deterministic)) {
      const { signed, signature } = sshParts(c.output);
      // signature blob: string "ecdsa-sha2-nistp256", string (mpint r, mpint s)
      const view = new DataView(signature.buffer, signature.byteOffset, signature.byteLength);
      const nameLength = view.getUint32(0);
      expect(Buffer.from(signature.subarray(4, 4 + nameLength)).toString()).toBe("ecdsa-sha2-nistp256");
      const inner = signature.subarray(8 + nameLength);
      const iv = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
      const rLength = iv.getUint32(0);
      const r = inner.subarray(4, 4 + rLength);
      const s = inner.subarray(8 + rLength, 8 + rLength + iv.getUint32(4 + rLength));
      const p1363 = new Uint8Array(64);
      const fit = (x: Uint8Array) => (x.length > 32 ? x.subarray(x.length - 32) : x);
      p1363.set(fit(r), 32 - fit(r).length);
      p1363.set(fit(s), 64 - fit(s).length);
      expect(verify("sha256", signed, { key: caKey, dsaEncoding: "ieee-p1363" }, p1363)).toBe(true);
    }
  });
});
