/**
 * The `gitlab` join method, agent side: GitLab puts the job's ID token in the variable
 * the pipeline's `id_tokens:` section names: $TBOT_GITLAB_JWT unless
 * onboarding.gitlab.token_env_var_name says otherwise. One ID token per job, and it
 * joins once: a job that must keep its identity renews rather than joining again.
 */

import { AppError } from "../../lib/errors.ts";
import type { JoinMethod } from "../bot/index.ts";
import { ciTokenName, joinWithIdToken } from "./_join.ts";

type Env = Record<string, string | undefined>;

const DEFAULT_GITLAB_TOKEN_ENV = "TBOT_GITLAB_JWT";

/** The gitlab join method reading the ID token from `env`. */
export function gitlabJoin(env: Env = process.env): JoinMethod {
  return {
    name: "gitlab",
    rejoinable: false,
    async join(ctx) {
      const tokenName = ciTokenName(ctx, "gitlab");
      const variable = ctx.onboarding.gitlab?.tokenEnvVarName ?? DEFAULT_GITLAB_TOKEN_ENV;
      const idToken = env[variable]?.trim();
      if (!idToken) {
        const cluster = await ctx.client.ping().then((p) => p.cluster_name, () => "<cluster name>");
        throw new AppError(
          "BAD_PARAMETER",
          `Cannot join with GitLab CI: $${variable} is not set; add to the job "id_tokens: {${variable}: {aud: ${cluster}}}" in .gitlab-ci.yml`,
        );
      }
      return joinWithIdToken(ctx, "gitlab", tokenName, idToken);
    },
  };
}

