/**
 * An auth service in process for tests: memory storage, fresh authorities, a
 * FakeClock, and helpers to call `handle(req, conn)` as an admin, a bot or nobody.
 */

import { generateKeyPair, formatSshPublicKey, publicKeyToPem, privateKeyToPem, parseCertificate, type CertIdentity, type KeyPair } from "../../src/crypto/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { AuditLog } from "../../src/auth/audit.ts";
import { loadAuthorities } from "../../src/auth/authorities.ts";
import type { AuthContext } from "../../src/auth/context.ts";
import { createApp, type ConnInfo, type Handler } from "../../src/auth/app.ts";
import type { FailureLimiter } from "../../src/auth/ratelimit.ts";
import { issueCerts } from "../../src/auth/issuer.ts";
import { openBackend } from "../../src/auth/storage/index.ts";
import { pemDecodeOne } from "../../src/lib/pem.ts";
import type { Certs } from "../../src/protocol/index.ts";

export interface Caller {
  conn: ConnInfo;
  certs?: Certs;
  key?: KeyPair;
}

export interface Harness {
  ctx: AuthContext;
  handler: Handler;
  clock: FakeClock;
  admin: Caller;
  anon: Caller;
  call(caller: Caller, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string; headers: Headers }>;
  /** A caller presenting `certs` (as returned by join/renew) with the key they were issued for. */
  as(certs: Certs, key: KeyPair, remoteAddr?: string): Caller;
  /** The same service's handler with the failed-join limiter in front of the join routes, as service.ts builds it. */
  withJoinLimiter(limiter: FailureLimiter, challenges?: FailureLimiter): Handler;
  close(): Promise<void>;
}

/** Public keys for a request, and the pair to keep. */
export function keyRequest(ttlSeconds?: number): { key: KeyPair; body: { public_tls_key: string; public_ssh_key: string; ttl_seconds?: number } } {
  const key = generateKeyPair("ecdsa-p256");
  return {
    key,
    body: {
      public_tls_key: publicKeyToPem(key.publicKey),
      public_ssh_key: formatSshPublicKey(key.publicKey),
      ...(ttlSeconds ? { ttl_seconds: ttlSeconds } : {}),
    },
  };
}

export function identityOf(certs: Certs): CertIdentity {
  return parseCertificate(certs.tls_cert).identity!;
}

export async function startHarness(): Promise<Harness> {
  const clock = new FakeClock(new Date("2026-11-22T10:00:00Z"));
  const backend = await openBackend({ type: "memory" }, { clock, logger: silentLogger });
  const authorities = await loadAuthorities(backend, "test.example", clock.now());
  const ctx: AuthContext = {
    backend,
    authorities,
    clock,
    log: silentLogger,
    audit: new AuditLog(backend, silentLogger),
    version: "0.0.0-test",
    publicAddr: "auth.test:3025",
  };
  const handler = createApp(ctx);
  const adminKey = generateKeyPair("ecdsa-p256");
  const adminCerts = (
    await issueCerts(authorities, {
      identity: { cluster: "test.example", username: "admin", kind: "admin", renewable: false, roles: [], logins: [] },
      publicTlsKey: adminKey.publicKey,
      publicSshKey: adminKey.publicKey,
      notAfter: new Date(clock.now().getTime() + 86_400_000),
      now: clock.now(),
    })
  ).certs;
  const as = (certs: Certs, key: KeyPair, remoteAddr = "10.0.0.7"): Caller => ({
    conn: { remoteAddr, peerCertDer: pemDecodeOne(certs.tls_cert, ["CERTIFICATE"]).der },
    certs,
    key,
  });
  return {
    ctx,
    handler,
    clock,
    admin: as(adminCerts, adminKey, "127.0.0.1"),
    anon: { conn: { remoteAddr: "10.0.0.9" } },
    as,
    withJoinLimiter: (limiter, challenges) => createApp(ctx, { joinLimiter: limiter, ...(challenges ? { addressLimiters: { bound_keypair: challenges } } : {}) }),
    async call(caller, method, path, body) {
      const req = new Request(`https://auth.test${path}`, {
        method,
        ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });
      const res = await handler(req, caller.conn);
      const text = await res.text();
      let json: any;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    close: () => backend.close(),
  };
}

export { privateKeyToPem };
