/**
 * A small, strict DER writer and reader: only what X.509 certificates need. Hand-written
 * because @peculiar/asn1-schema (under @peculiar/x509) measured ~170 µs to serialize and
 * ~270 µs to parse one certificate under Bun, ten times the whole issuance budget.
 */

import { badParameter } from "../lib/errors.ts";
import { bufferView } from "./_bytes.ts";

// ---------------------------------------------------------------- writer
//
// Elements are built as a tree whose nodes know their encoded size, then written once
// into a single buffer by `encode()`: concatenating at every level allocated and copied
// each byte once per nesting depth, which was most of an issuance's JavaScript time.

/** A constructed or wrapped element, encoded by {@link encode}; its `size` includes the header. */
export interface DerNode {
  readonly tag: number;
  readonly parts: readonly Der[];
  /** Content length. */
  readonly length: number;
  /** Header plus content length. */
  readonly size: number;
}

/** Something DER-encodable: finished bytes (a whole element, or content inside a node) or a node. */
export type Der = Uint8Array | DerNode;

const sizeOf = (d: Der) => (d instanceof Uint8Array ? d.length : d.size);
const headerSize = (length: number) => (length < 0x80 ? 2 : length < 0x100 ? 3 : length < 0x10000 ? 4 : length < 0x1000000 ? 5 : 6);

/** One element: `tag`, then the DER length, then the `parts` in order (takes the array). */
function node(tag: number, parts: Der[]): DerNode {
  let length = 0;
  for (let i = 0; i < parts.length; i++) length += sizeOf(parts[i]!);
  return { tag, parts, length, size: headerSize(length) + length };
}

/** One element: `tag`, then the DER length, then the `parts` in order. */
export const tlv = (tag: number, ...parts: Der[]) => node(tag, parts);

function writeInto(out: Uint8Array, at: number, d: Der): number {
  if (d instanceof Uint8Array) {
    out.set(d, at);
    return at + d.length;
  }
  const { length } = d;
  out[at++] = d.tag;
  if (length < 0x80) out[at++] = length;
  else {
    const n = headerSize(length) - 2;
    out[at++] = 0x80 | n;
    for (let i = n - 1; i >= 0; i--) out[at++] = (length / 2 ** (8 * i)) & 0xff;
  }
  for (const p of d.parts) at = writeInto(out, at, p);
  return at;
}

/** The bytes of `d`, written into one buffer of exactly its size. */
export function encode(d: Der): Uint8Array {
  if (d instanceof Uint8Array) return d;
  const out = new Uint8Array(d.size);
  writeInto(out, 0, d);
  return out;
}

/** SEQUENCE of elements. */
export const sequence = (...parts: Der[]) => node(0x30, parts);
/** SET of elements (callers pass one element, so no DER sorting is needed). */
export const set = (...parts: Der[]) => node(0x31, parts);
/** OCTET STRING. */
export const octetString = (content: Der) => node(0x04, [content]);
// TextEncoder, not Buffer.from(text, "utf8"): same bytes (lone surrogates become U+FFFD in
// both), about a seventh of the time under Bun
const utf8Encoder = new TextEncoder();
/** UTF8String. */
export const utf8String = (text: string) => node(0x0c, [utf8Encoder.encode(text)]);
const TRUE = Uint8Array.of(0x01, 0x01, 0xff);
const FALSE = Uint8Array.of(0x01, 0x01, 0x00);
/** BOOLEAN (DER: 0xff for true). */
export const boolean = (value: boolean) => (value ? TRUE : FALSE);
/** `[n] EXPLICIT` (constructed context tag). */
export const explicit = (n: number, ...parts: Der[]) => node(0xa0 | n, parts);
/** `[n] IMPLICIT` over a primitive value. */
export const implicitPrimitive = (n: number, content: Der) => node(0x80 | n, [content]);

/** One zero byte: a BIT STRING with no unused bits, or the sign byte of a positive INTEGER. */
const ZERO_BYTE = Uint8Array.of(0);
/** A BIT STRING whose content is whole bytes. */
export const bitString = (content: Der) => node(0x03, [ZERO_BYTE, content]);

/**
 * A named-bit BIT STRING (as in KeyUsage) with bit 0 the most significant; DER drops
 * trailing zero bits and records how many bits of the last byte are unused.
 */
export function namedBits(bits: number[]): DerNode {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array((highest >> 3) + 1);
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  return node(0x03, [Uint8Array.of(7 - (highest & 7)), bytes]);
}

/** A non-negative INTEGER from its big-endian magnitude. */
export function unsignedInteger(magnitude: Uint8Array): Der {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  if (trimmed.length === 0) return Uint8Array.of(0x02, 0x01, 0x00);
  return trimmed[0]! & 0x80 ? node(0x02, [ZERO_BYTE, trimmed]) : node(0x02, [trimmed]);
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
  const encoded = encode(tlv(0x06, Uint8Array.from(body)));
  oidCache.set(dotted, encoded);
  return encoded;
}

