/**
 * Static bound keys: a private key the operator owns (`keypair create --static`),
 * read from a file or from $TBOT_BOUND_KEYPAIR_STATIC_KEY (base64 of the PEM).
 */

import { stat, readFile } from "node:fs/promises";
import { parsePrivateKey, type KeyPair } from "../../crypto/index.ts";
import { badParameter } from "../../lib/errors.ts";
import { formatMode, fsError } from "../../lib/fs.ts";
import { base64DecodeStrict } from "../../lib/pem.ts";

/** The environment variable that carries a static key: base64 of its PEM. */
export const STATIC_KEY_ENV = "TBOT_BOUND_KEYPAIR_STATIC_KEY";

/** A static key and where it came from, for messages (`static key "/etc/key"`). */
export interface StaticKey {
  key: KeyPair;
  source: string;
}

const ENV_SOURCE = `static key in $${STATIC_KEY_ENV}`;

/**
 * Decodes the value of $TBOT_BOUND_KEYPAIR_STATIC_KEY: base64 of a PEM private key.
 * Whitespace is tolerated, so a value wrapped by a secret store still works.
 */
export function decodeStaticKeyEnv(value: string): KeyPair {
  const trimmed = value.trim();
  if (trimmed === "") throw badParameter(`Cannot read ${ENV_SOURCE}: it is empty`);
  if (trimmed.startsWith("-----BEGIN")) {
    // A common slip: the PEM itself pasted. Say exactly what to do instead.
    throw badParameter(`Cannot read ${ENV_SOURCE}: it holds a PEM; set it to the base64 of the PEM ("base64 -w0 KEYFILE"), as "machine-id keypair create --static" prints it`);
  }
  let bytes: Uint8Array;
  try {
    bytes = base64DecodeStrict(trimmed, ENV_SOURCE);
  } catch (e) {
    throw badParameter(`Cannot read ${ENV_SOURCE}: it is not valid base64; set it to the value "machine-id keypair create --static" printed`, { cause: e });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw badParameter(`Cannot read ${ENV_SOURCE}: its base64 does not decode to a PEM private key`, { cause: e });
  }
  return parsePrivateKey(text, ENV_SOURCE);
}

/**
 * Reads a static key file. Refused when group or others have any access: the key is
 * the bot's only credential on a host without storage, so a readable copy is a
 * stolen bot.
 */
export async function readStaticKeyFile(path: string): Promise<KeyPair> {
  const what = `static key "${path}"`;
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fsError("read static key", path, e);
  }
  if (!st.isFile()) throw badParameter(`Cannot read ${what}: it is not a regular file`);
  checkStaticKeyMode(path, st.mode);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw fsError("read static key", path, e);
  }
  return parsePrivateKey(text, what);
}

/** Throws unless `mode` keeps the key file to its owner. */
export function checkStaticKeyMode(path: string, mode: number): void {
  if ((mode & 0o044) !== 0) throw badParameter(`Cannot read static key "${path}": mode ${formatMode(mode)} lets others read it; run chmod 600 "${path}"`);
  if ((mode & 0o077) !== 0) throw badParameter(`Cannot read static key "${path}": mode ${formatMode(mode)} lets others change it; run chmod 600 "${path}"`);
}

/**
 * The static key the agent should use, if any: `static_private_key_path` from the
 * config wins over the environment, so an inherited variable cannot override what
 * the config file says. Undefined means standard (non-static) mode.
 */
export async function loadStaticKey(path: string | undefined, env: Record<string, string | undefined>): Promise<StaticKey | undefined> {
  if (path !== undefined) return { key: await readStaticKeyFile(path), source: `static key "${path}"` };
  const value = env[STATIC_KEY_ENV];
  if (value === undefined) return undefined;
  return { key: decodeStaticKeyEnv(value), source: ENV_SOURCE };
}
