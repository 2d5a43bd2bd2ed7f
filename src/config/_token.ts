/**
 * `onboarding.token` may be the token itself or a file holding it, as in tbot: a
 * value starting with "/" or "./" that names an existing file is read at load time.
 */

import { existsSync, readFileSync } from "node:fs";
import { badParameter } from "../lib/errors.ts";
import { fsError } from "../lib/fs.ts";

/** The token value, and the file it came from when it was read from one. */
export interface ResolvedToken {
  token: string;
  tokenPath?: string;
}

/**
 * Resolves a token setting. A "./" path is relative to the working directory, as a
 * path given on the command line would be. A path-like value naming no file is taken
 * as the token itself, since tokens may legitimately start with "/" (tbot does the same).
 */
export function resolveToken(value: string): ResolvedToken {
  if (!(value.startsWith("/") || value.startsWith("./")) || !existsSync(value)) return { token: value };
  let content: string;
  try {
    content = readFileSync(value, "utf8");
  } catch (e) {
    throw fsError("read token file", value, e);
  }
  const token = content.trim();
  if (!token) throw badParameter(`Cannot use token file "${value}": it is empty`);
  return { token, tokenPath: value };
}
