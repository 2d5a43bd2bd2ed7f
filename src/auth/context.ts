/**
 * The dependencies every part of the auth service is handed: storage, the loaded
 * authorities, time, logging, audit and static settings.
 */

import type { Clock } from "../lib/clock.ts";
import type { Logger } from "../lib/log.ts";
import type { AuditLog } from "./audit.ts";
import type { Authorities } from "./authorities.ts";
import type { Backend } from "./storage/index.ts";

export interface AuthContext {
  backend: Backend;
  authorities: Authorities;
  clock: Clock;
  log: Logger;
  audit: AuditLog;
  version: string;
  /** Address agents and ctl use to reach the service, `host:port`. */
  publicAddr: string;
}
