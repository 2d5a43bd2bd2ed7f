/**
 * Command-line flags over a loaded agent config. Flags win over the file; the
 * "exactly one address" and other whole-config rules run afterwards, in the check step.
 */

import { parseDuration } from "../lib/duration.ts";
import { badParameter } from "../lib/errors.ts";
import { JOIN_METHODS, durationProblem, formatValue, type JoinMethod } from "../resources/index.ts";
import { LOG_FORMATS, OUTPUT_DEFAULT_ACLS, STORAGE_DEFAULT_ACLS } from "./_agent_schema.ts";
import { resolveToken } from "./_token.ts";
import type { AclsMode, AgentConfig, DestinationConfig, OutputConfig } from "./types.ts";

/** Flag values as the command line gives them; absent means "not given". */
export interface AgentFlags {
  authServer?: string;
  proxyServer?: string;
  /** A token value, or a path to a file holding it (as in the config file). */
  token?: string;
  joinMethod?: string;
  /** Replaces the config's pins (the flag is repeatable). */
  caPins?: string[];
  certificateTtl?: string;
  renewalInterval?: string;
  oneshot?: boolean;
  diagAddr?: string;
  /** `file:///path`, `memory://`, or a directory path. */
  storage?: string;
  /** An identity output to this directory: replaces the first directory identity output's path, else adds one. */
  destinationDir?: string;
  logFormat?: string;
  debug?: boolean;
  insecure?: boolean;
}

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw badParameter(`Invalid value ${formatValue(value)} for ${flag}: allowed values are ${allowed.map((a) => formatValue(a)).join(", ")}`, {
    field: flag,
  });
}

function duration(flag: string, value: string): number {
  const problem = durationProblem(value);
  if (problem) throw badParameter(`Invalid duration ${formatValue(value)} for ${flag}: ${problem}`, { field: flag });
  return parseDuration(value);
}

function directory(path: string, acls: AclsMode): DestinationConfig {
  return { type: "directory", path, symlinks: "try-secure", acls };
}

/** Parses `--storage`: `memory://`, `file:///var/lib/x`, or a plain path. */
export function parseStorageFlag(value: string): DestinationConfig {
  if (value === "memory://" || value === "memory") return { type: "memory" };
  if (value.startsWith("file://")) {
    const path = value.slice("file://".length);
    if (path.startsWith("/")) return directory(path, STORAGE_DEFAULT_ACLS);
  } else if (value !== "" && !value.includes("://")) {
    return directory(value, STORAGE_DEFAULT_ACLS);
  }
  throw badParameter(`Invalid value ${formatValue(value)} for --storage: expected "memory://", "file:///path" or a directory path`, {
    field: "--storage",
  });
}

function withDestinationDir(outputs: OutputConfig[], dir: string): OutputConfig[] {
  const i = outputs.findIndex((o) => o.type === "identity" && o.destination.type === "directory");
  if (i < 0) return [...outputs, { type: "identity", destination: directory(dir, OUTPUT_DEFAULT_ACLS), roles: [], sshConfig: true }];
  return outputs.map((o, j) => (j === i && o.destination.type === "directory" ? { ...o, destination: { ...o.destination, path: dir } } : o));
}

/** Returns `cfg` with the given flags applied; never changes `cfg`. Throws BAD_PARAMETER for a bad flag value. */
export function applyAgentFlags(cfg: AgentConfig, f: AgentFlags): AgentConfig {
  const out: AgentConfig = { ...cfg, onboarding: { ...cfg.onboarding, boundKeypair: { ...cfg.onboarding.boundKeypair } } };
  // One address flag replaces whichever address the file had; both flags together are
  // left for the check step to refuse.
  if (f.authServer !== undefined) {
    out.authServer = f.authServer;
    if (f.proxyServer === undefined) delete out.proxyServer;
  }
  if (f.proxyServer !== undefined) {
    out.proxyServer = f.proxyServer;
    if (f.authServer === undefined) delete out.authServer;
  }
  if (f.token !== undefined) {
    const t = resolveToken(f.token);
    out.onboarding.token = t.token;
    if (t.tokenPath !== undefined) out.onboarding.tokenPath = t.tokenPath;
    else delete out.onboarding.tokenPath;
  }
  if (f.joinMethod !== undefined) out.onboarding.joinMethod = oneOf<JoinMethod>("--join-method", f.joinMethod, JOIN_METHODS);
  if (f.caPins !== undefined) out.onboarding.caPins = [...f.caPins];
  if (f.certificateTtl !== undefined) out.credentialTtlMs = duration("--certificate-ttl", f.certificateTtl);
  if (f.renewalInterval !== undefined) out.renewalIntervalMs = duration("--renewal-interval", f.renewalInterval);
  if (f.oneshot !== undefined) out.oneshot = f.oneshot;
  if (f.diagAddr !== undefined) out.diagAddr = f.diagAddr;
  if (f.storage !== undefined) out.storage = parseStorageFlag(f.storage);
  if (f.destinationDir !== undefined) out.outputs = withDestinationDir(cfg.outputs, f.destinationDir);
  if (f.logFormat !== undefined) out.logFormat = oneOf("--log-format", f.logFormat, LOG_FORMATS);
  if (f.debug !== undefined) out.debug = f.debug;
  if (f.insecure !== undefined) out.insecure = f.insecure;
  return out;
}
