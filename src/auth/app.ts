/**
 * The auth service as a function of a request: `handle(req, conn) → Response`.
 * Routing, body limits, decoding, authentication from the client certificate and
 * the mapping of errors to statuses live here; the socket lives in listener.ts.
 */

import { createHash } from "node:crypto";
import { Hono, type Context } from "hono";
import { parsePublicKey, verifyCertificate, type CertIdentity } from "../crypto/index.ts";
import { AppError, accessDenied, badParameter, errorMessage, expired } from "../lib/errors.ts";
import { pemDecodeOne } from "../lib/pem.ts";
import {
  AddBotRequest,
  AddTokenRequest,
  BotCertsRequest,
  BoundKeypairBeginRequest,
  BoundKeypairSolveRequest,
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
import { z } from "zod";
import { Admin } from "./admin.ts";
import { actorFields, EVENT, type Actor } from "./audit.ts";
import { exportAuthority } from "./authorities.ts";
import { botCerts, joinWithToken, renew, type BotCaller } from "./bots.ts";
import { beginBoundKeypair, solveBoundKeypair } from "./bound_keypair.ts";
import type { AuthContext } from "./context.ts";
import { DEFAULT_HOST_CERT_TTL_MS, signHostKey } from "./issuer.ts";
import { KubernetesClusters, joinWithKubernetes, kubernetesProxy, listKubernetesClusters } from "./kubernetes/index.ts";
import { OIDC_JOIN_METHODS, OIDC_PLATFORMS, joinWithOidc } from "./oidc/index.ts";

/** What the transport knows about a connection. */
export interface ConnInfo {
  remoteAddr: string;
  /** DER of the client certificate, when the client sent one. Not yet verified. */
  peerCertDer?: Uint8Array;
  /**
   * State that lives as long as the connection. Only a transport that hands the same
   * ConnInfo to every request of one connection may set it (listener.ts does): a renewal
   * answered on the connection records the renewed identity here.
   */
  session?: ConnSession;
}

/**
 * A connection's identity after a renewal on it. The handshake proved possession of
 * the old certificate's key; the renewal was asked for and answered inside that same
 * TLS channel, so the party on it is the one the new certificate was issued to, and
 * the connection speaks for the new identity from then on — with its generation, its
 * expiry, and the per-request lock and generation checks as for any caller. The old
 * certificate stays superseded everywhere else: presented on a new connection it
 * locks the instance as before. A retried renewal (the lost-answer path) never moves
 * the connection: it proves nothing a copy of the old identity could not.
 */
export interface ConnSession {
  renewed?: Authenticated;
}

/** Extra routes other modules serve (install script, downloads, bound keypair joins). */
export type RouteHook = (req: Request, conn: ConnInfo) => Promise<Response | undefined>;

/** A verified caller: its identity from a certificate that chains to the user CA. */
export interface Authenticated {
  identity: CertIdentity;
  notAfter: Date;
}

type Env = { Bindings: { conn: ConnInfo } };

/** The join methods this service accepts, as `/webapi/ping` reports them. */
export const SUPPORTED_JOIN_METHODS = ["token", "bound_keypair", "kubernetes", ...OIDC_JOIN_METHODS];

export interface Handler {
  (req: Request, conn: ConnInfo): Promise<Response>;
  admin: Admin;
}

/** Builds the request handler for one auth service; `kubernetes` are the clusters it proxies (none by default). */
export function createHandler(ctx: AuthContext, hooks: RouteHook[] = [], kubernetes: KubernetesClusters = KubernetesClusters.none()): Handler {
  const admin = new Admin(ctx);
  const app = new Hono<Env>();

  /** Verifies the client certificate, if any, against the user CA. */
  const verified = new VerifiedCertCache();

  async function authenticate(c: Context<Env>): Promise<Authenticated> {
    const now = ctx.clock.now();
    const renewed = c.env.conn.session?.renewed;
    if (renewed) {
      if (now.getTime() >= renewed.notAfter.getTime()) {
        throw expired(`The identity this connection was renewed to expired at ${renewed.notAfter.toISOString()}: join again`);
      }
      return renewed;
    }
    const der = c.env.conn.peerCertDer;
    if (!der || der.length === 0) throw accessDenied("This request needs a client certificate: use an identity issued by this cluster");
    const cached = verified.get(der, now);
    if (cached) return cached;
    // usage "client": a certificate the user CA issued for another purpose does not log in
    const parsed = await verifyCertificate(der, [ctx.authorities.user.tlsCertPem], now, { usage: "client" });
    if (!parsed.identity) throw accessDenied("The client certificate carries no machine-id identity");
    if (parsed.identity.cluster !== ctx.authorities.cluster) {
      throw accessDenied(`The client certificate is for cluster "${parsed.identity.cluster}", not "${ctx.authorities.cluster}"`);
    }
    const result = { identity: parsed.identity, notAfter: parsed.notAfter };
    verified.put(der, result, parsed.notBefore);
    return result;
  }

  async function requireAdmin(c: Context<Env>): Promise<Actor> {
    const a = await authenticate(c);
    if (a.identity.kind !== "admin") throw accessDenied(`"${a.identity.username}" is not an admin: this request needs the admin identity`);
    return { user: a.identity.username, remoteAddr: c.env.conn.remoteAddr };
  }

  async function botCaller(c: Context<Env>): Promise<BotCaller> {
    const a = await authenticate(c);
    return { ...a, remoteAddr: c.env.conn.remoteAddr };
  }

  async function body<S extends z.ZodType>(c: Context<Env>, schema: S, what: string): Promise<z.infer<S>> {
    return decode(schema, await readJson(c.req.raw), what);
  }

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

  app.post(ROUTES.join, async (c) => {
    const req = await body(c, JoinRequest, "join request");
    const caller = { remoteAddr: c.env.conn.remoteAddr };
    if (req.join_method === "kubernetes") return c.json(await joinWithKubernetes(ctx, req, caller, kubernetes));
    if (OIDC_PLATFORMS[req.join_method]) return c.json(await joinWithOidc(ctx, req, caller, OIDC_PLATFORMS[req.join_method]!));
    if (req.join_method !== "token") throw badParameter(`Join method "${req.join_method}" is not served at ${ROUTES.join}`);
    return c.json(await joinWithToken(ctx, req, caller));
  });

  app.post(ROUTES.boundKeypairBegin, async (c) => {
    const req = await body(c, BoundKeypairBeginRequest, "bound keypair join request");
    return c.json(await beginBoundKeypair(ctx, req, { remoteAddr: c.env.conn.remoteAddr }));
  });

  app.post(ROUTES.boundKeypairSolve, async (c) => {
    const req = await body(c, BoundKeypairSolveRequest, "bound keypair challenge response");
    return c.json(await solveBoundKeypair(ctx, req, { remoteAddr: c.env.conn.remoteAddr }));
  });

  app.post(ROUTES.renew, async (c) => {
    const caller = await botCaller(c);
    const now = ctx.clock.now();
    const r = await renew(ctx, await body(c, RenewRequest, "renew request"), caller);
    const auth: Authenticated = { identity: r.identity, notAfter: r.notAfter };
    // The service signed this certificate a moment ago: when it comes back on a new
    // connection, checking its signature again would only cost time. `now` as the
    // start of validity is stricter than the certificate's own (backdated) one.
    verified.put(pemDecodeOne(r.response.certs.tls_cert, ["CERTIFICATE"]).der, auth, now);
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

  app.post(ROUTES.botCerts, async (c) => {
    const caller = await botCaller(c);
    return c.json(await botCerts(ctx, await body(c, BotCertsRequest, "certificate request"), caller, kubernetes));
  });

  app.get(ROUTES.botKubernetesClusters, async (c) => c.json(await listKubernetesClusters(ctx, await botCaller(c), kubernetes)));

  app.get(ROUTES.status, async (c) => {
    await requireAdmin(c);
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
    await requireAdmin(c);
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
  app.get(`${ROUTES.resources}/:kind/:name`, async (c) => {
    await requireAdmin(c);
    return c.json(await admin.getResource(c.req.param("kind"), c.req.param("name")));
  });
  app.post(ROUTES.resources, async (c) => {
    const actor = await requireAdmin(c);
    const req = await body(c, z.object({ resources: z.array(z.unknown()).max(1000), force: z.boolean().default(false) }), "create request");
    return c.json({ created: await admin.createResources(req.resources, req.force, actor) });
  });
  app.delete(`${ROUTES.resources}/:kind/:name`, async (c) => {
    const actor = await requireAdmin(c);
    await admin.deleteResource(c.req.param("kind"), c.req.param("name"), actor);
    return c.json({});
  });

  app.post(ROUTES.bots, async (c) => {
    const actor = await requireAdmin(c);
    return c.json(await admin.addBot(await body(c, AddBotRequest, "bot request"), actor));
  });
  app.post(ROUTES.tokens, async (c) => {
    const actor = await requireAdmin(c);
    return c.json(await admin.addToken(await body(c, AddTokenRequest, "token request"), actor));
  });
  app.get(ROUTES.botInstances, async (c) => {
    await requireAdmin(c);
    return c.json(await admin.listBotInstances(c.req.query("bot") || undefined));
  });
  app.post(ROUTES.locks, async (c) => {
    const actor = await requireAdmin(c);
    return c.json(await admin.lock(await body(c, LockRequest, "lock request"), actor));
  });
  app.get(ROUTES.locks, async (c) => {
    await requireAdmin(c);
    return c.json(await admin.listLocks());
  });
  app.delete(`${ROUTES.locks}/:kind/:name`, async (c) => {
    const actor = await requireAdmin(c);
    await admin.unlock(`${c.req.param("kind")}/${c.req.param("name")}`, actor);
    return c.json({});
  });
  app.post(ROUTES.signHost, async (c) => {
    const actor = await requireAdmin(c);
    const req = await body(c, SignHostRequest, "host signing request");
    const now = ctx.clock.now();
    const notAfter = new Date(now.getTime() + (req.ttl_seconds ? req.ttl_seconds * 1000 : DEFAULT_HOST_CERT_TTL_MS));
    const certificate = signHostKey(ctx.authorities, parsePublicKey(req.public_key, "public_key"), req.principals, now, notAfter);
    await ctx.audit.emit(EVENT.hostCertCreate, now, { principals: req.principals, not_after: notAfter.toISOString(), ...actorFields(actor) });
    return c.json({ certificate, valid_before: notAfter.toISOString() });
  });

  app.get(ROUTES.events, async (c) => {
    await requireAdmin(c);
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

  app.notFound((c) => c.json(errorBody(new AppError("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}`)), 404));

  app.onError((err, c) => errorResponse(err, ctx, { method: c.req.method, path: c.req.path }));

  const allHooks: RouteHook[] = [kubernetesProxy(ctx, kubernetes), ...hooks];
  const handler = (async (req: Request, conn: ConnInfo) => {
    for (const hook of allHooks) {
      const res = await hook(req, conn).catch((e: unknown) => errorResponse(e, ctx, { method: req.method, path: new URL(req.url).pathname }));
      if (res) return res;
    }
    return app.fetch(req, { conn });
  }) as Handler;
  handler.admin = admin;
  return handler;
}

/**
 * Client certificates already verified against the user CA, by the SHA-256 of their
 * DER. A keep-alive client presents the same certificate on every request; checking
 * its signature each time was a fifth of such a request's CPU. Only the signature
 * check is cached: validity is re-checked against the clock on every hit, and locks
 * and generations are looked up per request as before.
 */
export class VerifiedCertCache {
  private readonly entries = new Map<string, { auth: Authenticated; notBefore: Date }>();

  constructor(private readonly maxEntries = 10_000) {}

  private key(der: Uint8Array): string {
    return createHash("sha256").update(der).digest("base64");
  }

  get(der: Uint8Array, now: Date): Authenticated | undefined {
    const k = this.key(der);
    const e = this.entries.get(k);
    if (!e) return undefined;
    if (now.getTime() >= e.auth.notAfter.getTime() || now.getTime() < e.notBefore.getTime()) {
      // let the full check give the precise refusal (EXPIRED with the time)
      this.entries.delete(k);
      return undefined;
    }
    return e.auth;
  }

  put(der: Uint8Array, auth: Authenticated, notBefore: Date): void {
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(this.key(der), { auth, notBefore });
  }
}

/** Maps any thrown value to an error response, for Hono's routes and the hooks outside it alike. */
export function errorResponse(e: unknown, ctx: AuthContext, where: { method?: string; path?: string } = {}): Response {
  if (e instanceof AppError) {
    if (e.code === "INTERNAL") ctx.log.error("Internal error", { ...where, error: e });
    return Response.json(errorBody(e), { status: STATUS_BY_CODE[e.code] });
  }
  // Internals never reach a client: log the cause, answer with a code and a safe message.
  ctx.log.error("Unhandled error", { ...where, error: errorMessage(e), stack: (e as Error)?.stack });
  return Response.json(errorBody(new AppError("INTERNAL", "Internal error: the auth service logged the details")), { status: 500 });
}

/** Reads a JSON body of at most MAX_BODY_BYTES; BAD_PARAMETER for anything else. */
export async function readJson(req: Request): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw new AppError("TOO_LARGE", `Request body too large: at most ${MAX_BODY_BYTES} bytes`);
  const text = await req.text();
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) throw new AppError("TOO_LARGE", `Request body too large: at most ${MAX_BODY_BYTES} bytes`);
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
