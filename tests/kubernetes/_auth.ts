/**
 * An auth service in process for the Kubernetes tests (the real service on
 * 127.0.0.1:0, memory storage): the seed's cluster name (projected tokens carry it as
 * their audience), proxied clusters, and helpers to make bots, join them and get
 * output certificates for a cluster.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { Actor } from "../../src/auth/audit.ts";
import type { ConnInfo } from "../../src/auth/app.ts";
import { startAuthService, type AuthServiceOptions, type RunningAuth } from "../../src/auth/service.ts";
import type { KubernetesClusterConfig } from "../../src/config/index.ts";
import type { KeyPair } from "../../src/crypto/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { pemDecodeOne } from "../../src/lib/pem.ts";
import type { Certs } from "../../src/protocol/index.ts";
import { keyRequest } from "../auth/harness.ts";
import { adminOf, type Admin } from "../_support/admin.ts";
import { SEED_CLUSTER } from "../_support/kube_jwt.ts";

import { SCENARIOS, scenario } from "../_scenarios.ts";

export { SCENARIOS, scenario };
/** The cluster name seed 000's projected token has as its audience. */
export const CLUSTER = SEED_CLUSTER;
export const ADMIN: Actor = { user: "admin", remoteAddr: "127.0.0.1" };

export interface Identity {
  certs: Certs;
  key: KeyPair;
  conn: ConnInfo;
}

export interface KubeAuth {
  running: RunningAuth;
  clock: FakeClock;
  /** `host:port` of the listener. */
  addr: string;
  admin: Admin;
  /** Calls the handler; `who` is a caller's connection (anonymous when absent). */
  call(method: string, path: string, opts?: { who?: ConnInfo; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** Creates resources from YAML text (any kinds, as `ctl create -f`). */
  create(yamlText: string): Promise<void>;
  /** `bots add` with roles; returns the one-time token. */
  addBot(name: string, roles: string[]): Promise<string>;
  /** Joins with a token and returns the renewable identity. */
  joinWithToken(token: string): Promise<Identity>;
  /** Output certificates of `bot` for a Kubernetes cluster. */
  kubeCerts(bot: Identity, cluster: string): Promise<Identity>;
  /** A kubernetes/v2 output's certificates of `bot`, for several clusters at once. */
  kubeCertsMany(bot: Identity, clusters: string[]): Promise<Identity>;
  /** Events of one type, oldest first. */
  events(type: string): Promise<{ type: string; fields: Record<string, any> }[]>;
  close(): Promise<void>;
}

export const conn = (certs: Certs, remoteAddr = "10.1.2.3"): ConnInfo => ({ remoteAddr, peerCertDer: pemDecodeOne(certs.tls_cert, ["CERTIFICATE"]).der });

/** Starts one auth service; `env` is what it reads in-cluster settings from (none by default). */
export async function startKubeAuth(
  clusters: KubernetesClusterConfig[] = [],
  env: Record<string, string | undefined> = {},
  extra: Pick<AuthServiceOptions, "limits"> = {},
): Promise<KubeAuth> {
  const clock = new FakeClock(Date.now());
  const dataDir = await mkdtemp(join(tmpdir(), "kube-auth-"));
  let running: RunningAuth;
  try {
    running = await startAuthService({
      dataDir,
      listenAddr: "127.0.0.1:0",
      storage: { type: "memory" },
      log: silentLogger,
      clock,
      clusterName: CLUSTER,
      kubernetesClusters: clusters,
      env,
      ...extra,
    });
  } catch (e) {
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  const admin = adminOf(running.ctx);
  const call: KubeAuth["call"] = (method, path, opts = {}) =>
    running.handler(
      new Request(`https://auth.test${path}`, {
        method,
        headers: { ...(opts.body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers },
        ...(opts.body !== undefined ? { body: typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body) } : {}),
      }),
      opts.who ?? { remoteAddr: "10.9.9.9" },
    );
  const identity = (certs: Certs, key: KeyPair): Identity => ({ certs, key, conn: conn(certs) });
  const post = async (path: string, who: ConnInfo | undefined, body: unknown): Promise<{ certs: Certs }> => {
    const r = await call("POST", path, { ...(who ? { who } : {}), body });
    if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}: ${await r.text()}`);
    return (await r.json()) as { certs: Certs };
  };

  return {
    running,
    clock,
    addr: running.addr,
    admin,
    call,
    async create(text) {
      const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
      await admin.createResources(docs, true, ADMIN);
    },
    async addBot(name, roles) {
      return (await admin.addBot({ name, roles }, ADMIN)).token;
    },
    async joinWithToken(token) {
      const { key, body } = keyRequest();
      return identity((await post("/v1/join", undefined, { ...body, join_method: "token", token_name: token })).certs, key);
    },
    async kubeCerts(bot, cluster) {
      const { key, body } = keyRequest();
      return identity((await post("/v1/bot/certs", bot.conn, { ...body, kubernetes_cluster: cluster })).certs, key);
    },
    async kubeCertsMany(bot, clusters) {
      const { key, body } = keyRequest();
      return identity((await post("/v1/bot/certs", bot.conn, { ...body, kubernetes_clusters: clusters })).certs, key);
    },
    async events(type) {
      return (await admin.listEvents({ type })) as { type: string; fields: Record<string, any> }[];
    },
    async close() {
      await running.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
