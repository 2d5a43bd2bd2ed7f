// The agent's in-cluster side against a fake API server: the kubernetes_secret
// destination (one guarded write per update, conflicts retried, namespace and
// credentials from the pod's environment, TLS always verified) and where the
// kubernetes join method finds its service-account token.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BotStore } from "../../src/agent/bot/index.ts";
import { KubernetesSecretDestination, readServiceAccountToken } from "../../src/agent/kubernetes/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { tempDir } from "../agent/harness.ts";
import { startFakeApiServer, type FakeApiServer } from "./fake_apiserver.ts";

let api: FakeApiServer;
let env: Record<string, string>;
let saDir: string;

beforeAll(async () => {
  api = await startFakeApiServer({ token: "pod-sa-token" });
  ({ dir: saDir, env } = await api.serviceAccountDir("from-sa-file", "pod-sa-token"));
});
afterAll(async () => {
  await api.close();
});

const secret = (name: string, opts: { namespace?: string; env?: Record<string, string | undefined> } = {}) =>
  new KubernetesSecretDestination({ name, ...(opts.namespace ? { namespace: opts.namespace } : {}), log: silentLogger, env: opts.env ?? { ...env, POD_NAMESPACE: "default" } });

const stored = (ns: string, name: string) => {
  const s = api.secrets.get(`${ns}/${name}`);
  return s && Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
};

async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}

