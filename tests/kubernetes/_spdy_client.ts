/**
 * The client side of SPDY/3 port-forward, as kubectl writes it, for tests that speak it
 * by hand: SYN_STREAM header blocks compressed with the SPDY/3 dictionary in one zlib
 * stream per connection (each block ended by a sync flush, as Go's framer does), data
 * frames, and masked client WebSocket frames for the tunnelled framing.
 */

import { randomBytes } from "node:crypto";
import { constants as zlibConstants, createDeflate, type Deflate } from "node:zlib";
import { SPDY3_DICTIONARY } from "../_support/portforward.ts";

/** A SPDY/3 control frame of `type`. */
export function spdyControl(type: number, body: Uint8Array, flags = 0, version = 3): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | version, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([h, body]);
}

/** A SPDY/3 data frame. */
export function spdyData(stream: number, payload: Uint8Array, fin = false): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(stream & 0x7fffffff, 0);
  h.writeUInt32BE((((fin ? 1 : 0) << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

/** An uncompressed SPDY/3 name/value block. */
export function nameValueBlock(headers: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  parts.push(u32(headers.length));
  for (const [k, v] of headers) for (const s of [k, v]) parts.push(u32(Buffer.byteLength(s)), Buffer.from(s));
  return Buffer.concat(parts);
}

/** One client connection's writer: header blocks share its zlib context. */
export class SpdyClient {
  private readonly deflate: Deflate = createDeflate({ dictionary: SPDY3_DICTIONARY });
  private readonly out: Buffer[] = [];

  constructor() {
    this.deflate.on("data", (c: Buffer) => this.out.push(c));
  }

  /** `raw` compressed as the next header block (sync-flushed). */
  async compress(raw: Uint8Array): Promise<Buffer> {
    this.deflate.write(raw);
    await new Promise<void>((resolve) => this.deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    return Buffer.concat(this.out.splice(0));
  }

  /** A SYN_STREAM opening stream `id` with `headers`. */
  async synStream(id: number, headers: [string, string][]): Promise<Buffer> {
    const pre = Buffer.alloc(10);
    pre.writeUInt32BE(id & 0x7fffffff, 0);
    return spdyControl(1, Buffer.concat([pre, await this.compress(nameValueBlock(headers))]));
  }

  /** The two streams kubectl opens for one forwarded connection to `port`: error, then data. */
  async forward(firstId: number, port: number, request: number): Promise<Buffer> {
    return Buffer.concat([
      await this.synStream(firstId, [["streamtype", "error"], ["port", String(port)], ["requestid", String(request)]]),
      await this.synStream(firstId + 2, [["streamtype", "data"], ["port", String(port)], ["requestid", String(request)]]),
    ]);
  }

  close(): void {
    this.deflate.destroy();
  }
}

/** A masked client WebSocket frame (binary unless told). */
export function wsClientFrame(payload: Uint8Array, opts: { opcode?: number; fin?: boolean; mask?: Uint8Array } = {}): Buffer {
  return wsEncode(opts.opcode ?? 2, payload, opts.fin ?? true, opts.mask ?? randomBytes(4));
}

/** One WebSocket frame: masked with `mask` (a client's), or unmasked without (a server's). */
export function wsEncode(opcode: number, payload: Uint8Array, fin: boolean, mask?: Uint8Array): Buffer {
  const n = payload.length;
  const first = (fin ? 0x80 : 0) | opcode;
  const masked = mask ? 0x80 : 0;
  let head: Buffer;
  if (n < 126) head = Buffer.from([first, masked | n]);
  else if (n < 65536) {
    head = Buffer.from([first, masked | 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.from([first, masked | 127, 0, 0, 0, 0, 0, 0, 0, 0]);
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  const body = Buffer.from(payload);
  for (let i = 0; i < n; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([head, mask, body]);
}
