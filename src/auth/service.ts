/**
 * Starting and stopping one auth service: data directory, storage, authorities,
 * the service's own TLS certificate and the local admin identity (both refreshed
 * while it runs), the listener and the janitor.
 */

import { join } from "node:path";
import { generateKeyPair, privateKeyToPem } from "../crypto/index.ts";
import { systemClock, type Clock } from "../lib/clock.ts";
import { AppError, badParameter, errorMessage, isAppError } from "../lib/errors.ts";
import { lockExclusive, type DirLock } from "../lib/dirlock.ts";
import { ensureDir, writeFileAtomic } from "../lib/fs.ts";
import type { Logger } from "../lib/log.ts";
import { IntervalLoop } from "../lib/retry.ts";
import { VERSION } from "../lib/version.ts";
import { ADMIN_IDENTITY_FILE, formatIdentityFile } from "../protocol/index.ts";
import { AuditLog, EVENT } from "./audit.ts";
import { hostPort, issueServerCertificate, prepareAuthorities, serverNames, storedClusterName, type Authorities } from "./authorities.ts";
import type { AuthContext } from "./context.ts";
import { createApp, type Handler } from "./app.ts";
import type { DownloadOptions } from "./install/index.ts";
import { issueCerts } from "./issuer.ts";
import { Authenticator } from "./authenticate.ts";
import { FailureLimiter } from "./ratelimit.ts";
import { listen, type Listener } from "./listener.ts";
import { openBackend, type Backend } from "./storage/index.ts";
import { hostname } from "node:os";
import { tokenExpires, type TokenResource } from "../resources/index.ts";
import { KEYS } from "./keys.ts";
import { DEFAULT_SESSION_LIMITS, KubeSessions, KubernetesClusters, kubernetesUpgrade, type ClusterChanges } from "./kubernetes/index.ts";
import { DEFAULT_AUDIT_RETENTION_MS, type AuthLimitsConfig, type CaKeyAlgorithm, type KubernetesClusterConfig } from "../config/index.ts";

/** The service's TLS certificate lives this long and is re-issued well before. */
const SERVER_CERT_TTL_MS = 7 * 86_400_000;
/** The local admin identity lives this long and is re-written while the service runs. */
const ADMIN_IDENTITY_TTL_MS = 7 * 86_400_000;
const REFRESH_EVERY_MS = 12 * 3_600_000;
/** Ceiling of the delay between retries of a failed refresh. */
const REFRESH_RETRY_MAX_MS = 10 * 60_000;
const JANITOR_EVERY_MS = 60_000;
/** Expired one-time tokens are kept this long so a late join can be told why it failed. */
const EXPIRED_TOKEN_GRACE_MS = 86_400_000;
/**
 * Events one prune call deletes at most: one SQLite transaction (and so the event loop)
 * or one PostgreSQL statement stays short, however long the backlog.
 */
export const AUDIT_PRUNE_CHUNK = 10_000;

export interface AuthServiceOptions {
  dataDir: string;
  listenAddr: string;
  publicAddr?: string;
  clusterName?: string;
  storage?: { type: "sqlite"; path?: string } | { type: "postgres"; connString: string } | { type: "memory" };
  log: Logger;
  clock?: Clock;
  /** Serve the install script and the agent's binaries from here (`--dist-dir`); not served when absent. */
  downloads?: DownloadOptions;
  /** Key type of the X.509 CAs created on first start (`ca_key_algorithm`); default ECDSA P-256. */
  caKeyAlgorithm?: CaKeyAlgorithm;
  /** Connection deadlines and caps (`limits` in the config); DEFAULT_LIMITS where unset. */
  limits?: AuthLimitsConfig;
  /** The Kubernetes API servers to proxy (`kubernetes_clusters` in the config). */
  kubernetesClusters?: KubernetesClusterConfig[];
  /** Where in-cluster settings are read (KUBERNETES_SERVICE_HOST…); default process.env. */
  env?: Record<string, string | undefined>;
  /**
   * How long audit events are kept (`audit.retention`): the janitor deletes older ones
   * every minute. `null` keeps them for ever; default DEFAULT_AUDIT_RETENTION_MS (90 days).
   */
  auditRetentionMs?: number | null;
}

