/**
 * The single map between error codes and HTTP statuses, and the error body both
 * sides agree on: `{"error": {"code", "message", "field"?}}`.
 */

import { AppError, type ErrorCode, ERROR_CODES } from "../lib/errors.ts";

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  BAD_PARAMETER: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  COMPARE_FAILED: 409,
  ACCESS_DENIED: 403,
  EXPIRED: 401,
  LIMIT_EXCEEDED: 429,
  TOO_LARGE: 413,
  LOCKED: 423,
  CONNECTION_PROBLEM: 502,
  TRUST_FAILURE: 495,
  NOT_IMPLEMENTED: 501,
  INTERNAL: 500,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string; details?: Record<string, unknown> };
}

export function errorBody(e: AppError): ErrorBody {
  const body: ErrorBody = { error: { code: e.code, message: e.message } };
  if (e.field) body.error.field = e.field;
  if (e.details) body.error.details = e.details;
  return body;
}

/** Turns a response body back into the AppError the server raised. */
export function errorFromBody(status: number, body: unknown): AppError {
  const err = (body as Partial<ErrorBody> | undefined)?.error;
  if (err && typeof err.message === "string" && (ERROR_CODES as readonly string[]).includes(err.code as string)) {
    return new AppError(err.code as ErrorCode, err.message, {
      ...(err.field ? { field: err.field } : {}),
      ...(err.details ? { details: err.details } : {}),
    });
  }
  const code = (Object.entries(STATUS_BY_CODE).find(([, s]) => s === status)?.[0] ?? "INTERNAL") as ErrorCode;
  return new AppError(code, `Request failed with HTTP status ${status}`);
}
