/**
 * Watches, passively, the client's half of a port-forward session for the ports it
 * forwards: kubectl names each port in a `port` header of the SPDY/3 streams it opens
 * (one `error` and one `data` stream per forwarded connection), not in the URL. Both of
 * kubectl's framings are read: legacy SPDY/3.1 (the bytes after the 101 are SPDY frames)
 * and WebSocket-tunnelled SPDY (`SPDY/3.1+portforward.k8s.io`: the payloads of the
 * client's binary messages, concatenated, are the SPDY byte stream).
 *
 * Hand-written rather than a library: it reads only the few frame headers it needs and
 * skips data frames by length (never copied or unmasked), and it must stay strictly
 * bounded against a hostile client. It reads control frames exactly as the kubelet's
 * (and API server's) SPDY framer, Go's moby/spdystream, does: that framer reads fixed
 * sizes and ignores a frame's length, so a frame whose length disagrees would make the
 * two read different frames from the same bytes; on such a frame, or anything else it
 * cannot read as Go would, the observer stops and says so. It never throws to its caller
 * and never touches the bytes it is shown.
 */

import { createInflate, type Inflate } from "node:zlib";

/** How far a session's ports were seen. */
export type PortsObserved =
  /** Every stream the client opened was read: `ports` is the full list. */
  | "complete"
  /** More distinct ports than the cap: `ports` holds the first ones. */
  | "capped"
  /** Something could not be read (see `reason`): `ports` holds those seen before it. */
  | "unparsed";

/** Why observing stopped, as data (`ports_unparsed_reason` in the audit). */
export type UnparsedReason =
  | "bad_websocket_frame"
  | "websocket_text_message"
  | "bad_spdy_frame"
  | "control_frame_too_large"
  | "header_block_too_large"
  | "bad_header_block"
  | "bad_header_compression"
  | "header_backlog_too_large"
  | "too_many_header_blocks"
  | "incomplete_header_block"
  | "inflate_timeout"
  | "observer_failed";

/** What a session's observer found, once the session is over. */
export interface PortsSeen {
  /** Distinct ports, in the order their first stream was opened. */
  ports: number[];
  observed: PortsObserved;
  reason?: UnparsedReason;
}

/** The framing of the client's bytes after the 101. */
export type PortForwardFraming = "spdy" | "websocket";

/** The bounds an observer keeps to; the defaults suit kubectl with room to spare. */
export interface ObserverLimits {
  /** Distinct ports recorded; past it, observing stops (`capped`). */
  maxPorts: number;
  /** Largest control frame body buffered (a SYN_STREAM of kubectl is ~100 bytes). */
  maxControlFrame: number;
  /** Largest decompressed header block (the zlib-bomb bound). */
  maxHeaderBlock: number;
  /** Compressed header bytes handed in and not yet inflated, each block charged `BLOCK_OVERHEAD` more. */
  maxBacklog: number;
  /** Header blocks handed in and not yet parsed (each one is a frame Go parses one block from). */
  maxQueuedBlocks: number;
  /**
   * Header blocks read in the whole session: each costs the proxy ~1–2 µs of CPU, so this
   * bounds what one session can make it spend (kubectl sends two per forwarded connection).
   */
  maxSessionBlocks: number;
}

/** The limits the proxy observes with: far above what kubectl sends (a header block of ~100 bytes, a few ports). */
export const DEFAULT_OBSERVER_LIMITS: ObserverLimits = {
  maxPorts: 64,
  maxControlFrame: 16 << 10,
  maxHeaderBlock: 16 << 10,
  maxBacklog: 256 << 10,
  maxQueuedBlocks: 1024,
  maxSessionBlocks: 200_000,
};

/**
 * What each header block handed in is charged in the backlog besides its bytes: a block
 * of one byte still costs the observer an entry and a view until it is inflated, so
 * many tiny blocks reach the cap as many large ones do.
 */
export const BLOCK_OVERHEAD = 256;

/** How long `finish` waits for header blocks still being inflated (a safety net: it takes microseconds). */
const FINISH_TIMEOUT_MS = 10_000;