export interface RunningAuth {
  ctx: AuthContext;
  handler: Handler;
  listener: Listener;
  /** `host:port` clients on this host can connect to. */
  addr: string;
  adminIdentityPath: string;
  /**
   * Applies a reloaded config's `kubernetes_clusters` (see KubernetesClusters.reload:
   * all or nothing, the error thrown when a file cannot be read) and records the reload
   * as an `auth.config.reload` event, with `needsRestart`: the changed settings a
   * reload does not apply. Reloads run one at a time.
   */
  reloadKubernetes(clusters: readonly KubernetesClusterConfig[], needsRestart?: readonly string[]): Promise<ClusterChanges>;
  close(): Promise<void>;
}

/** Path of the admin identity the service writes into its data directory. */
export function adminIdentityPath(dataDir: string): string {
  return join(dataDir, ADMIN_IDENTITY_FILE);
}

/** Writes the local admin identity (a client certificate for `ctl`), 0600. */
export async function writeAdminIdentity(auth: Authorities, path: string, authServer: string, now: Date): Promise<void> {
  const kp = generateKeyPair("ecdsa-p256");
  const ssh = generateKeyPair("ed25519");
  const { certs } = await issueCerts(auth, {
    identity: { cluster: auth.cluster, username: "admin", kind: "admin", renewable: false, roles: [], logins: [] },
    publicTlsKey: kp.publicKey,
    publicSshKey: ssh.publicKey,
    notAfter: new Date(now.getTime() + ADMIN_IDENTITY_TTL_MS),
    now,
  });
  const text = formatIdentityFile({
    cluster: auth.cluster,
    authServer,
    keyPem: privateKeyToPem(kp.privateKey),
    tlsCertPem: certs.tls_cert,
    tlsCaCertsPem: [auth.host.tlsCertPem, auth.user.tlsCertPem],
    sshCaLines: [],
  });
  await writeFileAtomic(path, text, { mode: 0o600 });
}

/** A host:port this machine can connect to for a listener bound to `host`. */
function localAddr(host: string, port: number): string {
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return h.includes(":") ? `[${h}]:${port}` : `${h}:${port}`;
}

