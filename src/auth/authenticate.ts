/**
 * The auth service's one client authentication, for the API, the Kubernetes proxy
 * and its connection upgrades alike: who is calling, from the connection's renewed
 * identity or its client certificate.
 */

import { createHash } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { verifyCertificate } from "../crypto/index.ts";
import { accessDenied, expired } from "../lib/errors.ts";
import type { AuthContext } from "./context.ts";
import type { Authenticated, ConnInfo, Env } from "./request.ts";

/** The refusal of a request that needs a caller and sent no certificate. */
const NEEDS_CERTIFICATE = "This request needs a client certificate: use an identity issued by this cluster";

/**
 * Authenticates callers of one auth service, with one cache of verified certificates
 * shared by everything that authenticates (app.ts creates it; service.ts hands the
 * same one to the proxy's upgrade path).
 */
export class Authenticator {
  private readonly verified = new VerifiedCertCache();

  constructor(private readonly ctx: AuthContext) {}

  /**
   * The caller on `conn`: the connection's renewed identity when a renewal on it set one
   * (ConnSession), else its client certificate — chained to the user CA, valid now,
   * issued for clientAuth, and of this cluster — verified once per certificate.
   * ACCESS_DENIED otherwise (EXPIRED for an expired identity); `missing` is the refusal
   * when no certificate was sent.
   */
  async identify(conn: ConnInfo, missing = NEEDS_CERTIFICATE): Promise<Authenticated> {
    const ctx = this.ctx;
    const now = ctx.clock.now();
    const renewed = conn.session?.renewed;
    if (renewed) {
      if (now.getTime() >= renewed.notAfter.getTime()) {
        throw expired(`The identity this connection was renewed to expired at ${renewed.notAfter.toISOString()}: join again`);
      }
      return renewed;
    }
    const der = conn.peerCertDer;
    if (!der || der.length === 0) throw accessDenied(missing);
    const cached = this.verified.get(der, now);
    if (cached) return cached;
    // usage "client": a certificate the user CA issued for another purpose does not log in
    const parsed = await verifyCertificate(der, [ctx.authorities.user.tlsCertPem], now, { usage: "client" });
    if (!parsed.identity) throw accessDenied("The client certificate carries no machine-id identity");
    if (parsed.identity.cluster !== ctx.authorities.cluster) {
      throw accessDenied(`The client certificate is for cluster "${parsed.identity.cluster}", not "${ctx.authorities.cluster}"`);
    }
    const result = { identity: parsed.identity, notAfter: parsed.notAfter };
    this.verified.put(der, result, parsed.notBefore);
    return result;
  }

  /**
   * Records a certificate this service has just issued as verified: when it comes back
   * on a new connection, checking its signature again would only cost time. `notBefore`
   * (the time of issue) is stricter than the certificate's own backdated one.
   */
  issued(der: Uint8Array, auth: Authenticated, notBefore: Date): void {
    this.verified.put(der, auth, notBefore);
  }

  /** The middleware form: sets `c.var.caller` (the identity and the remote address) or refuses. */
  middleware(missing = NEEDS_CERTIFICATE): MiddlewareHandler<Env> {
    return async (c, next) => {
      const conn = c.env.conn;
      c.set("caller", { ...(await this.identify(conn, missing)), remoteAddr: conn.remoteAddr });
      await next();
    };
  }
}

/**
 * Client certificates already verified against the user CA, by the SHA-256 of their
 * DER. A keep-alive client presents the same certificate on every request; checking
 * its signature each time was a fifth of such a request's CPU. Only the signature
 * check is cached: validity is re-checked against the clock on every hit, and locks
 * and generations are looked up per request as before.
 */
class VerifiedCertCache {
  private readonly entries = new Map<string, { auth: Authenticated; notBefore: Date }>();

  constructor(private readonly maxEntries = 10_000) {}

  private key(der: Uint8Array): string {
    return createHash("sha256").update(der).digest("base64");
  }

  get(der: Uint8Array, now: Date): Authenticated | undefined {
    const k = this.key(der);
    const e = this.entries.get(k);
    if (!e) return undefined;
    if (now.getTime() >= e.auth.notAfter.getTime() || now.getTime() < e.notBefore.getTime()) {
      // let the full check give the precise refusal (EXPIRED with the time)
      this.entries.delete(k);
      return undefined;
    }
    return e.auth;
  }

  put(der: Uint8Array, auth: Authenticated, notBefore: Date): void {
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(this.key(der), { auth, notBefore });
  }
}

