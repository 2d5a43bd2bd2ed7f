/**
 * A small, strict DER writer and reader: only what X.509 certificates need. Hand-written
 * because @peculiar/asn1-schema (under @peculiar/x509) measured ~170 µs to serialize and
 * ~270 µs to parse one certificate under Bun, ten times the whole issuance budget.
 */

import { badParameter } from "../lib/errors.ts";

// ---------------------------------------------------------------- writer

function lengthHeader(tag: number, length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(tag, length);
  if (length < 0x100) return Uint8Array.of(tag, 0x81, length);
  if (length < 0x10000) return Uint8Array.of(tag, 0x82, length >> 8, length & 0xff);
  if (length < 0x1000000) return Uint8Array.of(tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff);
  return Uint8Array.of(tag, 0x84, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff);
}

/** One element: `tag`, then the DER length, then the concatenated `parts`. */
export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const header = lengthHeader(tag, length);
  const out = new Uint8Array(header.length + length);
  out.set(header, 0);
  let at = header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SEQUENCE of already-encoded elements. */
export const sequence = (...parts: Uint8Array[]) => tlv(0x30, ...parts);
/** SET of already-encoded elements (callers pass one element, so no DER sorting is needed). */
export const set = (...parts: Uint8Array[]) => tlv(0x31, ...parts);
/** OCTET STRING. */
export const octetString = (bytes: Uint8Array) => tlv(0x04, bytes);
/** UTF8String. */
export const utf8String = (text: string) => tlv(0x0c, Buffer.from(text, "utf8"));
/** BOOLEAN (DER: 0xff for true). */
export const boolean = (value: boolean) => tlv(0x01, Uint8Array.of(value ? 0xff : 0x00));
/** `[n] EXPLICIT` (constructed context tag). */
export const explicit = (n: number, ...parts: Uint8Array[]) => tlv(0xa0 | n, ...parts);
/** `[n] IMPLICIT` over a primitive value. */
export const implicitPrimitive = (n: number, bytes: Uint8Array) => tlv(0x80 | n, bytes);

/** A BIT STRING whose content is whole bytes. */
export const bitString = (bytes: Uint8Array) => tlv(0x03, Uint8Array.of(0), bytes);

/**
 * A named-bit BIT STRING (as in KeyUsage) with bit 0 the most significant; DER drops
 * trailing zero bits and records how many bits of the last byte are unused.
 */
export function namedBits(bits: number[]): Uint8Array {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array((highest >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return tlv(0x03, Uint8Array.of(7 - (highest & 7)), bytes);
}

/** A non-negative INTEGER from its big-endian magnitude. */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  if (trimmed.length === 0) return Uint8Array.of(0x02, 0x01, 0x00);
  return trimmed[0]! & 0x80 ? tlv(0x02, Uint8Array.of(0), trimmed) : tlv(0x02, trimmed);
}

/** INTEGER 0..255. */
export const smallInteger = (n: number) => unsignedInteger(Uint8Array.of(n));

const oidCache = new Map<string, Uint8Array>();

/** An OBJECT IDENTIFIER from dotted form; encodings are cached since the set is small. */
export function oid(dotted: string): Uint8Array {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split(".").map(Number);
  const body: number[] = [];
  const pushArc = (v: number) => {
    const chunk = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    body.push(...chunk);
  };
  pushArc(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) pushArc(a);
  const encoded = tlv(0x06, Uint8Array.from(body));
  oidCache.set(dotted, encoded);
  return encoded;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(date: Date): Uint8Array {
  const y = date.getUTCFullYear();
  const rest =
    pad(date.getUTCMonth() + 1) +
    pad(date.getUTCDate()) +
    pad(date.getUTCHours()) +
    pad(date.getUTCMinutes()) +
    pad(date.getUTCSeconds()) +
    "Z";
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(pad(y % 100) + rest, "latin1"));
  return tlv(0x18, Buffer.from(pad(y, 4) + rest, "latin1"));
}

// ---------------------------------------------------------------- reader

/** One decoded element: `raw` is the whole TLV, `value` its content. Both view the input. */
export interface DerElement {
  tag: number;
  raw: Uint8Array;
  value: Uint8Array;
}

/**
 * Reads consecutive elements from a buffer. Strict DER only: definite minimal lengths,
 * single-byte tags; anything else is a BAD_PARAMETER naming `what`.
 */
export class DerReader {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}

  fail(reason: string): never {
    throw badParameter(`Cannot parse ${this.what}: ${reason}`);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  peekTag(): number | undefined {
    return this.done ? undefined : this.buf[this.pos];
  }

  /** The next element; when `tag` is given it must match. */
  next(tag?: number, field = "element"): DerElement {
    const buf = this.buf;
    const start = this.pos;
    if (start + 2 > buf.length) this.fail(`${field} is truncated`);
    const t = buf[start]!;
    if ((t & 0x1f) === 0x1f) this.fail(`${field} uses a multi-byte tag`);
    if (tag !== undefined && t !== tag) {
      this.fail(`${field} has tag 0x${t.toString(16)}, expected 0x${tag.toString(16)}`);
    }
    let length = buf[start + 1]!;
    let at = start + 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0) this.fail(`${field} has an indefinite length`);
      if (n > 4) this.fail(`${field} is too long`);
      if (at + n > buf.length) this.fail(`${field} is truncated`);
      if (buf[at] === 0) this.fail(`${field} has a non-minimal length`);
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + buf[at + i]!;
      if (length < 0x80) this.fail(`${field} has a non-minimal length`);
      at += n;
    }
    if (at + length > buf.length) this.fail(`${field} is truncated`);
    this.pos = at + length;
    return { tag: t, raw: buf.subarray(start, this.pos), value: buf.subarray(at, this.pos) };
  }

  /** The next element if it has `tag`, else nothing (the position does not move). */
  optional(tag: number, field?: string): DerElement | undefined {
    return this.peekTag() === tag ? this.next(tag, field) : undefined;
  }

  /** A reader over the content of the next constructed element with `tag`. */
  enter(tag: number, field?: string): DerReader {
    return new DerReader(this.next(tag, field).value, this.what);
  }

  /** Throws unless every byte was consumed. */
  end(field = "value"): void {
    if (!this.done) this.fail(`unexpected data after ${field}`);
  }
}