/**
 * The zlib dictionary SPDY/3 header blocks are compressed with (SPDY Protocol draft 3,
 * section 2.6.10.1): length-prefixed header names and values, then common text. zlib
 * checks its Adler-32, so a wrong byte here fails every decode.
 */
export const SPDY3_DICTIONARY = (() => {
  const words = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
    "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
    "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
    "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
    "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
  ];
  const tail =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized" +
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable" +
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain," +
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
  const parts = words.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length);
    b.write(w, 4, "latin1");
    return b;
  });
  return Buffer.concat([...parts, Buffer.from(tail, "latin1")]);
})();

const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const WINDOW_UPDATE = 9;

/**
 * A port as the kubelet and API server read one: a decimal uint16 as Go's
 * strconv.ParseUint(s, 10, 16) parses it (any number of leading zeros, no sign, no
 * space). Undefined for 0 and what it cannot parse: those are refused there, nothing is
 * forwarded.
 */
export function portNumber(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const digits = text.replace(/^0+/, "");
  // past five digits it is out of range, however long (and Number() would round it)
  if (digits.length > 5) return undefined;
  const port = Number(digits);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * The ports of a URL's `ports` parameters as the API server converts them
 * (Convert_Slice_string_To_Slice_int32: each value split on ",", each part a port as
 * `portNumber` reads it), distinct, in order. A part it cannot parse makes the API
 * server refuse the request; here it is left out.
 */
export function urlPorts(values: string[]): number[] {
  const ports = new Set<number>();
  for (const v of values) for (const part of v.split(",")) {
    const port = portNumber(part);
    if (port !== undefined) ports.add(port);
  }
  return [...ports];
}

/** Thrown inside the observer only, and turned into its `unparsed` state. */
class Unreadable extends Error {
  constructor(readonly reason: UnparsedReason) {
    super(reason);
  }
}

/**
 * Observes one port-forward session. `feed` it every byte the client sends after its
 * request headers, in order; `onPort` is called once per distinct port, when the first
 * stream for it is opened (asynchronously: header blocks are inflated off the caller's
 * stack). `finish` once the session is over.
 *
 * Contract: `feed` never throws and never keeps a reference to the chunk past its call
 * (only control frames, at most `maxControlFrame` bytes, are copied).
 */
export class PortForwardObserver {
  private readonly ports = new Set<number>();
  /** Set once observing stopped; the first cause wins. */
  private stopped: { state: "capped" | "unparsed"; reason?: UnparsedReason } | undefined;
  /** The client's frames are no longer read (a framing error, the cap, a WebSocket close). */
  private reading = true;
  private readonly ws: WebSocketReader | undefined;
  private readonly spdy: SpdyReader;
  private readonly headers: HeaderBlocks;

  constructor(
    framing: PortForwardFraming,
    private readonly onPort: (port: number) => void,
    private readonly limits: ObserverLimits = DEFAULT_OBSERVER_LIMITS,
  ) {
    this.headers = new HeaderBlocks(limits, (h) => this.stream(h), (why) => this.stop("unparsed", why));
    this.spdy = new SpdyReader(limits, (syn, block) => this.headers.push(syn, block));
    this.ws = framing === "websocket" ? new WebSocketReader(this.spdy) : undefined;
  }

  /** Shows the observer the next bytes from the client. */
  feed(chunk: Uint8Array): void {
    if (!this.reading) return;
    try {
      if (this.ws) this.ws.feed(chunk);
      else this.spdy.feed(chunk, 0, chunk.length);
      if (this.ws?.closed) this.stopReading();
    } catch (e) {
      // what was read before the bad frame still counts: its header blocks are inflated on
      this.stopReading();
      this.stopped ??= { state: "unparsed", reason: e instanceof Unreadable ? e.reason : "observer_failed" };
    }
  }

  /**
   * What the observer holds now, for tests of its bounds: header blocks not yet parsed,
   * their charge against `maxBacklog`, and inflater writes in flight.
   */
  holding(): { blocks: number; backlog: number; writes: number } {
    return this.headers.holding();
  }

  /** What was seen, once every header block handed over has been read; frees what the observer holds. */
  async finish(): Promise<PortsSeen> {
    this.stopReading();
    const r = await this.headers.drain(FINISH_TIMEOUT_MS);
    if (r) this.stop("unparsed", r);
    this.headers.close();
    const { state, reason } = this.stopped ?? { state: "complete" as const };
    return { ports: [...this.ports], observed: state, ...(reason ? { reason } : {}) };
  }

  private stream(h: Map<string, string>): void {
    if (this.stopped?.state === "capped") return;
    const type = h.get("streamtype");
    if (type !== "data" && type !== "error") return;
    const port = portNumber(h.get("port") ?? "");
    if (port === undefined || this.ports.has(port)) return;
    if (this.ports.size >= this.limits.maxPorts) return this.stop("capped");
    this.ports.add(port);
    this.onPort(port);
  }

  private stopReading(): void {
    this.reading = false;
    this.headers.stopAccepting();
  }

  /** Stops everything: nothing more is read or inflated. */
  private stop(state: "capped" | "unparsed", reason?: UnparsedReason): void {
    this.stopReading();
    this.stopped ??= { state, ...(reason ? { reason } : {}) };
    this.headers.close();
  }
}

/**
 * Reads SPDY/3 frames from a byte stream as Go's moby/spdystream framer does (spdy/read.go):
 * data frames are skipped by length; every control frame is buffered whole (they are
 * small) and held to the fixed size Go reads of its type, since Go ignores the length
 * field and would read whatever follows a short or long frame as the next frames.
 * SYN_STREAM, SYN_REPLY and HEADERS have their header block handed on (every block
 * continues the direction's one zlib stream, so none may be left out, though only
 * SYN_STREAM's are looked at). Where Go's framer fails, and so ends the connection, the
 * reader stops: nothing after it reaches a stream.
 */
class SpdyReader {
  /** Bytes of the current frame still to skip. */
  private skip = 0;
  private readonly head = new Uint8Array(8);
  private headLen = 0;
  private body: Uint8Array | undefined;
  private bodyLen = 0;
  private bodyType = 0;
  private bodyFlags = 0;
  private bodyLength = 0;

  constructor(
    private readonly limits: ObserverLimits,
    private readonly onBlock: (syn: boolean, block: Uint8Array) => void,
  ) {}

  /** Bytes that will be skipped before anything is read again (the caller may skip them without showing them). */
  skipping(): number {
    return this.skip;
  }

  /** Skips `n` ≤ `skipping()` bytes. */
  skipBytes(n: number): void {
    this.skip -= n;
  }

  /** How many bytes the reader copies next, at most: the rest of a frame header or control frame body. */
  wanting(): number {
    return this.body ? this.body.length - this.bodyLen : 8 - this.headLen;
  }

  /** Reads `buf[from, to)`. */
  feed(buf: Uint8Array, from: number, to: number): void {
    let i = from;
    while (i < to) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, to - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.wanting(), to - i);
      if (this.body) {
        this.body.set(buf.subarray(i, i + n), this.bodyLen);
        this.bodyLen += n;
        i += n;
        if (this.bodyLen === this.body.length) this.controlFrame();
        continue;
      }
      this.head.set(buf.subarray(i, i + n), this.headLen);
      this.headLen += n;
      i += n;
      if (this.headLen === 8) this.frameHead();
    }
  }

  private frameHead(): void {
    const h = this.head;
    this.headLen = 0;
    const length = (h[5]! << 16) | (h[6]! << 8) | h[7]!;
    if ((h[0]! & 0x80) === 0) {
      // a data frame: its payload is never looked at; Go fails one of stream 0
      if (streamId(h, 0) === 0) throw new Unreadable("bad_spdy_frame");
      this.skip = length;
      return;
    }
    // the version is not checked: Go's framer reads it and ignores it
    const type = (h[2]! << 8) | h[3]!;
    if (!bodyLengthOk(type, length)) throw new Unreadable("bad_spdy_frame");
    // the buffer is the bound on what a frame can make the proxy hold
    if (length > this.limits.maxControlFrame) throw new Unreadable("control_frame_too_large");
    this.bodyType = type;
    this.bodyFlags = h[4]!;
    this.bodyLength = length;
    // SETTINGS: only its count is read before deciding, as Go decides on it (its entries are skipped)
    this.body = new Uint8Array(type === SETTINGS ? 4 : length);
    this.bodyLen = 0;
  }

  private controlFrame(): void {
    const body = this.body!;
    this.body = undefined;
    const type = this.bodyType;
    // what else Go's framer fails on in these frames, ending the connection
    const bad =
      // (the whole 32-bit word: Go compares it unmasked, so a reserved bit set is no stream 0)
      type === RST_STREAM ? u32(body, 0) === 0 || u32(body, 4) === 0 // stream 0, status 0
      : type === SETTINGS ? this.bodyLength !== 4 + 8 * u32(body, 0) // exactly its entries: Go reads those, not the length
      : type === PING ? u32(body, 0) === 0 || this.bodyFlags !== 0
      : type === GOAWAY || type === WINDOW_UPDATE ? this.bodyFlags !== 0
      : u32(body, 0) === 0; // SYN_STREAM, SYN_REPLY, HEADERS of stream 0 (Go reads their block, then fails)
    if (bad) throw new Unreadable("bad_spdy_frame");
    if (type === SETTINGS) this.skip = this.bodyLength - 4;
    if (type !== SYN_STREAM && type !== SYN_REPLY && type !== HEADERS) return;
    // SYN_STREAM: stream id, associated stream id, priority and slot; the others: stream id.
    // An empty block is handed on too: Go parses a block for it from what the stream holds.
    this.onBlock(type === SYN_STREAM, body.subarray(type === SYN_STREAM ? 10 : 4));
  }
}

