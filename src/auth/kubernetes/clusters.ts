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

/** The clusters of one auth service. Built once at start-up; `close()` drops idle upstream connections. */
export class KubernetesClusters {
  private inCluster: Promise<Upstream> | undefined;
  /** The live sessions and long answers through the proxy (set by the service; absent in handler-only tests). */
  sessions: KubeSessions | undefined;

  private constructor(
    private readonly upstreams: Map<string, Upstream>,
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
