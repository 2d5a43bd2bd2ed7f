/**
 * What the listener does with a failed TLS handshake: a plain `http://` request on the
 * TLS port is named in the log at WARN (at most once every 10 s, so a scanner cannot
 * flood the log), everything else stays at DEBUG.
 *
 * The client itself gets no answer, only a closed connection (curl: "Empty reply from
 * server"). Answering "HTTP/1.1 400 this port speaks TLS" needs the first byte before
 * the TLS layer sees it, and Bun (1.4) offers no way to do that: node:tls cannot be
 * handed a socket whose first bytes were read in JavaScript (the handshake hangs up),
 * and node:net has no MSG_PEEK. The README says what the empty reply means.
 */

import type { Logger } from "../lib/log.ts";

/** BoringSSL's reason when the first record is an HTTP request line (`SSL_R_HTTP_REQUEST`). */
const HTTP_REQUEST = "ERR_SSL_HTTP_REQUEST";
const WARN_EVERY_MS = 10_000;

/** A `tlsClientError` handler for `log`; `now` is injectable for tests. */
export function handshakeFailureLogger(log: Logger, now: () => number = Date.now): (e: Error & { code?: string }, sock?: { remoteAddress?: string }) => void {
  let lastWarn = -Infinity;
  let since = 0;
  return (e, sock) => {
    if (e.code !== HTTP_REQUEST) {
      log.debug("TLS handshake failed", { error: e.message });
      return;
    }
    since++;
    if (now() - lastWarn < WARN_EVERY_MS) return;
    log.warn("A plain http:// request reached the TLS port and was closed: clients must use https://", {
      remote_addr: sock?.remoteAddress ?? "unknown",
      count: since,
    });
    lastWarn = now();
    since = 0;
  };
}
