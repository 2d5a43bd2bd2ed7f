/**
 * The auth service config (`machine-id auth start -c auth.yaml`): load, apply flags,
 * check (which fills in what depends on other fields), and write back.
 */

import { hostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { stringify } from "yaml";
import * as z from "zod";
import { lazy } from "../lib/lazy.ts";
import { formatDuration, parseDuration } from "../lib/duration.ts";
import { durationProblem, durationString, expecting, formatValue, labelMap, nameProblem, problemsError, raise, resourceName, text, type Problem, type ValuePath } from "../resources/index.ts";
import { checkDocument, parseConfigDocument, readConfigFile } from "./_document.ts";
import type { AuthAuditConfig, AuthConfig, AuthLimitsConfig, AuthStorageConfig, KubernetesClusterConfig } from "./types.ts";

export const DEFAULT_AUTH_DATA_DIR = "/var/lib/machine-id-auth";
export const DEFAULT_AUTH_LISTEN_ADDR = "0.0.0.0:3025";
/** The SQLite file, relative to the data dir, when the config names none. */
export const DEFAULT_SQLITE_FILE = "machine-id.db";

const DAY_MS = 86_400_000;
/** How long audit events are kept when `audit.retention` is not set: 90 days. */
export const DEFAULT_AUDIT_RETENTION_MS = 90 * DAY_MS;
/** The `audit.retention` value that keeps events for ever. */
export const KEEP_FOREVER = "forever";
/**
 * The shortest `audit.retention`: a day. Anything shorter deletes the trail of an
 * incident before anyone looks at it, and most likely a unit was mistyped ("90m" for "90d").
 */
const MIN_AUDIT_RETENTION_MS = DAY_MS;

const SUBJECT = "auth config";
const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
const CA_KEY_ALGORITHMS = ["ecdsa-p256", "ed25519"] as const;

const SERVER_HINT = `expected an https:// URL such as "https://10.0.0.1:6443"`;

/** Why `server` cannot be a Kubernetes API server URL, or undefined. */
function serverProblem(server: string): string | undefined {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    return SERVER_HINT;
  }
  // The proxy sends impersonation headers upstream: never over plain HTTP.
  if (url.protocol !== "https:") return `${SERVER_HINT}: the proxy only talks to API servers over TLS`;
  if (url.search || url.hash || url.username || url.password) return `${SERVER_HINT}, without a query, fragment or credentials`;
  return undefined;
}

const kubernetesClusterSchema = lazy(() => z
  .strictObject({
    name: resourceName(),
    server: text(),
    ca_path: text().optional(),
    insecure_skip_tls_verify: z.boolean().default(false),
    token_path: text().optional(),
    client_cert_path: text().optional(),
    client_key_path: text().optional(),
    labels: labelMap().default({}),
  })
  .superRefine((c, ctx) => {
    const bad = serverProblem(c.server);
    if (bad) raise(ctx, ["server"], "invalid", bad, "URL");
    if (c.ca_path !== undefined && c.insecure_skip_tls_verify) {
      raise(ctx, ["insecure_skip_tls_verify"], "forbidden", "ca_path is set: verify the API server with it or skip verification, not both");
    }
    const certAuth = c.client_cert_path !== undefined || c.client_key_path !== undefined;
    if (c.token_path !== undefined && certAuth) {
      raise(ctx, [c.client_cert_path !== undefined ? "client_cert_path" : "client_key_path"], "forbidden", "token_path is set: use a token or a client certificate, not both");
    } else if (certAuth && c.client_key_path === undefined) {
      raise(ctx, ["client_key_path"], "missing", "required with client_cert_path");
    } else if (certAuth && c.client_cert_path === undefined) {
      raise(ctx, ["client_cert_path"], "missing", "required with client_key_path");
    } else if (!certAuth && c.token_path === undefined) {
      raise(ctx, ["token_path"], "missing", "the proxy needs an identity allowed to impersonate: set token_path, or client_cert_path and client_key_path");
    }
  }));

const kubernetesClustersSchema = lazy(() => z.array(kubernetesClusterSchema).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((c, i) => {
    if (seen.has(c.name)) raise(ctx, [i, "name"], "invalid", "another cluster has this name already", "name");
    seen.add(c.name);
  });
}));

type KubernetesClusterFile = z.output<typeof kubernetesClusterSchema>;

function translateCluster(c: KubernetesClusterFile): KubernetesClusterConfig {
  return {
    name: c.name,
    server: c.server,
    ...(c.ca_path !== undefined ? { caPath: c.ca_path } : {}),
    insecureSkipTlsVerify: c.insecure_skip_tls_verify,
    ...(c.token_path !== undefined ? { tokenPath: c.token_path } : {}),
    ...(c.client_cert_path !== undefined ? { clientCertPath: c.client_cert_path } : {}),
    ...(c.client_key_path !== undefined ? { clientKeyPath: c.client_key_path } : {}),
    labels: { ...c.labels },
  };
}

