/**
 * The auth service as one Hono app: `handle(req, conn) → Response`. Every request
 * goes through the same middleware, in this order (docs/design.md draws it):
 * the failed-join limiter (join routes only), the body cap, `authenticate` (routes
 * that need a caller), the admin check (admin routes), then the route — the API, the
 * Kubernetes proxy, the install script and the downloads alike. The socket lives in
 * listener.ts.
 */

import { Hono, type Context, type MiddlewareHandler } from "hono";
import { parsePublicKey } from "../crypto/index.ts";
import { AppError, accessDenied, badParameter, errorMessage } from "../lib/errors.ts";
import { pemDecodeOne } from "../lib/pem.ts";
import { readCappedBytes } from "../lib/stream.ts";
import {
  AddBotRequest,
  AddTokenRequest,
  BotCertsRequest,
  CA_EXPORT_TYPES,
  CONNECTION_IDENTITY_HEADER,
  CONNECTION_RENEWED,
  JoinRequest,
  LockRequest,
  MAX_BODY_BYTES,
  RenewRequest,
  ROUTES,
  SignHostRequest,
  STATUS_BY_CODE,
  decode,
  errorBody,
  type CAExportType,
  type PingResponse,
  type StatusResponse,
} from "../protocol/index.ts";
import type { JoinMethod as JoinMethodName } from "../resources/index.ts";
import * as z from "zod";
import { Admin } from "./admin.ts";
import { actorFields, EVENT } from "./audit.ts";
import { exportAuthority } from "./authorities.ts";
import { botCerts } from "./certs.ts";
import { renew } from "./renew.ts";
import { Authenticator } from "./authenticate.ts";
import type { AuthContext } from "./context.ts";
import { DEFAULT_HOST_CERT_TTL_MS, signHostKey } from "./issuer.ts";
import { serveDownload, serveInstallScript, type DownloadOptions } from "./install/index.ts";
import { KubernetesClusters, kubernetesProxy, listKubernetesClusters } from "./kubernetes/index.ts";
import { JOIN_PATHS, JOIN_REGISTRY, join } from "./join/index.ts";
import { FailureLimiter, limitFailedJoins } from "./ratelimit.ts";
import type { Authenticated, ConnInfo, Env } from "./request.ts";

export type { ConnInfo, ConnSession, Authenticated } from "./request.ts";

/** The app's entry: one request and the connection it came on, in; the answer, out. */
export type Handler = (req: Request, conn: ConnInfo) => Promise<Response>;

/** The join methods this service accepts, as `/webapi/ping` reports them: the registered ones. */
const SUPPORTED_JOIN_METHODS = [...JOIN_REGISTRY.keys()];

/** What one auth service serves beyond its API. */
export interface AppOptions {
  /** The Kubernetes clusters it proxies (none by default). */
  kubernetes?: KubernetesClusters;
  /** Counts failed joins per address and refuses with 429 past a burst; none when absent (service.ts always sets one). */
  joinLimiter?: FailureLimiter;
  /** With `joinLimiter`: the limiter of a join method's own limit per address (JoinMethod.addressLimit), instead of its default. */
  addressLimiters?: Partial<Record<JoinMethodName, FailureLimiter>>;
  /** Serve /scripts/install.sh and /downloads/ (the agent's binaries) from here; not served when absent. */
  downloads?: DownloadOptions;
  /** The client authentication, when something outside the app (the proxy's upgrade path) shares it; a new one otherwise. */
  authenticator?: Authenticator;
}

