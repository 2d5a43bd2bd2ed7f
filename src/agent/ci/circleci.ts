/**
 * The `circleci` join method, agent side: CircleCI gives a job that uses a context its
 * OIDC token in $CIRCLE_OIDC_TOKEN_V2 (and the older $CIRCLE_OIDC_TOKEN, used when the
 * first is absent). The audience is CircleCI's fixed one, the organization ID.
 */

import { AppError } from "../../lib/errors.ts";
import type { JoinMethod } from "../bot/index.ts";
import { ciTokenName, joinWithIdToken } from "./_join.ts";

type Env = Record<string, string | undefined>;

const CIRCLECI_TOKEN_ENVS = ["CIRCLE_OIDC_TOKEN_V2", "CIRCLE_OIDC_TOKEN"] as const;

/** The circleci join method reading the ID token from `env`. */
export function circleciJoin(env: Env = process.env): JoinMethod {
  return {
    name: "circleci",
    rejoinable: false,
    async join(ctx) {
      const tokenName = ciTokenName(ctx, "circleci");
      const idToken = CIRCLECI_TOKEN_ENVS.map((v) => env[v]?.trim()).find(Boolean);
      if (!idToken) {
        throw new AppError(
          "BAD_PARAMETER",
          `Cannot join with CircleCI: $CIRCLE_OIDC_TOKEN_V2 is not set; CircleCI sets it only in jobs that use a context: add "context: [<a context>]" to the job in the workflow`,
        );
      }
      return joinWithIdToken(ctx, "circleci", tokenName, idToken);
    },
  };
}

