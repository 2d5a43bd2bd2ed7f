/**
 * The `kubernetes` join method, auth side: a pod proves which service account it runs
 * as with a service-account JWT, checked against the token's static JWKS, the keys its
 * cluster's OIDC issuer publishes (`oidc`), or, for `in_cluster` tokens, by the API
 * server of the cluster the auth service runs in (a TokenReview). The token is a set of
 * rules, never consumed: every join creates a new bot instance, so a pod with memory
 * storage joins again at each start.
 */

import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from "jose";
import * as z from "zod";
import { AppError, accessDenied, errorMessage, expired, isAppError } from "../../lib/errors.ts";
import type { TokenResource } from "../../resources/index.ts";
import type { AuthContext } from "../context.ts";
import type { KubernetesClusters } from "../kubernetes/index.ts";
import { CLOCK_TOLERANCE_S, issuerKeys, JWT_ALGORITHMS } from "../oidc/index.ts";
import { joiningBot, refuse, ruleToken, type JoinMethod, type Refusal } from "./instance.ts";

const SA_SUBJECT = /^system:serviceaccount:([^:\s]+):([^:\s]+)$/;
const TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews";

/** Where a token's keys come from, as messages and the audit log name it. */
interface KeySource {
  keys: Parameters<typeof jwtVerify>[1];
  /** The `iss` the token must carry (oidc), or undefined (static JWKS: any). */
  issuer?: string;
  /** Completes "not signed by a key …": `in the JWKS of join token "x"`, `published by issuer "https://…"`. */
  signedBy: string;
  reason: string;
}

/** The service account a token speaks for, as `namespace:name`, from its subject. */
function serviceAccountOf(subject: unknown, where: string): string {
  const m = typeof subject === "string" ? SA_SUBJECT.exec(subject) : null;
  if (!m) {
    throw refuse(
      accessDenied(`The ${where} is not a service account's: expected "system:serviceaccount:<namespace>:<name>", got ${JSON.stringify(String(subject))}`),
      "subject is not a service account",
    );
  }
  return `${m[1]}:${m[2]}`;
}

/** The `kubernetes.io` claim must name the same service account as the subject when present. */
function checkKubernetesClaim(payload: JWTPayload, serviceAccount: string): void {
  const k = payload["kubernetes.io"];
  if (k === undefined) return;
  const claim = z.object({ namespace: z.string(), serviceaccount: z.object({ name: z.string() }) }).safeParse(k);
  if (!claim.success || `${claim.data.namespace}:${claim.data.serviceaccount.name}` !== serviceAccount) {
    throw refuse(accessDenied("The service account token's kubernetes.io claim does not match its subject"), "kubernetes.io claim contradicts the subject");
  }
}

function parseJwks(token: TokenResource): JSONWebKeySet {
  const name = token.metadata.name;
  const hint = `paste the output of "kubectl get --raw /openid/v1/jwks" into spec.kubernetes.static_jwks.jwks of join token "${name}"`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(token.spec.kubernetes?.static_jwks?.jwks ?? "");
  } catch {
    throw refuse(accessDenied(`Cannot check the service account token: the JWKS of join token "${name}" is not valid JSON; ${hint}`), "static JWKS is not JSON");
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  // Public signing keys only: a private key pasted by mistake is refused, not used.
  const usable = (k: unknown) => typeof k === "object" && k !== null && ["RSA", "EC", "OKP"].includes((k as JWK).kty ?? "") && (k as JWK).d === undefined;
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every(usable)) {
    throw refuse(
      accessDenied(`Cannot check the service account token: the JWKS of join token "${name}" is not a JSON Web Key Set of public keys; ${hint}`),
      "static JWKS is malformed",
    );
  }
  return parsed as JSONWebKeySet;
}

/** The token's static JWKS as a key source. */
function staticKeys(token: TokenResource): KeySource {
  return { keys: createLocalJWKSet(parseJwks(token)), signedBy: `in the JWKS of join token "${token.metadata.name}"`, reason: "signature does not verify with the static JWKS" };
}

