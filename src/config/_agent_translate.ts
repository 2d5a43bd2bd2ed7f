/**
 * Agent config file (v1 or v2, as validated) → `AgentConfig`. A v1 destination becomes
 * an identity output, or a kubernetes output when it names a cluster.
 */

import { parseDuration } from "../lib/duration.ts";
import { formatPath } from "../resources/index.ts";
import type { AgentV1File, AgentV2File } from "./_agent_schema.ts";
import { DEFAULT_STORAGE_PATH, OUTPUT_DEFAULT_ACLS, STORAGE_DEFAULT_ACLS } from "./_agent_schema.ts";
import type { AclsMode, AgentConfig, DestinationConfig, OnboardingConfig, OutputConfig } from "./types.ts";

/** tbot's defaults: credentials live an hour and are renewed every 20 minutes. */
export const DEFAULT_CREDENTIAL_TTL_MS = 3_600_000;
export const DEFAULT_RENEWAL_INTERVAL_MS = 20 * 60_000;

type Onboarding = AgentV2File["onboarding"];
type V2Destination = AgentV2File["outputs"][number]["destination"] | NonNullable<AgentV2File["storage"]>;
type V1Directory = NonNullable<NonNullable<AgentV1File["storage"]>["directory"]>;

/** The onboarding section; `token` is the value as written (file resolution is the caller's). */
export function translateOnboarding(o: Onboarding): OnboardingConfig {
  const bk = o.bound_keypair ?? {};
  return {
    // tbot's default: a config that names a token but no method joins with the token.
    joinMethod: o.join_method ?? "token",
    ...(o.token !== undefined ? { token: o.token } : {}),
    caPins: [...o.ca_pins],
    ...(o.ca_path !== undefined ? { caPath: o.ca_path } : {}),
    boundKeypair: {
      ...(bk.static_private_key_path !== undefined ? { staticPrivateKeyPath: bk.static_private_key_path } : {}),
      ...(bk.registration_secret !== undefined ? { registrationSecret: bk.registration_secret } : {}),
      ...(bk.registration_secret_path !== undefined ? { registrationSecretPath: bk.registration_secret_path } : {}),
    },
    ...(o.gitlab?.token_env_var_name !== undefined ? { gitlab: { tokenEnvVarName: o.gitlab.token_env_var_name } } : {}),
  };
}

function translateDestination(d: V2Destination): DestinationConfig {
  switch (d.type) {
    case "directory":
      return { type: "directory", path: d.path, symlinks: d.symlinks, acls: d.acls };
    case "memory":
      return { type: "memory" };
    case "kubernetes_secret":
      return { type: "kubernetes_secret", name: d.name, ...(d.namespace !== undefined ? { namespace: d.namespace } : {}) };
  }
}

function translateOutput(o: AgentV2File["outputs"][number]): OutputConfig {
  const destination = translateDestination(o.destination);
  if (o.type === "identity") {
    const sshConfig = o.ssh_config === true || o.ssh_config === "on";
    return { type: "identity", destination, roles: [...o.roles], sshConfig };
  }
  if (o.type === "kubernetes/v2") {
    const selectors = o.selectors.map((sel) => (sel.name !== undefined ? { name: sel.name } : { labels: { ...sel.labels } }));
    return { type: "kubernetes/v2", destination, selectors, disableExecPlugin: o.disable_exec_plugin };
  }
  return { type: "kubernetes", destination, kubernetesCluster: o.kubernetes_cluster, roles: [...o.roles] };
}

const ms = (d: string | undefined, fallback: number) => (d === undefined ? fallback : parseDuration(d));

/** A validated v2 file as `AgentConfig`. */
export function translateV2(f: AgentV2File): AgentConfig {
  return {
    ...(f.auth_server !== undefined ? { authServer: f.auth_server } : {}),
    ...(f.proxy_server !== undefined ? { proxyServer: f.proxy_server } : {}),
    onboarding: translateOnboarding(f.onboarding),
    storage: f.storage ? translateDestination(f.storage) : defaultStorage(),
    outputs: f.outputs.map(translateOutput),
    services: f.services.map(translateOutput),
    credentialTtlMs: ms(f.credential_ttl ?? f.certificate_ttl, DEFAULT_CREDENTIAL_TTL_MS),
    renewalIntervalMs: ms(f.renewal_interval, DEFAULT_RENEWAL_INTERVAL_MS),
    oneshot: f.oneshot,
    debug: f.debug,
    ...(f.diag_addr !== undefined ? { diagAddr: f.diag_addr } : {}),
    insecure: f.insecure,
    logFormat: f.log_format,
    warnings: [],
  };
}

/** The storage used when a config names none. */
export function defaultStorage(): DestinationConfig {
  return { type: "directory", path: DEFAULT_STORAGE_PATH, symlinks: "try-secure", acls: STORAGE_DEFAULT_ACLS };
}

function v1Location(l: { directory?: V1Directory | undefined; memory?: boolean | undefined }, acls: AclsMode): DestinationConfig {
  if (l.directory === undefined) return { type: "memory" };
  if (typeof l.directory === "string") return { type: "directory", path: l.directory, symlinks: "try-secure", acls };
  return { type: "directory", path: l.directory.path, symlinks: l.directory.symlinks, acls: l.directory.acls ?? acls };
}

/** A validated v1 file as `AgentConfig`. */
export function translateV1(f: AgentV1File): AgentConfig {
  const warnings: string[] = [];
  const outputs = f.destinations.map((d, i): OutputConfig => {
    const destination = v1Location(d, OUTPUT_DEFAULT_ACLS);
    const roles = [...(d.roles ?? [])];
    if (d.kubernetes_cluster !== undefined) {
      return { type: "kubernetes", destination, kubernetesCluster: d.kubernetes_cluster, roles };
    }
    // v1 wrote every template unless `configs` listed some: the SSH config is one of them.
    const names = (d.configs ?? []).map((c, j) => {
      if (typeof c === "string") return c;
      const name = Object.keys(c)[0]!;
      if (Object.keys(c[name] ?? {}).length > 0) {
        warnings.push(`${formatPath(["destinations", i, "configs", j, name])}: template options are not supported and are ignored`);
      }
      return name;
    });
    const sshConfig = d.configs === undefined || names.includes("ssh_client");
    return { type: "identity", destination, roles, sshConfig };
  });
  return {
    ...(f.auth_server !== undefined ? { authServer: f.auth_server } : {}),
    onboarding: translateOnboarding(f.onboarding),
    storage: f.storage ? v1Location(f.storage, STORAGE_DEFAULT_ACLS) : defaultStorage(),
    outputs,
    services: [],
    credentialTtlMs: ms(f.certificate_ttl, DEFAULT_CREDENTIAL_TTL_MS),
    renewalIntervalMs: ms(f.renewal_interval, DEFAULT_RENEWAL_INTERVAL_MS),
    oneshot: f.oneshot,
    debug: f.debug,
    ...(f.diag_addr !== undefined ? { diagAddr: f.diag_addr } : {}),
    insecure: false,
    logFormat: "text",
    warnings,
  };
}
