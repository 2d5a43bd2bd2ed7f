/**
 * What a request carries through the auth service's app: the connection it came on
 * (from listener.ts), and what the app's middleware add to it — the body, read once
 * within the cap, and the authenticated caller. A leaf module, so that the app, the
 * listener, the join limiter and the Kubernetes proxy share these types without
 * importing each other.
 */

import type { CertIdentity } from "../crypto/index.ts";
import type { Actor } from "./audit.ts";

/** What the transport knows about a connection. */
export interface ConnInfo {
  remoteAddr: string;
  /** DER of the client certificate, when the client sent one. Not yet verified. */
  peerCertDer?: Uint8Array;
  /**
   * State that lives as long as the connection. Only a transport that hands the same
   * ConnInfo to every request of one connection may set it (listener.ts does): a renewal
   * answered on the connection records the renewed identity here.
   */
  session?: ConnSession;
}

/**
 * A connection's identity after a renewal on it. The handshake proved possession of
 * the old certificate's key; the renewal was asked for and answered inside that same
 * TLS channel, so the party on it is the one the new certificate was issued to, and
 * the connection speaks for the new identity from then on — with its generation, its
 * expiry, and the per-request lock and generation checks as for any caller. The old
 * certificate stays superseded everywhere else: presented on a new connection it
 * locks the instance as before. A retried renewal (the lost-answer path) never moves
 * the connection: it proves nothing a copy of the old identity could not.
 */
export interface ConnSession {
  renewed?: Authenticated;
}

/** A verified caller: its identity from a certificate that chains to the user CA and is valid for clientAuth. */
export interface Authenticated {
  identity: CertIdentity;
  notAfter: Date;
}

/** The authenticated caller and where it calls from, as the `authenticate` middleware sets it. */
export interface Caller extends Authenticated {
  remoteAddr: string;
}

/** The app's Hono environment: the connection is bound per request; middleware set the variables. */
export type Env = {
  Bindings: { conn: ConnInfo };
  Variables: {
    /** The request body, read whole within MAX_BODY_BYTES (absent when the request has none). */
    body: Uint8Array | undefined;
    /** Set by `authenticate` on the routes that need a caller. */
    caller: Caller;
    /** Set by the admin check on the admin routes: who the audit trail names. */
    actor: Actor;
  };
};
