/**
 * YAML → typed agent and auth configs (tbot v1 and v2 agent files), with the same
 * precise, positioned errors as resources.
 */

export type {
  AgentConfig,
  OnboardingConfig,
  DestinationConfig,
  OutputConfig,
  KubernetesSelector,
  SymlinksMode,
  AclsMode,
  AuthConfig,
  AuthLimitsConfig,
  AuthStorageConfig,
  CaKeyAlgorithm,
  KubernetesClusterConfig,
} from "./types.ts";
export {
  parseAgentConfig,
  loadAgentConfig,
  applyAgentFlags,
  checkAgentConfig,
  serializeAgentConfig,
  parseStorageFlag,
  MAX_CREDENTIAL_TTL_MS,
  DEFAULT_CREDENTIAL_TTL_MS,
  DEFAULT_RENEWAL_INTERVAL_MS,
  DEFAULT_STORAGE_PATH,
  type AgentFlags,
} from "./agent.ts";
export {
  parseAuthConfig,
  loadAuthConfig,
  defaultAuthConfig,
  applyAuthFlags,
  checkAuthConfig,
  serializeAuthConfig,
  splitHostPort,
  DEFAULT_AUDIT_RETENTION_MS,
  DEFAULT_AUTH_DATA_DIR,
  DEFAULT_AUTH_LISTEN_ADDR,
  DEFAULT_SQLITE_FILE,
  type AuthFlags,
  restartOnlyChanges,
  sameClusterConfig,
} from "./auth.ts";
