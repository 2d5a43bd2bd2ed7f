/**
 * GitLab CI: a job's `id_tokens:` section makes GitLab put an ID token with the
 * audience it names (the cluster name) in a variable ($TBOT_GITLAB_JWT by default).
 * The issuer is https://gitlab.com or a self-managed instance's `domain`. As in
 * Teleport, `sub`, `project_path`, `namespace_path`, `ref` and `ci_config_ref_uri`
 * take globs; `ref_protected` and `environment_protected` are booleans.
 */

import type { GitlabJoinSpec } from "../../resources/index.ts";
import type { OidcPlatform } from "../oidc/index.ts";

const exact = (claim: string) => ({ claim, match: "exact" as const });
const glob = (claim: string) => ({ claim, match: "glob" as const });
const boolean = (claim: string) => ({ claim, match: "boolean" as const });

export const gitlab: OidcPlatform<GitlabJoinSpec> = {
  method: "gitlab",
  proof: "GitLab CI ID token",
  spec: (token) => token.spec.gitlab!,
  issuer: (spec) => `https://${spec.domain ?? "gitlab.com"}`,
  audience: (_spec, cluster) => cluster,
  audienceHint: (audience) => `set "aud: ${audience}" (the cluster name) under the job's id_tokens`,
  fields: {
    sub: glob("sub"),
    project_path: glob("project_path"),
    namespace_path: glob("namespace_path"),
    pipeline_source: exact("pipeline_source"),
    environment: exact("environment"),
    ref: glob("ref"),
    ref_type: exact("ref_type"),
    ref_protected: boolean("ref_protected"),
    environment_protected: boolean("environment_protected"),
    user_login: exact("user_login"),
    user_email: exact("user_email"),
    ci_config_ref_uri: glob("ci_config_ref_uri"),
    deployment_tier: exact("deployment_tier"),
    project_visibility: exact("project_visibility"),
  },
  audit: ["project_path", "ref", "ref_type", "pipeline_source", "pipeline_id", "job_id", "user_login", "environment"],
};
