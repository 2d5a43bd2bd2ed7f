/**
 * Test helpers for the crypto tests: a self-removing temp dir, a synchronous runner for
 * the real tools (openssl, ssh-keygen) used as oracles, and a sample SSH certificate.
 */

import type { KeyObject } from "node:crypto";
import { generateKeyPair, signSshCertificate, type SignSshCertificateOptions } from "../../src/crypto/index.ts";
import { AppError, type ErrorCode } from "../../src/lib/errors.ts";
import { TempDir } from "../_support/tmp.ts";

/** A temp dir removed on dispose: `using dir = new TempDir()`. */
export { TempDir };

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/**
 * Runs a tool to completion (spawnSync reaps it) with TZ=UTC, so ssh-keygen reads and
 * prints validity times in UTC. Throws with the tool's stderr unless it exits 0 or
 * `allowFailure` is set.
 */
export function run(cmd: string[], opts: { input?: string | Uint8Array; allowFailure?: boolean } = {}): RunResult {
  const p = Bun.spawnSync({
    cmd,
    stdin: opts.input === undefined ? "ignore" : Buffer.from(opts.input),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, TZ: "UTC" },
  });
  const result = {
    code: p.exitCode ?? -1,
    stdout: p.stdout.toString(),
    stderr: p.stderr.toString(),
    stdoutBytes: new Uint8Array(p.stdout),
  };
  if (!opts.allowFailure && result.code !== 0) {
    throw new Error(`${cmd.join(" ")} exited ${result.code}: ${result.stderr}`);
  }
  return result;
}

/** Runs ssh-keygen to make a key pair at `path` (no passphrase); returns the private key text. */
export function sshKeygen(dir: TempDir, name: string, type: "ed25519" | "ecdsa" | "rsa", extra: string[] = []): string {
  const bits = type === "ecdsa" ? ["-b", "256"] : type === "rsa" ? ["-b", "2048"] : [];
  run(["ssh-keygen", "-q", "-t", type, ...bits, "-N", "", "-C", `${name}@test`, ...extra, "-f", dir.file(name)]);
  return dir.read(name);
}

/** Asserts `f` throws an AppError with `code` whose message matches `message`; returns it. */
export async function expectAppError(f: () => unknown, code: ErrorCode, message?: RegExp | string): Promise<AppError> {
  let caught: unknown;
  try {
    await f();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof AppError)) {
    throw new Error(`expected an AppError ${code}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  }
  const e = caught;
  if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`);
  if (message !== undefined) {
    const ok = typeof message === "string" ? e.message === message : message.test(e.message);
    if (!ok) throw new Error(`unexpected message: ${e.message}`);
  }
  return e;
}

/** 2030-01-01T00:00:00Z and 2030-01-02T12:30:15Z: the validity of sample certificates. */
export const SSH_T0 = new Date(Date.UTC(2030, 0, 1, 0, 0, 0));
export const SSH_T1 = new Date(Date.UTC(2030, 0, 2, 12, 30, 15));

/** A user certificate for a fresh Ed25519 key, principal "p", valid SSH_T0..SSH_T1; `change` overrides. */
export function sampleSshCertificate(caKey: KeyObject, change: Partial<SignSshCertificateOptions> = {}): string {
  return signSshCertificate({
    caKey,
    publicKey: generateKeyPair("ed25519").publicKey,
    certType: "user",
    keyId: "k",
    principals: ["p"],
    validAfter: SSH_T0,
    validBefore: SSH_T1,
    ...change,
  });
}