function serializeCluster(c: KubernetesClusterConfig): Record<string, unknown> {
  return {
    name: c.name,
    server: c.server,
    ...(c.caPath !== undefined ? { ca_path: c.caPath } : {}),
    ...(c.insecureSkipTlsVerify ? { insecure_skip_tls_verify: true } : {}),
    ...(c.tokenPath !== undefined ? { token_path: c.tokenPath } : {}),
    ...(c.clientCertPath !== undefined ? { client_cert_path: c.clientCertPath } : {}),
    ...(c.clientKeyPath !== undefined ? { client_key_path: c.clientKeyPath } : {}),
    labels: c.labels,
  };
}

/** The cluster with its file paths made absolute against the working directory, as the data dir is. */
function resolveClusterPaths(c: KubernetesClusterConfig): KubernetesClusterConfig {
  return {
    ...c,
    ...(c.caPath !== undefined ? { caPath: resolve(c.caPath) } : {}),
    ...(c.tokenPath !== undefined ? { tokenPath: resolve(c.tokenPath) } : {}),
    ...(c.clientCertPath !== undefined ? { clientCertPath: resolve(c.clientCertPath) } : {}),
    ...(c.clientKeyPath !== undefined ? { clientKeyPath: resolve(c.clientKeyPath) } : {}),
  };
}

const RETENTION_HINT = `expected "${KEEP_FOREVER}" or a duration such as "90d" or "2160h"`;

/** `audit.retention`: a duration of at least a day, or "forever". */
const retentionSchema = lazy(() => expecting(
  z.string().superRefine((s, ctx) => {
    if (s === KEEP_FOREVER) return;
    const p = durationProblem(s);
    if (p) raise(ctx, [], "invalid", RETENTION_HINT);
    else if (parseDuration(s) < MIN_AUDIT_RETENTION_MS) {
      raise(ctx, [], "invalid", `must be at least 1d (24h), or "${KEEP_FOREVER}" to keep events for ever`, "duration");
    }
  }),
  RETENTION_HINT.slice("expected ".length),
));

function translateAudit(a: { retention?: string | undefined }): AuthAuditConfig {
  const r = a.retention;
  return { retentionMs: r === undefined ? DEFAULT_AUDIT_RETENTION_MS : r === KEEP_FOREVER ? null : parseDuration(r) };
}

/** The retention as auth.yaml writes it: whole days as "90d" (formatDuration stops at hours). */
function formatRetention(ms: number | null): string {
  if (ms === null) return KEEP_FOREVER;
  return ms % DAY_MS === 0 ? `${ms / DAY_MS}d` : formatDuration(ms);
}

const authSchema = lazy(() => z.strictObject({
  version: z.literal("v1"),
  cluster_name: text().optional(),
  data_dir: text().default(DEFAULT_AUTH_DATA_DIR),
  listen_addr: text().default(DEFAULT_AUTH_LISTEN_ADDR),
  public_addr: text().optional(),
  storage: z
    .discriminatedUnion("type", [
      z.strictObject({ type: z.literal("sqlite"), path: text().default(DEFAULT_SQLITE_FILE) }),
      z.strictObject({ type: z.literal("postgres"), conn_string: text() }),
      z.strictObject({ type: z.literal("memory") }),
    ])
    .optional(),
  log: z
    .strictObject({
      level: z.enum(LOG_LEVELS).default("info"),
      format: z.enum(["text", "json"]).default("text"),
    })
    .prefault({}),
  ca_key_algorithm: z.enum(CA_KEY_ALGORITHMS).default("ecdsa-p256"),
  limits: z
    .strictObject({
      headers_timeout: durationString({ positive: true }).optional(),
      request_timeout: durationString({ positive: true }).optional(),
      idle_timeout: durationString({ positive: true }).optional(),
      max_connections: z.number().int().positive().optional(),
      max_connections_per_address: z.number().int().positive().optional(),
      max_kubernetes_sessions: z.number().int().positive().optional(),
      max_kubernetes_sessions_per_instance: z.number().int().positive().optional(),
      failed_join_burst: z.number().int().positive().optional(),
      failed_join_interval: durationString({ positive: true }).optional(),
    })
    .optional(),
  audit: z.strictObject({ retention: retentionSchema.optional() }).prefault({}),
  kubernetes_clusters: kubernetesClustersSchema.default([]),
}));

