/**
 * OIDC ID tokens, the library the CI joins (auth/join/oidc.ts) and the Kubernetes join
 * are built on: issuer discovery with cached JWKS, allow-rule matching, and the shape of
 * a CI platform's table.
 */

export { CLOCK_TOLERANCE_S, IssuerKeys, issuerKeys, JWT_ALGORITHMS, checkJwks, type KeyResolver } from "./_keys.ts";
export { cacheLifetimeMs } from "./_fetch.ts";
export { ciGlobMatch, matchingRule } from "./_rules.ts";
export { claimText, type CiSpec, type Match, type OidcPlatform } from "./_platform.ts";
