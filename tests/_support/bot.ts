/**
 * A bot as the load generator and the reliability suite drive it over the wire: keys
 * prepared ahead, token and bound-keypair joins, and renewals: on a new mTLS connection
 * with the newest identity each time (as the agent does at its interval of minutes), or
 * on one kept connection that the service moved to each renewed identity; a renewal
 * whose answer was lost is retried with the same new key either way.
 */

import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { CompactSign } from "jose";
import { formatSshPublicKey, privateKeyToPem, publicKeyToPem } from "../../src/crypto/index.ts";
import { AUTH_SERVER_NAME, CONNECTION_IDENTITY_HEADER, CONNECTION_RENEWED } from "../../src/protocol/index.ts";
import { Http1Connection, type RawResponse } from "./http1.ts";

/** A key the server certifies, its PEM and SSH forms prepared once. */
export interface PreparedKey {
  privatePem: string;
  body: { public_tls_key: string; public_ssh_key: string };
}

/** `n` fresh ECDSA P-256 keys (used for both the X.509 and the SSH certificate). */
export function prepareKeys(n: number): PreparedKey[] {
  return Array.from({ length: n }, () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    return {
      privatePem: privateKeyToPem(privateKey),
      body: { public_tls_key: publicKeyToPem(publicKey), public_ssh_key: formatSshPublicKey(publicKey) },
    };
  });
}

export const JSON_HEADERS = { "content-type": "application/json" };

/** An answer that is not 200. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

/** The decoded JSON of a 200 answer; HttpError otherwise. */
export function expectOk<T = unknown>(r: RawResponse, what: string): T {
  if (r.status !== 200) throw new HttpError(r.status, r.body.toString(), what);
  return JSON.parse(r.body.toString()) as T;
}

/** Where the auth service listens, and the CA certificates its TLS certificate chains to. */
export interface Target {
  host: string;
  port: number;
  caPem: string[];
}

/** Connects to the auth service, with a client identity when given. */
export function connect(t: Target, identity?: { certPem: string; keyPem: string }): Promise<Http1Connection> {
  return Http1Connection.connect({
    host: t.host,
    port: t.port,
    tls: { ca: t.caPem, servername: AUTH_SERVER_NAME, ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}) },
  });
}

interface JoinAnswer {
  bot_instance_id: string;
  certs: { tls_cert: string };
  join_state?: string;
}

/** A joined bot instance with its renewable identity. */
export class RenewingBot {
  /** A renewal sent but not answered (the service may or may not have committed it). */
  pending: PreparedKey | undefined;
  /** The connection kept by renewKept, speaking for the newest identity. */
  private kept: Http1Connection | undefined;
  /** Connections opened for renewals so far. */
  connections = 0;

  constructor(
    readonly target: Target,
    readonly instanceId: string,
    public certPem: string,
    public keyPem: string,
    public generation: number,
  ) {}

  /** Joins with a one-time token over `conn` (or a new connection). */
  static async tokenJoin(target: Target, token: string, key: PreparedKey, conn?: Http1Connection): Promise<RenewingBot> {
    const c = conn ?? (await connect(target));
    try {
      const r = expectOk<JoinAnswer>(
        await c.request("POST", "/v1/join", { headers: JSON_HEADERS, body: JSON.stringify({ ...key.body, join_method: "token", token_name: token }) }),
        "token join",
      );
      return new RenewingBot(target, r.bot_instance_id, r.certs.tls_cert, key.privatePem, 1);
    } finally {
      if (!conn) c.close();
    }
  }

  /** Joins with a bound keypair: begin (with the previous join's state, if any), sign the challenge with `bound`, solve. */
  static async boundKeypairJoin(
    target: Target,
    tokenName: string,
    bound: KeyObject,
    key: PreparedKey,
    conn?: Http1Connection,
    joinState?: string,
  ): Promise<RenewingBot & { joinState?: string }> {
    const c = conn ?? (await connect(target));
    try {
      const begin = expectOk<{ challenge_id: string; challenge: unknown }>(
        await c.request("POST", "/v1/join/bound-keypair/begin", {
          headers: JSON_HEADERS,
          body: JSON.stringify({ ...key.body, token_name: tokenName, public_key: formatSshPublicKey(bound), ...(joinState ? { join_state: joinState } : {}) }),
        }),
        "bound keypair begin",
      );
      const solution = await signClaims(begin.challenge, bound);
      const r = expectOk<JoinAnswer>(
        await c.request("POST", "/v1/join/bound-keypair/solve", { headers: JSON_HEADERS, body: JSON.stringify({ challenge_id: begin.challenge_id, solution }) }),
        "bound keypair solve",
      );
      const bot = new RenewingBot(target, r.bot_instance_id, r.certs.tls_cert, key.privatePem, 1);
      return r.join_state ? Object.assign(bot, { joinState: r.join_state }) : bot;
    } finally {
      if (!conn) c.close();
    }
  }

  /**
   * Renews over a new connection with the newest identity. A renewal whose answer was
   * lost is retried with the same key (`pending`), as the agent does; `key` is used otherwise.
   */
  async renew(key: PreparedKey): Promise<number> {
    const c = await this.connect();
    try {
      return (await this.renewOn(c, key)).generation;
    } finally {
      c.close();
    }
  }

  /**
   * Renews on one kept connection. The service answers a renewal on it with
   * `machine-id-connection-identity: renewed` when it moved the connection to the new
   * identity; without that header, or once the connection is closed, the next renewal
   * opens a new connection with the newest certificate — never the superseded one.
   */
  async renewKept(key: PreparedKey): Promise<number> {
    const c = this.kept && !this.kept.socket.destroyed ? this.kept : await this.connect();
    this.kept = undefined;
    let renewed = false;
    try {
      const r = await this.renewOn(c, key);
      renewed = r.connectionRenewed;
      return r.generation;
    } finally {
      if (renewed) this.kept = c;
      else c.close();
    }
  }

  /** A new connection presenting the newest certificate. */
  private connect(): Promise<Http1Connection> {
    this.connections++;
    return connect(this.target, { certPem: this.certPem, keyPem: this.keyPem });
  }

  close(): void {
    this.kept?.close();
    this.kept = undefined;
  }

  private async renewOn(c: Http1Connection, key: PreparedKey): Promise<{ generation: number; connectionRenewed: boolean }> {
    const next = this.pending ?? key;
    try {
      this.pending = next;
      const r = await c.request("POST", "/v1/bot/renew", { headers: JSON_HEADERS, body: JSON.stringify(next.body) });
      const answer = expectOk<{ certs: { tls_cert: string }; generation: number }>(r, "renew");
      this.pending = undefined;
      this.certPem = answer.certs.tls_cert;
      this.keyPem = next.privatePem;
      this.generation = answer.generation;
      return { generation: answer.generation, connectionRenewed: r.headers[CONNECTION_IDENTITY_HEADER] === CONNECTION_RENEWED };
    } catch (e) {
      // refused outright: nothing was committed, the next attempt may use another key
      if (e instanceof HttpError) this.pending = undefined;
      throw e;
    }
  }
}

/** Signs `claims` as a compact JWS with `key` (EdDSA for Ed25519, ES256 for P-256). */
export function signClaims(claims: unknown, key: KeyObject): Promise<string> {
  const alg = key.asymmetricKeyType === "ed25519" ? "EdDSA" : "ES256";
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg }).sign(key);
}
