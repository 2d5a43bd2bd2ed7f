/**
 * Matching a verified ID token's claims against a token resource's allow rules: a job
 * may join when every field of one rule matches (fields a rule leaves out are not
 * checked). Which claim a field means, and how it compares, is the platform's table.
 */

import type { JWTPayload } from "jose";
import type { CiSpec, Match, OidcPlatform } from "./_platform.ts";

/**
 * Glob match with `*` (any run, `/` included) and `?` (one character), the patterns
 * Teleport's CI rules use; everything else is literal. Hand-written (not the role
 * patterns of resources/_glob.ts) because rules here must not become regular
 * expressions and `?` has a meaning.
 */
export function ciGlobMatch(pattern: string, value: string): boolean {
  // iterative matcher with backtracking to the last `*`: linear-ish, no regex, no recursion
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === value[v])) {
      p++;
      v++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = p++;
      mark = v;
    } else if (star !== -1) {
      p = star + 1;
      v = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

function fieldMatches(match: Match, want: string | boolean, claim: unknown): boolean {
  switch (match) {
    case "exact":
      return typeof claim === "string" && claim === want;
    case "glob":
      return typeof claim === "string" && typeof want === "string" && ciGlobMatch(want, claim);
    case "boolean":
      // GitLab sends these as the strings "true"/"false"; accept a JSON boolean too
      return (typeof claim === "boolean" ? claim : claim === "true" ? true : claim === "false" ? false : undefined) === want;
    case "contains":
      return Array.isArray(claim) && claim.includes(want);
  }
}

/** The index of the first rule the claims meet, or -1 when none does. */
export function matchingRule<S extends CiSpec>(platform: OidcPlatform<S>, spec: S, payload: JWTPayload): number {
  return spec.allow.findIndex((rule) =>
    Object.entries(rule).every(([field, want]) => {
      if (want === undefined) return true;
      const f = platform.fields[field];
      // a field the table does not know can never match: refuse rather than ignore it
      return f !== undefined && fieldMatches(f.match, want, payload[f.claim]);
    }),
  );
}
