/**
 * The `kubernetes` join method, agent side: the pod's service-account JWT goes to the
 * auth service with the name of the join token whose rules it must meet. The JWT is
 * read again at every join, since the kubelet rotates projected tokens on disk.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../../lib/errors.ts";
import { fsError } from "../../lib/fs.ts";
import { publicKeys, type JoinMethod } from "../bot/index.ts";
import { serviceAccountDir, type Env } from "./_apiclient.ts";

/** Names the file holding the JWT to join with (k8s-deployment.yaml sets it). */
export const TOKEN_PATH_ENV = "KUBERNETES_TOKEN_PATH";
/** Where a projected token for joining is mounted when $KUBERNETES_TOKEN_PATH is not set. */
export const DEFAULT_JOIN_TOKEN_PATH = "/var/run/secrets/tokens/join-sa-token";

/**
 * The JWT to join with: $KUBERNETES_TOKEN_PATH when set (and then it must exist), else
 * the projected token at its usual path, else the pod's default service-account token.
 */
export async function readServiceAccountToken(env: Env): Promise<{ token: string; path: string }> {
  const explicit = env[TOKEN_PATH_ENV];
  const candidates = explicit ? [explicit] : [DEFAULT_JOIN_TOKEN_PATH, join(serviceAccountDir(env), "token")];
  for (const path of candidates) {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if (!explicit && (e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw fsError(`read the service account token (${TOKEN_PATH_ENV})`, path, e);
    }
    const token = text.trim();
    if (!token) throw new AppError("BAD_PARAMETER", `Cannot join with the service account token "${path}": the file is empty`);
    return { token, path };
  }
  throw new AppError(
    "BAD_PARAMETER",
    `Cannot find a service account token to join with: neither "${candidates.join('" nor "')}" exists; mount a projected token and set $${TOKEN_PATH_ENV} (see k8s-deployment.yaml)`,
  );
}

/** The kubernetes join method reading its settings from `env`. */
export function kubernetesJoin(env: Env = process.env): JoinMethod {
  return {
    name: "kubernetes",
    // The pod can always prove itself again: memory storage and expired identities just join anew.
    rejoinable: true,
    async join(ctx) {
      const tokenName = ctx.onboarding.token;
      if (!tokenName) {
        throw new AppError("BAD_PARAMETER", `Join method "kubernetes" needs the name of a kubernetes join token: set onboarding.token or pass --token`);
      }
      const { token, path } = await readServiceAccountToken(env);
      ctx.log.debug("Joining with a service account token", { path, token_name: tokenName });
      return ctx.client.join({ join_method: "kubernetes", token_name: tokenName, id_token: token, ttl_seconds: ctx.ttlSeconds, ...publicKeys(ctx.key) });
    },
  };
}
