/**
 * OIDC joins for CI platforms (GitHub Actions, GitLab CI, CircleCI): one verifier
 * (issuer discovery, cached JWKS, claims) and one table per platform.
 */

import type { CiSpec, OidcPlatform } from "./_platform.ts";
import { circleci } from "./circleci.ts";
import { github } from "./github.ts";
import { gitlab } from "./gitlab.ts";

export { joinWithOidc } from "./join.ts";
export { IssuerKeys } from "./_keys.ts";
export { cacheLifetimeMs } from "./_fetch.ts";
export { ciGlobMatch } from "./_rules.ts";
export type { OidcPlatform } from "./_platform.ts";

/**
 * The CI platforms by join method name. Each table is typed by its own spec; the join
 * reads only the parts every spec has (CiSpec), hence the widening.
 */
export const OIDC_PLATFORMS = { github, gitlab, circleci } as unknown as Record<string, OidcPlatform<CiSpec>>;

/** The join methods served by the OIDC join. */
export const OIDC_JOIN_METHODS = Object.keys(OIDC_PLATFORMS);
