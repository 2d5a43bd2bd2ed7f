/**
 * What a CI platform is to the OIDC join: a table. Where its issuer is, which audience
 * its tokens carry, and how each allow-rule field of the token resource is compared
 * with a claim. Adding a platform means adding one of these, not verification code.
 */

import type { JWTPayload } from "jose";
import type { CiJoinMethod, TokenResource } from "../../resources/index.ts";

/**
 * How a rule value is compared with its claim: `exact` string equality, `glob` with
 * `*` (any run) and `?` (one character), `boolean` against a claim GitLab sends as
 * "true"/"false", `contains` for a rule value that must be one of a list claim.
 */
export type Match = "exact" | "glob" | "boolean" | "contains";

/** The parts of a CI token spec the join reads, whatever the platform. */
export interface CiSpec {
  static_jwks?: string | undefined;
  allow: Partial<Record<string, string | boolean>>[];
}

export interface OidcPlatform<S extends CiSpec = CiSpec> {
  /** The join method, as in the token's spec.join_method and the join request. */
  method: CiJoinMethod;
  /** How messages name the proof, e.g. "GitHub Actions ID token". */
  proof: string;
  /** The token's sub-spec for this platform. */
  spec(token: TokenResource): S;
  /** The issuer the token must come from (its `iss`, and where its keys are found). */
  issuer(spec: S): string;
  /** The audience the token must carry. */
  audience(spec: S, cluster: string): string;
  /** What to change in the CI job when the audience is wrong. */
  audienceHint(audience: string): string;
  /** Allow-rule field → the claim it is compared with, and how. */
  fields: Record<string, { claim: string; match: Match }>;
  /** Claims recorded on the bot.join audit event (which job joined). */
  audit: readonly string[];
}

/** A claim as a string for messages and audit, or undefined when absent or not a scalar. */
export function claimText(payload: JWTPayload, claim: string): string | undefined {
  const v = payload[claim];
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v.join(",");
  return undefined;
}
