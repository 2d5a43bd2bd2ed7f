/**
 * Sends AF_UNIX datagrams through libc via bun:ffi. Neither Node's nor Bun's socket
 * APIs offer unix datagram sockets, and sd_notify needs exactly that; bun:ffi is built
 * into Bun (and into the compiled executable), so no native addon is involved.
 */

import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { AppError, badParameter } from "./errors.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
// MSG_DONTWAIT: a full receive queue must never block the event loop; MSG_NOSIGNAL: no SIGPIPE.
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un) on Linux: a 2-byte family and a 108-byte path. */
const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 108;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  11: "EAGAIN",
  13: "EACCES",
  22: "EINVAL",
  91: "EPROTOTYPE",
  97: "EAFNOSUPPORT",
  105: "ENOBUFS",
  111: "ECONNREFUSED",
};

type Libc = ReturnType<typeof openLibc>;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: {
      args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
      returns: FFIType.i64,
    },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  try {
    libc = openLibc();
  } catch (e) {
    // The executable is a glibc build of Bun, so libc.so.6 is always there where it runs.
    throw new AppError("NOT_IMPLEMENTED", `Cannot load "libc.so.6" to send unix datagrams: ${String(e)}`, { cause: e });
  }
  return libc;
}

function errnoName(l: Libc): string {
  const p = l.symbols.__errno_location();
  const n = p === null ? 0 : read.i32(p, 0);
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

/**
 * Encodes a socket address the way sd_notify reads `$NOTIFY_SOCKET`: an absolute path,
 * or `@name` for the abstract namespace (a leading NUL byte and no terminator).
 */
export function encodeUnixAddress(address: string): { addr: Uint8Array; length: number } {
  const abstract = address.startsWith("@");
  if (!abstract && !address.startsWith("/")) {
    throw badParameter(`Cannot use notify socket "${address}": it must be an absolute path or start with "@"`);
  }
  const name = Buffer.from(abstract ? "\0" + address.slice(1) : address, "utf8");
  // A path needs room for its terminating NUL; an abstract name uses every byte it is given.
  if (name.length > (abstract ? SUN_PATH_MAX : SUN_PATH_MAX - 1) || name.length < 2) {
    throw badParameter(`Cannot use notify socket "${address}": the address must be 1 to 107 bytes long`);
  }
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, 2);
  return { addr, length: 2 + name.length + (abstract ? 0 : 1) };
}

/** A connectionless AF_UNIX datagram sender bound to one destination address. */
export class UnixDatagramSender {
  private fd = -1;
  private readonly addr: Uint8Array;
  private readonly addrLength: number;

  constructor(readonly address: string) {
    const { addr, length } = encodeUnixAddress(address);
    this.addr = addr;
    this.addrLength = length;
  }

  /** Sends one datagram; throws CONNECTION_PROBLEM naming the errno when the kernel refuses it. */
  send(message: string | Uint8Array): void {
    const l = loadLibc();
    if (this.fd < 0) {
      const fd = l.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new AppError("CONNECTION_PROBLEM", `Cannot open a unix datagram socket: ${errnoName(l)}`);
      this.fd = fd;
    }
    const data = typeof message === "string" ? Buffer.from(message, "utf8") : message;
    if (data.length === 0) throw badParameter("Cannot send an empty datagram");
    const sent = Number(
      l.symbols.sendto(this.fd, ptr(data), data.length, MSG_DONTWAIT | MSG_NOSIGNAL, ptr(this.addr), this.addrLength),
    );
    if (sent < 0) {
      throw new AppError("CONNECTION_PROBLEM", `Cannot send to notify socket "${this.address}": ${errnoName(l)}`);
    }
  }

  /** Closes the socket; idempotent, and a later send() opens a new one. */
  close(): void {
    if (this.fd >= 0) {
      loadLibc().symbols.close(this.fd);
      this.fd = -1;
    }
  }
}
