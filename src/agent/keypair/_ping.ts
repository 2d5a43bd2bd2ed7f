/**
 * `keypair create --proxy-server`: ask the cluster who it is, before the operator
 * has any way to verify it. Only public information travels, in either direction.
 */

import { connectionProblem, errorMessage, isAppError } from "../../lib/errors.ts";
import { PingResponse, ROUTES, baseUrl, decode, readUnverified } from "../../protocol/index.ts";

/**
 * GET /webapi/ping without verifying the server's certificate. The answer is shown to
 * the operator as information and never trusted: the agent checks the CA pin when it
 * joins, and nothing secret is sent here.
 */
export async function pingUnverified(addr: string, timeoutMs = 15_000): Promise<PingResponse> {
  const url = `${baseUrl(addr)}${ROUTES.ping}`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), tls: { rejectUnauthorized: false } } as RequestInit);
    text = await readUnverified(res, `the ping answer of "${addr}" (--proxy-server)`);
  } catch (e) {
    if (isAppError(e)) throw e;
    const why = (e as Error)?.name === "TimeoutError" ? "it did not answer in time" : errorMessage(e);
    throw connectionProblem(`Cannot reach "${addr}" (--proxy-server): ${why}`, { cause: e });
  }
  if (!res.ok) throw connectionProblem(`Cannot ping "${addr}" (--proxy-server): HTTP status ${res.status}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw connectionProblem(`Cannot ping "${addr}" (--proxy-server): the answer is not JSON; is it a machine-id auth service?`);
  }
  try {
    return decode(PingResponse, json, `ping answer from "${addr}"`);
  } catch (e) {
    if (isAppError(e)) throw connectionProblem(`Cannot ping "${addr}" (--proxy-server): ${e.message}`, { cause: e });
    throw e;
  }
}
