/**
 * The Kubernetes clusters one auth service knows: those it proxies (from
 * `kubernetes_clusters` in its config, with their labels for role matching) and the
 * cluster it may itself run in, whose TokenReview API checks `in_cluster` joins.
 */

import type { KubernetesClusterConfig } from "../../config/index.ts";
import { AppError, accessDenied } from "../../lib/errors.ts";
import type { RoleResource } from "../../resources/index.ts";
import { clusterAccess } from "./_access.ts";
import type { KubeSessions } from "./_sessions.ts";
import { inClusterConfig, Upstream } from "./_upstream.ts";

/** What a reload changed, by cluster name (each list sorted). */
export interface ClusterChanges {
  added: string[];
  removed: string[];
  /** Server, CA, credentials paths or contents, or labels differ. */
  changed: string[];
}

/**
 * The clusters of one auth service. Built at start-up and replaced as a whole by
 * `reload()` (SIGHUP); `close()` drops idle upstream connections.
 */
export class KubernetesClusters {
  private inCluster: Promise<Upstream> | undefined;
  /** The live sessions and long answers through the proxy (set by the service; absent in handler-only tests). */
  sessions: KubeSessions | undefined;
  /** Reloads run one after the other: each compares against what the previous one left. */
  private reloading: Promise<unknown> = Promise.resolve();

  private constructor(
    private upstreams: Map<string, Upstream>,
    private readonly env: Record<string, string | undefined>,
  ) {}

  /**
   * Loads every configured cluster (reading CA, certificate and token files now, so a
   * wrong path stops the service at start-up). `env` is where the in-cluster settings
   * come from (KUBERNETES_SERVICE_HOST/PORT and the service account directory).
   */
  static async load(configs: readonly KubernetesClusterConfig[] = [], env: Record<string, string | undefined> = process.env): Promise<KubernetesClusters> {
    const upstreams = new Map<string, Upstream>();
    for (const c of configs) upstreams.set(c.name, await Upstream.load(c));
    return new KubernetesClusters(upstreams, env);
  }

  /** A service that proxies no cluster (and still checks in_cluster joins if it runs in one). */
  static none(env: Record<string, string | undefined> = process.env): KubernetesClusters {
    return new KubernetesClusters(new Map(), env);
  }

  /**
   * Replaces the proxied clusters with `configs`, all or nothing: every CA, certificate
   * and token file is read first, and if one cannot be, the error is thrown and nothing
   * changes. A cluster whose config and files are unchanged keeps its upstream (and its
   * connections). A removed or changed cluster's open sessions and watches are ended
   * (`cluster_removed`, `cluster_changed`) and its old upstream closed; requests from
   * now on see the new set (a removed cluster is NOT_FOUND like an unknown one).
   */
  reload(configs: readonly KubernetesClusterConfig[]): Promise<ClusterChanges> {
    const next = this.reloading.then(
      () => this.swap(configs),
      () => this.swap(configs),
    );
    this.reloading = next;
    return next;
  }

  private async swap(configs: readonly KubernetesClusterConfig[]): Promise<ClusterChanges> {
    const loaded = new Map<string, Upstream>();
    try {
      for (const c of configs) loaded.set(c.name, await Upstream.load(c));
    } catch (e) {
      for (const u of loaded.values()) u.close();
      throw e;
    }
    const changes: ClusterChanges = { added: [], removed: [], changed: [] };
    const retired: [string, Upstream, "cluster_removed" | "cluster_changed"][] = [];
    const upstreams = new Map<string, Upstream>();
    for (const [name, fresh] of loaded) {
      const old = this.upstreams.get(name);
      if (old?.sameAs(fresh)) {
        upstreams.set(name, old);
        fresh.close();
        continue;
      }
      upstreams.set(name, fresh);
      if (old) {
        changes.changed.push(name);
        retired.push([name, old, "cluster_changed"]);
      } else changes.added.push(name);
    }
    for (const [name, old] of this.upstreams) {
      if (loaded.has(name)) continue;
      changes.removed.push(name);
      retired.push([name, old, "cluster_removed"]);
    }
    this.upstreams = upstreams;
    // What was authorized against the old server, credentials or labels does not outlive them.
    for (const [name, old, why] of retired) {
      this.sessions?.endCluster(name, why, `kubernetes_clusters "${name}" was ${why === "cluster_removed" ? "removed from" : "changed in"} the auth config`);
      old.close();
    }
    for (const list of Object.values(changes)) list.sort();
    return changes;
  }

  /**
   * Whether `upstream` is still what cluster `name` is served by: false once a reload
   * removed or replaced it. A request that looked its upstream up before a reload
   * checks this when it registers a session, which the reload could not end yet.
   */
  isCurrent(name: string, upstream: Upstream): boolean {
    return this.upstreams.get(name) === upstream;
  }

  /** Names of the proxied clusters, sorted. */
  names(): string[] {
    return [...this.upstreams.keys()].sort();
  }

  /** The upstream of cluster `name`, or NOT_FOUND naming the clusters served here. */
  requireUpstream(name: string): Upstream {
    const upstream = this.upstreams.get(name);
    if (upstream) return upstream;
    const known = this.names();
    const list = known.length ? `: it serves ${known.map((n) => `"${n}"`).join(", ")}` : ": it serves none (kubernetes_clusters in the auth config)";
    throw new AppError("NOT_FOUND", `Kubernetes cluster "${name}" is not served by this auth service${list}`);
  }

  /**
   * Labels of cluster `name` for certificates of `bot` with `roles`: NOT_FOUND when it
   * is not proxied here, ACCESS_DENIED when none of the roles reaches it.
   */
  labelsFor(name: string, roles: readonly RoleResource[], bot: string): Record<string, string> {
    const labels = this.requireUpstream(name).config.labels;
    if (!clusterAccess(roles, labels).allowed) {
      throw accessDenied(`The roles of bot "${bot}" do not reach Kubernetes cluster "${name}": no kubernetes_labels match its labels`);
    }
    return labels;
  }

  /**
   * The proxied clusters some of `roles` reach, as the proxy decides it (deny labels
   * close a cluster), sorted by name: what a kubernetes/v2 output may select from.
   */
  reachable(roles: readonly RoleResource[]): { name: string; labels: Record<string, string> }[] {
    return this.names()
      .map((name) => ({ name, labels: { ...this.upstreams.get(name)!.config.labels } }))
      .filter((c) => clusterAccess(roles, c.labels).allowed);
  }

  /** The API server of the cluster this service runs in, for TokenReviews; NOT_IMPLEMENTED outside a cluster. */
  inClusterUpstream(): Promise<Upstream> {
    this.inCluster ??= Upstream.load(inClusterConfig(this.env)).catch((e: unknown) => {
      this.inCluster = undefined; // not cached: the mount may appear later
      throw e;
    });
    return this.inCluster;
  }

  close(): void {
    this.sessions?.close();
    for (const u of this.upstreams.values()) u.close();
    void this.inCluster?.then((u) => u.close()).catch(() => {});
  }
}
