/**
 * The typed HTTPS client agents and ctl use to talk to the auth service. TLS is
 * always verified against the cluster's own CA; a client certificate, when given,
 * is the caller's identity.
 */

import * as z from "zod";
import { AppError, connectionProblem, errorMessage, isAppError, trustFailure } from "../lib/errors.ts";
import { readCapped } from "../lib/stream.ts";
import { errorFromBody } from "./errors.ts";
import {
  AddBotResponse,
  AuditEvent,
  BotCertsResponse,
  KubernetesClustersResponse,
  BotInstance,
  BoundKeypairBeginResponse,
  JoinResponse,
  Lock,
  PingResponse,
  RenewResponse,
  ROUTES,
  SignHostResponse,
  StatusResponse,
  decode,
  type AddBotRequest,
  type AddTokenRequest,
  type BotCertsRequest,
  type BoundKeypairBeginRequest,
  type BoundKeypairSolveRequest,
  type CAExportType,
  type JoinRequest,
  type LockRequest,
  type RenewRequest,
  type SignHostRequest,
} from "./messages.ts";

/**
 * The DNS name every auth service certificate carries besides its real host names.
 * Clients verify the server against it: trust comes from the pinned cluster CA, so
 * agents can reach the service by IP, through NAT or a load balancer, and still
 * check that the certificate was issued to an auth service of *this* cluster.
 */
export const AUTH_SERVER_NAME = "auth.machine-id.cluster.local";

export interface ClientTLS {
  /** CA certificates (PEM) the server's certificate must chain to. */
  caCertsPem: string[];
  /** Client certificate and key (PEM) presented for mTLS. */
  certPem?: string;
  keyPem?: string;
}

export interface AuthClientOptions {
  /** `host:port` or `https://host:port`. */
  addr: string;
  tls: ClientTLS;
  timeoutMs?: number;
}