/** Whether a control frame of `type` may have a body of `length` bytes, as Go's framer reads it; false for a type Go does not know. */
function bodyLengthOk(type: number, length: number): boolean {
  switch (type) {
    case SYN_STREAM:
      return length >= 10;
    case SYN_REPLY:
    case HEADERS:
      return length >= 4;
    case RST_STREAM:
    case GOAWAY:
    case WINDOW_UPDATE:
      return length === 8;
    case PING:
      return length === 4;
    case SETTINGS:
      return length >= 4; // and 4 + 8 × its count, checked once read
    default:
      return false; // NOOP, CREDENTIAL, unknown: Go's framer fails (InvalidControlFrame)
  }
}

/** The big-endian 32-bit word at `at`. */
function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** The 31-bit stream id at `at` (the top bit is reserved). */
function streamId(b: Uint8Array, at: number): number {
  return u32(b, at) & 0x7fffffff;
}

/**
 * Reads the client's WebSocket frames (RFC 6455) and hands the payloads of binary
 * messages to the SPDY reader, unmasking only the bytes it copies: what the SPDY reader
 * skips is skipped here unread.
 */
class WebSocketReader {
  /** A close frame was seen: nothing after it is the session's. */
  closed = false;
  private readonly head = new Uint8Array(14);
  private headLen = 0;
  /** Payload bytes of the current frame left; -1 while reading a frame header. */
  private left = -1;
  private payloadIsSpdy = false;
  private readonly mask = new Uint8Array(4);
  /** Position in the current frame's payload, for the mask. */
  private pos = 0;
  /** A fragmented binary message is open (continuation frames follow). */
  private inMessage = false;

