/**
 * `machine-id keypair create`: make (or reuse) the key a bound_keypair token binds,
 * either in the bot's storage (standard mode) or as a static key the operator keeps
 * (a file, or an environment variable on hosts without storage).
 */

import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { generateKeyPair, keyId, privateKeyToPem, type KeyAlgorithm, type KeyPair } from "../../crypto/index.ts";
import { DEFAULT_STORAGE_PATH, parseStorageFlag } from "../../config/index.ts";
import { badParameter } from "../../lib/errors.ts";
import { fsError, writeFileAtomic } from "../../lib/fs.ts";
import type { Logger } from "../../lib/log.ts";
import type { PingResponse } from "../../protocol/index.ts";
import { BotStore } from "../bot/index.ts";
import { BoundKeyStore, readStaticKeyFile, retired } from "../bound_keypair/index.ts";
import { createDestination } from "../destinations/index.ts";
import { pingUnverified } from "./_ping.ts";

/** The flags of `keypair create`. */
export interface KeypairCreateOptions {
  /** A static key the operator keeps, instead of one in the bot's storage. */
  static: boolean;
  /** With `static`: write the key here (else it is printed for $TBOT_BOUND_KEYPAIR_STATIC_KEY). */
  staticKeyPath?: string;
  /** Without `static`: the bot's storage (a directory path or file:///path); default /var/lib/machine-id. */
  storage?: string;
  overwrite: boolean;
  /** Pinged to show the cluster's name; optional. */
  proxyServer?: string;
  algorithm: KeyAlgorithm;
}

/** Where the key lives after `keypair create`. */
export type KeyLocation =
  | { kind: "environment" }
  | { kind: "file"; path: string }
  | { kind: "storage"; path: string; description: string };

/** What `keypair create` did. */
export interface KeypairCreateResult {
  key: KeyPair;
  /** An existing key was kept (no --overwrite). */
  reused: boolean;
  location: KeyLocation;
  cluster?: PingResponse;
}

function checkFlags(o: KeypairCreateOptions): void {
  if (o.static && o.storage !== undefined) {
    throw badParameter(`Cannot use --storage with --static: a static key is kept by you, not in the bot's storage; pass --static-key-path to write it to a file`);
  }
  if (!o.static && o.staticKeyPath !== undefined) {
    throw badParameter(`Cannot use --static-key-path without --static`);
  }
}

/** Creates or reuses the keypair as the options say; writes files 0600, nothing when it fails. */
export async function createKeypair(o: KeypairCreateOptions, log: Logger, now: Date = new Date()): Promise<KeypairCreateResult> {
  checkFlags(o);
  // First, so an unreachable cluster stops the command before a key exists anywhere.
  const cluster = o.proxyServer !== undefined ? await pingUnverified(o.proxyServer) : undefined;
  const withCluster = <T extends object>(r: T) => ({ ...r, ...(cluster ? { cluster } : {}) });

  if (o.static && o.staticKeyPath === undefined) {
    return withCluster({ key: generateKeyPair(o.algorithm), reused: false, location: { kind: "environment" as const } });
  }
  if (o.static) {
    const path = resolve(o.staticKeyPath!);
    const location = { kind: "file" as const, path };
    if (existsSync(path) && !o.overwrite) {
      const key = await readStaticKeyFile(path);
      log.info("Reusing the existing static key; pass --overwrite to replace it", { path });
      return withCluster({ key, reused: true, location });
    }
    const key = generateKeyPair(o.algorithm);
    await writeKeyFile(path, privateKeyToPem(key.privateKey));
    return withCluster({ key, reused: false, location });
  }

  const storageConfig = parseStorageFlag(o.storage ?? DEFAULT_STORAGE_PATH);
  if (storageConfig.type !== "directory") {
    throw badParameter(`Cannot keep the bound keypair in "${o.storage}" storage: it would be lost when this command exits; pass a directory, or use --static`);
  }
  const store = new BotStore(createDestination(storageConfig, { log: log.child("storage") }));
  await store.init();
  const keys = new BoundKeyStore(store);
  const location = { kind: "storage" as const, path: resolve(storageConfig.path), description: store.description };
  const existing = await keys.loadKey();
  if (existing && !o.overwrite) {
    log.info("Reusing the bound keypair in storage; pass --overwrite to replace it", { storage: store.description });
    return withCluster({ key: existing, reused: true, location });
  }
  const key = generateKeyPair(o.algorithm);
  await keys.saveKey(key);
  if (existing && keyId(existing.publicKey) !== keyId(key.publicKey)) {
    // A rotation in flight belongs to the replaced key: drop it with the key.
    const { pendingKey: _dropped, ...state } = await keys.loadState();
    await keys.saveState({ ...state, history: [retired(existing, "replaced", now), ...state.history] });
  }
  return withCluster({ key, reused: false, location });
}

/** Writes a new static key file 0600; missing parent directories are created 0700. */
async function writeKeyFile(path: string, pem: string): Promise<void> {
  const dir = dirname(path);
  try {
    // Only directories this creates get 0700; an existing one is left as it is.
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fsError("create directory", dir, e);
  }
  await writeFileAtomic(path, pem, { mode: 0o600 });
}
