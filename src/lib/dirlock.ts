/**
 * An exclusive lock on a directory for the life of the process: `flock(2)` on a lock
 * file inside it, with the holder's PID written into the file for the refusal message.
 *
 * Why flock, reached through bun:ffi: node:fs has no flock, and the alternative (a PID
 * file created with O_EXCL) needs stale-PID detection that is racy (two starters can
 * both decide a lock is stale and delete each other's fresh one) and fooled by PID
 * reuse. A flock is released by the kernel when the process dies however it dies, so
 * there is nothing stale to detect, and it conflicts between two opens of the file even
 * within one process. The Bun executable is itself dynamically linked against glibc's
 * `libc.so.6` (build.ts targets bun-linux-<arch>), so the library is there wherever
 * the binary runs; this was checked in a `bun build --compile` binary.
 */

import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { AppError } from "./errors.ts";
import { fsError } from "./fs.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

interface Libc {
  flock(fd: number, op: number): number;
  errno(): number;
}

let libc: Libc | undefined;

/** Loaded on first use: bun:ffi stays out of processes that never lock anything. */
async function loadLibc(): Promise<Libc> {
  if (libc) return libc;
  const { dlopen, FFIType, read } = await import("bun:ffi");
  const lib = dlopen("libc.so.6", {
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  });
  libc = {
    flock: (fd, op) => lib.symbols.flock(fd, op),
    errno: () => read.i32(lib.symbols.__errno_location()!, 0),
  };
  return libc;
}

/** A held lock; `release()` unlocks it (closing the file), idempotent. */
export interface DirLock {
  path: string;
  release(): void;
}

/**
 * Takes the exclusive lock `path` (a file, created 0600 if missing) without waiting.
 * When another process holds it: LOCKED with `details.reason` "held" and `details.pid`
 * (the holder's PID as it wrote it, when readable); `what` names the locked thing in
 * the message.
 */
export async function lockExclusive(path: string, what: string): Promise<DirLock> {
  const c = await loadLibc();
  // no O_TRUNC: the file holds the current holder's PID until we have the lock
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw fsError("open the lock file", path, e);
  }
  if (c.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = c.errno();
    closeSync(fd);
    if (errno !== EWOULDBLOCK) {
      throw new AppError("INTERNAL", `Cannot lock ${what}: flock("${path}") failed with errno ${errno}`, { details: { reason: "flock_failed", errno } });
    }
    const pid = holderPid(path);
    throw new AppError("LOCKED", `Cannot lock ${what}: it is in use by process ${pid ?? "(unknown PID)"} (lock file "${path}")`, {
      details: { reason: "held", ...(pid !== undefined ? { pid } : {}) },
    });
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`, 0);
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      // The file stays: a starter that opened it just before a delete would lock the
      // deleted file while the next one creates and locks a new one, and both would run.
      // Closing the only descriptor unlocks.
      closeSync(fd);
    },
  };
}

function holderPid(path: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
