/**
 * GitHub Actions: a job with `permissions: id-token: write` asks its runner for an ID
 * token from https://token.actions.githubusercontent.com (with an enterprise's
 * `include_enterprise_slug` on, .../<slug>; or a GitHub Enterprise Server's
 * https://<host>/_services/token) for the audience the agent names: the
 * cluster name. Rule fields are compared exactly, as Teleport does.
 */

import type { GithubJoinSpec } from "../../resources/index.ts";
import type { OidcPlatform } from "../oidc/index.ts";

const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";

const exact = (claim: string) => ({ claim, match: "exact" as const });

export const github: OidcPlatform<GithubJoinSpec> = {
  method: "github",
  proof: "GitHub Actions ID token",
  spec: (token) => token.spec.github!,
  issuer: (spec) =>
    spec.enterprise_server_host
      ? `https://${spec.enterprise_server_host}/_services/token`
      : spec.enterprise_slug
        ? `${GITHUB_ISSUER}/${spec.enterprise_slug}`
        : GITHUB_ISSUER,
  audience: (_spec, cluster) => cluster,
  audienceHint: (audience) => `the agent asks the runner for audience "${audience}" (the cluster name): join this cluster's auth service`,
  fields: {
    sub: exact("sub"),
    repository: exact("repository"),
    repository_owner: exact("repository_owner"),
    workflow: exact("workflow"),
    environment: exact("environment"),
    actor: exact("actor"),
    ref: exact("ref"),
    ref_type: exact("ref_type"),
  },
  audit: ["repository", "workflow", "ref", "actor", "environment", "run_id", "run_attempt", "event_name"],
};
