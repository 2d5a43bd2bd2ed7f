/**
 * The `github` join method, agent side: inside a GitHub Actions job the runner hands
 * out ID tokens for any audience at $ACTIONS_ID_TOKEN_REQUEST_URL to holders of
 * $ACTIONS_ID_TOKEN_REQUEST_TOKEN. The agent asks for one with the cluster name (from
 * the auth service's /webapi/ping, checked against the pinned CA) as audience, at every
 * join: a fresh token each time, so the method can join again.
 */

import * as z from "zod";
import { AppError, connectionProblem, errorMessage } from "../../lib/errors.ts";
import type { JoinMethod } from "../bot/index.ts";
import { ciTokenName, joinWithIdToken } from "./_join.ts";

type Env = Record<string, string | undefined>;

const REQUEST_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL";
const REQUEST_TOKEN_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
const RUNNER_TIMEOUT_MS = 30_000;

/** Asks the runner for an ID token for `audience`. */
async function requestGithubIdToken(env: Env, audience: string): Promise<string> {
  const url = env[REQUEST_URL_ENV];
  const bearer = env[REQUEST_TOKEN_ENV];
  if (!url || !bearer) {
    throw new AppError(
      "BAD_PARAMETER",
      `Cannot get a GitHub Actions ID token: $${REQUEST_URL_ENV} and $${REQUEST_TOKEN_ENV} are not set; give the job "permissions: id-token: write" in the workflow (and run inside GitHub Actions)`,
    );
  }
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new AppError("BAD_PARAMETER", `Cannot get a GitHub Actions ID token: $${REQUEST_URL_ENV} is not a URL`);
  }
  target.searchParams.set("audience", audience);
  let res: Response;
  try {
    res = await fetch(target, { headers: { authorization: `bearer ${bearer}`, accept: "application/json" }, signal: AbortSignal.timeout(RUNNER_TIMEOUT_MS) });
  } catch (e) {
    throw connectionProblem(`Cannot get a GitHub Actions ID token from the runner (${target.origin}): ${errorMessage(e)}`);
  }
  const text = await res.text().catch(() => "");
  if (res.status !== 200) {
    throw connectionProblem(`Cannot get a GitHub Actions ID token: the runner answered HTTP ${res.status}${res.status === 403 ? '; give the job "permissions: id-token: write"' : ""}`);
  }
  let value: string | undefined;
  try {
    const parsed = z.object({ value: z.string().min(1) }).safeParse(JSON.parse(text));
    if (parsed.success) value = parsed.data.value;
  } catch {
    // refused below
  }
  if (!value) throw connectionProblem(`Cannot get a GitHub Actions ID token: the runner's answer has no "value"`);
  return value;
}

/** The github join method reading the runner's variables from `env`. */
export function githubJoin(env: Env = process.env): JoinMethod {
  return {
    name: "github",
    // the runner gives a fresh ID token whenever asked
    rejoinable: true,
    async join(ctx) {
      const tokenName = ciTokenName(ctx, "github");
      const { cluster_name } = await ctx.client.ping();
      return joinWithIdToken(ctx, "github", tokenName, await requestGithubIdToken(env, cluster_name));
    },
  };
}