/** Decodes OBJECT IDENTIFIER content into dotted form. */
export function decodeOid(r: DerReader, value: Uint8Array): string {
  if (value.length === 0) r.fail("empty object identifier");
  const arcs: number[] = [];
  let v = 0;
  let digits = 0;
  for (const byte of value) {
    if (digits === 0 && byte === 0x80) r.fail("non-minimal object identifier");
    // 7 digits keep every arc below 2^49, well inside a safe integer
    if (++digits > 7) r.fail("object identifier arc is too large");
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(v);
      v = 0;
      digits = 0;
    }
  }
  if (digits !== 0) r.fail("truncated object identifier");
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

/** Reads an OBJECT IDENTIFIER element. */
export const readOid = (r: DerReader, field?: string) => decodeOid(r, r.next(0x06, field).value);

/** Decodes a non-negative INTEGER to its minimal big-endian magnitude. */
export function decodeUnsigned(r: DerReader, value: Uint8Array, field = "integer"): Uint8Array {
  if (value.length === 0) r.fail(`${field} is empty`);
  if (value[0]! & 0x80) r.fail(`${field} is negative`);
  if (value.length > 1 && value[0] === 0 && !(value[1]! & 0x80)) r.fail(`${field} is not minimally encoded`);
  return value[0] === 0 && value.length > 1 ? value.subarray(1) : value;
}

/** Reads a BOOLEAN element (DER: 0x00 or 0xff only). */
export function readBoolean(r: DerReader, field = "boolean"): boolean {
  const { value } = r.next(0x01, field);
  if (value.length !== 1 || (value[0] !== 0 && value[0] !== 0xff)) r.fail(`${field} is not a DER boolean`);
  return value[0] === 0xff;
}

const TIME_RE = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** Decodes UTCTime (0x17) or GeneralizedTime (0x18) in the RFC 5280 profile. */
export function decodeTime(r: DerReader, el: DerElement, field = "time"): Date {
  const text = Buffer.from(el.value).toString("latin1");
  const m = TIME_RE.exec(text);
  const expectedLength = el.tag === 0x17 ? 13 : el.tag === 0x18 ? 15 : -1;
  if (!m || text.length !== expectedLength) r.fail(`${field} is not a valid UTCTime or GeneralizedTime`);
  let year = Number(m[1]);
  if (el.tag === 0x17) year += year >= 50 ? 1900 : 2000;
  const [mo, d, h, mi, s] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const ms = Date.UTC(year, mo - 1, d, h, mi, s);
  const date = new Date(ms);
  // Date.UTC rolls over out-of-range fields (month 13, second 60); refuse those
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || date.getUTCHours() !== h || date.getUTCSeconds() !== s) {
    r.fail(`${field} is not a valid date`);
  }
  return date;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes the directory-string types names use; other tags yield undefined. */
export function decodeString(r: DerReader, el: DerElement, field = "string"): string | undefined {
  try {
    switch (el.tag) {
      case 0x0c: // UTF8String
        return utf8.decode(el.value);
      case 0x13: // PrintableString
      case 0x16: // IA5String
      case 0x14: // TeletexString, read as Latin-1 as most implementations do
        return Buffer.from(el.value).toString("latin1");
      case 0x1e: // BMPString: UTF-16BE
        if (el.value.length % 2) r.fail(`${field} is an odd-length BMPString`);
        return Buffer.from(el.value).swap16().toString("utf16le");
      default:
        return undefined;
    }
  } catch (e) {
    if (e instanceof TypeError) r.fail(`${field} is not valid UTF-8`);
    throw e;
  }
}