/** Starts the auth service and returns once it listens. */
export async function startAuthService(opts: AuthServiceOptions): Promise<RunningAuth> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log;
  const auditRetentionMs = opts.auditRetentionMs === undefined ? DEFAULT_AUDIT_RETENTION_MS : opts.auditRetentionMs;
  if (auditRetentionMs !== null) checkRetention(auditRetentionMs);
  await ensureDir(opts.dataDir, 0o700);
  const dirLock = await lockDataDir(opts.dataDir);
  let backend: Backend;
  try {
    const storageCfg = opts.storage ?? { type: "sqlite" };
    backend = await openBackend(
      storageCfg.type === "sqlite" ? { type: "sqlite", path: storageCfg.path ?? join(opts.dataDir, "machine-id.db") } : storageCfg,
      { clock, logger: log.child("storage") },
    );
  } catch (e) {
    dirLock.release();
    throw e;
  }
  let listener: Listener | undefined;
  try {
    const stored = await storedClusterName(backend);
    if (stored && opts.clusterName && stored !== opts.clusterName) {
      throw new Error(
        `The data directory "${opts.dataDir}" belongs to cluster "${stored}", not "${opts.clusterName}": drop --cluster-name or use another data directory`,
      );
    }
    const cluster = stored ?? opts.clusterName ?? hostname();
    // created in memory on a first start, stored once the listener is up (below)
    const prepared = await prepareAuthorities(backend, cluster, clock.now(), opts.caKeyAlgorithm);
    const authorities = prepared.authorities;
    const listenAt = hostPort(opts.listenAddr);
    if (!listenAt) throw new Error(`Invalid listen address "${opts.listenAddr}": expected host:port`);
    const { host, port } = listenAt;
    const names = serverNames(opts.listenAddr, opts.publicAddr);
    const audit = new AuditLog(backend, log.child("audit"));
    const ctx: AuthContext = { backend, authorities, clock, log, audit, version: VERSION, publicAddr: opts.publicAddr ?? "" };
    const kubernetes = await KubernetesClusters.load(opts.kubernetesClusters, opts.env);
    kubernetes.sessions = new KubeSessions(ctx, {
      total: opts.limits?.maxKubernetesSessions ?? DEFAULT_SESSION_LIMITS.total,
      perInstance: opts.limits?.maxKubernetesSessionsPerInstance ?? DEFAULT_SESSION_LIMITS.perInstance,
    });
    // one authentication (and its cache) for the app and the proxy's upgrade path
    const authenticator = new Authenticator(ctx);
    const handler = createApp(ctx, {
      kubernetes,
      authenticator,
      joinLimiter: new FailureLimiter({
        clock,
        ...(opts.limits?.failedJoinBurst !== undefined ? { burst: opts.limits.failedJoinBurst } : {}),
        ...(opts.limits?.failedJoinIntervalMs !== undefined ? { refillMs: opts.limits.failedJoinIntervalMs } : {}),
      }),
      ...(opts.downloads ? { downloads: opts.downloads } : {}),
    });
    const serverTls = async () => {
      const c = await issueServerCertificate(authorities, names, clock.now(), SERVER_CERT_TTL_MS);
      return { certPem: c.certPem + authorities.host.tlsCertPem, keyPem: c.keyPem, clientCaPem: [authorities.user.tlsCertPem] };
    };
    const served = await listen({ host: host || "0.0.0.0", port, tls: await serverTls(), handler, upgrade: kubernetesUpgrade(ctx, kubernetes, authenticator), log: log.child("http"), ...opts.limits });
    listener = served;
    await prepared.persist();
    const addr = localAddr(host, listener.port);
    if (!ctx.publicAddr) ctx.publicAddr = addr;
    const adminPath = adminIdentityPath(opts.dataDir);
    await writeAdminIdentity(authorities, adminPath, addr, clock.now());

    // Both loops sleep on the service's clock, like the storage sweeper. A failed refresh
    // is retried with backoff (1 s doubling to 10 min) until it succeeds, not 12 h later:
    // the certificates it replaces expire in 7 days.
    const stopLoops = new AbortController();
    const refresh = new IntervalLoop({
      name: "certificate-refresh",
      interval: () => REFRESH_EVERY_MS,
      runImmediately: false,
      clock,
      signal: stopLoops.signal,
      backoff: { maxMs: REFRESH_RETRY_MAX_MS, retries: Infinity },
      task: async () => {
        served.setTls(await serverTls());
        await writeAdminIdentity(authorities, adminPath, addr, clock.now());
      },
      onFailure: (e, attempt, next) =>
        log.error("Cannot refresh the service certificate or admin identity", { error: errorMessage(e), attempt, retry_in_ms: Math.round(next) }),
    });
    // One janitor run at a time (the loop waits for it): a first prune of a long backlog may outlast the interval.
    const janitorLoop = new IntervalLoop({
      name: "janitor",
      interval: () => JANITOR_EVERY_MS,
      runImmediately: false,
      clock,
      signal: stopLoops.signal,
      task: (signal) => janitor(ctx, { auditRetentionMs, signal }),
      onFailure: (e, attempt, next) => log.warn("Janitor failed", { error: errorMessage(e), attempt, retry_in_ms: Math.round(next) }),
    });
    await audit.emit(EVENT.authStart, clock.now(), { cluster, version: VERSION, addr: `${host}:${listener.port}` });
    log.info("Auth service started", { cluster, listen: `${host}:${listener.port}`, ca_pin: authorities.caPin, data_dir: opts.dataDir });
    const loops = Promise.all([refresh.run(), janitorLoop.run()]);
    return {
      ctx,
      handler,
      listener: served,
      addr,
      adminIdentityPath: adminPath,
      async reloadKubernetes(clusters, needsRestart = []) {
        const changes = await kubernetes.reload(clusters);
        await audit.emit(EVENT.authConfigReload, clock.now(), { ...changes, clusters: kubernetes.names(), needs_restart: [...needsRestart] });
        return changes;
      },
      async close() {
        // A prune in progress stops after its current chunk and records what it deleted.
        stopLoops.abort();
        await loops;
        // live Kubernetes sessions first: an upgraded connection would hold the listener open
        kubernetes.sessions?.close();
        await served.close();
        kubernetes.close();
        await backend.close();
        dirLock.release();
      },
    };
  } catch (e) {
    await listener?.close();
    await backend.close();
    dirLock.release();
    throw e;
  }
}

