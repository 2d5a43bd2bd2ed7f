/**
 * The auth service's admin operations for tests, called directly on a running
 * service's context: no request, no certificate (the service itself exposes no
 * such back door; its admin API is behind the admin identity).
 */

import { Admin } from "../../src/auth/admin.ts";
import type { AuthContext } from "../../src/auth/context.ts";

export type { Admin };

/** Admin operations on the service whose context is `ctx`. */
export function adminOf(ctx: AuthContext): Admin {
  return new Admin(ctx);
}