  constructor(private readonly spdy: SpdyReader) {}

  feed(buf: Uint8Array): void {
    let i = 0;
    while (i < buf.length && !this.closed) {
      if (this.left < 0) {
        i = this.readHead(buf, i);
        continue;
      }
      const end = i + Math.min(this.left, buf.length - i);
      if (this.payloadIsSpdy) this.payload(buf, i, end);
      this.pos += end - i;
      this.left -= end - i;
      i = end;
      if (this.left === 0) this.left = -1;
    }
  }

  /** Reads frame-header bytes from `buf` at `i`; returns where it stopped. */
  private readHead(buf: Uint8Array, i: number): number {
    const h = this.head;
    while (i < buf.length) {
      h[this.headLen++] = buf[i++]!;
      const need = this.headNeeds();
      if (need !== undefined && this.headLen >= need) {
        this.frameHead(need);
        break;
      }
    }
    return i;
  }

  /** The header's full length, once enough of it is known. */
  private headNeeds(): number | undefined {
    if (this.headLen < 2) return undefined;
    const len7 = this.head[1]! & 0x7f;
    // the client's frames are masked: 4 bytes of key after the length
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
  }

  private frameHead(size: number): void {
    const h = this.head;
    this.headLen = 0;
    const fin = (h[0]! & 0x80) !== 0;
    const opcode = h[0]! & 0x0f;
    // RSV bits mean an extension (permessage-deflate): payloads would not be SPDY bytes as sent
    if ((h[0]! & 0x70) !== 0 || (h[1]! & 0x80) === 0) throw new Unreadable("bad_websocket_frame");
    const len7 = h[1]! & 0x7f;
    let length: number;
    if (len7 === 126) length = (h[2]! << 8) | h[3]!;
    else if (len7 === 127) {
      const hi = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
      if (hi > 0x1fffff) throw new Unreadable("bad_websocket_frame"); // past 2^53
      length = hi * 2 ** 32 + (((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!);
    } else length = len7;
    this.mask.set(h.subarray(size - 4, size));
    this.pos = 0;
    this.left = length;
    if (opcode >= 8) {
      // control frames: short, unfragmented; a close ends what the session carries
      if (!fin || length > 125 || opcode > 10) throw new Unreadable("bad_websocket_frame");
      if (opcode === 8) this.closed = true;
      this.payloadIsSpdy = false;
    } else if (opcode === 2 || opcode === 0) {
      // a binary message, or the continuation of the one open
      if ((opcode === 0) !== this.inMessage) throw new Unreadable("bad_websocket_frame");
      this.inMessage = !fin;
      this.payloadIsSpdy = true;
    } else if (opcode === 1) {
      throw new Unreadable("websocket_text_message");
    } else throw new Unreadable("bad_websocket_frame");
    if (length === 0) this.left = -1;
  }

  /** Shows the SPDY reader `buf[from, to)` of the payload: what it skips stays masked and uncopied. */
  private payload(buf: Uint8Array, from: number, to: number): void {
    let i = from;
    while (i < to) {
      const skip = Math.min(this.spdy.skipping(), to - i);
      if (skip > 0) {
        this.spdy.skipBytes(skip);
        i += skip;
        continue;
      }
      const n = Math.min(this.spdy.wanting(), to - i);
      const plain = new Uint8Array(n);
      const at = this.pos + (i - from);
      for (let k = 0; k < n; k++) plain[k] = buf[i + k]! ^ this.mask[(at + k) & 3]!;
      this.spdy.feed(plain, 0, n);
      i += n;
    }
  }
}

/**
 * Inflates the direction's header blocks (one zlib stream with the SPDY/3 dictionary,
 * each block ended by a sync flush) and parses each decompressed name/value block.
 * node:zlib's stream inflater keeps the one context across blocks; it works off the
 * caller's stack, so results come back by callback. Blocks that arrive while a write is
 * in flight are joined into the next one, so the inflater holds at most two writes
 * however many tiny blocks a client sends. Bounded four ways: blocks not yet parsed
 * (`maxQueuedBlocks`), compressed bytes waiting plus `BLOCK_OVERHEAD` a block
 * (`maxBacklog`), decompressed bytes of one block (`maxHeaderBlock`: the inflater is
 * destroyed as soon as a block grows past it, so a zlib bomb stops at its first output
 * chunks), and blocks out (never more than were put in).
 */
class HeaderBlocks {
  private inflater: Inflate | undefined;
  /** For each block handed in and not yet parsed: whether it came with a SYN_STREAM. */
  private readonly queue: boolean[] = [];
  /** Blocks handed in while a write was in flight, and what they are charged. */
  private pending: Uint8Array[] = [];
  private pendingCharge = 0;
  /** Inflater writes not yet called back. */
  private writes = 0;
  private backlog = 0;
  /** How many of the zlib header's two bytes went to the inflater, and its first as sent. */
  private headerAt = 0;
  private cmf = 0;
  /** Blocks handed in over the session. */
  private total = 0;
  private readonly blocks: NameValueReader;
  private done = false;
  private accepting = true;

  constructor(
    private readonly limits: ObserverLimits,
    private readonly onHeaders: (h: Map<string, string>) => void,
    private readonly onFail: (why: UnparsedReason) => void,
  ) {
    this.blocks = new NameValueReader(limits.maxHeaderBlock);
  }

  push(syn: boolean, block: Uint8Array): void {
    if (this.done || !this.accepting) return;
    if (++this.total > this.limits.maxSessionBlocks) return this.fail("too_many_header_blocks");
    const charge = block.length + BLOCK_OVERHEAD;
    if (this.queue.length >= this.limits.maxQueuedBlocks || this.backlog + charge > this.limits.maxBacklog) {
      return this.fail("header_backlog_too_large");
    }
    this.backlog += charge;
    this.queue.push(syn);
    this.pending.push(block);
    this.pendingCharge += charge;
    if (this.writes === 0) this.writePending();
  }

  holding(): { blocks: number; backlog: number; writes: number } {
    return { blocks: this.queue.length, backlog: this.backlog, writes: this.writes };
  }

  /** No more blocks come (the client's frames are no longer read); those handed in are still inflated. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /**
   * Waits until every block handed in is parsed. Resolves with a reason when one is
   * left unreadable (it lacked its end) or the inflater took longer than `timeoutMs`,
   * undefined otherwise.
   */
  async drain(timeoutMs: number): Promise<UnparsedReason | undefined> {
    if (this.done || this.queue.length === 0) return undefined;
    this.writePending();
    const inflater = this.inflater;
    if (!inflater) return this.queue.length > 0 ? "incomplete_header_block" : undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      new Promise<boolean>((resolve) => {
        inflater.flush(() => resolve(false));
        // an error or a close ends the inflater without calling the flush back
        inflater.once("close", () => resolve(false));
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
        timer.unref?.();
      }),
    ]);
    clearTimeout(timer);
    if (this.done) return undefined; // failed meanwhile: the reason is recorded
    if (timedOut) return "inflate_timeout";
    return this.queue.length > 0 ? "incomplete_header_block" : undefined;
  }

