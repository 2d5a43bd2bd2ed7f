/**
 * Service-account JWTs as a Kubernetes API server signs them (RS256, a `kid`, the
 * `kubernetes.io` claim), from a key the test makes, and the JWKS the cluster's
 * /openid/v1/jwks endpoint would publish for it.
 */

import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { scenario } from "../_scenarios.ts";

/** The cluster name seed 000's projected token has as its audience. */
export const SEED_CLUSTER = "example.teleport.sh";

export interface ClusterKey {
  kid: string;
  privateKey: CryptoKey;
  /** The JWKS JSON text, as `kubectl get --raw /openid/v1/jwks` prints it. */
  jwks: string;
  publicJwk: JWK;
}

export async function clusterKey(kid = "test-key-1"): Promise<ClusterKey> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, use: "sig", alg: "RS256" };
  return { kid, privateKey, publicJwk, jwks: JSON.stringify({ keys: [publicJwk] }) };
}

export interface TokenOptions {
  namespace?: string;
  serviceAccount?: string;
  audience?: string | string[];
  /** Seconds from `now` until expiry; omitted means a legacy token without exp when `noExpiry`. */
  ttlSeconds?: number;
  noExpiry?: boolean;
  now?: Date;
  /** Overrides the subject outright. */
  subject?: string;
  /** A kubernetes.io claim naming another account than the subject. */
  claimServiceAccount?: string;
}

/** A projected service-account token for `namespace:serviceAccount` (default default:tbot, audience the seed cluster). */
export async function serviceAccountToken(key: ClusterKey, o: TokenOptions = {}): Promise<string> {
  const ns = o.namespace ?? "default";
  const sa = o.serviceAccount ?? "tbot";
  const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
  let jwt = new SignJWT({
    "kubernetes.io": {
      namespace: ns,
      pod: { name: "tbot-5d9c7b9f4-abcde", uid: "3f0c0d7e-0000-4000-8000-000000000001" },
      serviceaccount: { name: o.claimServiceAccount ?? sa, uid: "3f0c0d7e-0000-4000-8000-000000000002" },
    },
  })
    .setProtectedHeader({ alg: "RS256", kid: key.kid })
    .setIssuer("https://kubernetes.default.svc.cluster.local")
    .setSubject(o.subject ?? `system:serviceaccount:${ns}:${sa}`)
    .setAudience(o.audience ?? SEED_CLUSTER)
    .setIssuedAt(now)
    .setNotBefore(now);
  if (!o.noExpiry) jwt = jwt.setExpirationTime(now + (o.ttlSeconds ?? 600));
  return jwt.sign(key.privateKey);
}

/** token-kubernetes.yaml as a real setup fills it in: the placeholder replaced by the cluster's JWKS. */
export function tokenYaml(jwks: string): string {
  const text = scenario("token-kubernetes.yaml");
  const placeholder = /^(\s*)\{"keys":\[ \.\.\.the data returned by the cluster's \/openid\/v1\/jwks endpoint\.\.\. \]\}$/m;
  if (!placeholder.test(text)) throw new Error("token-kubernetes.yaml no longer has the JWKS placeholder line");
  return text.replace(placeholder, (_m, indent: string) => `${indent}${jwks}`);
}
