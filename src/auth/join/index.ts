/**
 * The join methods this auth service serves: one registration line each. A new method
 * is one file in this folder (a `JoinMethod`, join/instance.ts) and one line here;
 * docs/design.md ("Join methods") has the steps.
 */

import { badParameter } from "../../lib/errors.ts";
import { ROUTES, type JoinRequest, type JoinResponse } from "../../protocol/index.ts";
import type { JoinMethod as JoinMethodName } from "../../resources/index.ts";
import type { Caller } from "../bots.ts";
import type { AuthContext } from "../context.ts";
import { boundKeypairJoin } from "./bound_keypair.ts";
import { circleci } from "./circleci.ts";
import { github } from "./github.ts";
import { gitlab } from "./gitlab.ts";
import { joinWith, type JoinDeps, type JoinMethod } from "./instance.ts";
import { kubernetesJoin } from "./kubernetes.ts";
import { oidcJoin } from "./oidc.ts";
import { tokenJoin } from "./token.ts";

export type { JoinDeps, JoinMethod, JoinRoute } from "./instance.ts";

/** The registered join methods by name, in the order `/webapi/ping` lists them. */
export const JOIN_REGISTRY: ReadonlyMap<JoinMethodName, JoinMethod> = new Map(
  [
    tokenJoin,
    boundKeypairJoin,
    kubernetesJoin,
    oidcJoin(github),
    oidcJoin(gitlab),
    oidcJoin(circleci),
  ].map((m) => [m.name, m]),
);

/**
 * Every path a join is served at: `/v1/join` and each registered method's own routes.
 * app.ts puts the failed-join limiter on exactly these, so a method's routes are limited
 * from the moment it is registered, with no second list to keep in step.
 */
export const JOIN_PATHS: ReadonlySet<string> = new Set([
  ROUTES.join,
  ...[...JOIN_REGISTRY.values()].flatMap((m) => (m.routes ?? []).map((r) => r.path)),
]);

/** A one-request join (`/v1/join`), by the method the request names. */
export function join(ctx: AuthContext, req: JoinRequest, caller: Caller, deps: JoinDeps): Promise<JoinResponse> {
  const method = JOIN_REGISTRY.get(req.join_method);
  if (!method?.verify) throw badParameter(`Join method "${req.join_method}" is not served at ${ROUTES.join}`);
  return joinWith(ctx, method.name, method.verify.bind(method), req, caller, deps);
}
