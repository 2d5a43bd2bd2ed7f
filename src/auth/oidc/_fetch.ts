/**
 * Bounded HTTPS GETs of an OIDC issuer's JSON documents (discovery, JWKS): a time
 * limit for the whole exchange, a size limit on the body read as it streams, and the
 * `Cache-Control` lifetime of the answer. Every failure is a CONNECTION_PROBLEM that
 * says which document could not be had and why: a join never fails with a 500.
 */

import { connectionProblem, errorMessage, isAppError } from "../../lib/errors.ts";
import { readCappedBytes } from "../../lib/stream.ts";

/** Largest discovery document or JWKS read; real ones are a few KiB. */
const MAX_DOCUMENT_BYTES = 1024 * 1024;
/** Default time for one fetch (connect, headers and body). */
const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
/**
 * Sets the fetch time limit in milliseconds for operators whose issuer is slow to
 * answer (and for tests that make one hang).
 */
const FETCH_TIMEOUT_ENV = "MACHINE_ID_OIDC_FETCH_TIMEOUT_MS";

/** Cache lifetimes are clamped: at least a minute (no fetch per join), at most a day. */
const MIN_MAX_AGE_MS = 60_000;
const MAX_MAX_AGE_MS = 86_400_000;
/** Lifetime when the issuer sends no usable Cache-Control. */
const DEFAULT_MAX_AGE_MS = 3_600_000;

interface FetchedJson {
  json: unknown;
  /** How long the answer may be cached, from its Cache-Control (clamped). */
  maxAgeMs: number;
}

/** The fetch time limit: $MACHINE_ID_OIDC_FETCH_TIMEOUT_MS when it is a positive whole number, else 10 s. */
export function fetchTimeoutMs(env: Record<string, string | undefined> = process.env): number {
  const v = env[FETCH_TIMEOUT_ENV];
  return v && /^\d+$/.test(v) && Number(v) > 0 ? Number(v) : DEFAULT_FETCH_TIMEOUT_MS;
}

/** The `max-age` of a Cache-Control header, clamped; `no-store`/`no-cache` count as the minimum. */
export function cacheLifetimeMs(header: string | null): number {
  if (!header) return DEFAULT_MAX_AGE_MS;
  const directives = header.toLowerCase().split(",").map((d) => d.trim());
  if (directives.includes("no-store") || directives.includes("no-cache")) return MIN_MAX_AGE_MS;
  const m = directives.map((d) => /^max-age=(\d+)$/.exec(d)).find(Boolean);
  if (!m) return DEFAULT_MAX_AGE_MS;
  return Math.min(MAX_MAX_AGE_MS, Math.max(MIN_MAX_AGE_MS, Number(m[1]) * 1000));
}

/**
 * GETs `url` (https only; redirects are not followed) and parses its JSON body.
 * `what` names the document in messages, e.g. `the JWKS of issuer "https://…"`.
 */
export async function fetchJson(url: string, what: string, opts: { timeoutMs: number; maxBytes?: number }): Promise<FetchedJson> {
  const maxBytes = opts.maxBytes ?? MAX_DOCUMENT_BYTES;
  if (!url.startsWith("https://")) throw connectionProblem(`Cannot fetch ${what}: "${url}" is not an https:// URL`);
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { signal, redirect: "error", headers: { accept: "application/json" } });
  } catch (e) {
    throw connectionProblem(`Cannot fetch ${what} from "${url}": ${reason(e, opts.timeoutMs)}`);
  }
  try {
    if (res.status !== 200) throw connectionProblem(`Cannot fetch ${what} from "${url}": it answered HTTP ${res.status}`);
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > maxBytes) throw connectionProblem(`Cannot fetch ${what} from "${url}": its answer of ${declared} bytes is over the limit of ${maxBytes}`);
    const body = await readCappedBytes(res.body, maxBytes, () => connectionProblem(`Cannot fetch ${what} from "${url}": its answer is over the limit of ${maxBytes} bytes`));
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(body));
    } catch {
      throw connectionProblem(`Cannot use ${what} from "${url}": the answer is not JSON`);
    }
    return { json, maxAgeMs: cacheLifetimeMs(res.headers.get("cache-control")) };
  } catch (e) {
    if (isAppError(e)) throw e;
    throw connectionProblem(`Cannot fetch ${what} from "${url}": ${reason(e, opts.timeoutMs)}`);
  } finally {
    // a body left unread (error status, over the limit) would keep the connection busy
    void res.body?.cancel().catch(() => {});
  }
}

function reason(e: unknown, timeoutMs: number): string {
  const name = (e as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError") return `no complete answer within ${timeoutMs} ms`;
  return errorMessage(e);
}