  /** Stops for good and lets go of everything held. */
  close(): void {
    this.done = true;
    this.pending = [];
    this.pendingCharge = 0;
    this.queue.length = 0;
    this.backlog = 0;
    this.writes = 0;
    this.blocks.clear();
    this.inflater?.destroy();
    this.inflater = undefined;
  }

  /** Hands the blocks waiting to the inflater as one write. */
  private writePending(): void {
    if (this.done || this.pending.length === 0) return;
    const parts = this.pending;
    const charge = this.pendingCharge;
    this.pending = [];
    this.pendingCharge = 0;
    const chunk = parts.length === 1 ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.length) : Buffer.concat(parts);
    if (this.headerAt < 2) this.fullWindow(chunk);
    this.inflater ??= this.start();
    this.writes++;
    this.inflater.write(chunk, () => {
      if (this.done) return;
      this.writes--;
      this.backlog -= charge;
      if (this.writes === 0) this.writePending();
    });
  }

  /**
   * Go's zlib reader decodes with a 32 KiB window and the whole dictionary whatever window
   * the stream's header declares (CINFO), while zlib honours it and fails on a reference
   * farther back: a client could switch the observer off with a small one. So the header
   * is handed to the inflater declaring 32 KiB (CINFO 7), its check bits recomputed. A
   * header Go refuses (not deflate, CINFO over 7, check bits wrong) stays refused. The
   * bytes are rewritten in place: a block is the SPDY reader's own copy of its frame, never
   * the client's bytes.
   */
  private fullWindow(out: Buffer): void {
    for (let i = 0; i < out.length && this.headerAt < 2; i++, this.headerAt++) {
      if (this.headerAt === 0) {
        this.cmf = out[0]!;
        // deflate (CM 8) with a window under 32 KiB: declare 32 KiB
        if ((this.cmf & 0x0f) === 8 && this.cmf >> 4 < 7) out[0] = 0x78;
        continue;
      }
      if (this.cmf === 0x78 || (this.cmf & 0x0f) !== 8 || this.cmf >> 4 > 7) continue; // left as sent
      const flg = out[i]!;
      const valid = ((this.cmf << 8) | flg) % 31 === 0;
      // FDICT and FLEVEL kept, FCHECK made to fit 0x78, or kept wrong when it was
      const top = flg & 0xe0;
      const check = (31 - (((0x78 << 8) | top) % 31)) % 31;
      out[i] = valid ? top | check : top | (check ^ 1);
    }
  }

  private start(): Inflate {
    const z = createInflate({ dictionary: SPDY3_DICTIONARY });
    z.on("data", (chunk: Buffer) => {
      if (this.done) return;
      try {
        this.inflated(chunk);
      } catch (e) {
        this.fail(e instanceof Unreadable ? e.reason : "observer_failed");
      }
    });
    z.on("error", () => this.fail("bad_header_compression"));
    return z;
  }

  private fail(why: UnparsedReason): void {
    if (this.done) return;
    this.close();
    this.onFail(why);
  }

  private inflated(chunk: Buffer): void {
    this.blocks.append(chunk);
    for (let headers = this.blocks.next(); headers; headers = this.blocks.next()) {
      const syn = this.queue.shift();
      if (syn === undefined) throw new Unreadable("bad_header_block"); // more blocks out than went in
      if (syn) this.onHeaders(headers);
      if (this.done) return;
    }
  }
}

