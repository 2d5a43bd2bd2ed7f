/**
 * An agent config for the compiled binary running as a daemon (a token join, directory
 * storage, one identity output), for the reliability suite and the agent benchmark.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface AgentConfigOptions {
  authAddr: string;
  token: string;
  caPin: string;
  storageDir: string;
  destinationDir: string;
  diagPort: number;
  renewalInterval: string;
  credentialTtl?: string;
}

/** Writes a tbot v2 config for a daemon with one identity output; returns its path. */
export function writeAgentConfig(dir: string, o: AgentConfigOptions): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "agent.yaml");
  writeFileSync(
    path,
    [
      "version: v2",
      `auth_server: "${o.authAddr}"`,
      "onboarding:",
      "  join_method: token",
      `  token: "${o.token}"`,
      "  ca_pins:",
      `    - "${o.caPin}"`,
      "storage:",
      "  type: directory",
      `  path: ${o.storageDir}`,
      `credential_ttl: ${o.credentialTtl ?? "10m"}`,
      `renewal_interval: ${o.renewalInterval}`,
      `diag_addr: "127.0.0.1:${o.diagPort}"`,
      "outputs:",
      "  - type: identity",
      "    destination:",
      "      type: directory",
      `      path: ${o.destinationDir}`,
      "",
    ].join("\n"),
  );
  return path;
}
