/**
 * The SSH wire encoding (RFC 4251 §5): uint32, uint64, string, mpint. Used for public
 * key blobs, OpenSSH private keys and certificates.
 */

import { badParameter } from "../lib/errors.ts";

/**
 * Accumulates SSH wire values in one growing buffer; `finish()` returns a copy of the
 * bytes. (A small array per field, concatenated at the end, was a tenth of signing.)
 */
export class SshWriter {
  private buf: Buffer;
  private length = 0;

  constructor(capacity = 512) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** Makes room for `n` more bytes. */
  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(grown, 0, 0, this.length);
    this.buf = grown;
  }

  u32(n: number): this {
    this.reserve(4);
    this.buf.writeUInt32BE(n, this.length);
    this.length += 4;
    return this;
  }

  u64(n: bigint): this {
    this.reserve(8);
    this.buf.writeBigUInt64BE(n, this.length);
    this.length += 8;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }

  /** A length-prefixed byte string; text is encoded as UTF-8. */
  string(value: Uint8Array | string): this {
    if (typeof value !== "string") return this.u32(value.length).raw(value);
    // UTF-8 takes at most 3 bytes per UTF-16 unit; write in place, then the length
    this.reserve(4 + value.length * 3);
    const written = this.buf.write(value, this.length + 4, "utf8");
    this.buf.writeUInt32BE(written, this.length);
    this.length += 4 + written;
    return this;
  }

  /** A length-prefixed string whose content `fill` writes into this writer (no inner buffer). */
  nested(fill: (w: this) => void): this {
    this.reserve(4);
    const at = this.length;
    this.length += 4;
    fill(this);
    this.buf.writeUInt32BE(this.length - at - 4, at);
    return this;
  }

  /** A non-negative mpint from its big-endian magnitude (RFC 4251: minimal, sign byte if needed). */
  mpint(magnitude: Uint8Array): this {
    let i = 0;
    while (i < magnitude.length && magnitude[i] === 0) i++;
    const m = magnitude.subarray(i);
    if (m.length > 0 && m[0]! & 0x80) return this.u32(m.length + 1).raw(ZERO).raw(m);
    return this.string(m);
  }

  /** The bytes so far as standard base64 (without copying them out first). */
  base64(): string {
    return this.buf.toString("base64", 0, this.length);
  }

  /** A copy of the bytes so far, as a plain Uint8Array (not a view of the writer's pooled buffer). */
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    this.buf.copy(out, 0, 0, this.length);
    return out;
  }
}

const ZERO = Uint8Array.of(0);

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads SSH wire values; every failure is a BAD_PARAMETER naming `what`. */
export class SshReader {
  private pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(reason: string): never {
    throw badParameter(`Cannot parse ${this.what}: ${reason}`);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (this.remaining < n) this.fail(`${field} is truncated`);
  }

  u32(field = "uint32"): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  u64(field = "uint64"): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }

  bytes(n: number, field = "data"): Uint8Array {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  string(field = "string"): Uint8Array {
    return this.bytes(this.u32(field), field);
  }

  /** A string that must be valid UTF-8. */
  text(field = "string"): string {
    const bytes = this.string(field);
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail(`${field} is not valid UTF-8`);
    }
  }

  /** A non-negative mpint, returned as its minimal big-endian magnitude. */
  mpint(field = "mpint"): Uint8Array {
    const b = this.string(field);
    if (b.length === 0) return b;
    if (b[0]! & 0x80) this.fail(`${field} is negative`);
    if (b[0] === 0 && (b.length === 1 || !(b[1]! & 0x80))) this.fail(`${field} is not minimally encoded`);
    return b[0] === 0 ? b.subarray(1) : b;
  }

  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  /** Throws unless every byte was consumed. */
  end(field = "value"): void {
    if (this.remaining !== 0) this.fail(`unexpected data after ${field}`);
  }
}
