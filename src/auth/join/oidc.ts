/**
 * The OIDC join, shared by every CI platform: check the ID token (signature against
 * the issuer's keys, issuer, audience, times), match its claims against the token
 * resource's allow rules, make sure this ID token has not joined before, and start a
 * bot instance. A platform only supplies its table (join/github.ts, gitlab.ts,
 * circleci.ts: claims and rules, no verification code).
 */

import { createHash } from "node:crypto";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from "jose";
import { AppError, accessDenied, errorMessage, expired, isAppError } from "../../lib/errors.ts";
import type { TokenResource } from "../../resources/index.ts";
import type { AuthContext } from "../context.ts";
import { KEYS } from "../keys.ts";
import { checkJwks, claimText, CLOCK_TOLERANCE_S, issuerKeys, JWT_ALGORITHMS, matchingRule, type CiSpec, type KeyResolver, type OidcPlatform } from "../oidc/index.ts";
import { joiningBot, refuse, ruleToken, type JoinMethod, type Refusal } from "./instance.ts";

function keysFor<S extends CiSpec>(ctx: AuthContext, platform: OidcPlatform<S>, token: TokenResource, spec: S, issuer: string): KeyResolver {
  if (spec.static_jwks === undefined) return issuerKeys.resolver(issuer, () => ctx.clock.now().getTime());
  try {
    return createLocalJWKSet(checkJwks(JSON.parse(spec.static_jwks), `the static_jwks of join token "${token.metadata.name}"`));
  } catch (e) {
    const why = isAppError(e) ? e.message : `Cannot use the static_jwks of join token "${token.metadata.name}": it is not valid JSON`;
    throw refuse(accessDenied(`${why}; paste the issuer's JWKS into spec.${platform.method}.static_jwks`), "static JWKS unusable");
  }
}

/** Verifies the ID token for `platform` and returns its claims. */
async function verify<S extends CiSpec>(ctx: AuthContext, platform: OidcPlatform<S>, token: TokenResource, idToken: string): Promise<JWTPayload> {
  const spec = platform.spec(token);
  const issuer = platform.issuer(spec);
  const audience = platform.audience(spec, ctx.authorities.cluster);
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(idToken).alg;
  } catch {
    throw refuse(accessDenied(`The ${platform.proof} is not a valid JWT`), "malformed ID token");
  }
  if (typeof alg !== "string" || !JWT_ALGORITHMS.includes(alg)) {
    throw refuse(
      accessDenied(`The ${platform.proof} is signed with algorithm ${JSON.stringify(alg ?? null)}, which the auth service does not accept: only public-key signatures (RS, PS, ES, EdDSA) are`),
      `signature algorithm ${JSON.stringify(alg ?? null)} not accepted`,
    );
  }
  const keys = keysFor(ctx, platform, token, spec, issuer);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(idToken, keys, {
      issuer,
      audience,
      algorithms: JWT_ALGORITHMS,
      currentDate: ctx.clock.now(),
      clockTolerance: CLOCK_TOLERANCE_S,
      requiredClaims: ["exp", "iat"],
    }));
  } catch (e) {
    throw verifyRefusal(e, platform, token, issuer, audience);
  }
  if (typeof payload.iat === "number" && payload.iat * 1000 > ctx.clock.now().getTime() + CLOCK_TOLERANCE_S * 1000) {
    throw refuse(accessDenied(`The ${platform.proof} was issued in the future: check the clock of the auth service`), "ID token issued in the future");
  }
  return payload;
}

