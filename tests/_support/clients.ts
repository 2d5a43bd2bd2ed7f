/**
 * Reaching a running auth service from tests and benchmarks: the admin client over the
 * identity the service wrote, and a free loopback port to start one on.
 */

import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { AuthClient, parseIdentityFile } from "../../src/protocol/index.ts";

/** A protocol client with the admin identity the service wrote into its data directory. */
export function adminClient(dataDir: string, addr: string): AuthClient {
  const id = parseIdentityFile(readFileSync(join(dataDir, "admin-identity"), "utf8"));
  return new AuthClient({ addr, tls: { caCertsPem: id.tlsCaCertsPem, certPem: id.tlsCertPem, keyPem: id.keyPem } });
}

/** A free TCP port on loopback (bound and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
