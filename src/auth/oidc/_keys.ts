/**
 * The signing keys of OIDC issuers, found through their discovery documents and
 * cached for as long as the JWKS's Cache-Control allows. A token signed with a key
 * the cache does not know (the issuer rotated) makes one refetch; further unknown
 * keys within the next minute are refused without one, so a stream of tokens with
 * made-up `kid`s cannot turn the auth service into a load generator for the issuer.
 */

import { createLocalJWKSet, type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput } from "jose";
import { connectionProblem } from "../../lib/errors.ts";
import { fetchJson, fetchTimeoutMs } from "./_fetch.ts";

/** At most one refetch per issuer in this period for tokens whose key is unknown. */
const UNKNOWN_KID_REFETCH_INTERVAL_MS = 60_000;

/**
 * Signature algorithms a join JWT (CI ID token, Kubernetes service-account token) may
 * use: asymmetric only (no `none`, no HMAC keyed with a public key), so a JWKS can never
 * hold a shared secret.
 */
export const JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
/** Clock skew tolerated between the platform or cluster that signed a join JWT and this service. */
export const CLOCK_TOLERANCE_S = 30;

/** A key resolver as jose's jwtVerify takes it. */
export type KeyResolver = ReturnType<typeof createLocalJWKSet>;

interface Entry {
  jwks: JSONWebKeySet;
  resolve: KeyResolver;
  fetchedAt: number;
  expiresAt: number;
  /** When the last refetch for an unknown `kid` happened. */
  unknownKidRefetchAt?: number;
}

/** Checks a JWKS is a JSON object with a list of public keys; `what` names it in messages. */
export function checkJwks(json: unknown, what: string): JSONWebKeySet {
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (typeof json !== "object" || json === null || !Array.isArray(keys)) throw connectionProblem(`Cannot use ${what}: it is not a JSON Web Key Set (no "keys" list)`);
  // Public keys only: a private key (`d`) or a shared secret (`kty: oct`) is never used.
  const usable = keys.filter((k) => typeof k === "object" && k !== null && ["RSA", "EC", "OKP"].includes(k.kty) && k.d === undefined);
  if (usable.length === 0) throw connectionProblem(`Cannot use ${what}: it holds no public RSA, EC or OKP key`);
  return { keys: usable };
}

/** Issuer keys, cached per issuer URL. One instance serves the whole auth service. */
export class IssuerKeys {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Entry>>();

  constructor(private readonly timeoutMs: number = fetchTimeoutMs()) {}

  /**
   * A key resolver for tokens of `issuer`: jose calls it with the token's header. `now`
   * is the service clock in ms. An unknown `kid` refetches once per interval.
   */
  resolver(issuer: string, now: () => number): KeyResolver {
    return (async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
      let entry = this.entries.get(issuer);
      if (!entry || entry.expiresAt <= now()) entry = await this.refresh(issuer, now());
      try {
        return await entry.resolve(header, token);
      } catch (e) {
        if ((e as { code?: string }).code !== "ERR_JWKS_NO_MATCHING_KEY") throw e;
        const last = entry.unknownKidRefetchAt;
        if (last !== undefined && now() - last < UNKNOWN_KID_REFETCH_INTERVAL_MS) throw e;
        entry.unknownKidRefetchAt = now();
        const fresh = await this.refresh(issuer, now());
        fresh.unknownKidRefetchAt = entry.unknownKidRefetchAt;
        return fresh.resolve(header, token);
      }
    }) as KeyResolver;
  }

  /** Fetches the discovery document and the JWKS; concurrent callers share one fetch. */
  private refresh(issuer: string, nowMs: number): Promise<Entry> {
    const running = this.inflight.get(issuer);
    if (running) return running;
    const p = this.fetchKeys(issuer, nowMs).finally(() => this.inflight.delete(issuer));
    this.inflight.set(issuer, p);
    return p;
  }

  private async fetchKeys(issuer: string, nowMs: number): Promise<Entry> {
    const discoveryUrl = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    const discovery = await fetchJson(discoveryUrl, `the OIDC discovery document of issuer "${issuer}"`, { timeoutMs: this.timeoutMs });
    const doc = discovery.json as { issuer?: unknown; jwks_uri?: unknown } | null;
    if (typeof doc !== "object" || doc === null || doc.issuer !== issuer) {
      throw connectionProblem(`Cannot use the OIDC discovery document at "${discoveryUrl}": it names issuer ${JSON.stringify(doc?.issuer ?? null)}, not "${issuer}"`);
    }
    if (typeof doc.jwks_uri !== "string") throw connectionProblem(`Cannot use the OIDC discovery document at "${discoveryUrl}": it has no "jwks_uri"`);
    const what = `the JWKS of issuer "${issuer}"`;
    const fetched = await fetchJson(doc.jwks_uri, what, { timeoutMs: this.timeoutMs });
    const jwks = checkJwks(fetched.json, what);
    const entry: Entry = { jwks, resolve: createLocalJWKSet(jwks), fetchedAt: nowMs, expiresAt: nowMs + fetched.maxAgeMs };
    this.entries.set(issuer, entry);
    return entry;
  }
}

/**
 * The keys of every issuer this process has met, shared by the CI joins and the
 * Kubernetes join; the cache outlives single joins.
 */
export const issuerKeys = new IssuerKeys();
