/**
 * The internal form of the agent and auth configs: camelCase, durations in
 * milliseconds, every default explicit. Both config file versions load into these.
 */

import type { LogFormat, LogLevel } from "../lib/log.ts";
import type { JoinMethod } from "../resources/index.ts";

/** How a directory destination treats symlinks in its path. */
export type SymlinksMode = "secure" | "try-secure" | "insecure";
/** Whether a directory destination sets POSIX ACLs for reader users. */
export type AclsMode = "off" | "try" | "required";

/** Where credentials are written (outputs) or kept (the agent's own storage). */
export type DestinationConfig =
  | { type: "directory"; path: string; symlinks: SymlinksMode; acls: AclsMode }
  | { type: "memory" }
  /** `namespace` absent: the pod's own namespace ($POD_NAMESPACE) at run time. */
  | { type: "kubernetes_secret"; name: string; namespace?: string };

/** One thing the agent writes on every renewal. */
export type OutputConfig =
  /** Identity files (certificates, keys, CA bundles), and an SSH config when `sshConfig`. */
  | { type: "identity"; destination: DestinationConfig; roles: string[]; sshConfig: boolean }
  /** A kubeconfig for one cluster, plus the identity files it refers to. */
  | { type: "kubernetes"; destination: DestinationConfig; kubernetesCluster: string; roles: string[] }
  /**
   * One kubeconfig for every cluster the selectors pick among those the bot's roles
   * reach, resolved again on each renewal. `disableExecPlugin`: credentials always
   * inline in the kubeconfig, never file paths.
   */
  | { type: "kubernetes/v2"; destination: DestinationConfig; selectors: KubernetesSelector[]; disableExecPlugin: boolean };

/** A kubernetes/v2 selector: a cluster by name, or the clusters whose labels include all of these. */
export type KubernetesSelector = { name: string } | { labels: Record<string, string> };

/** How the agent joins the first time. */
export interface OnboardingConfig {
  joinMethod: JoinMethod;
  /** The token value; read from `tokenPath` at load time when the config names a file. */
  token?: string;
  /** The file the token came from, kept so the config can be written back unchanged. */
  tokenPath?: string;
  /** `sha256:<hex>` pins of the auth service's CA; checked before any secret is sent. */
  caPins: string[];
  /** A PEM file with the auth service's CA, instead of or besides pins. */
  caPath?: string;
  boundKeypair: {
    /** A fixed private key (`keypair create --static`); else $TBOT_BOUND_KEYPAIR_STATIC_KEY may hold it. */
    staticPrivateKeyPath?: string;
    registrationSecret?: string;
    registrationSecretPath?: string;
  };
  /** join_method gitlab: the environment variable holding the job's ID token. */
  gitlab?: { tokenEnvVarName?: string };
}

/** The agent's whole configuration after loading (and, later, flags and checks). */
export interface AgentConfig {
  /** Exactly one of authServer and proxyServer is set once `checkAgentConfig` passes. */
  authServer?: string;
  proxyServer?: string;
  onboarding: OnboardingConfig;
  storage: DestinationConfig;
  outputs: OutputConfig[];
  /** `services` from a v2 file; only output types are supported, so they work like outputs. */
  services: OutputConfig[];
  credentialTtlMs: number;
  renewalIntervalMs: number;
  oneshot: boolean;
  debug: boolean;
  diagAddr?: string;
  insecure: boolean;
  logFormat: LogFormat;
  /** Things that work but are probably not what the user wants, to log at startup. */
  warnings: string[];
}

/** Where the auth service keeps its state; the shape `openBackend` takes. */
export type AuthStorageConfig =
  /** `path` relative to the data dir until `checkAuthConfig` resolves it. */
  | { type: "sqlite"; path: string }
  | { type: "postgres"; connString: string }
  /** Nothing survives a restart: for tests and demos. */
  | { type: "memory" };

/** Key algorithms the auth service can create its certificate authorities with. */
export type CaKeyAlgorithm = "ecdsa-p256" | "ed25519";

/**
 * One Kubernetes API server the auth service fronts with its proxy. The service talks
 * to it as an identity allowed to impersonate (a bearer token or a client
 * certificate) and passes each bot's Kubernetes users and groups as impersonation.
 */
export interface KubernetesClusterConfig {
  /** What bots name in `kubernetes_cluster`; also the proxy path `/v1/kubernetes/<name>`. */
  name: string;
  /** The API server's `https://` URL (a path is kept, as kubectl does). */
  server: string;
  /** PEM CA bundle the API server's certificate must chain to; without it the system roots. */
  caPath?: string;
  /** Skip verifying the API server's certificate (never with caPath). */
  insecureSkipTlsVerify: boolean;
  /** File holding a bearer token; re-read while the service runs, as projected tokens rotate. */
  tokenPath?: string;
  /** Client certificate and key (PEM) instead of a token; both or neither. */
  clientCertPath?: string;
  clientKeyPath?: string;
  /** Matched against roles' kubernetes_labels. */
  labels: Record<string, string>;
}

/**
 * The auth service's connection deadlines and caps (`limits` in auth.yaml; the
 * listener's options). Unset fields keep the listener's defaults, DEFAULT_LIMITS in
 * src/auth/listener.ts.
 */
export interface AuthLimitsConfig {
  /** From accept to the first request's complete headers (TLS handshake included). */
  headersTimeoutMs?: number;
  /**
   * From a request's headers to the end of its body. The answer is not bounded here: a
   * Kubernetes watch streams for as long as it lasts.
   */
  requestTimeoutMs?: number;
  /** A keep-alive connection with no request in flight is closed after this long. */
  idleTimeoutMs?: number;
  /** Concurrent connections in total; more are closed at accept. */
  maxConnections?: number;
  /** Concurrent connections from one remote address. */
  maxConnectionsPerAddress?: number;
  /** Concurrent Kubernetes sessions (exec, attach, port-forward) through the proxy, in total. */
  maxKubernetesSessions?: number;
  /** Concurrent Kubernetes sessions of one bot instance. */
  maxKubernetesSessionsPerInstance?: number;
  /**
   * Failed joins one remote address may make in a row before its joins get 429 with
   * Retry-After (the failed-join limiter; successful joins cost nothing). Raise it where
   * many agents share one address, e.g. CI runners behind one NAT.
   */
  failedJoinBurst?: number;
  /** One more failed join is allowed every this long once the burst is spent (the sustained rate). */
  failedJoinIntervalMs?: number;
}

/** The audit log's settings (`audit` in auth.yaml). */
export interface AuthAuditConfig {
  /**
   * How long events are kept: the auth service deletes events older than this (by their
   * time). `null` keeps them for ever (`retention: forever`). Default 90 days.
   */
  retentionMs: number | null;
}

/** The auth service's configuration. */
export interface AuthConfig {
  clusterName: string;
  dataDir: string;
  listenAddr: string;
  /** The address agents are told to reach; derived from the host name and listen port when unset. */
  publicAddr?: string;
  storage: AuthStorageConfig;
  log: { level: LogLevel; format: LogFormat };
  caKeyAlgorithm: CaKeyAlgorithm;
  /** Absent when the file sets none. */
  limits?: AuthLimitsConfig;
  audit: AuthAuditConfig;
  /** The Kubernetes clusters the service proxies; absent when the file lists none. */
  kubernetesClusters?: KubernetesClusterConfig[];
  warnings: string[];
}
