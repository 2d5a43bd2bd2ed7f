// KubernetesClusters.reload on its own: what counts as added, removed and changed,
// unchanged clusters keeping their upstream, all or nothing when a file cannot be read,
// and the sessions of a removed or changed cluster (only those) ended with the reason.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeSessions, KubernetesClusters } from "../../src/auth/kubernetes/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import type { KubernetesClusterConfig } from "../../src/config/index.ts";
import { TempDir } from "../_support/tmp.ts";
import { startKubeAuth, type KubeAuth } from "./_auth.ts";

let auth: KubeAuth;
const dir = new TempDir("clusters-reload-");
beforeAll(async () => {
  auth = await startKubeAuth();
});
afterAll(async () => {
  await auth?.close();
  dir[Symbol.dispose]();
});

const token = dir.write("token", "sa-token\n");
const cluster = (name: string, extra: Partial<KubernetesClusterConfig> = {}): KubernetesClusterConfig => ({
  name,
  server: `https://${name}.example:6443`,
  insecureSkipTlsVerify: false,
  tokenPath: token,
  labels: { env: "prod" },
  ...extra,
});

describe("KubernetesClusters.reload", () => {
  test("adds, removes and changes clusters by name; an unchanged one keeps its upstream", async () => {
    const ca = dir.write("a-ca.crt", "CA one");
    const clusters = await KubernetesClusters.load([cluster("a", { caPath: ca }), cluster("b"), cluster("c")], {});
    try {
      const a = clusters.requireUpstream("a");
      const b = clusters.requireUpstream("b");
      const changes = await clusters.reload([cluster("a", { caPath: ca }), cluster("b", { labels: { env: "dev" } }), cluster("d")]);
      expect(changes).toEqual({ added: ["d"], removed: ["c"], changed: ["b"] });
      expect(clusters.names()).toEqual(["a", "b", "d"]);
      expect(clusters.requireUpstream("a")).toBe(a);
      expect(clusters.isCurrent("a", a)).toBe(true);
      expect(clusters.isCurrent("b", b)).toBe(false);
      expect(clusters.requireUpstream("b").config.labels).toEqual({ env: "dev" });
      expect(() => clusters.requireUpstream("c")).toThrow(`Kubernetes cluster "c" is not served by this auth service: it serves "a", "b", "d"`);

      // the same path with new contents (a CA renewed on disk) is a change
      dir.write("a-ca.crt", "CA two");
      expect(await clusters.reload([cluster("a", { caPath: ca }), cluster("b", { labels: { env: "dev" } }), cluster("d")])).toEqual({ added: [], removed: [], changed: ["a"] });
      expect(clusters.isCurrent("a", a)).toBe(false);
    } finally {
      clusters.close();
    }
  });

  test("a file that cannot be read changes nothing, and the error names it", async () => {
    const clusters = await KubernetesClusters.load([cluster("a")], {});
    try {
      const a = clusters.requireUpstream("a");
      const missing = dir.file("no-such-ca.crt");
      const err = await clusters.reload([cluster("b"), cluster("c", { caPath: missing })]).catch((e: unknown) => e);
      expect(isAppError(err)).toBe(true);
      expect((err as Error).message).toContain(missing);
      expect((err as Error).message).toContain(`Kubernetes cluster "c"`);
      expect(clusters.names()).toEqual(["a"]);
      expect(clusters.isCurrent("a", a)).toBe(true);
    } finally {
      clusters.close();
    }
  });

  test("ends the sessions of removed and changed clusters with the reason, and no others", async () => {
    const clusters = await KubernetesClusters.load([cluster("a"), cluster("b"), cluster("c")], {});
    const sessions = new KubeSessions(auth.running.ctx, { total: 10, perInstance: 10 }, 60_000);
    clusters.sessions = sessions;
    const ended: string[] = [];
    try {
      sessions.open({ bot: "x", instance: "i1", cluster: "a" }, "upgrade", (why, detail) => ended.push(`a ${why}: ${detail}`));
      sessions.open({ bot: "x", instance: "i1", cluster: "b" }, "stream", (why, detail) => ended.push(`b ${why}: ${detail}`));
      sessions.open({ bot: "y", instance: "i2", cluster: "c" }, "upgrade", (why) => ended.push(`c ${why}`));
      await clusters.reload([cluster("b", { server: "https://b2.example:6443" }), cluster("c")]);
      expect(ended.sort()).toEqual([
        `a cluster_removed: kubernetes_clusters "a" was removed from the auth config`,
        `b cluster_changed: kubernetes_clusters "b" was changed in the auth config`,
      ]);
    } finally {
      clusters.close();
    }
    expect(ended).toContain("c service_stopping");
  });
});