/** Writes `n` (0..9999) as `width` ASCII digits at `at`. */
function digits(out: Uint8Array, at: number, n: number, width: number): void {
  for (let i = width - 1; i >= 0; i--, n = Math.floor(n / 10)) out[at + i] = 0x30 + (n % 10);
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(date: Date): Uint8Array {
  const y = date.getUTCFullYear();
  if (y < 0 || y > 9999) {
    // outside four digits: written as text, as the general form always was
    const rest = [date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()].map((n) => pad(n)).join("");
    return encode(tlv(0x18, Buffer.from(pad(y, 4) + rest + "Z", "latin1")));
  }
  const utc = y >= 1950 && y < 2050;
  const yearWidth = utc ? 2 : 4;
  // tag, length, YY(YY) MM DD hh mm ss Z
  const out = new Uint8Array(2 + yearWidth + 11);
  out[0] = utc ? 0x17 : 0x18;
  out[1] = yearWidth + 11;
  digits(out, 2, utc ? y % 100 : y, yearWidth);
  let at = 2 + yearWidth;
  for (const field of [date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]) {
    digits(out, at, field, 2);
    at += 2;
  }
  out[at] = 0x5a; // "Z"
  return out;
}

// ---------------------------------------------------------------- reader
//
// Readers and elements are offsets into the input; byte views are made only for the
// fields a caller keeps (a subarray per element was a tenth of a verification).

/** One decoded element: `raw` is the whole TLV, `value` its content. Both view the input. */
export class DerElement {
  constructor(
    readonly tag: number,
    /** The whole input the offsets point into. */
    readonly buf: Uint8Array,
    /** Offset of the tag byte. */
    readonly start: number,
    /** Offset of the content. */
    readonly valueStart: number,
    /** Offset just past the content. */
    readonly end: number,
  ) {}

  get raw(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  get value(): Uint8Array {
    return this.buf.subarray(this.valueStart, this.end);
  }
}

/**
 * Reads consecutive elements from a buffer (or a range of it). Strict DER only: definite
 * minimal lengths, single-byte tags; anything else is a BAD_PARAMETER naming `what`.
 */
export class DerReader {
  private pos: number;
  private readonly limit: number;
  // the last element's header, set by advance()
  private tag = 0;
  private start = 0;
  private valueStart = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
    from = 0,
    to = buf.length,
  ) {
    this.pos = from;
    this.limit = to;
  }

  fail(reason: string): never {
    throw badParameter(`Cannot parse ${this.what}: ${reason}`);
  }

  get done(): boolean {
    return this.pos >= this.limit;
  }

  peekTag(): number | undefined {
    return this.done ? undefined : this.buf[this.pos];
  }

  /** Reads the next element's header and moves past it; its bounds land in tag/start/valueStart/pos. */
  private advance(tag: number | undefined, field: string): void {
    const buf = this.buf;
    const limit = this.limit;
    const start = this.pos;
    if (start + 2 > limit) this.fail(`${field} is truncated`);
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
      if (at + n > limit) this.fail(`${field} is truncated`);
      if (buf[at] === 0) this.fail(`${field} has a non-minimal length`);
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + buf[at + i]!;
      if (length < 0x80) this.fail(`${field} has a non-minimal length`);
      at += n;
    }
    if (at + length > limit) this.fail(`${field} is truncated`);
    this.tag = t;
    this.start = start;
    this.valueStart = at;
    this.pos = at + length;
  }

  /** The next element; when `tag` is given it must match. */
  next(tag?: number, field = "element"): DerElement {
    this.advance(tag, field);
    return new DerElement(this.tag, this.buf, this.start, this.valueStart, this.pos);
  }

  /** Skips the next element (checked like {@link next}). */
  skip(tag?: number, field = "element"): void {
    this.advance(tag, field);
  }

  /** The next element if it has `tag`, else nothing (the position does not move). */
  optional(tag: number, field?: string): DerElement | undefined {
    return this.peekTag() === tag ? this.next(tag, field) : undefined;
  }

  /** A reader over the content of the next constructed element with `tag`. */
  enter(tag: number, field = "element"): DerReader {
    this.advance(tag, field);
    return new DerReader(this.buf, this.what, this.valueStart, this.pos);
  }

  /** Reads an OBJECT IDENTIFIER element into dotted form. */
  oid(field = "object identifier"): string {
    this.advance(0x06, field);
    return decodeOidRange(this, this.buf, this.valueStart, this.pos);
  }

  /** Throws unless every byte was consumed. */
  end(field = "value"): void {
    if (!this.done) this.fail(`unexpected data after ${field}`);
  }
}

function decodeOidRange(r: DerReader, buf: Uint8Array, from: number, to: number): string {
  if (to === from) r.fail("empty object identifier");
  const arcs: number[] = [];
  let v = 0;
  let digits = 0;
  for (let i = from; i < to; i++) {
    const byte = buf[i]!;
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

/** Decodes UTCTime (0x17) or GeneralizedTime (0x18) in the RFC 5280 profile: digits then "Z", whole seconds. */
export function decodeTime(r: DerReader, el: DerElement, field = "time"): Date {
  const value = el.value;
  const yearWidth = el.tag === 0x17 ? 2 : el.tag === 0x18 ? 4 : -1;
  let ok = yearWidth > 0 && value.length === yearWidth + 11 && value[value.length - 1] === 0x5a;
  for (let i = 0; ok && i < value.length - 1; i++) ok = value[i]! >= 0x30 && value[i]! <= 0x39;
  if (!ok) r.fail(`${field} is not a valid UTCTime or GeneralizedTime`);
  const num = (at: number, width: number) => {
    let n = 0;
    for (let i = at; i < at + width; i++) n = n * 10 + value[i]! - 0x30;
    return n;
  };
  let year = num(0, yearWidth);
  if (el.tag === 0x17) year += year >= 50 ? 1900 : 2000;
  const at = yearWidth;
  const [mo, d, h, mi, s] = [num(at, 2), num(at + 2, 2), num(at + 4, 2), num(at + 6, 2), num(at + 8, 2)];
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
        return bufferView(el.value).toString("latin1");
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