function verifyRefusal(e: unknown, platform: Pick<OidcPlatform, "proof" | "audienceHint">, token: TokenResource, issuer: string, audience: string): Refusal {
  if (isAppError(e)) {
    // the issuer's keys could not be had: the service's problem to report, never a 500
    return refuse(new AppError(e.code, `Cannot check the ${platform.proof}: ${e.message}`), `issuer keys unavailable (${e.message})`);
  }
  const code = (e as { code?: string }).code;
  const claim = (e as { claim?: string }).claim;
  const payload = (e as { payload?: JWTPayload }).payload;
  const proof = platform.proof;
  if (code === "ERR_JWT_EXPIRED") {
    const at = typeof payload?.exp === "number" ? new Date(payload.exp * 1000).toISOString() : "an earlier time";
    return refuse(expired(`The ${proof} expired at ${at}: ask the CI platform for a fresh one`), "ID token expired");
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "iss") {
    const iss = JSON.stringify(payload?.iss ?? null);
    return refuse(accessDenied(`The ${proof} was issued by ${iss}, not by "${issuer}" as join token "${token.metadata.name}" expects`), `issuer ${iss} is not "${issuer}"`);
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "aud") {
    const aud = payload?.aud === undefined ? "none" : JSON.stringify(payload.aud);
    return refuse(accessDenied(`The ${proof} is for audience ${aud}, not "${audience}": ${platform.audienceHint(audience)}`), `audience ${aud} is not "${audience}"`);
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED" && claim === "nbf") {
    return refuse(accessDenied(`The ${proof} is not valid yet: check the clock of the auth service`), "ID token not valid yet");
  }
  if (code === "ERR_JWT_CLAIM_VALIDATION_FAILED") {
    return refuse(accessDenied(`The ${proof} lacks a valid "${claim}" claim`), `claim ${claim} missing or invalid`);
  }
  if (code === "ERR_JWKS_NO_MATCHING_KEY" || code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" || code === "ERR_JWKS_MULTIPLE_MATCHING_KEYS") {
    return refuse(accessDenied(`The ${proof} is not signed by a key of issuer "${issuer}"`), "signature does not verify with the issuer's keys");
  }
  if (code === "ERR_JOSE_ALG_NOT_ALLOWED" || code === "ERR_JOSE_NOT_SUPPORTED") {
    return refuse(accessDenied(`The ${proof} uses a signature algorithm the auth service does not accept`), "signature algorithm not accepted");
  }
  return refuse(accessDenied(`The ${proof} is not a valid JWT`), `malformed ID token (${errorMessage(e)})`);
}

/** The storage key that marks an ID token as used: its issuer and `jti`, or `sub` and `iat` when it has no `jti`. */
function usedKey(issuer: string, payload: JWTPayload): string {
  const id = typeof payload.jti === "string" && payload.jti !== "" ? `jti:${payload.jti}` : `sub-iat:${payload.sub ?? ""}:${payload.iat}`;
  return KEYS.usedIdToken(createHash("sha256").update(`${issuer}\n${id}`).digest("base64url"));
}

/** The audit fields saying which job joined. */
function auditClaims<S extends CiSpec>(platform: OidcPlatform<S>, payload: JWTPayload): Record<string, string> {
  const out: Record<string, string> = {};
  for (const claim of [...platform.audit, "sub"]) {
    const v = claimText(payload, claim);
    if (v !== undefined) out[claim.replace(/^oidc\.circleci\.com\//, "").replace(/-/g, "_")] = v;
  }
  return out;
}

/**
 * The join method of a CI platform: `oidcJoin(github)` in join/index.ts. Failures are
 * audited as `join.failed` with the reason, as every join method's are. The token
 * resource is a set of rules and is never consumed; the ID token is, once, in the same
 * write as the new instance.
 */
export function oidcJoin<S extends CiSpec>(platform: OidcPlatform<S>): JoinMethod {
  const method = platform.method;
  return {
    name: method,
    async verify(ctx, req, attempt) {
      const token = await ruleToken(ctx, req, attempt);
      if (!req.id_token) throw refuse(accessDenied(`A ${method} join needs the job's ${platform.proof} (id_token)`), "no ID token");
      const payload = await verify(ctx, platform, token, req.id_token);
      const spec = platform.spec(token);
      const rule = matchingRule(platform, spec, payload);
      const who = auditClaims(platform, payload);
      if (rule < 0) {
        const described = Object.entries(who).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
        throw refuse(
          accessDenied(`The ${platform.proof} (${described}) matches none of the ${spec.allow.length} allow rules of join token "${req.token_name}"`),
          `claims match no allow rule (${described})`,
        );
      }
      const used = usedKey(platform.issuer(spec), payload);
      const replayed = refuse(accessDenied(`This ${platform.proof} has already been used to join: each ID token joins once; ask the CI platform for a new one`), "ID token replayed");
      // checked here so a replay costs no signing; the write settles races
      if (await ctx.backend.get(used)) throw replayed;
      const bot = await joiningBot(ctx, token.spec.bot_name);
      const expires = new Date(((payload.exp as number) + CLOCK_TOLERANCE_S) * 1000);
      return {
        bot,
        tokenName: req.token_name,
        auditFields: { ...who, allow_rule: rule },
        complete: (instance) => ({
          ops: [{ key: used, condition: { kind: "notExists" }, action: { kind: "put", value: { bot: bot.metadata.name, instance_id: instance.instance_id }, expires } }],
        }),
        conflict: replayed,
      };
    },
  };
}
