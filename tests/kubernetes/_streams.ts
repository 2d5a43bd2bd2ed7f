/**
 * The streaming half of the fake API server: what kubectl 1.32 speaks after a
 * connection upgrade. Hand-written rather than a library because a double must show
 * exactly what goes over the wire and needs only the server side of each:
 *
 * - RFC 6455 WebSocket framing, with the channel protocols `v5.channel.k8s.io` and
 *   `v4.channel.k8s.io` (one byte of channel, then data: 0 stdin, 1 stdout, 2 stderr,
 *   3 the error channel's Status, 4 resize, and in v5 255 "close this channel").
 * - SPDY/3.1 framing, for port-forward over WebSocket (`SPDY/3.1+portforward.k8s.io`)
 *   or as the legacy `Upgrade: SPDY/3.1`, and for exec and attach over legacy SPDY
 *   (`X-Stream-Protocol-Version: v5`/`v4.channel.k8s.io`, kubectl's fallback). The client's
 *   header blocks are inflated with the SPDY/3 dictionary: each stream says what it is
 *   in its `streamtype` header. Header blocks the server sends are zlib stored blocks
 *   (valid zlib, no dictionary needed).
 *
 * The "pod" runs a few commands: `echo`, `cat` (stdin to stdout), `hold` (writes, then
 * waits for the test), `false`, `test -d`, and the two tar commands `kubectl cp` runs.
 */

import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { constants as zlibConstants, inflateSync } from "node:zlib";
import { SPDY3_DICTIONARY } from "../_support/portforward.ts";
import { nameValueBlock, spdyControl, spdyData, wsEncode } from "./_spdy_client.ts";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Encodes one unmasked server frame. */
export function wsFrame(opcode: number, payload: Uint8Array): Buffer {
  return wsEncode(opcode, payload, true);
}

/** A WebSocket connection, server side: whole messages in, messages out. */
export class WsConn {
  private buf = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  closed = false;

  constructor(
    readonly sock: Socket,
    private readonly onMessage: (data: Buffer) => void,
    private readonly onClose: () => void = () => {},
  ) {
    sock.on("data", (d: Buffer) => this.feed(d));
    sock.on("close", () => {
      if (!this.closed) {
        this.closed = true;
        this.onClose();
      }
    });
    sock.on("error", () => {});
  }

  send(data: Uint8Array): void {
    if (!this.sock.destroyed) this.sock.write(wsFrame(2, data));
  }

  close(code = 1000): void {
    if (this.sock.destroyed) return;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    this.sock.write(wsFrame(8, p));
    this.sock.end();
  }

  feed(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) return;
      const fin = (this.buf[0]! & 0x80) !== 0;
      const opcode = this.buf[0]! & 0x0f;
      const masked = (this.buf[1]! & 0x80) !== 0;
      let len = this.buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      const maskAt = off;
      if (masked) off += 4;
      if (this.buf.length < off + len) return;
      const payload = Buffer.from(this.buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i]! ^= this.buf[maskAt + (i % 4)]!;
      this.buf = this.buf.subarray(off + len);
      if (opcode === 8) {
        this.closed = true;
        this.close();
        this.onClose();
        return;
      }
      if (opcode === 9) {
        this.sock.write(wsFrame(10, payload));
        continue;
      }
      if (opcode === 10) continue;
      this.fragments.push(payload);
      if (fin) {
        const msg = Buffer.concat(this.fragments);
        this.fragments = [];
        this.onMessage(msg);
      }
    }
  }
}

