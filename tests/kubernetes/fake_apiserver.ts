/**
 * A small Kubernetes API server for tests (there is no real cluster on the test
 * machines): TLS with its own CA, legacy discovery enough for kubectl, pods (lists,
 * Tables, watches), Secrets with resourceVersion conflicts, and TokenReview. It is
 * built on node:https so it records raw header lines: one `Impersonate-Group` line
 * per group is exactly what it checks.
 */

import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPair, issueCertificate, privateKeyToPem } from "../../src/crypto/index.ts";
import { testServerTls } from "../_tls.ts";
import { SPDY_EXEC_PROTOCOLS, SpdyPortForward, WsConn, newPodWorld, serveChannels, serveSpdyChannels, wsAccept, type PodWorld } from "./_streams.ts";

/** One request as the server saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The query as sent (`?…`, or empty). */
  search: string;
  /** Raw header lines, names lowercased, in order. */
  headerLines: [string, string][];
  body: string;
  /**
   * For an upgrade refused while `keepRefusedUpgradesOpen` is set: every byte that came
   * after its headers until the connection closed (what Go's server would read as the
   * connection's next request).
   */
  afterHeaders?: Buffer[];
}

export interface TokenReviewResult {
  authenticated: boolean;
  username?: string;
  audiences?: string[];
  error?: string;
}

export interface FakeApiServerOptions {
  /** Requests must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** Requests must present a client certificate signed by this CA (PEM) instead. */
  clientCaPem?: string;
  /** Answers TokenReviews; default: not authenticated. */
  review?: (token: string, audiences: string[] | undefined) => TokenReviewResult;
}

interface Pod {
  name: string;
  namespace: string;
  /** The Ready condition (`kubectl wait --for=condition=Ready`); absent: none reported. */
  ready?: boolean;
}

/** A Deployment as `kubectl rollout status` reads it. */
export interface Deployment {
  name: string;
  namespace: string;
  replicas: number;
  updated: number;
  available: number;
}

interface StoredSecret {
  resourceVersion: number;
  data: Record<string, string>;
  labels: Record<string, string>;
}

export interface FakeApiServer {
  url: string;
  host: string;
  port: number;
  /** The CA (PEM) that signed the server's certificate. */
  caPem: string;
  /** Its key, for tests that issue client certificates from it. */
  issueClientCert(commonName: string): Promise<{ certPem: string; keyPem: string }>;
  requests: SeenRequest[];
  /** Header values of one name across a request's lines (repeated lines stay separate). */
  header(r: SeenRequest, name: string): string[];
  pods: Pod[];
  secrets: Map<string, StoredSecret>;
  /** The next N secret replaces answer 409 Conflict (as if someone wrote meanwhile). */
  injectConflicts(n: number): void;
  /** Sends a watch event about a pod to every open pod watch. */
  emitPod(type: "ADDED" | "MODIFIED" | "DELETED", pod: Pod): void;
  /** Ends every open watch. */
  endWatches(): void;
  /** Pod and deployment watches, and `log?follow=true` streams, open now. */
  openWatches(): number;
  /** Writes a line to every followed log (`kubectl logs -f`); `end` ends them. */
  logLine(text: string, end?: boolean): void;
  deployments: Deployment[];
  /** Sends a MODIFIED event about a deployment (after storing it) to every open deployment watch. */
  updateDeployment(d: Deployment): void;
  /** The pods' insides for exec, attach and cp (files, directories, held commands). */
  world: PodWorld;
  /** Port-forward sessions served, each with the data its connections sent. */
  portForwards: SpdyPortForward[];
  /** Exec and attach sessions served over legacy SPDY: the `streamtype` of each stream kubectl opened, in order. */
  spdyExecStreams: string[][];
  /** TCP connections open to this server now (a leaked upstream connection shows here). */
  openConnections(): number;
  /** Upgraded connections (exec, attach, portforward) open now. */
  openUpgrades(): number;
  /** Answers WebSocket upgrades with 400, as an API server older than 1.30 would (kubectl then falls back to SPDY). */
  refuseWebSockets: boolean;
  /** Answers legacy SPDY exec and attach upgrades with 400 too (then kubectl has nothing to fall back to). */
  refuseSpdyExec: boolean;
  /**
   * Answers refused upgrades (404, 400) and keeps the connection open, reading on, as
   * Go's HTTP server (the real API server's) does: it would serve whatever follows as the
   * connection's next request. The bytes are kept in the request's `afterHeaders`.
   */
  keepRefusedUpgradesOpen: boolean;
  /** Writes a service account directory (token, ca.crt, namespace) and returns its path and the env that points a client at this server. */
  serviceAccountDir(namespace: string, token: string): Promise<{ dir: string; env: Record<string, string> }>;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, body: unknown, type = "application/json") => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
  res.end(text);
};