describe("kubernetes_secret destination", () => {
  test("init creates the Secret once, labelled, in $POD_NAMESPACE; verify reads it", async () => {
    const d = secret("identity-output");
    expect(d.description).toBe(`kubernetes_secret "default/identity-output"`);
    expect(d.isPersistent).toBe(true);
    await d.init();
    await d.init();
    await d.verify();
    expect(api.secrets.get("default/identity-output")).toMatchObject({ data: {}, labels: { "app.kubernetes.io/managed-by": "machine-id" } });
  });

  test("writeAll replaces every key in one request guarded by the resourceVersion, and read decodes", async () => {
    const d = secret("one-write");
    await d.init();
    await d.write("stale", "kept");
    const before = api.requests.length;
    await d.writeAll({ tlscert: "-----BEGIN CERTIFICATE-----\n", key: new Uint8Array([0x6b, 0x65, 0x79]), identity: "id" });
    const writes = api.requests.slice(before).filter((r) => r.method !== "GET");
    expect(writes.map((r) => r.method)).toEqual(["PUT"]);
    const body = JSON.parse(writes[0]!.body) as { metadata: { resourceVersion: string }; data: Record<string, string> };
    expect(body.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(Object.keys(body.data).sort()).toEqual(["identity", "key", "stale", "tlscert"]);
    expect(stored("default", "one-write")).toEqual({ stale: "kept", tlscert: "-----BEGIN CERTIFICATE-----\n", key: "key", identity: "id" });
    expect(await d.read("key")).toBe("key");
    expect(await d.read("missing")).toBeUndefined();
  });

  test("a write to a Secret that does not exist yet creates it with the files", async () => {
    const d = secret("created-by-write");
    await d.writeAll({ a: "1" });
    expect(stored("default", "created-by-write")).toEqual({ a: "1" });
  });

  test("a conflicting change is read again and the write retried, without losing it", async () => {
    const d = secret("contended");
    await d.writeAll({ a: "1" });
    api.injectConflicts(2);
    await d.writeAll({ b: "2" });
    expect(stored("default", "contended")).toEqual({ a: "1", b: "2" });
  });

  test("a Secret that changes under every attempt fails the write and leaves it as it was", async () => {
    const d = secret("hot");
    await d.writeAll({ a: "1" });
    api.injectConflicts(100);
    const err = await thrown(d.writeAll({ a: "2" }));
    api.injectConflicts(0);
    expect(isAppError(err, "COMPARE_FAILED")).toBe(true);
    expect(err.message).toBe(`Cannot write kubernetes_secret "default/hot": it changed under every one of 5 attempts`);
    expect(stored("default", "hot")).toEqual({ a: "1" });
  });

  test("the namespace: destination.namespace, else $POD_NAMESPACE, else the service account's", async () => {
    await secret("ns", { namespace: "explicit" }).writeAll({ a: "1" });
    await secret("ns", { env: { ...env, POD_NAMESPACE: "from-env" } }).writeAll({ a: "1" });
    const fromFile = secret("ns", { env });
    expect(fromFile.description).toBe(`kubernetes_secret "ns"`);
    await fromFile.writeAll({ a: "1" });
    expect(fromFile.description).toBe(`kubernetes_secret "from-sa-file/ns"`);
    for (const ns of ["explicit", "from-env", "from-sa-file"]) expect(stored(ns, "ns")).toEqual({ a: "1" });
  });

  test("calls carry the service account's token, read again when the kubelet rotates it", async () => {
    const d = secret("token-check");
    await d.init();
    expect(api.header(api.requests.at(-1)!, "authorization")).toEqual(["Bearer pod-sa-token"]);
    await writeFile(join(saDir, "token"), "rotated-token");
    const err = await thrown(d.read("x"));
    await writeFile(join(saDir, "token"), "pod-sa-token");
    expect(api.header(api.requests.at(-1)!, "authorization")).toEqual(["Bearer rotated-token"]);
    expect(isAppError(err, "ACCESS_DENIED")).toBe(true);
    expect(err.message).toBe(
      `Cannot read kubernetes_secret "default/token-check": the service account may not (HTTP 401: Unauthorized); grant it get, create and update on secrets in its namespace (k8s-rbac.yaml)`,
    );
  });

  test("an API server whose certificate is not signed by the mounted ca.crt is never trusted", async () => {
    const other = await startFakeApiServer({ token: "pod-sa-token" });
    try {
      const d = secret("tls", { env: { ...env, POD_NAMESPACE: "default", KUBERNETES_SERVICE_PORT: String(other.port) } });
      const err = await thrown(d.writeAll({ a: "1" }));
      expect(isAppError(err, "CONNECTION_PROBLEM")).toBe(true);
      expect(err.message).toStartWith(`Cannot reach the Kubernetes API at "https://127.0.0.1:${other.port}": `);
      expect(other.requests).toEqual([]);
    } finally {
      await other.close();
    }
  });

  test("outside a pod the first use says so", async () => {
    const d = secret("nowhere", { env: { POD_NAMESPACE: "default" } });
    const err = await thrown(d.init());
    expect(isAppError(err, "NOT_IMPLEMENTED")).toBe(true);
    expect(err.message).toBe(
      "Cannot reach the Kubernetes API: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set, so the agent is not running in a pod",
    );
  });

  test("names that are not plain file names are refused before anything is sent", async () => {
    const d = secret("names");
    const before = api.requests.length;
    expect((await thrown(d.writeAll({ ok: "1", "../x": "2" }))).message).toBe(`Invalid file name "../x": expected a plain name such as "tlscert"`);
    expect(api.requests.length).toBe(before);
  });

  test("as the agent's own storage, join state survives a new destination object (a restarted pod)", async () => {
    const a = new BotStore(secret("bot-storage"));
    await a.init();
    await a.writeState("join-state", "state-1");
    const b = new BotStore(secret("bot-storage"));
    expect(await b.readState("join-state")).toBe("state-1");
  });
});

describe("the service-account token the kubernetes join sends", () => {
  test("$KUBERNETES_TOKEN_PATH when set", async () => {
    await using t = await tempDir("sa-token-");
    const p = join(t.path, "join-sa-token");
    await writeFile(p, "projected.jwt.value\n");
    expect(await readServiceAccountToken({ KUBERNETES_TOKEN_PATH: p })).toEqual({ token: "projected.jwt.value", path: p });
  });

  test("a $KUBERNETES_TOKEN_PATH that does not exist is an error, not a fallback", async () => {
    const err = await thrown(readServiceAccountToken({ KUBERNETES_TOKEN_PATH: "/nonexistent/join-sa-token", ...env }));
    expect(err.message).toBe(`Cannot read the service account token (KUBERNETES_TOKEN_PATH) "/nonexistent/join-sa-token": no such file or directory`);
  });

  test("without it, the pod's default service-account token", async () => {
    expect(await readServiceAccountToken(env)).toEqual({ token: "pod-sa-token", path: join(saDir, "token") });
  });

  test("with neither, the message says what to mount", async () => {
    const err = await thrown(readServiceAccountToken({ MACHINE_ID_SERVICE_ACCOUNT_DIR: "/nonexistent" }));
    expect(err.message).toBe(
      `Cannot find a service account token to join with: neither "/var/run/secrets/tokens/join-sa-token" nor "/nonexistent/token" exists; mount a projected token and set $KUBERNETES_TOKEN_PATH (see k8s-deployment.yaml)`,
    );
  });

  test("an empty token file is refused", async () => {
    await using t = await tempDir("sa-token-");
    await writeFile(join(t.path, "t"), "\n");
    expect((await thrown(readServiceAccountToken({ KUBERNETES_TOKEN_PATH: join(t.path, "t") }))).message).toBe(
      `Cannot join with the service account token "${join(t.path, "t")}": the file is empty`,
    );
  });
});