/** The file's `limits` section, as the listener takes it; the YAML names map one to one. */
const LIMIT_FIELDS = [
  ["headers_timeout", "headersTimeoutMs"],
  ["request_timeout", "requestTimeoutMs"],
  ["idle_timeout", "idleTimeoutMs"],
  ["max_connections", "maxConnections"],
  ["max_connections_per_address", "maxConnectionsPerAddress"],
  ["max_kubernetes_sessions", "maxKubernetesSessions"],
  ["max_kubernetes_sessions_per_instance", "maxKubernetesSessionsPerInstance"],
  ["failed_join_burst", "failedJoinBurst"],
  ["failed_join_interval", "failedJoinIntervalMs"],
] as const;

function translateLimits(l: Partial<Record<(typeof LIMIT_FIELDS)[number][0], string | number | undefined>>): AuthLimitsConfig {
  const out: AuthLimitsConfig = {};
  for (const [yaml, field] of LIMIT_FIELDS) {
    const v = l[yaml];
    if (v !== undefined) out[field] = typeof v === "string" ? parseDuration(v) : v;
  }
  return out;
}

function serializeLimits(l: AuthLimitsConfig): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [yaml, field] of LIMIT_FIELDS) {
    const v = l[field];
    if (v !== undefined) out[yaml] = field.endsWith("Ms") ? formatDuration(v) : v;
  }
  return out;
}

// A Postgres connection string carries a password.
const isSecret = (p: ValuePath) => p.join(".") === "storage.conn_string";

/** The host name as a cluster name: lowercased, since cluster names follow the resource name rule. */
function defaultClusterName(): string {
  return hostname().toLowerCase();
}

/**
 * Parses auth config text. `version: v1` is required; everything else has a default
 * (the cluster name is the host name). Run `checkAuthConfig` after applying flags.
 */
export function parseAuthConfig(text: string, file: string): AuthConfig {
  const doc = parseConfigDocument(text, file);
  const r = checkDocument(authSchema, doc, { subject: SUBJECT, isSecret });
  if (!r.ok) throw problemsError(r.problems);
  const f = r.value;
  const s = f.storage;
  const storage: AuthStorageConfig =
    s === undefined || s.type === "sqlite"
      ? { type: "sqlite", path: s?.path ?? DEFAULT_SQLITE_FILE }
      : s.type === "postgres"
        ? { type: "postgres", connString: s.conn_string }
        : { type: "memory" };
  return {
    clusterName: f.cluster_name ?? defaultClusterName(),
    dataDir: f.data_dir,
    listenAddr: f.listen_addr,
    ...(f.public_addr !== undefined ? { publicAddr: f.public_addr } : {}),
    storage,
    log: { level: f.log.level, format: f.log.format },
    caKeyAlgorithm: f.ca_key_algorithm,
    ...(f.limits !== undefined ? { limits: translateLimits(f.limits) } : {}),
    audit: translateAudit(f.audit),
    ...(f.kubernetes_clusters.length > 0 ? { kubernetesClusters: f.kubernetes_clusters.map(translateCluster) } : {}),
    warnings: [],
  };
}

/** The config used when `auth start` is given no file: every default. */
export function defaultAuthConfig(): AuthConfig {
  return parseAuthConfig("version: v1\n", "<defaults>");
}

/** Reads and parses the auth config at `path`. */
export async function loadAuthConfig(path: string): Promise<AuthConfig> {
  return parseAuthConfig(await readConfigFile(path), path);
}

/** Flag values for `auth start`; absent means "not given". */
export interface AuthFlags {
  dataDir?: string;
  listenAddr?: string;
  publicAddr?: string;
  clusterName?: string;
}

/** Returns `cfg` with the flags applied; never changes `cfg`. */
export function applyAuthFlags(cfg: AuthConfig, f: AuthFlags): AuthConfig {
  return {
    ...cfg,
    ...(f.dataDir !== undefined ? { dataDir: f.dataDir } : {}),
    ...(f.listenAddr !== undefined ? { listenAddr: f.listenAddr } : {}),
    ...(f.publicAddr !== undefined ? { publicAddr: f.publicAddr } : {}),
    ...(f.clusterName !== undefined ? { clusterName: f.clusterName } : {}),
  };
}

/** Splits "host:port" (IPv6 hosts in brackets); undefined when it is not that shape. */
export function splitHostPort(addr: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]+):(\d{1,5})$/.exec(addr);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port <= 65535 ? { host: m[1]!, port } : undefined;
}

/**
 * Checks the config after flags and fills in what depends on other fields: the SQLite
 * path is made absolute under the data dir (itself made absolute against the working
 * directory), and the public address defaults to this
 * host's name with the listen port. Idempotent; never changes its argument.
 */