const status = (res: ServerResponse, code: number, reason: string, message: string) =>
  json(res, code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason, message, code });

const podObject = (p: Pod) => ({
  kind: "Pod",
  apiVersion: "v1",
  metadata: { name: p.name, namespace: p.namespace, uid: `uid-${p.namespace}-${p.name}`, resourceVersion: "1", creationTimestamp: "2026-01-01T00:00:00Z" },
  spec: { containers: [{ name: "main", image: "busybox" }] },
  status: { phase: "Running", ...(p.ready !== undefined ? { conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }] } : {}) },
});

const deploymentObject = (d: Deployment, rv: number) => ({
  kind: "Deployment",
  apiVersion: "apps/v1",
  metadata: { name: d.name, namespace: d.namespace, uid: `uid-${d.namespace}-${d.name}`, resourceVersion: String(rv), generation: 2, creationTimestamp: "2026-01-01T00:00:00Z" },
  spec: { replicas: d.replicas, selector: { matchLabels: { app: d.name } }, template: { metadata: { labels: { app: d.name } }, spec: { containers: [{ name: "main", image: "busybox" }] } } },
  status: { observedGeneration: 2, replicas: d.replicas, updatedReplicas: d.updated, availableReplicas: d.available, readyReplicas: d.available },
});

const APPS_RESOURCES = {
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion: "apps/v1",
  resources: [{ name: "deployments", singularName: "deployment", namespaced: true, kind: "Deployment", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["deploy"] }],
};

const podRow = (p: Pod) => ({
  cells: [p.name, "1/1", "Running", 0, "1d"],
  object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: podObject(p).metadata },
});

const TABLE_COLUMNS = ["Name", "Ready", "Status", "Restarts", "Age"].map((name, i) => ({
  name,
  type: i === 3 ? "integer" : "string",
  format: i === 0 ? "name" : "",
  description: "",
  priority: 0,
}));