/** The keys the token's issuer publishes, as a key source; fetched when a token is checked. */
function issuerKeySource(ctx: AuthContext, token: TokenResource): KeySource {
  const issuer = token.spec.kubernetes!.oidc!.issuer;
  return { keys: issuerKeys.resolver(issuer, () => ctx.clock.now().getTime()), issuer, signedBy: `published by issuer "${issuer}"`, reason: "signature does not verify with the issuer's JWKS" };
}

/** Checks the JWT against `source`'s keys: signature, issuer (oidc), expiry, audience (the cluster name). */
async function verifyWithKeys(ctx: AuthContext, token: TokenResource, idToken: string, source: KeySource): Promise<string> {
  const audience = ctx.authorities.cluster;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(idToken, source.keys, {
      ...(source.issuer !== undefined ? { issuer: source.issuer } : {}),
      audience,
      algorithms: JWT_ALGORITHMS,
      currentDate: ctx.clock.now(),
      clockTolerance: CLOCK_TOLERANCE_S,
      // A token without expiry is a legacy secret-based one: only projected tokens, which expire, may join.
      requiredClaims: ["exp", "sub"],
    }));
  } catch (e) {
    if (isAppError(e)) {
      // the issuer's keys could not be had (unreachable, not an issuer): the service's
      // problem to report, with what to do, never a 500
      ctx.log.error("Cannot fetch the keys of a Kubernetes issuer", { token: token.metadata.name, error: e });
      throw refuse(
        new AppError("CONNECTION_PROBLEM", `Cannot check the service account token of join token "${token.metadata.name}": ${e.message}; the auth service must reach the cluster's issuer, or the token can use static_jwks`),
        `issuer keys unavailable (${e.message})`,
      );
    }
    throw joseRefusal(e, source, audience);
  }
  const sa = serviceAccountOf(payload.sub, "service account token's subject");
  checkKubernetesClaim(payload, sa);
  return sa;
}

function joseRefusal(e: unknown, source: KeySource, audience: string): Refusal {
  const code = (e as { code?: string }).code;
  const claim = (e as { claim?: string }).claim;
  const payload = (e as { payload?: JWTPayload }).payload;
  if (code === "ERR_JWT_EXPIRED") {
    const at = typeof payload?.exp === "number" ? new Date(payload.exp * 1000).toISOString() : "an earlier time";
    return refuse(expired(`The service account token expired at ${at}: mount a projected token, which the kubelet keeps fresh`), "service account token expired");
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "aud") {
    const aud = payload?.aud === undefined ? "none" : JSON.stringify(payload.aud);
    return refuse(
      accessDenied(`The service account token is for audience ${aud}, not this cluster: project it with audience "${audience}"`),
      `audience ${aud} is not "${audience}"`,
    );
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "exp") {
    return refuse(accessDenied("The service account token never expires: only projected service account tokens may join"), "service account token has no expiry");
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "nbf") {
    return refuse(accessDenied("The service account token is not valid yet: check the clocks of the cluster and the auth service"), "service account token not valid yet");
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "iss") {
    const iss = payload?.iss === undefined ? "no issuer" : `issuer ${JSON.stringify(payload.iss)}`;
    return refuse(accessDenied(`The service account token names ${iss}, not the join token's issuer "${source.issuer}"`), `${iss} is not "${source.issuer}"`);
  }
  if (code === "ERR_JWKS_NO_MATCHING_KEY" || code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" || code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS") {
    return refuse(accessDenied(`The service account token is not signed by a key ${source.signedBy}`), source.reason);
  }
  if (code === "ERR_JOSE_ALG_NOT_ALLOWED" || code === "ERR_JOSE_NOT_SUPPORTED") {
    return refuse(accessDenied("The service account token uses a signature algorithm the auth service does not accept"), "signature algorithm not accepted");
  }
  return refuse(accessDenied("The service account token is not a valid JWT"), `malformed service account token (${errorMessage(e)})`);
}

