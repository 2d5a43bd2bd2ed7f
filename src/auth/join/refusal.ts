/**
 * A refused join, as join methods throw it internally: the error the caller gets and
 * the reason the audit log records (`join.failed`), which may say more than the caller
 * is told.
 */

import type { AppError } from "../../lib/errors.ts";

export class Refusal extends Error {
  constructor(
    readonly error: AppError,
    readonly reason: string,
  ) {
    super(error.message);
  }
}

/** A Refusal to throw. */
export const refuse = (error: AppError, reason: string) => new Refusal(error, reason);
