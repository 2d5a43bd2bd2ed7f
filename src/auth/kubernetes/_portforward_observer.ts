/**
 * Watches, passively, the client's half of a port-forward session for the ports it
 * forwards: kubectl names each port in a `port` header of the SPDY/3 streams it opens
 * (one `error` and one `data` stream per forwarded connection), not in the URL. Both of
 * kubectl's framings are read: legacy SPDY/3.1 (the bytes after the 101 are SPDY frames)
 * and WebSocket-tunnelled SPDY (`SPDY/3.1+portforward.k8s.io`: the payloads of the
 * client's binary messages, concatenated, are the SPDY byte stream).
 *
 * Hand-written rather than a library: it reads only the few frame headers it needs and
 * skips everything else by length (data frames are never copied or unmasked), and it
 * must stay strictly bounded against a hostile client. Whatever it cannot read makes it
 * stop and say so; it never throws to its caller and never touches the bytes it is shown.
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
  | "incomplete_header_block"
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
  /** Compressed header bytes handed to the inflater and not yet inflated. */
  maxBacklog: number;
}

/** The limits the proxy observes with: far above what kubectl sends (a header block of ~100 bytes, a few ports). */
export const DEFAULT_OBSERVER_LIMITS: ObserverLimits = {
  maxPorts: 64,
  maxControlFrame: 16 << 10,
  maxHeaderBlock: 16 << 10,
  maxBacklog: 256 << 10,
};

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
const HEADERS = 8;

/**
 * A port as the API server reads one: a decimal uint16 (strconv.ParseUint(s, 10, 16)).
 * Undefined for 0 and what it cannot parse: those are refused there, nothing is forwarded.
 */
export function portNumber(text: string): number | undefined {
  if (!/^[0-9]{1,16}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
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
 * Reads SPDY/3 frames from a byte stream: data frames and the control frames without a
 * header block are skipped by length; SYN_STREAM, SYN_REPLY and HEADERS have their
 * header block handed on (every block continues the direction's one zlib stream, so
 * none may be left out, though only SYN_STREAM's are looked at).
 */
class SpdyReader {
  /** Bytes of the current frame still to skip. */
  private skip = 0;
  private readonly head = new Uint8Array(8);
  private headLen = 0;
  private body: Uint8Array | undefined;
  private bodyLen = 0;
  private bodyType = 0;

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
      this.skip = length; // a data frame: its payload is never looked at
      return;
    }
    const version = ((h[0]! & 0x7f) << 8) | h[1]!;
    if (version !== 3) throw new Unreadable("bad_spdy_frame");
    const type = (h[2]! << 8) | h[3]!;
    if (type !== SYN_STREAM && type !== SYN_REPLY && type !== HEADERS) {
      this.skip = length; // SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY: nothing about ports
      return;
    }
    if (length < (type === SYN_STREAM ? 10 : 4)) throw new Unreadable("bad_spdy_frame");
    // the buffer is the bound on what a frame can make the proxy hold
    if (length > this.limits.maxControlFrame) throw new Unreadable("control_frame_too_large");
    this.bodyType = type;
    this.body = new Uint8Array(length);
    this.bodyLen = 0;
  }

  private controlFrame(): void {
    const body = this.body!;
    this.body = undefined;
    // SYN_STREAM: stream id, associated stream id, priority and slot; the others: stream id
    const block = body.subarray(this.bodyType === SYN_STREAM ? 10 : 4);
    if (block.length > 0) this.onBlock(this.bodyType === SYN_STREAM, block);
  }
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
 * caller's stack, so results come back by callback. Bounded three ways: compressed bytes
 * waiting (`maxBacklog`), decompressed bytes of one block (`maxHeaderBlock`: the inflater
 * is destroyed as soon as a block grows past it, so a zlib bomb stops at its first
 * output chunks), and blocks (never more out than were put in).
 */
class HeaderBlocks {
  private inflater: Inflate | undefined;
  /** For each block handed in and not yet parsed: whether it came with a SYN_STREAM. */
  private readonly queue: boolean[] = [];
  private out: Buffer = Buffer.alloc(0);
  private backlog = 0;
  private done = false;
  private accepting = true;

  constructor(
    private readonly limits: ObserverLimits,
    private readonly onHeaders: (h: Map<string, string>) => void,
    private readonly onFail: (why: UnparsedReason) => void,
  ) {}

  push(syn: boolean, block: Uint8Array): void {
    if (this.done || !this.accepting) return;
    this.backlog += block.length;
    if (this.backlog > this.limits.maxBacklog) return this.fail("header_backlog_too_large");
    this.queue.push(syn);
    this.inflater ??= this.start();
    const n = block.length;
    this.inflater.write(Buffer.from(block.buffer, block.byteOffset, n), () => (this.backlog -= n));
  }

  /** No more blocks come (the client's frames are no longer read); those handed in are still inflated. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /**
   * Waits until every block handed in is parsed. Resolves with a reason when one is
   * left unreadable (it lacked its end), undefined otherwise.
   */
  async drain(timeoutMs: number): Promise<UnparsedReason | undefined> {
    const inflater = this.inflater;
    if (this.done || !inflater || this.queue.length === 0) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        inflater.flush(() => resolve());
        // an error or a close ends the inflater without calling the flush back
        inflater.once("close", () => resolve());
      }),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref?.();
      }),
    ]);
    clearTimeout(timer);
    if (this.done) return undefined; // failed meanwhile: the reason is recorded
    return this.queue.length > 0 ? "incomplete_header_block" : undefined;
  }

  close(): void {
    this.done = true;
    this.out = Buffer.alloc(0);
    this.inflater?.destroy();
    this.inflater = undefined;
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
    this.out = this.out.length === 0 ? chunk : Buffer.concat([this.out, chunk]);
    for (;;) {
      const block = this.parse(this.out);
      if (!block) break;
      this.out = this.out.subarray(block.length);
      const syn = this.queue.shift();
      if (syn === undefined) throw new Unreadable("bad_header_block"); // more blocks out than went in
      if (syn) this.onHeaders(block.headers);
      if (this.done) return;
    }
    if (this.out.length > this.limits.maxHeaderBlock) throw new Unreadable("header_block_too_large");
  }

  /**
   * Parses one name/value block (a 32-bit count, then length-prefixed names and values)
   * at the start of `b`: its length and headers, or undefined while it is incomplete.
   */
  private parse(b: Buffer): { length: number; headers: Map<string, string> } | undefined {
    const max = this.limits.maxHeaderBlock;
    if (b.length < 4) return undefined;
    const count = b.readUInt32BE(0);
    // each pair takes 8 bytes at least
    if (count > max / 8) throw new Unreadable("header_block_too_large");
    const headers = new Map<string, string>();
    let off = 4;
    for (let i = 0; i < count; i++) {
      const pair: string[] = [];
      for (let k = 0; k < 2; k++) {
        if (b.length < off + 4) return undefined;
        const n = b.readUInt32BE(off);
        if (off + 4 + n > max) throw new Unreadable("header_block_too_large");
        if (b.length < off + 4 + n) return undefined;
        pair.push(b.toString("latin1", off + 4, off + 4 + n));
        off += 4 + n;
      }
      // Go's http.Header.Get, what the API server reads a stream's headers with: the
      // first value of a name in any case (several values of one line are NUL-separated)
      const name = pair[0]!.toLowerCase();
      if (!headers.has(name)) headers.set(name, pair[1]!.split("\0")[0]!);
    }
    return { length: off, headers };
  }
}