/** Builds the request handler of one auth service. */
export function createApp(ctx: AuthContext, opts: AppOptions = {}): Handler {
  const kubernetes = opts.kubernetes ?? KubernetesClusters.none();
  const admin = new Admin(ctx);
  const authn = opts.authenticator ?? new Authenticator(ctx);
  const authenticate = authn.middleware();
  const app = new Hono<Env>();

  // 1. The failed-join limiter, outermost on the join routes: it counts every 4xx they
  //    answer, the body cap's 413 included (junk is how guessing looks).
  //    Each join method's own limit per address (bound keypair: unanswered challenges) rides in it.
  if (opts.joinLimiter) {
    const methods = [...JOIN_REGISTRY.values()].flatMap((m) => (m.addressLimit ? [m.addressLimit(ctx, opts.addressLimiters?.[m.name])] : []));
    app.on("POST", [...JOIN_PATHS], limitFailedJoins(ctx, opts.joinLimiter, methods));
  }
  // 2. The body, read once within the cap, for every route.
  app.use(limitBody());

  app.get(ROUTES.ping, (c) => {
    const res: PingResponse = {
      cluster_name: ctx.authorities.cluster,
      server_version: ctx.version,
      ca_pins: [ctx.authorities.caPin],
      join_methods: SUPPORTED_JOIN_METHODS,
      public_addr: ctx.publicAddr,
      ...(kubernetes.names().length > 0 ? { kubernetes_clusters: kubernetes.names() } : {}),
    };
    return c.json(res);
  });

  app.get(ROUTES.exportCA, (c) => {
    const type = c.req.query("type") ?? "";
    if (!(CA_EXPORT_TYPES as readonly string[]).includes(type)) {
      throw badParameter(`Invalid export type "${type}": allowed values are ${CA_EXPORT_TYPES.map((t) => `"${t}"`).join(", ")}`);
    }
    return c.text(exportAuthority(ctx.authorities, type as CAExportType), 200, { "content-type": "text/plain; charset=utf-8" });
  });

  // The joins, each dispatched to its registered method (auth/join/index.ts).
  app.post(ROUTES.join, async (c) => {
    const req = body(c, JoinRequest, "join request");
    return c.json(await join(ctx, req, { remoteAddr: c.env.conn.remoteAddr }, { kubernetes }));
  });
  for (const method of JOIN_REGISTRY.values()) {
    for (const route of method.routes ?? []) {
      app.post(route.path, async (c) => c.json(await route.handle(ctx, body(c, route.schema, route.what), { remoteAddr: c.env.conn.remoteAddr })));
    }
  }

  // 3. A bot's routes need a caller.
  app.post(ROUTES.renew, authenticate, async (c) => {
    const now = ctx.clock.now();
    const r = await renew(ctx, body(c, RenewRequest, "renew request"), c.var.caller);
    const auth: Authenticated = { identity: r.identity, notAfter: r.notAfter };
    authn.issued(pemDecodeOne(r.response.certs.tls_cert, ["CERTIFICATE"]).der, auth, now);
    const session = c.env.conn.session;
    // A retried renewal (the lost-answer path) proves nothing the handshake did not: the
    // connection keeps speaking for the superseded identity, so anything more on it is a
    // stale generation and refused.
    if (session && !r.retry) {
      session.renewed = auth;
      c.header(CONNECTION_IDENTITY_HEADER, CONNECTION_RENEWED);
    }
    return c.json(r.response);
  });

  app.post(ROUTES.botCerts, authenticate, async (c) => {
    return c.json(await botCerts(ctx, body(c, BotCertsRequest, "certificate request"), c.var.caller, kubernetes));
  });

  app.get(ROUTES.botKubernetesClusters, authenticate, async (c) => c.json(await listKubernetesClusters(ctx, c.var.caller, kubernetes)));

  // 4. The admin API: authenticated once, checked for the admin identity once.
  mountGuarded(app, adminRoutes(ctx, admin), authenticate, requireAdmin);

  // The Kubernetes proxy authenticates the same way; its refusals are Kubernetes Status objects.
  app.route(ROUTES.kubernetes.slice(0, -1), kubernetesProxy(ctx, kubernetes, authn));

  if (opts.downloads) {
    const downloads = opts.downloads;
    app.all(ROUTES.installScript, (c) =>
      serveInstallScript(c.req.raw, {
        publicAddr: ctx.publicAddr,
        caPin: ctx.authorities.caPin,
        caCertPem: ctx.authorities.host.tlsCertPem,
        version: ctx.version,
        ...(downloads.checksums ? { checksums: downloads.checksums } : {}),
      })!,
    );
    app.all(`${ROUTES.downloads}*`, async (c) => (await serveDownload(c.req.raw, downloads)) ?? c.notFound());
  }

  app.notFound((c) => c.json(errorBody(new AppError("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}`)), 404));
  app.onError((err, c) => errorResponse(err, ctx, { method: c.req.method, path: c.req.path }));

  return async (req, conn) => app.fetch(req, { conn });
}

/** Refuses every caller but the admin identity; sets the actor the audit trail names. */
const requireAdmin: MiddlewareHandler<Env> = async (c, next) => {
  const { identity } = c.var.caller;
  if (identity.kind !== "admin") throw accessDenied(`"${identity.username}" is not an admin: this request needs the admin identity`);
  c.set("actor", { user: identity.username, remoteAddr: c.env.conn.remoteAddr });
  await next();
};

/**
 * Adds `sub`'s routes to `app` behind `guard`, which runs for exactly those routes.
 * (Hono's `app.route("/", sub)` would turn a `sub.use(guard)` into a guard on every
 * path: the admin routes share no prefix with the bots' routes beside them.)
 */
function mountGuarded(app: Hono<Env>, sub: Hono<Env>, ...guard: MiddlewareHandler<Env>[]): void {
  for (const r of sub.routes) app.on(r.method, [r.path], ...guard, r.handler);
}

/** The admin API's routes; the caller is the admin when they run (see mountGuarded). */
function adminRoutes(ctx: AuthContext, admin: Admin): Hono<Env> {
  const app = new Hono<Env>();

  app.get(ROUTES.status, async (c) => {
    const res: StatusResponse = {
      cluster_name: ctx.authorities.cluster,
      server_version: ctx.version,
      ca_pin: ctx.authorities.caPin,
      public_addr: ctx.publicAddr,
      counts: await admin.counts(),
    };
    return c.json(res);
  });

  app.get(`${ROUTES.resources}/:kind`, async (c) => {
    const limit = c.req.query("limit");
    if (limit !== undefined && !/^\d+$/.test(limit)) throw badParameter(`Invalid limit "${limit}": expected a whole number`);
    const startAfter = c.req.query("start_after");
    return c.json(
      await admin.listResources(c.req.param("kind"), {
        ...(limit !== undefined ? { limit: Number(limit) } : {}),
        ...(startAfter !== undefined ? { startAfter } : {}),
      }),
    );
  });
  app.get(`${ROUTES.resources}/:kind/:name`, async (c) => c.json(await admin.getResource(c.req.param("kind"), c.req.param("name"))));
  app.post(ROUTES.resources, async (c) => {
    const req = body(c, z.object({ resources: z.array(z.unknown()).max(1000), force: z.boolean().default(false) }), "create request");
    return c.json({ created: await admin.createResources(req.resources, req.force, c.var.actor) });
  });
  app.delete(`${ROUTES.resources}/:kind/:name`, async (c) => {
    await admin.deleteResource(c.req.param("kind"), c.req.param("name"), c.var.actor);
    return c.json({});
  });

  app.post(ROUTES.bots, async (c) => c.json(await admin.addBot(body(c, AddBotRequest, "bot request"), c.var.actor)));
  app.post(ROUTES.tokens, async (c) => c.json(await admin.addToken(body(c, AddTokenRequest, "token request"), c.var.actor)));
  app.get(ROUTES.botInstances, async (c) => c.json(await admin.listBotInstances(c.req.query("bot") || undefined)));
  app.post(ROUTES.locks, async (c) => c.json(await admin.lock(body(c, LockRequest, "lock request"), c.var.actor)));
  app.get(ROUTES.locks, async (c) => c.json(await admin.listLocks()));
  app.delete(`${ROUTES.locks}/:kind/:name`, async (c) => {
    await admin.unlock(`${c.req.param("kind")}/${c.req.param("name")}`, c.var.actor);
    return c.json({});
  });
  app.post(ROUTES.signHost, async (c) => {
    const req = body(c, SignHostRequest, "host signing request");
    const now = ctx.clock.now();
    const notAfter = new Date(now.getTime() + (req.ttl_seconds ? req.ttl_seconds * 1000 : DEFAULT_HOST_CERT_TTL_MS));
    const certificate = signHostKey(ctx.authorities, parsePublicKey(req.public_key, "public_key"), req.principals, now, notAfter);
    await ctx.audit.emit(EVENT.hostCertCreate, now, { principals: req.principals, not_after: notAfter.toISOString(), ...actorFields(c.var.actor) });
    return c.json({ certificate, valid_before: notAfter.toISOString() });
  });

  app.get(ROUTES.events, async (c) => {
    const limit = c.req.query("limit");
    if (limit !== undefined && !/^\d+$/.test(limit)) throw badParameter(`Invalid limit "${limit}": expected a whole number`);
    return c.json(
      await admin.listEvents({
        ...(c.req.query("type") ? { type: c.req.query("type")! } : {}),
        ...(c.req.query("since") ? { since: c.req.query("since")! } : {}),
        ...(limit !== undefined ? { limit: Number(limit) } : {}),
      }),
    );
  });
  return app;
}

/** Decodes the body `limitBody` read as JSON of `schema`; BAD_PARAMETER naming `what` otherwise. */
function body<S extends z.ZodType>(c: Context<Env>, schema: S, what: string): z.infer<S> {
  return decode(schema, parseJson(c.var.body), what);
}

/**
 * Reads the request body once, within MAX_BODY_BYTES, into `c.var.body`. A declared
 * length over the cap is refused before reading; a declared length within it bounds
 * what can arrive (listener.ts cuts an h2 body that runs past its Content-Length), so
 * the runtime reads it whole; a body of undeclared length (chunked, h2 without
 * Content-Length) is counted as it comes and refused once over the cap. Hand-written
 * rather than hono/body-limit, which trusts a declared Content-Length and leaves the
 * stream for each route to read (and cap) again.
 */
export function limitBody(max = MAX_BODY_BYTES): MiddlewareHandler<Env> {
  return async (c, next) => {
    const req = c.req.raw;
    // GET and HEAD have no body (a Request cannot carry one): nothing to read.
    if (req.method !== "GET" && req.method !== "HEAD") {
      const declared = req.headers.get("content-length");
      if (declared !== null && !req.headers.has("transfer-encoding")) {
        // Only a plain decimal is a length: Number("x") is NaN, and NaN > max is false, so a
        // malformed value (or two lengths joined, "5, 5") would otherwise lift the cap
        // and the whole body be read, before the caller is even authenticated.
        if (!DECIMAL.test(declared)) throw badParameter(`Invalid Content-Length ${JSON.stringify(declared)}: expected one decimal number of bytes`);
        if (Number(declared) > max) throw tooLarge(max);
        // Read whole rather than chunk by chunk: reading the stream cost a renewal ~5%.
        const bytes = await req.bytes().catch(() => {
          throw badParameter("Cannot read the request body: the client stopped sending it or sent more than it declared");
        });
        if (bytes.byteLength > max) throw tooLarge(max);
        c.set("body", bytes);
      } else {
        const stream = req.body;
        if (stream) {
          const body = await readCappedBytes(stream, max, () => tooLarge(max), () =>
            badParameter("Cannot read the request body: the client stopped sending it"),
          );
          c.set("body", body);
        }
      }
    }
    await next();
  };
}

const DECIMAL = /^\d+$/;

function tooLarge(max: number): AppError {
  return new AppError("TOO_LARGE", `Request body too large: at most ${max} bytes`);
}

/** Maps any thrown value to the API's error response. */
function errorResponse(e: unknown, ctx: AuthContext, where: { method?: string; path?: string } = {}): Response {
  if (e instanceof AppError) {
    if (e.code === "INTERNAL") ctx.log.error("Internal error", { ...where, error: e });
    return Response.json(errorBody(e), { status: STATUS_BY_CODE[e.code] });
  }
  // Internals never reach a client: log the cause, answer with a code and a safe message.
  ctx.log.error("Unhandled error", { ...where, error: errorMessage(e), stack: (e as Error)?.stack });
  return Response.json(errorBody(new AppError("INTERNAL", "Internal error: the auth service logged the details")), { status: 500 });
}

/** Parses a request body as JSON; BAD_PARAMETER for anything else. */
function parseJson(bytes: Uint8Array | undefined): unknown {
  const text = bytes ? TEXT.decode(bytes) : "";
  if (text.trim() === "") throw badParameter("Request body is empty: expected JSON");
  // Validators downstream recurse into the value: a body nested thousands deep would
  // overflow the stack (a 500) however small it is, so it is refused before parsing.
  if (nestingExceeds(text, MAX_JSON_DEPTH)) throw badParameter(`Request body is nested too deeply: at most ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch {
    throw badParameter("Request body is not valid JSON");
  }
}

const TEXT = new TextDecoder();

/** Deepest nesting of arrays and objects a request body may have; real messages use a handful. */
export const MAX_JSON_DEPTH = 64;

/** Whether JSON text nests arrays/objects deeper than `max` (strings skipped; no parse, no recursion). */
function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