const TokenReviewAnswer = z.object({
  status: z
    .object({
      authenticated: z.boolean().optional(),
      user: z.object({ username: z.string().optional() }).optional(),
      audiences: z.array(z.string()).optional(),
      error: z.string().optional(),
    })
    .optional(),
});

/**
 * Asks the API server of the cluster this service runs in whether the token is valid
 * (a TokenReview). A token projected for this cluster's name is reviewed for that
 * audience; any other is reviewed for the API server's own, as a pod's default
 * service-account token is.
 */
async function verifyInCluster(ctx: AuthContext, clusters: KubernetesClusters, idToken: string): Promise<string> {
  let aud: string[];
  try {
    const claims = decodeJwt(idToken);
    aud = typeof claims.aud === "string" ? [claims.aud] : (claims.aud ?? []);
  } catch {
    throw refuse(accessDenied("The service account token is not a valid JWT"), "malformed service account token");
  }
  const audiences = aud.includes(ctx.authorities.cluster) ? [ctx.authorities.cluster] : undefined;
  let answer: { status: number; json: unknown };
  try {
    const upstream = await clusters.inClusterUpstream();
    answer = await upstream.json("POST", TOKEN_REVIEW_PATH, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenReview",
      spec: { token: idToken, ...(audiences ? { audiences } : {}) },
    });
  } catch (e) {
    ctx.log.error("Cannot review a Kubernetes service account token", { error: e });
    throw refuse(
      new AppError("CONNECTION_PROBLEM", `Cannot check the service account token with this cluster's TokenReview API: ${errorMessage(e)}`),
      "TokenReview failed",
    );
  }
  if (answer.status !== 200 && answer.status !== 201) {
    const why = answer.status === 403 ? ": grant the auth service's service account the system:auth-delegator cluster role" : "";
    throw refuse(
      new AppError("CONNECTION_PROBLEM", `Cannot check the service account token: the Kubernetes API server refused the TokenReview with HTTP ${answer.status}${why}`),
      `TokenReview answered HTTP ${answer.status}`,
    );
  }
  const review = TokenReviewAnswer.safeParse(answer.json);
  const status = review.success ? review.data.status : undefined;
  if (status?.authenticated !== true) {
    const why = status?.error ? `: ${status.error}` : "";
    throw refuse(accessDenied(`The Kubernetes API server did not accept the service account token${why}`), `TokenReview did not authenticate the token${why}`);
  }
  if (audiences && !(status.audiences ?? []).includes(ctx.authorities.cluster)) {
    throw refuse(accessDenied(`The Kubernetes API server did not confirm the token's audience "${ctx.authorities.cluster}"`), "TokenReview did not confirm the audience");
  }
  return serviceAccountOf(status.user?.username, "reviewed token's user");
}

/**
 * The `kubernetes` join method. The token is a set of rules, never consumed: every join
 * creates a new bot instance, and the bot.join event names the service account.
 */
export const kubernetesJoin: JoinMethod = {
  name: "kubernetes",
  async verify(ctx, req, attempt, deps) {
    const token = await ruleToken(ctx, req, attempt);
    if (!req.id_token) throw refuse(accessDenied("A kubernetes join needs the pod's service account token (id_token)"), "no service account token");
    const spec = token.spec.kubernetes!;
    const sa =
      spec.type === "static_jwks"
        ? await verifyWithKeys(ctx, token, req.id_token, staticKeys(token))
        : spec.type === "oidc"
          ? await verifyWithKeys(ctx, token, req.id_token, issuerKeySource(ctx, token))
          : await verifyInCluster(ctx, deps.kubernetes, req.id_token);
    if (!spec.allow.some((rule) => rule.service_account === sa)) {
      throw refuse(
        accessDenied(`Service account "${sa}" may not join with token "${req.token_name}": its allow rules name ${spec.allow.map((r) => `"${r.service_account}"`).join(", ")}`),
        `service account ${sa} matches no allow rule`,
      );
    }
    return { bot: await joiningBot(ctx, token.spec.bot_name), tokenName: req.token_name, auditFields: { service_account: sa } };
  },
};