/** The 101 answer to a WebSocket handshake, choosing the first of `offered` this server speaks. */
export function wsAccept(key: string, protocol: string): string {
  const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`;
}

// ---------------------------------------------------------------- tar (ustar, what kubectl cp reads and writes)

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, "utf8");
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h.write(size.toString(8).padStart(11, "0") + "\0", 124);
  h.write(Math.floor(Date.now() / 1000).toString(8).padStart(11, "0") + "\0", 136);
  h.write("        ", 148);
  h.write("0", 156);
  h.write("ustar\0", 257);
  h.write("00", 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return h;
}

/** A tar archive of files. */
export function makeTar(files: Record<string, string | Uint8Array>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.from(content);
    parts.push(tarHeader(name, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The regular files of a tar archive. */
export function readTar(tar: Buffer): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    const prefix = h.subarray(345, 500).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(h.subarray(124, 136).toString("latin1").replace(/\0.*$/s, "").trim() || "0", 8);
    const type = String.fromCharCode(h[156]!);
    off += 512;
    if (type === "0" || type === "\0") out[prefix ? `${prefix}/${name}` : name] = Buffer.from(tar.subarray(off, off + size));
    off += Math.ceil(size / 512) * 512;
  }
  return out;
}

// ---------------------------------------------------------------- the pod: exec and attach, whatever the transport

/** What the fake pod's containers have and do, shared with the test. */
export interface PodWorld {
  /** Files in the pod, by absolute path (`kubectl cp` from the pod reads them). */
  files: Map<string, Buffer>;
  /** Directories that exist (`test -d`). */
  dirs: Set<string>;
  /** `hold` waits until this is called (or its session ends). */
  releaseHolds(): void;
  /** Exec and attach sessions that are open now. */
  openSessions: number;
}

export function newPodWorld(): PodWorld & { holds: Set<() => void> } {
  const holds = new Set<() => void>();
  return {
    files: new Map(),
    dirs: new Set(["/", "/tmp"]),
    holds,
    openSessions: 0,
    releaseHolds() {
      for (const h of [...holds]) h();
      holds.clear();
    },
  };
}

const success = { metadata: {}, status: "Success" };
const exitCode = (code: number) => ({
  metadata: {},
  status: "Failure",
  message: `command terminated with non-zero exit code: error executing command, exit code ${code}`,
  reason: "NonZeroExitCode",
  details: { causes: [{ reason: "ExitCode", message: String(code) }] },
});

/** How a transport carries one session's output: the same for WebSocket channels and SPDY streams. */
interface PodOutput {
  /** Writes to the client's stdout (1) or stderr (2). */
  write(channel: 1 | 2, data: string | Uint8Array): void;
  /** The command ended: its Status goes on the error channel and the session closes. */
  finish(status: object): void;
}

/** The transport's handle on a running session, for what comes from the client. */
interface PodSession {
  stdin(chunk: Buffer): void;
  /** stdin ended (v5's close message, SPDY's FIN on the stdin stream). */
  stdinEnd(): void;
  /** The client went away: the command stops, no Status is sent. */
  gone(): void;
}

/**
 * Runs an exec (command) or attach (no command) session in the "pod": `echo`, `cat`
 * (stdin to stdout), `hold` (writes, then waits for the test), `false`, `test -d`, and
 * the two tar commands `kubectl cp` runs.
 */
function runInPod(world: PodWorld & { holds: Set<() => void> }, opts: { command: string[] | undefined; stdin: boolean }, io: PodOutput): PodSession {
  world.openSessions++;
  const stdinChunks: Buffer[] = [];
  let stdinDone = !opts.stdin;
  let onStdin: (() => void) | undefined;
  let finished = false;
  let leave: () => void = () => {};
  const left = new Promise<void>((resolve) => (leave = resolve));
  function end(status?: object) {
    if (finished) return;
    finished = true;
    world.openSessions--;
    if (status) io.finish(status);
  }
  const out = (ch: 1 | 2, data: string | Uint8Array) => {
    if (!finished) io.write(ch, data);
  };
  const stdinEnd = () =>
    new Promise<void>((resolve) => {
      if (stdinDone) return resolve();
      onStdin = () => stdinDone && resolve();
    });

  /** stdin to stdout as it comes, then success once stdin ends. */
  const echoStdin = () => {
    let sent = 0;
    onStdin = () => {
      for (; sent < stdinChunks.length; sent++) out(1, stdinChunks[sent]!);
      if (stdinDone) end(success);
    };
    onStdin();
  };

  const cmd = opts.command;
  void (async () => {
    if (cmd === undefined) {
      // attach: the container's output, then its stdin echoed until it ends
      out(1, "attached to main\n");
      return opts.stdin ? echoStdin() : end(success);
    }
    const [prog, ...args] = cmd;
    if (prog === "echo") {
      out(1, args.join(" ") + "\n");
      return end(success);
    }
    if (prog === "false") return end(exitCode(1));
    if (prog === "cat") return echoStdin();
    if (prog === "hold") {
      out(1, "started\n");
      await Promise.race([new Promise<void>((resolve) => world.holds.add(resolve)), left]);
      out(1, "done\n");
      return end(success);
    }
    if (prog === "test" && args[0] === "-d") return end(world.dirs.has(args[1]!.replace(/\/+$/, "") || "/") ? success : exitCode(1));
    if (prog === "tar" && args[0] === "cf" && args[1] === "-") {
      const path = args[2]!;
      const data = world.files.get(path);
      if (!data) {
        out(2, `tar: ${path}: Cannot stat: No such file or directory\n`);
        return end(exitCode(2));
      }
      out(1, makeTar({ [path.replace(/^\/+/, "")]: data }));
      return end(success);
    }
    if (prog === "tar" && (args[0] === "-xmf" || args[0] === "xmf") && args[1] === "-") {
      const dir = args[2] === "-C" ? args[3]! : "/";
      await stdinEnd();
      for (const [name, data] of Object.entries(readTar(Buffer.concat(stdinChunks)))) world.files.set(`${dir.replace(/\/+$/, "")}/${name}`, data);
      return end(success);
    }
    out(2, `${prog}: command not found\n`);
    end(exitCode(127));
  })();

  return {
    stdin(chunk) {
      stdinChunks.push(chunk);
      onStdin?.();
    },
    stdinEnd() {
      stdinDone = true;
      onStdin?.();
    },
    gone() {
      stdinDone = true;
      onStdin?.();
      leave();
      end();
    },
  };
}

/**
 * Serves an exec or attach session on a channel WebSocket (`v5`/`v4.channel.k8s.io`):
 * the socket has had its 101 written. `v5` adds the close-channel message for stdin's end.
 */
export function serveChannels(sock: Socket, world: PodWorld & { holds: Set<() => void> }, opts: { command: string[] | undefined; stdin: boolean }): void {
  let session: PodSession | undefined = undefined;
  const ws = new WsConn(
    sock,
    (msg) => {
      if (msg[0] === 0) session?.stdin(msg.subarray(1));
      else if (msg[0] === 255 && msg[1] === 0) session?.stdinEnd();
    },
    () => session?.gone(),
  );
  const send = (ch: number, data: string | Uint8Array) => ws.send(Buffer.concat([Buffer.from([ch]), Buffer.from(data)]));
  session = runInPod(world, opts, {
    write: send,
    finish(status) {
      if (ws.closed) return;
      send(3, JSON.stringify(status));
      ws.close();
    },
  });
}

// ---------------------------------------------------------------- SPDY/3.1 framing

const SPDY_SYN_STREAM = 1;
const SPDY_SYN_REPLY = 2;
const SPDY_RST_STREAM = 3;
const SPDY_PING = 6;
const FLAG_FIN = 1;
/** What the pod writes in one data frame at most (a kubelet copies in 32 KiB reads). */
const SPDY_DATA_CHUNK = 32 << 10;

/** What a SPDY session tells its user about the client's streams. */
interface SpdyHandlers {
  /** A stream the client opened (SYN_STREAM), with its headers (names lowercased). It has been replied to. */
  stream(id: number, headers: Map<string, string>): void;
  /** Data on a stream; `fin`: the client's half of it ended. */
  data(id: number, body: Buffer, fin: boolean): void;
  /** The client reset a stream. */
  reset?(id: number): void;
}

/**
 * A SPDY/3.1 server session: reads the client's frames (header blocks inflated with the
 * SPDY/3 dictionary), replies to each stream it opens and to pings, and writes data
 * frames. `write` sends bytes to the client (raw, or one WebSocket message each when
 * tunnelled). No flow control: kubectl's SPDY library (Go's spdystream) neither waits
 * for WINDOW_UPDATE before sending past a stream's initial 64 KiB nor asks for one, so
 * the double sends none and ignores the client's.
 */
class SpdySession {
  private buf = Buffer.alloc(0);
  private headerStarted = false;
  /** Every header-block byte the client sent: one zlib stream, inflated again whole each time (a few blocks per session). */
  private compressedIn = Buffer.alloc(0);
  private inflatedLength = 0;

  constructor(
    private readonly write: (b: Buffer) => void,
    private readonly on: SpdyHandlers,
  ) {}

  /** A header block as zlib stored blocks: a valid continuation of one zlib stream per direction. */
  private headerBlock(headers: [string, string][]): Buffer {
    const raw = nameValueBlock(headers);
    const stored = Buffer.alloc(5);
    stored[0] = 0; // not final, stored
    stored.writeUInt16LE(raw.length, 1);
    stored.writeUInt16LE(~raw.length & 0xffff, 3);
    const zhead = this.headerStarted ? Buffer.alloc(0) : Buffer.from([0x78, 0x01]);
    this.headerStarted = true;
    // the empty stored block of a zlib sync flush: Go's inflater hands out what it has only when it sees one
    return Buffer.concat([zhead, stored, raw, Buffer.from([0, 0, 0, 0xff, 0xff])]);
  }

  /** The client's next header block: its bytes continue the one zlib stream of this direction. */
  private readHeaders(block: Buffer): Map<string, string> {
    this.compressedIn = Buffer.concat([this.compressedIn, block]);
    const all = inflateSync(this.compressedIn, { dictionary: SPDY3_DICTIONARY, finishFlush: zlibConstants.Z_SYNC_FLUSH });
    const raw = all.subarray(this.inflatedLength);
    this.inflatedLength = all.length;
    const headers = new Map<string, string>();
    let off = 4;
    const str = () => {
      const n = raw.readUInt32BE(off);
      const s = raw.subarray(off + 4, off + 4 + n).toString("utf8");
      off += 4 + n;
      return s;
    };
    for (let i = raw.readUInt32BE(0); i > 0; i--) {
      const name = str().toLowerCase();
      headers.set(name, str());
    }
    return headers;
  }

  private control(type: number, flags: number, body: Buffer): void {
    this.write(spdyControl(type, body, flags));
  }

  /** Sends data on a stream, in frames of at most 32 KiB; `fin` ends the server's half. */
  send(stream: number, body: Uint8Array, fin = false): void {
    let off = 0;
    do {
      const part = body.subarray(off, off + SPDY_DATA_CHUNK);
      off += part.length;
      this.write(spdyData(stream, part, fin && off >= body.length));
    } while (off < body.length);
  }

  feed(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4) & 0xffffff;
      if (this.buf.length < 8 + len) return;
      const frame = this.buf.subarray(0, 8 + len);
      this.buf = this.buf.subarray(8 + len);
      const flags = frame[4]!;
      const body = frame.subarray(8);
      if (frame[0]! & 0x80) {
        const type = frame.readUInt16BE(2);
        if (type === SPDY_SYN_STREAM) {
          const id = body.readUInt32BE(0) & 0x7fffffff;
          // stream id, associated stream id, priority and slot, then the header block
          const headers = this.readHeaders(body.subarray(10));
          const reply = Buffer.alloc(4);
          reply.writeUInt32BE(id);
          this.control(SPDY_SYN_REPLY, 0, Buffer.concat([reply, this.headerBlock([])]));
          this.on.stream(id, headers);
          if (flags & FLAG_FIN) this.on.data(id, Buffer.alloc(0), true);
        } else if (type === SPDY_PING) {
          this.control(SPDY_PING, 0, Buffer.from(body));
        } else if (type === SPDY_RST_STREAM) {
          this.on.reset?.(body.readUInt32BE(0) & 0x7fffffff);
        }
        // SETTINGS, WINDOW_UPDATE, GOAWAY: nothing the double acts on
        continue;
      }
      this.on.data(frame.readUInt32BE(0) & 0x7fffffff, Buffer.from(body), (flags & FLAG_FIN) !== 0);
    }
  }
}

// ---------------------------------------------------------------- exec and attach over legacy SPDY (v5/v4.channel.k8s.io)

/**
 * The SPDY remote-command subprotocols this double speaks: v4 reports the exit code as a
 * Status on the error stream; v5 is the same over SPDY (its close message is WebSocket's
 * only: SPDY half-closes a stream by itself).
 */
export const SPDY_EXEC_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/**
 * Serves an exec or attach session over legacy SPDY (`Upgrade: SPDY/3.1`, the 101 with
 * `X-Stream-Protocol-Version: v5.channel.k8s.io` or `v4` written). kubectl opens one stream per
 * channel, named by its `streamtype` header: `error` first, then `stdin`, `stdout`,
 * `stderr` (and `resize` with a TTY) as the query asks; the command runs once all of
 * them are open. At its end the Status goes on the error stream, every stream the
 * server holds is ended (kubectl waits for stdout's and stderr's end), then the
 * connection. `streamTypes` receives each stream's type as it opens.
 */
export function serveSpdyChannels(
  sock: Socket,
  head: Buffer,
  world: PodWorld & { holds: Set<() => void> },
  opts: { command: string[] | undefined; query: URLSearchParams; streamTypes: string[] },
): void {
  const q = (name: string) => opts.query.get(name) === "true" || opts.query.get(name) === "1";
  const tty = q("tty");
  const expected = new Set(["error", ...(q("stdin") ? ["stdin"] : []), ...(q("stdout") ? ["stdout"] : []), ...(q("stderr") && !tty ? ["stderr"] : []), ...(tty ? ["resize"] : [])]);
  const ids = new Map<string, number>();
  let session: PodSession | undefined = undefined;
  const spdy = new SpdySession((b) => !sock.destroyed && sock.write(b), {
    stream(id, headers) {
      const type = headers.get("streamtype") ?? "";
      opts.streamTypes.push(type);
      ids.set(type, id);
      if (session || ![...expected].every((t) => ids.has(t))) return;
      session = runInPod(world, { command: opts.command, stdin: expected.has("stdin") }, {
        write(ch, data) {
          const id = ids.get(ch === 1 ? "stdout" : "stderr");
          if (id !== undefined) spdy.send(id, Buffer.from(data));
        },
        finish(status) {
          if (sock.destroyed) return;
          spdy.send(ids.get("error")!, Buffer.from(JSON.stringify(status)), true);
          for (const t of ["stdin", "stdout", "stderr", "resize"]) if (ids.has(t)) spdy.send(ids.get(t)!, Buffer.alloc(0), true);
          sock.end();
        },
      });
    },
    data(id, body, fin) {
      if (id !== ids.get("stdin")) return; // resize events and the error stream's end: nothing the pod acts on
      if (body.length > 0) session?.stdin(body);
      if (fin) session?.stdinEnd();
    },
  });
  sock.on("data", (d: Buffer) => spdy.feed(d));
  sock.once("close", () => session?.gone());
  if (head.length) spdy.feed(head);
}

// ---------------------------------------------------------------- port-forward over SPDY/3.1

/**
 * A SPDY/3.1 server session for port-forward. `write` sends bytes to the client (raw,
 * or one WebSocket message each when tunnelled). kubectl opens two streams per
 * forwarded connection, `streamtype` `error` and `data`, sharing a `requestid`; each
 * connection's data is answered by `respond` (the "pod's port").
 */
export class SpdyPortForward {
  private readonly spdy: SpdySession;
  private readonly streams = new Map<number, { type: string; request: string }>();
  /** Data received on data streams, in order. */
  readonly received: string[] = [];

  constructor(write: (b: Buffer) => void, respond: (data: string) => string) {
    this.spdy = new SpdySession(write, {
      stream: (id, headers) => this.streams.set(id, { type: headers.get("streamtype") ?? "", request: headers.get("requestid") ?? "" }),
      data: (id, body, fin) => {
        const s = this.streams.get(id);
        if (s?.type !== "data") return;
        if (body.length > 0) {
          const text = body.toString("utf8");
          this.received.push(text);
          this.spdy.send(id, Buffer.from(respond(text)));
        }
        if (!fin) return;
        this.spdy.send(id, Buffer.alloc(0), true);
        for (const [other, o] of this.streams) if (o.type === "error" && o.request === s.request) this.spdy.send(other, Buffer.alloc(0), true);
      },
      reset: (id) => this.streams.delete(id),
    });
  }

  feed(d: Buffer): void {
    this.spdy.feed(d);
  }
}
