/**
 * The one error type that crosses layers and the wire. Every failure a user or a
 * client can act on is an AppError with a stable code; everything else is a bug.
 */

/** Stable error codes. The closed set is part of the wire protocol: never rename one. */
export const ERROR_CODES = [
  "BAD_PARAMETER",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "COMPARE_FAILED",
  "ACCESS_DENIED",
  "EXPIRED",
  "LIMIT_EXCEEDED",
  "TOO_LARGE",
  "LOCKED",
  "CONNECTION_PROBLEM",
  "TRUST_FAILURE",
  "NOT_IMPLEMENTED",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Where in a file an error was found (1-based line and column). */
export interface SourcePosition {
  file?: string;
  line?: number;
  column?: number;
}

export interface AppErrorOptions {
  cause?: unknown;
  /** Field path such as `spec.allow.logins[0]`, when the error is about one field. */
  field?: string;
  position?: SourcePosition;
  /** Extra machine-readable details that are safe to show a client. */
  details?: Record<string, unknown>;
}

/** An error with a stable code and a message that is safe to show to the caller. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;
  readonly position?: SourcePosition;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    if (options.field !== undefined) this.field = options.field;
    if (options.position !== undefined) this.position = options.position;
    if (options.details !== undefined) this.details = options.details;
  }
}

export function isAppError(e: unknown, code?: ErrorCode): e is AppError {
  return e instanceof AppError && (code === undefined || e.code === code);
}

export const badParameter = (message: string, options?: AppErrorOptions) =>
  new AppError("BAD_PARAMETER", message, options);
export const notFound = (message: string, options?: AppErrorOptions) => new AppError("NOT_FOUND", message, options);
export const alreadyExists = (message: string, options?: AppErrorOptions) =>
  new AppError("ALREADY_EXISTS", message, options);
export const compareFailed = (message: string, options?: AppErrorOptions) =>
  new AppError("COMPARE_FAILED", message, options);
export const accessDenied = (message: string, options?: AppErrorOptions) =>
  new AppError("ACCESS_DENIED", message, options);
export const expired = (message: string, options?: AppErrorOptions) => new AppError("EXPIRED", message, options);
export const limitExceeded = (message: string, options?: AppErrorOptions) =>
  new AppError("LIMIT_EXCEEDED", message, options);
export const locked = (message: string, options?: AppErrorOptions) => new AppError("LOCKED", message, options);
export const connectionProblem = (message: string, options?: AppErrorOptions) =>
  new AppError("CONNECTION_PROBLEM", message, options);
export const trustFailure = (message: string, options?: AppErrorOptions) =>
  new AppError("TRUST_FAILURE", message, options);

/** Renders an error for a terminal: `file:line:col: message` when a position is known. */
export function formatError(e: unknown): string {
  if (e instanceof AppError) {
    const p = e.position;
    if (p?.file || p?.line) {
      const where = [p.file, p.line, p.column].filter((x) => x !== undefined && x !== "").join(":");
      return `${where}: ${e.message}`;
    }
    return e.message;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The message of any thrown value. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
