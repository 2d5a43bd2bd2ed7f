/**
 * Errors the proxy answers itself, as the Kubernetes `Status` objects kubectl and
 * client libraries read ("Error from server (Forbidden): …").
 */

import type { AppError } from "../../lib/errors.ts";
import { STATUS_BY_CODE } from "../../protocol/index.ts";

/** Kubernetes `reason` for each HTTP status the proxy answers with. */
const REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  413: "RequestEntityTooLarge",
  429: "TooManyRequests",
  500: "InternalError",
  501: "MethodNotAllowed",
  502: "ServiceUnavailable",
};

/** A `Status` response. */
export function statusResponse(status: number, message: string): Response {
  const body = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason: REASONS[status] ?? "Unknown", code: status };
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** The HTTP status a Kubernetes client should see for `e`: a lock is a refusal like any other. */
export function statusOf(e: AppError): number {
  return e.code === "LOCKED" ? 403 : STATUS_BY_CODE[e.code];
}