/** Normalises `host:port` / `https://host:port/` to an https base URL without a trailing slash. */
export function baseUrl(addr: string): string {
  const a = addr.trim().replace(/\/+$/, "");
  if (/^https:\/\//i.test(a)) return a;
  if (/^[a-z]+:\/\//i.test(a)) throw new AppError("BAD_PARAMETER", `Invalid auth server address "${addr}": only https is supported`);
  return `https://${a}`;
}

interface RequestOptions<S extends z.ZodType> {
  body?: unknown;
  query?: Record<string, string | undefined>;
  schema?: S;
  /** Return the raw text instead of decoding JSON. */
  text?: boolean;
  /** Close the connection after the answer (default: keep it for the next request). */
  keepAlive?: boolean;
}

/** A client bound to one address and one TLS identity. */
export class AuthClient {
  readonly url: string;

  constructor(private readonly options: AuthClientOptions) {
    this.url = baseUrl(options.addr);
  }

  /** The same server, seen with another identity (after a renewal, say). */
  withTLS(tls: ClientTLS): AuthClient {
    return new AuthClient({ ...this.options, tls });
  }

  async request<S extends z.ZodType>(method: string, path: string, opts: RequestOptions<S> = {}): Promise<z.infer<S>> {
    const url = new URL(this.url + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const { caCertsPem, certPem, keyPem } = this.options.tls;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: opts.body === undefined ? {} : { "content-type": "application/json" },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
        ...(opts.keepAlive === false ? { keepalive: false } : {}),
        tls: {
          ca: caCertsPem,
          serverName: AUTH_SERVER_NAME,
          rejectUnauthorized: true,
          ...(certPem && keyPem ? { cert: certPem, key: keyPem } : {}),
        },
      } as RequestInit);
    } catch (e) {
      throw networkError(this.options.addr, e);
    }
    const text = await res.text().catch((e) => {
      throw networkError(this.options.addr, e);
    });
    if (!res.ok) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      throw errorFromBody(res.status, body);
    }
    if (opts.text) return text as z.infer<S>;
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      throw connectionProblem(`Unexpected response from auth service at "${this.options.addr}": not JSON`);
    }
    return opts.schema ? decode(opts.schema, json, `response from ${path}`) : (json as z.infer<S>);
  }

  ping(): Promise<PingResponse> {
    return this.request("GET", ROUTES.ping, { schema: PingResponse });
  }
  exportCA(type: CAExportType): Promise<string> {
    return this.request("GET", ROUTES.exportCA, { query: { type }, text: true, schema: z.string() });
  }
  join(req: JoinRequest): Promise<JoinResponse> {
    return this.request("POST", ROUTES.join, { body: req, schema: JoinResponse });
  }
  boundKeypairBegin(req: BoundKeypairBeginRequest): Promise<BoundKeypairBeginResponse> {
    return this.request("POST", ROUTES.boundKeypairBegin, { body: req, schema: BoundKeypairBeginResponse });
  }
  boundKeypairSolve(req: BoundKeypairSolveRequest): Promise<JoinResponse> {
    return this.request("POST", ROUTES.boundKeypairSolve, { body: req, schema: JoinResponse });
  }
  renew(req: RenewRequest): Promise<RenewResponse> {
    // The answer replaces the client certificate this connection was opened with, so
    // nothing can reuse it: an idle pooled connection per renewal would only hold memory.
    return this.request("POST", ROUTES.renew, { body: req, schema: RenewResponse, keepAlive: false });
  }
  botCerts(req: BotCertsRequest): Promise<BotCertsResponse> {
    return this.request("POST", ROUTES.botCerts, { body: req, schema: BotCertsResponse });
  }
  /** The Kubernetes clusters the bot's roles reach (name and labels). */
  kubernetesClusters(): Promise<KubernetesClustersResponse> {
    return this.request("GET", ROUTES.botKubernetesClusters, { schema: KubernetesClustersResponse });
  }
  status(): Promise<StatusResponse> {
    return this.request("GET", ROUTES.status, { schema: StatusResponse });
  }
  /** One page of resources; `next` names the last one when there may be more. */
  listResourcesPage(kind: string, page: { limit?: number; startAfter?: string } = {}): Promise<{ items: unknown[]; next?: string | undefined }> {
    return this.request("GET", `${ROUTES.resources}/${encodeURIComponent(kind)}`, {
      query: { limit: page.limit === undefined ? undefined : String(page.limit), start_after: page.startAfter },
      schema: z.object({ items: z.array(z.unknown()), next: z.string().optional() }),
    });
  }
  /** Every resource of `kind`, fetched page by page. */
  async listResources(kind: string): Promise<unknown[]> {
    const all: unknown[] = [];
    let startAfter: string | undefined;
    do {
      const page = await this.listResourcesPage(kind, startAfter === undefined ? {} : { startAfter });
      all.push(...page.items);
      startAfter = page.next;
    } while (startAfter !== undefined);
    return all;
  }
  getResource(kind: string, name: string): Promise<unknown> {
    return this.request("GET", `${ROUTES.resources}/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`);
  }
  /** Creates the resources all-or-nothing; `force` replaces existing ones. */
  createResources(resources: unknown[], force = false): Promise<{ created: string[] }> {
    return this.request("POST", ROUTES.resources, {
      body: { resources, force },
      schema: z.object({ created: z.array(z.string()) }),
    });
  }
  async deleteResource(kind: string, name: string): Promise<void> {
    await this.request("DELETE", `${ROUTES.resources}/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`);
  }
  addBot(req: AddBotRequest): Promise<AddBotResponse> {
    return this.request("POST", ROUTES.bots, { body: req, schema: AddBotResponse });
  }
  addToken(req: AddTokenRequest): Promise<AddBotResponse> {
    return this.request("POST", ROUTES.tokens, { body: req, schema: AddBotResponse });
  }
  listBotInstances(bot?: string): Promise<BotInstance[]> {
    return this.request("GET", ROUTES.botInstances, { query: { bot }, schema: z.array(BotInstance) });
  }
  lock(req: LockRequest): Promise<Lock> {
    return this.request("POST", ROUTES.locks, { body: req, schema: Lock });
  }
  listLocks(): Promise<Lock[]> {
    return this.request("GET", ROUTES.locks, { schema: z.array(Lock) });
  }
  async unlock(name: string): Promise<void> {
    await this.request("DELETE", `${ROUTES.locks}/${name.split("/").map(encodeURIComponent).join("/")}`);
  }
  signHost(req: SignHostRequest): Promise<SignHostResponse> {
    return this.request("POST", ROUTES.signHost, { body: req, schema: SignHostResponse });
  }
  listEvents(q: { type?: string; since?: string; limit?: number } = {}): Promise<AuditEvent[]> {
    return this.request("GET", ROUTES.events, {
      query: { type: q.type, since: q.since, limit: q.limit === undefined ? undefined : String(q.limit) },
      schema: z.array(AuditEvent),
    });
  }
}

