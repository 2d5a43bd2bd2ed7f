/**
 * How ctl finds and authenticates to the auth service: an identity file (the
 * local admin identity by default) whose CA certificates verify the server and
 * whose client certificate proves who is asking.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_AUTH_DATA_DIR } from "../config/index.ts";
import { badParameter } from "../lib/errors.ts";
import { fsError } from "../lib/fs.ts";
import { ADMIN_IDENTITY_FILE, AuthClient, parseIdentityFile } from "../protocol/index.ts";


export interface ConnectOptions {
  authServer?: string;
  identity?: string;
  dataDir?: string;
}

/** Opens a client for `opts`, reading the identity file. */
export async function connect(opts: ConnectOptions): Promise<{ client: AuthClient; cluster?: string; addr: string }> {
  const path =
    opts.identity ?? process.env.MACHINE_ID_IDENTITY ?? join(opts.dataDir ?? process.env.MACHINE_ID_DATA_DIR ?? DEFAULT_AUTH_DATA_DIR, ADMIN_IDENTITY_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const err = fsError("read identity", path, e);
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      const named = opts.identity ?? process.env.MACHINE_ID_IDENTITY;
      throw badParameter(
        named
          ? `${err.message}: pass --identity FILE with a copy of the auth service's admin-identity`
          : `${err.message}: on the auth host pass --data-dir DIR, the auth service's --data-dir (default ${DEFAULT_AUTH_DATA_DIR}); elsewhere pass --identity FILE (a copy of admin-identity) and --auth-server host:port`,
        { details: { reason: "no_identity" } },
      );
    }
    throw err;
  }
  const id = parseIdentityFile(text, `identity file "${path}"`);
  const addr = opts.authServer ?? process.env.MACHINE_ID_AUTH_SERVER ?? id.authServer;
  if (!addr) throw badParameter(`No auth server address: pass --auth-server host:port (the identity file "${path}" names none)`);
  const client = new AuthClient({
    addr,
    tls: { caCertsPem: id.tlsCaCertsPem, certPem: id.tlsCertPem, keyPem: id.keyPem },
  });
  return { client, addr, ...(id.cluster ? { cluster: id.cluster } : {}) };
}
