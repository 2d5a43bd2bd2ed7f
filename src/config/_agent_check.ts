/**
 * The agent config's check step, run after command-line flags are applied: the rules
 * that need the whole picture (one address, a token for the join method, pins, TTLs).
 */

import { formatDuration } from "../lib/duration.ts";
import { formatValue, problemsError, type Problem } from "../resources/index.ts";
import { resolve } from "node:path";
import type { AgentConfig, DestinationConfig } from "./types.ts";

/** Credentials may not be asked for with a longer lifetime than a bot may ever have. */
export const MAX_CREDENTIAL_TTL_MS = 7 * 24 * 3_600_000;

const PIN = /^sha256:[0-9a-f]{64}$/i;
const SUBJECT = "agent config";

/**
 * Checks a loaded (and flag-overridden) config and returns it with the warnings the
 * check found added; never changes its argument. Throws BAD_PARAMETER naming the first
 * problem, with all of them in `details.errors`. Idempotent.
 */
export function checkAgentConfig(cfg: AgentConfig): AgentConfig {
  const problems: Problem[] = [];
  const fail = (field: string, message: string) => problems.push({ field, message });
  const invalid = (field: string, value: string, detail: string, what = "value") =>
    fail(field, `Invalid ${what} ${formatValue(value)} for ${field} in ${SUBJECT}: ${detail}`);

  if (cfg.authServer === undefined && cfg.proxyServer === undefined) {
    fail("auth_server", `Missing auth_server or proxy_server in ${SUBJECT}: set one in the config file or pass --auth-server or --proxy-server`);
  } else if (cfg.authServer !== undefined && cfg.proxyServer !== undefined) {
    fail(
      "proxy_server",
      `Cannot use both auth_server ${formatValue(cfg.authServer)} and proxy_server ${formatValue(cfg.proxyServer)} in ${SUBJECT}: set only one`,
    );
  }
  for (const [field, addr] of [["auth_server", cfg.authServer], ["proxy_server", cfg.proxyServer]] as const) {
    if (addr !== undefined && (addr.includes("://") || /\s/.test(addr) || addr === "")) {
      invalid(field, addr, `expected "host:port" without a scheme, such as "auth.example.com:3025"`, "address");
    }
  }

  const o = cfg.onboarding;
  const registers = o.joinMethod === "bound_keypair" && (o.boundKeypair.registrationSecret ?? o.boundKeypair.registrationSecretPath) !== undefined;
  if (!o.token && !registers) {
    const unless = o.joinMethod === "bound_keypair" ? " (or a registration secret)" : "";
    fail(
      "onboarding.token",
      `Missing required field "onboarding.token" in ${SUBJECT}: join method "${o.joinMethod}" needs a token${unless}; set it in the config file or pass --token`,
    );
  }
  o.caPins.forEach((pin, i) => {
    if (!PIN.test(pin)) invalid(`onboarding.ca_pins[${i}]`, pin, `expected "sha256:" followed by 64 hexadecimal digits`, "CA pin");
  });

  const ttl = formatDuration(cfg.credentialTtlMs);
  const interval = formatDuration(cfg.renewalIntervalMs);
  if (cfg.credentialTtlMs <= 0) invalid("credential_ttl", ttl, "must be longer than 0s", "duration");
  if (cfg.credentialTtlMs > MAX_CREDENTIAL_TTL_MS) {
    invalid("credential_ttl", ttl, `must be at most ${formatDuration(MAX_CREDENTIAL_TTL_MS)} (7 days)`, "duration");
  }
  if (cfg.renewalIntervalMs <= 0) invalid("renewal_interval", interval, "must be longer than 0s", "duration");

  // Two outputs (or an output and the agent's storage) in one place would overwrite each other.
  const owners = new Map<string, string>();
  const claim = (d: DestinationConfig, field: string, owner: string) => {
    const key = destinationKey(d);
    if (key === undefined) return;
    const previous = owners.get(key);
    if (previous !== undefined) {
      const where = d.type === "directory" ? d.path : d.type === "kubernetes_secret" ? d.name : "";
      invalid(field, where, `${previous} already writes there`);
    } else owners.set(key, owner);
  };
  claim(cfg.storage, "storage", "the agent's storage");
  const lists = [["outputs", cfg.outputs], ["services", cfg.services]] as const;
  for (const [list, outputs] of lists) {
    outputs.forEach((out, i) => {
      const field = out.destination.type === "directory" ? `${list}[${i}].destination.path` : `${list}[${i}].destination.name`;
      claim(out.destination, field, `${list}[${i}]`);
    });
  }

  if (problems.length > 0) throw problemsError(problems);

  const warnings = [...cfg.warnings];
  const warn = (w: string) => {
    if (!warnings.includes(w)) warnings.push(w);
  };
  if (cfg.credentialTtlMs < cfg.renewalIntervalMs) {
    warn(`credential_ttl ${ttl} is shorter than renewal_interval ${interval}: credentials will expire between renewals`);
  }
  if (cfg.insecure) {
    warn("insecure is set: the auth service's certificate is not verified, so anyone on the network path can impersonate it");
  }
  return { ...cfg, warnings };
}

function destinationKey(d: DestinationConfig): string | undefined {
  if (d.type === "directory") return `directory:${resolve(d.path)}`;
  if (d.type === "kubernetes_secret") return `secret:${d.namespace ?? ""}/${d.name}`;
  return undefined;
}