const TLS_ERROR_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_SIGNATURE_FAILURE",
]);

function networkError(addr: string, e: unknown): AppError {
  const code = (e as { code?: string })?.code ?? "";
  if (TLS_ERROR_CODES.has(code)) {
    return trustFailure(`Cannot verify auth service at "${addr}": its certificate does not chain to the cluster CA (${code})`, { cause: e });
  }
  if ((e as Error)?.name === "TimeoutError") return connectionProblem(`Auth service at "${addr}" did not answer in time`, { cause: e });
  if (code === "ECONNRESET") {
    // What a service at its connection cap does to one more connection (src/auth/server.ts):
    // a reason of its own, so that a caller may come back later (lib/retry.ts retryWhenAsked).
    return connectionProblem(`Cannot reach auth service at "${addr}"${portNote(addr)}: it closed the connection (at its connection cap, or restarting)`, {
      cause: e,
      details: { reason: "connection_reset" },
    });
  }
  const reason = code === "ConnectionRefused" || code === "ECONNREFUSED" ? "connection refused" : errorMessage(e);
  return connectionProblem(`Cannot reach auth service at "${addr}"${portNote(addr)}: ${reason}`, { cause: e });
}

/** Says which port was tried when the address names none (https means 443). */
function portNote(addr: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl(addr));
  } catch {
    return "";
  }
  return url.port === "" ? ` (no port given, so port 443 was tried; the auth service listens on 3025 unless told otherwise: write host:port)` : "";
}

/**
 * The most read from a server before it is verified: a CA export is a few KiB (two
 * certificates during a rotation), a ping answer less. Without it a hostile server
 * could make the agent buffer an endless body (1 GiB pushed it to 1.6 GB of memory).
 */
export const MAX_UNVERIFIED_BYTES = 64 << 10;

/**
 * Reads the body of an answer from a server not yet verified, at most
 * MAX_UNVERIFIED_BYTES; past that the connection is dropped and TRUST_FAILURE thrown.
 */
export async function readUnverified(res: Response, what: string): Promise<string> {
  try {
    return await readCapped(res.body, MAX_UNVERIFIED_BYTES, what);
  } catch (e) {
    if (!isAppError(e, "TOO_LARGE")) throw e;
    throw trustFailure(
      `Cannot read ${what}: the answer is larger than ${MAX_UNVERIFIED_BYTES} bytes, more than any machine-id auth service sends before it is verified; the connection was closed`,
      { details: { reason: "unverified_answer_too_large", limit: MAX_UNVERIFIED_BYTES } },
    );
  }
}

/**
 * Fetches the cluster's host CA from a server not yet trusted, and returns it only
 * if it matches one of `pins`. Nothing secret is sent on this connection; every
 * later request verifies the server against the CA returned here.
 */
export async function fetchPinnedCA(addr: string, pins: string[], pinOf: (certPem: string) => string, timeoutMs = 30_000): Promise<string> {
  let text: string;
  try {
    const res = await fetch(`${baseUrl(addr)}${ROUTES.exportCA}?type=tls-host`, {
      signal: AbortSignal.timeout(timeoutMs),
      keepalive: false,
      // Deliberately unverified: the answer is checked against the pin below before it is trusted.
      tls: { rejectUnauthorized: false },
    } as RequestInit);
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw connectionProblem(`Cannot fetch the cluster CA from "${addr}": HTTP status ${res.status}`);
    }
    text = await readUnverified(res, `the cluster CA from "${addr}"`);
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw networkError(addr, e);
  }
  const certs = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
  const want = new Set(pins.map((p) => p.toLowerCase()));
  const match = certs.find((c) => want.has(pinOf(c).toLowerCase()));
  if (!match) {
    const got = certs.map((c) => pinOf(c)).join(", ") || "no certificate";
    throw trustFailure(
      `Auth service at "${addr}" is not the expected cluster: its CA pin ${got} matches none of the configured ca_pins; check the address, or take the pin from "machine-id ctl status" on that cluster's auth host and pass it as --ca-pin (onboarding.ca_pins)`,
      { details: { reason: "ca_pin_mismatch" } },
    );
  }
  return match;
}
