/**
 * PEM and base64 helpers shared by crypto, config and outputs.
 */

import { badParameter } from "./errors.ts";

export interface PemBlock {
  label: string;
  der: Uint8Array;
}

/** Encodes DER bytes as a PEM block with 64-column lines and a trailing newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  // a view, not a copy; and slices rather than a regex split (on every certificate issued)
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
  let body = b64.length === 0 ? "\n" : "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order. Text outside blocks is ignored. */
export function pemDecodeAll(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    const body = m[2]!.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw badParameter(`Invalid PEM block "${m[1]}": body is not base64`);
    out.push({ label: m[1]!, der: new Uint8Array(Buffer.from(body, "base64")) });
  }
  return out;
}

/** The single PEM block with one of `labels`; throws when there is none. */
export function pemDecodeOne(text: string, labels: string[], what = "PEM data"): PemBlock {
  const blocks = pemDecodeAll(text).filter((b) => labels.includes(b.label));
  if (blocks.length === 0) {
    throw badParameter(`Cannot read ${what}: no PEM block of type ${labels.map((l) => `"${l}"`).join(" or ")}`);
  }
  return blocks[0]!;
}

export function base64url(data: Uint8Array | string): string {
  return Buffer.from(typeof data === "string" ? Buffer.from(data) : data).toString("base64url");
}

/** Strict standard base64 decoding (whitespace tolerated); throws on any other character. */
export function base64DecodeStrict(text: string, what = "value"): Uint8Array {
  const s = text.replace(/\s+/g, "");
  if (s.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1) {
    throw badParameter(`Cannot decode ${what}: not valid base64`);
  }
  return new Uint8Array(Buffer.from(s, "base64"));
}