// ignoreBOM: a leading U+FEFF is part of the name to Go, never dropped
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Parses name/value blocks (a 32-bit count, then length-prefixed names and values) from
 * the inflated bytes as they come, resuming where it stopped: each byte is looked at
 * once, however finely a block is cut. Holds at most one block's bytes (`max`).
 */
class NameValueReader {
  private buf = Buffer.alloc(0);
  /** Bytes of `buf` in use, and where the current block starts and the parse is. */
  private len = 0;
  private start = 0;
  private at = 0;
  /** Fields (names and values) of the current block left, -1 before its count is read. */
  private fields = -1;
  private name: string | undefined;
  private headers = new Map<string, string>();

  constructor(private readonly max: number) {}

  append(chunk: Uint8Array): void {
    if (this.start > 0) {
      // the bytes of parsed blocks go: what is kept is part of one block
      this.buf.copyWithin(0, this.start, this.len);
      this.len -= this.start;
      this.at -= this.start;
      this.start = 0;
    }
    if (this.len + chunk.length > this.buf.length) {
      const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.len + chunk.length, 256));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
  }

  /** The next whole block's headers, or undefined until more bytes come. */
  next(): Map<string, string> | undefined {
    const b = this.buf;
    if (this.fields < 0) {
      if (this.len - this.at < 4) return this.bounded();
      const count = b.readUInt32BE(this.at);
      // each pair takes 8 bytes at least
      if (count > this.max / 8) throw new Unreadable("header_block_too_large");
      this.at += 4;
      this.fields = 2 * count;
    }
    while (this.fields > 0) {
      if (this.len - this.at < 4) return this.bounded();
      const n = b.readUInt32BE(this.at);
      if (this.at - this.start + 4 + n > this.max) throw new Unreadable("header_block_too_large");
      if (this.len - this.at < 4 + n) return this.bounded();
      const from = this.at + 4;
      this.at += 4 + n;
      this.fields--;
      if (this.name === undefined) {
        // Go's framer fails a block with a name not in lower case (strings.ToLower, which
        // also changes invalid UTF-8), ending the connection
        const name = utf8.decode(b.subarray(from, from + n));
        if (name !== name.toLowerCase() || name.includes("\uFFFD")) throw new Unreadable("bad_header_block");
        // keyed by its exact bytes, as Go keys a name (only an all-token name is rewritten,
        // "port" to "Port"): no decoding may make another name read as `port`
        this.name = b.toString("latin1", from, from + n);
        continue;
      }
      const text = b.toString("latin1", from, from + n);
      // Go's http.Header.Get, what the kubelet reads a stream's headers with: the first
      // value of a name (several values of one line are NUL-separated)
      if (!this.headers.has(this.name)) this.headers.set(this.name, text.split("\0")[0]!);
      this.name = undefined;
    }
    const headers = this.headers;
    this.headers = new Map();
    this.fields = -1;
    this.start = this.at;
    return headers;
  }

  clear(): void {
    this.buf = Buffer.alloc(0);
    this.len = this.start = this.at = 0;
  }

  /** Undefined, once it is sure the block being read stays within the cap. */
  private bounded(): undefined {
    if (this.len - this.start > this.max) throw new Unreadable("header_block_too_large");
    return undefined;
  }
}