/** The lock file in the data directory, held while the service runs (see lib/dirlock.ts). */
const DATA_DIR_LOCK_FILE = "auth.lock";

/**
 * Two services on one data directory would overwrite each other's admin identity (and,
 * with SQLite, share one database file): the second is refused, naming the first's PID.
 */
async function lockDataDir(dataDir: string): Promise<DirLock> {
  try {
    return await lockExclusive(join(dataDir, DATA_DIR_LOCK_FILE), `data directory "${dataDir}"`);
  } catch (e) {
    if (!isAppError(e, "LOCKED")) throw e;
    const pid = e.details?.pid;
    throw new AppError(
      "LOCKED",
      `Cannot start the auth service: data directory "${dataDir}" is in use by another auth service (PID ${pid ?? "unknown"}); stop it first, or give this one another --data-dir`,
      { details: e.details ?? {}, cause: e },
    );
  }
}

/** What the janitor needs besides the context. */
export interface JanitorOptions {
  /** Delete audit events older than this; `null` keeps them for ever. */
  auditRetentionMs: number | null;
  /** Stops a prune between chunks (the service is closing). */
  signal?: AbortSignal;
}

/**
 * The service's periodic clean-up, run every minute: removes one-time tokens that
 * expired more than a day ago (expired storage items, such as challenges, the backend
 * sweeps itself) and audit events older than the retention.
 */
export async function janitor(ctx: AuthContext, opts: JanitorOptions): Promise<void> {
  await removeExpiredTokens(ctx);
  if (opts.auditRetentionMs !== null) await pruneAuditEvents(ctx, opts.auditRetentionMs, { signal: opts.signal });
}

/**
 * Deletes audit events whose time is more than `retentionMs` before now, oldest first,
 * `chunk` per backend call until a call finds fewer (yielding to other work in between),
 * and records the deletion itself as one `audit.pruned` event with the count and the
 * cutoff, also when a later chunk fails or `signal` stops it early. Returns how many
 * events it deleted.
 */
export async function pruneAuditEvents(
  ctx: AuthContext,
  retentionMs: number,
  opts: { chunk?: number; signal?: AbortSignal | undefined } = {},
): Promise<number> {
  checkRetention(retentionMs);
  const chunk = opts.chunk ?? AUDIT_PRUNE_CHUNK;
  const before = new Date(ctx.clock.now().getTime() - retentionMs);
  let deleted = 0;
  try {
    for (;;) {
      const n = await ctx.backend.pruneEvents(before.getTime(), chunk);
      deleted += n;
      if (n < chunk || opts.signal?.aborted) break;
      // Requests run between chunks: a first prune of a long backlog takes many.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    // Removing audit records is itself audited, with what was removed before any failure.
    if (deleted > 0) await ctx.audit.emit(EVENT.auditPruned, ctx.clock.now(), { count: deleted, before: before.toISOString() });
  }
  return deleted;
}

/** A retention that is not a positive number of ms would move the cutoff to now or later: every event would go. */
function checkRetention(ms: number): void {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
    throw badParameter(`Cannot prune audit events with retention ${String(ms)}: it must be a positive number of milliseconds`, {
      field: "auditRetentionMs",
    });
  }
}

async function removeExpiredTokens(ctx: AuthContext): Promise<void> {
  const now = ctx.clock.now();
  for (const item of await ctx.backend.list<TokenResource>("/tokens/")) {
    const exp = tokenExpires(item.value);
    if (exp && exp.getTime() + EXPIRED_TOKEN_GRACE_MS < now.getTime()) {
      await ctx.backend.delete(KEYS.token(item.value.metadata.name), item.revision).catch(() => {});
    }
  }
}