export function checkAuthConfig(cfg: AuthConfig): AuthConfig {
  const problems: Problem[] = [];
  const invalid = (field: string, value: string, detail: string) =>
    problems.push({ field, message: `Invalid value ${formatValue(value)} for ${field} in ${SUBJECT}: ${detail}` });

  // The cluster name ends up in certificate subjects and machine-id:// URIs.
  const nameIssue = nameProblem(cfg.clusterName);
  if (nameIssue) invalid("cluster_name", cfg.clusterName, nameIssue);
  const listen = splitHostPort(cfg.listenAddr);
  if (!listen) invalid("listen_addr", cfg.listenAddr, `expected "host:port", such as "0.0.0.0:3025"`);
  if (cfg.publicAddr !== undefined && !splitHostPort(cfg.publicAddr)) {
    invalid("public_addr", cfg.publicAddr, `expected "host:port", such as "auth.example.com:3025"`);
  }
  if (problems.length > 0) throw problemsError(problems);

  const dataDir = resolve(cfg.dataDir);
  const storage: AuthStorageConfig =
    cfg.storage.type === "sqlite" && !isAbsolute(cfg.storage.path)
      ? { type: "sqlite", path: join(dataDir, cfg.storage.path) }
      : cfg.storage;
  const publicAddr = cfg.publicAddr ?? `${hostname().toLowerCase()}:${listen!.port}`;
  const warnings = [...cfg.warnings];
  if (storage.type === "memory") {
    const w = `storage type "memory" keeps nothing across restarts: every bot must join again`;
    if (!warnings.includes(w)) warnings.push(w);
  }
  const kube = cfg.kubernetesClusters;
  for (const c of kube ?? []) {
    if (c.insecureSkipTlsVerify) {
      const w = `kubernetes_clusters "${c.name}": insecure_skip_tls_verify is set, so anyone on the path to "${c.server}" can read what the proxy forwards`;
      if (!warnings.includes(w)) warnings.push(w);
    }
  }
  return { ...cfg, dataDir, storage, publicAddr, ...(kube ? { kubernetesClusters: kube.map(resolveClusterPaths) } : {}), warnings };
}

/**
 * The settings a running auth service reads once, by their auth.yaml names: a reload
 * (SIGHUP) applies only `kubernetes_clusters`. Typed over every AuthConfig key, so a
 * new setting must be placed here (or among the live ones) to compile.
 */
const RESTART_ONLY: Record<Exclude<keyof AuthConfig, "kubernetesClusters" | "warnings">, string> = {
  clusterName: "cluster_name",
  dataDir: "data_dir",
  listenAddr: "listen_addr",
  publicAddr: "public_addr",
  storage: "storage",
  log: "log",
  caKeyAlgorithm: "ca_key_algorithm",
  limits: "limits",
  audit: "audit",
};

/**
 * The settings that differ between two checked configs but only take effect at a
 * restart, by their auth.yaml names in file order (values are never returned: `storage`
 * may hold a password).
 */
export function restartOnlyChanges(running: AuthConfig, next: AuthConfig): string[] {
  const keys = Object.keys(RESTART_ONLY) as (keyof typeof RESTART_ONLY)[];
  return keys.filter((k) => !sameValue(running[k], next[k])).map((k) => RESTART_ONLY[k]);
}

/** Whether two cluster entries say the same (labels and fields in any order). */
export function sameClusterConfig(a: KubernetesClusterConfig, b: KubernetesClusterConfig): boolean {
  return sameValue(a, b);
}

/** Deep equality of plain config values (objects compared whatever their key order). */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Writes the config as YAML; `parseAuthConfig` reads back an equal config (warnings aside). */
export function serializeAuthConfig(cfg: AuthConfig): string {
  const storage =
    cfg.storage.type === "sqlite"
      ? { type: "sqlite", path: cfg.storage.path }
      : cfg.storage.type === "postgres"
        ? { type: "postgres", conn_string: cfg.storage.connString }
        : { type: "memory" };
  return stringify(
    {
      version: "v1",
      cluster_name: cfg.clusterName,
      data_dir: cfg.dataDir,
      listen_addr: cfg.listenAddr,
      ...(cfg.publicAddr !== undefined ? { public_addr: cfg.publicAddr } : {}),
      storage,
      log: cfg.log,
      ca_key_algorithm: cfg.caKeyAlgorithm,
      ...(cfg.limits ? { limits: serializeLimits(cfg.limits) } : {}),
      // The default is left out, as a file that does not mention audit reads back to it.
      ...(cfg.audit.retentionMs !== DEFAULT_AUDIT_RETENTION_MS ? { audit: { retention: formatRetention(cfg.audit.retentionMs) } } : {}),
      ...(cfg.kubernetesClusters?.length ? { kubernetes_clusters: cfg.kubernetesClusters.map(serializeCluster) } : {}),
    },
    { lineWidth: 0 },
  );
}