const API_RESOURCES = {
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion: "v1",
  resources: [
    { name: "pods", singularName: "pod", namespaced: true, kind: "Pod", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["po"] },
    { name: "secrets", singularName: "secret", namespaced: true, kind: "Secret", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"] },
    { name: "configmaps", singularName: "configmap", namespaced: true, kind: "ConfigMap", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["cm"] },
    { name: "namespaces", singularName: "namespace", namespaced: false, kind: "Namespace", verbs: ["create", "delete", "get", "list", "patch", "update", "watch"], shortNames: ["ns"] },
  ],
};

/** Starts the server on 127.0.0.1:0. */
export async function startFakeApiServer(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const { caPem, caKey, certPem, keyPem } = await testServerTls("kube-apiserver", ["localhost", "kubernetes.default.svc"]);

  const requests: SeenRequest[] = [];
  const pods: Pod[] = [];
  const secrets = new Map<string, StoredSecret>();
  const watches = new Set<{ res: ServerResponse; namespace?: string; table: boolean }>();
  const deployments: Deployment[] = [];
  const logFollowers = new Set<ServerResponse>();
  const deploymentWatches = new Set<{ res: ServerResponse; namespace: string; name?: string }>();
  const sockets = new Set<Socket>();
  let conflicts = 0;
  let version = 100;

  const headerValues = (r: SeenRequest, name: string) => r.headerLines.filter(([k]) => k === name).map(([, v]) => v);

  function authorized(req: IncomingMessage, seen: SeenRequest): boolean {
    if (opts.token !== undefined) return headerValues(seen, "authorization")[0] === `Bearer ${opts.token}`;
    if (opts.clientCaPem !== undefined) return (req.socket as unknown as { authorized?: boolean }).authorized === true;
    return true;
  }

  function servePods(req: IncomingMessage, res: ServerResponse, seen: SeenRequest, namespace: string | undefined, name: string | undefined) {
    const table = (req.headers.accept ?? "").includes("as=Table");
    const inScope = pods.filter((p) => namespace === undefined || p.namespace === namespace);
    if (name !== undefined) {
      const pod = inScope.find((p) => p.name === name);
      return pod ? json(res, 200, podObject(pod)) : status(res, 404, "NotFound", `pods "${name}" not found`);
    }
    // the API server's rule: the first value, unless "0" or "false" in any case
    const watch = seen.query.getAll("watch")[0];
    if (watch !== undefined && watch !== "0" && watch.toLowerCase() !== "false") {
      res.writeHead(200, { "content-type": "application/json;stream=watch", "transfer-encoding": "chunked" });
      const w = { res, ...(namespace !== undefined ? { namespace } : {}), table };
      watches.add(w);
      res.on("close", () => watches.delete(w));
      for (const p of inScope) writeEvent(w, "ADDED", p);
      return;
    }
    if (table) {
      return json(res, 200, { kind: "Table", apiVersion: "meta.k8s.io/v1", metadata: { resourceVersion: String(version) }, columnDefinitions: TABLE_COLUMNS, rows: inScope.map(podRow) });
    }
    json(res, 200, { kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: String(version), remainingItemCount: 0 }, items: inScope.map(podObject) });
  }

  function writeEvent(w: { res: ServerResponse; namespace?: string; table: boolean }, type: string, p: Pod) {
    if (w.namespace !== undefined && w.namespace !== p.namespace) return;
    const object = w.table
      ? { kind: "Table", apiVersion: "meta.k8s.io/v1", metadata: { resourceVersion: String(++version) }, columnDefinitions: [], rows: [podRow(p)] }
      : podObject(p);
    w.res.write(JSON.stringify({ type, object }) + "\n");
  }

  function serveDeployments(res: ServerResponse, seen: SeenRequest, namespace: string, name: string | undefined) {
    const byField = /metadata\.name=([^,]+)/.exec(seen.query.get("fieldSelector") ?? "")?.[1];
    const wanted = name ?? byField;
    const inScope = deployments.filter((d) => d.namespace === namespace && (wanted === undefined || d.name === wanted));
    if (name !== undefined) {
      return inScope[0] ? json(res, 200, deploymentObject(inScope[0], version)) : status(res, 404, "NotFound", `deployments.apps "${name}" not found`);
    }
    if (seen.query.get("watch") === "true" || seen.query.get("watch") === "1") {
      res.writeHead(200, { "content-type": "application/json;stream=watch", "transfer-encoding": "chunked" });
      // Go's client reads a watch only once the headers are flushed: send them now, events later
      res.flushHeaders();
      const w = { res, namespace, ...(wanted !== undefined ? { name: wanted } : {}) };
      deploymentWatches.add(w);
      res.on("close", () => deploymentWatches.delete(w));
      return;
    }
    json(res, 200, { kind: "DeploymentList", apiVersion: "apps/v1", metadata: { resourceVersion: String(version) }, items: inScope.map((d) => deploymentObject(d, version)) });
  }

  function secretObject(ns: string, name: string, s: StoredSecret) {
    return { kind: "Secret", apiVersion: "v1", metadata: { name, namespace: ns, resourceVersion: String(s.resourceVersion), labels: s.labels }, type: "Opaque", data: s.data };
  }

  function serveSecrets(res: ServerResponse, seen: SeenRequest, ns: string, name: string | undefined) {
    const key = (n: string) => `${ns}/${n}`;
    const body = seen.body ? (JSON.parse(seen.body) as { metadata?: { name?: string; resourceVersion?: string; labels?: Record<string, string> }; data?: Record<string, string> }) : {};
    if (seen.method === "GET" && name !== undefined) {
      const s = secrets.get(key(name));
      return s ? json(res, 200, secretObject(ns, name, s)) : status(res, 404, "NotFound", `secrets "${name}" not found`);
    }
    if (seen.method === "POST" && name === undefined) {
      const n = body.metadata?.name ?? "";
      if (secrets.has(key(n))) return status(res, 409, "AlreadyExists", `secrets "${n}" already exists`);
      const s = { resourceVersion: ++version, data: body.data ?? {}, labels: body.metadata?.labels ?? {} };
      secrets.set(key(n), s);
      return json(res, 201, secretObject(ns, n, s));
    }
    if (seen.method === "PUT" && name !== undefined) {
      const s = secrets.get(key(name));
      if (!s) return status(res, 404, "NotFound", `secrets "${name}" not found`);
      if (conflicts > 0) {
        conflicts--;
        s.resourceVersion = ++version; // someone else wrote
        return status(res, 409, "Conflict", `Operation cannot be fulfilled on secrets "${name}": the object has been modified`);
      }
      if (body.metadata?.resourceVersion !== String(s.resourceVersion)) {
        return status(res, 409, "Conflict", `Operation cannot be fulfilled on secrets "${name}": the object has been modified`);
      }
      const next = { resourceVersion: ++version, data: body.data ?? {}, labels: body.metadata?.labels ?? {} };
      secrets.set(key(name), next);
      return json(res, 200, secretObject(ns, name, next));
    }
    status(res, 405, "MethodNotAllowed", `${seen.method} is not supported here`);
  }

  function route(req: IncomingMessage, res: ServerResponse, seen: SeenRequest) {
    const p = seen.path;
    if (p === "/version") return json(res, 200, { major: "1", minor: "32", gitVersion: "v1.32.0-fake", platform: "linux/amd64" });
    if (p === "/api") return json(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1:443" }] });
    if (p === "/api/v1") return json(res, 200, API_RESOURCES);
    if (p === "/apis") {
      const apps = { name: "apps", versions: [{ groupVersion: "apps/v1", version: "v1" }], preferredVersion: { groupVersion: "apps/v1", version: "v1" } };
      return json(res, 200, { kind: "APIGroupList", apiVersion: "v1", groups: [apps] });
    }
    if (p === "/apis/apps/v1") return json(res, 200, APPS_RESOURCES);
    const dm = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments(?:\/([^/]+))?$/.exec(p);
    if (dm && seen.method === "GET") return serveDeployments(res, seen, dm[1]!, dm[2]);
    if (p === "/apis/authentication.k8s.io/v1/tokenreviews" && seen.method === "POST") {
      const spec = (JSON.parse(seen.body) as { spec: { token: string; audiences?: string[] } }).spec;
      const r = opts.review?.(spec.token, spec.audiences) ?? { authenticated: false, error: "no reviewer" };
      return json(res, 201, {
        kind: "TokenReview",
        apiVersion: "authentication.k8s.io/v1",
        spec,
        status: { authenticated: r.authenticated, ...(r.username ? { user: { username: r.username } } : {}), ...(r.audiences ? { audiences: r.audiences } : {}), ...(r.error ? { error: r.error } : {}) },
      });
    }
    const lm = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(p);
    if (lm && seen.method === "GET") {
      if (!pods.some((q) => q.namespace === lm[1] && q.name === lm[2])) return status(res, 404, "NotFound", `pods "${lm[2]}" not found`);
      res.writeHead(200, { "content-type": "text/plain", "transfer-encoding": "chunked" });
      res.write(`log line 1 of ${lm[2]}\n`);
      if (seen.query.get("follow") !== "true") return res.end();
      logFollowers.add(res);
      res.on("close", () => logFollowers.delete(res));
      return;
    }
    let m = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?pods(?:\/([^/]+))?$/.exec(p);
    if (m && seen.method === "GET") return servePods(req, res, seen, m[1], m[2]);
    m = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(p);
    if (m) {
      if (seen.method === "GET" && m[2] === undefined) {
        const items = [...secrets.entries()].filter(([k]) => k.startsWith(`${m![1]}/`)).map(([k, s]) => secretObject(m![1]!, k.split("/")[1]!, s));
        return json(res, 200, { kind: "SecretList", apiVersion: "v1", metadata: { resourceVersion: String(version) }, items });
      }
      return serveSecrets(res, seen, m[1]!, m[2]);
    }
    status(res, 404, "NotFound", `the server could not find the requested resource (${seen.method} ${p})`);
  }

  const server = https.createServer(
    {
      cert: certPem,
      key: keyPem,
      ...(opts.clientCaPem ? { ca: opts.clientCaPem, requestCert: true, rejectUnauthorized: false } : {}),
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "https://fake");
        const headerLines: [string, string][] = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) headerLines.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
        const seen: SeenRequest = { method: req.method ?? "GET", path: url.pathname, query: url.searchParams, search: url.search, headerLines, body: Buffer.concat(chunks).toString("utf8") };
        requests.push(seen);
        if (!authorized(req, seen)) return status(res, 401, "Unauthorized", "Unauthorized");
        route(req, res, seen);
      });
    },
  );
  const world = newPodWorld();
  const portForwards: SpdyPortForward[] = [];
  const spdyExecStreams: string[][] = [];
  const flags = { refuseWebSockets: false, refuseSpdyExec: false, keepRefusedUpgradesOpen: false };
  const upgraded = new Set<Socket>();
  const rawStatus = (sock: Socket, code: number, reason: string, message: string) => {
    const body = JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason, message, code });
    const answer = `HTTP/1.1 ${code} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    if (flags.keepRefusedUpgradesOpen) sock.write(answer);
    else sock.end(answer);
  };
  // exec, attach and portforward: the upgrade protocols of kubectl 1.32 (see _streams.ts)
  server.on("upgrade", (req: IncomingMessage, sock: Socket, head: Buffer) => {
    sock.on("error", () => {});
    upgraded.add(sock);
    sock.once("close", () => upgraded.delete(sock));
    // the client (the proxy) went away: an API server closes its side too
    sock.once("end", () => sock.end());
    const url = new URL(req.url ?? "/", "https://fake");
    const headerLines: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headerLines.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
    const seen: SeenRequest = { method: req.method ?? "GET", path: url.pathname, query: url.searchParams, search: url.search, headerLines, body: "" };
    requests.push(seen);
    if (flags.keepRefusedUpgradesOpen) {
      const after: Buffer[] = head.length > 0 ? [Buffer.from(head)] : [];
      seen.afterHeaders = after;
      sock.on("data", (d: Buffer) => after.push(d));
    }
    if (!authorized(req, seen)) return rawStatus(sock, 401, "Unauthorized", "Unauthorized");
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/.exec(url.pathname);
    if (!m) return rawStatus(sock, 404, "NotFound", `no upgrade at ${url.pathname}`);
    if (!pods.some((p) => p.namespace === m[1] && p.name === m[2])) return rawStatus(sock, 404, "NotFound", `pods "${m[2]}" not found`);
    const upgrade = (req.headers.upgrade ?? "").toLowerCase();
    const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
    const echo = (text: string) => `pong:${text}`;
    if (upgrade === "websocket") {
      if (flags.refuseWebSockets) return rawStatus(sock, 400, "BadRequest", "websockets not served here");
      if (m[3] === "portforward") {
        if (!offered.includes("SPDY/3.1+portforward.k8s.io")) return rawStatus(sock, 400, "BadRequest", "no supported protocol offered");
        sock.write(wsAccept(String(req.headers["sec-websocket-key"]), "SPDY/3.1+portforward.k8s.io"));
        let ws: WsConn | undefined = undefined;
        const pf = new SpdyPortForward((b) => ws?.send(b), echo);
        portForwards.push(pf);
        ws = new WsConn(sock, (msg) => pf.feed(msg));
        if (head.length) ws.feed(head);
        return;
      }
      const proto = ["v5.channel.k8s.io", "v4.channel.k8s.io"].find((p) => offered.includes(p));
      if (!proto) return rawStatus(sock, 400, "BadRequest", "no supported protocol offered");
      sock.write(wsAccept(String(req.headers["sec-websocket-key"]), proto));
      serveChannels(sock, world, { command: m[3] === "exec" ? url.searchParams.getAll("command") : undefined, stdin: url.searchParams.get("stdin") === "true" });
      return;
    }
    const versions = headerLines.filter(([k]) => k === "x-stream-protocol-version").map(([, v]) => v);
    if (upgrade === "spdy/3.1" && m[3] !== "portforward") {
      if (flags.refuseSpdyExec) return rawStatus(sock, 400, "BadRequest", "SPDY exec is not served here");
      // kubectl 1.32 offers v5 down to v1, one header line each; like an API server, take the first this double speaks
      const proto = versions.find((v) => SPDY_EXEC_PROTOCOLS.includes(v));
      if (!proto) return rawStatus(sock, 400, "BadRequest", "no supported stream protocol offered");
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${proto}\r\n\r\n`);
      const streamTypes: string[] = [];
      spdyExecStreams.push(streamTypes);
      serveSpdyChannels(sock, head, world, { command: m[3] === "exec" ? url.searchParams.getAll("command") : undefined, query: url.searchParams, streamTypes });
      return;
    }
    if (upgrade === "spdy/3.1") {
      if (!versions.includes("portforward.k8s.io")) return rawStatus(sock, 400, "BadRequest", "no supported stream protocol offered");
      sock.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n");
      const pf = new SpdyPortForward((b) => sock.write(b), echo);
      portForwards.push(pf);
      sock.on("data", (d: Buffer) => {
        pf.feed(d);
        // the "pod" closes the session on this word, as an API server ends one the pod left
        if (pf.received.at(-1) === "hang-up" && !sock.writableEnded) sock.end();
      });
      if (head.length) pf.feed(head);
      return;
    }
    rawStatus(sock, 400, "BadRequest", `upgrade "${upgrade}" is not served by this double for ${m[3]}`);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const dirs: string[] = [];

  return {
    url: `https://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    caPem,
    async issueClientCert(commonName) {
      const k = generateKeyPair("ecdsa-p256");
      const pem = await issueCertificate({
        caCertPem: caPem,
        caKey: caKey.privateKey,
        publicKey: k.publicKey,
        commonName,
        notBefore: new Date(Date.now() - 3_600_000),
        notAfter: new Date(Date.now() + 86_400_000),
        usage: "client",
      });
      return { certPem: pem, keyPem: privateKeyToPem(k.privateKey) };
    },
    requests,
    header: headerValues,
    world,
    portForwards,
    spdyExecStreams,
    openConnections: () => sockets.size,
    openUpgrades: () => upgraded.size,
    get refuseWebSockets() {
      return flags.refuseWebSockets;
    },
    set refuseWebSockets(v: boolean) {
      flags.refuseWebSockets = v;
    },
    get refuseSpdyExec() {
      return flags.refuseSpdyExec;
    },
    set refuseSpdyExec(v: boolean) {
      flags.refuseSpdyExec = v;
    },
    get keepRefusedUpgradesOpen() {
      return flags.keepRefusedUpgradesOpen;
    },
    set keepRefusedUpgradesOpen(v: boolean) {
      flags.keepRefusedUpgradesOpen = v;
    },
    pods,
    secrets,
    injectConflicts(n) {
      conflicts = n;
    },
    emitPod(type, pod) {
      for (const w of watches) writeEvent(w, type, pod);
    },
    endWatches() {
      for (const w of watches) w.res.end();
      watches.clear();
    },
    openWatches: () => watches.size + deploymentWatches.size + logFollowers.size,
    logLine(text, end = false) {
      for (const r of logFollowers) {
        r.write(text + "\n");
        if (end) r.end();
      }
    },
    deployments,
    updateDeployment(d) {
      const i = deployments.findIndex((x) => x.namespace === d.namespace && x.name === d.name);
      if (i >= 0) deployments[i] = d;
      else deployments.push(d);
      const obj = deploymentObject(d, ++version);
      for (const w of deploymentWatches) {
        if (w.namespace === d.namespace && (w.name === undefined || w.name === d.name)) w.res.write(JSON.stringify({ type: "MODIFIED", object: obj }) + "\n");
      }
    },
    async serviceAccountDir(namespace, token) {
      const dir = await mkdtemp(join(tmpdir(), "fake-sa-"));
      dirs.push(dir);
      await writeFile(join(dir, "token"), token + "\n");
      await writeFile(join(dir, "ca.crt"), caPem);
      await writeFile(join(dir, "namespace"), namespace);
      return {
        dir,
        env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(port), MACHINE_ID_SERVICE_ACCOUNT_DIR: dir },
      };
    },
    async close() {
      for (const w of watches) w.res.end();
      for (const w of deploymentWatches) w.res.end();
      for (const r of logFollowers) r.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    },
  };
}
