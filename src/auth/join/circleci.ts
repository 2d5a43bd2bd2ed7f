/**
 * CircleCI: a job that uses a context gets an ID token in $CIRCLE_OIDC_TOKEN_V2 from its
 * organization's issuer, https://oidc.circleci.com/org/<organization_id>. CircleCI fixes
 * the audience to the organization ID, so that is what is checked (as Teleport does);
 * the issuer being the organization's own is what scopes the token.
 */

import type { CircleciJoinSpec } from "../../resources/index.ts";
import type { OidcPlatform } from "../oidc/index.ts";

const CIRCLECI_ISSUER_BASE = "https://oidc.circleci.com/org/";

export const circleci: OidcPlatform<CircleciJoinSpec> = {
  method: "circleci",
  proof: "CircleCI OIDC token",
  spec: (token) => token.spec.circleci!,
  issuer: (spec) => `${CIRCLECI_ISSUER_BASE}${spec.organization_id}`,
  audience: (spec) => spec.organization_id,
  audienceHint: (audience) => `CircleCI's default token carries the organization ID "${audience}": check spec.circleci.organization_id`,
  fields: {
    project_id: { claim: "oidc.circleci.com/project-id", match: "exact" },
    context_id: { claim: "oidc.circleci.com/context-ids", match: "contains" },
  },
  audit: ["oidc.circleci.com/project-id", "oidc.circleci.com/vcs-origin", "oidc.circleci.com/vcs-ref"],
};
