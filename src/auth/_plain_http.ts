/**
 * What the listener does with a failed TLS handshake: a plain `http://` request on the
 * TLS port gets a short HTTP/1.1 400 saying to use https://, and is named in the log at
 * WARN (at most once every 10 s, so a scanner cannot flood the log); every other
 * handshake failure stays at DEBUG.
 *
 * Why the answer is written to the socket's file descriptor: by the time the TLS layer
 * reports the failure, the request's first bytes are consumed, and Bun (1.4) offers no
 * way to look at them earlier (node:tls cannot be handed a socket whose first bytes were
 * read in JavaScript, node:net has no MSG_PEEK). BoringSSL does recognise the case
 * (`SSL_R_HTTP_REQUEST`), and the connection's TCP socket is still open when
 * `tlsClientError` fires, so a few plaintext bytes written straight to it reach the
 * client before the listener closes it. Only that exact error gets the answer: nothing is
 * ever written in plaintext on a connection that spoke TLS. Where the descriptor is not
 * exposed (another runtime), the client gets a closed connection as before.
 */

import { writeSync } from "node:fs";
import type { Logger } from "../lib/log.ts";

/** BoringSSL's reason when the first record is an HTTP request line (`SSL_R_HTTP_REQUEST`). */
const HTTP_REQUEST = "ERR_SSL_HTTP_REQUEST";
const WARN_EVERY_MS = 10_000;
const BODY = "This port speaks TLS: use https:// (the auth service has no plain-HTTP port)\n";
const ANSWER = `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(BODY)}\r\nConnection: close\r\n\r\n${BODY}`;

/** The socket as `tlsClientError` hands it over: its address, and Bun's native handle. */
interface FailedSocket {
  remoteAddress?: string;
  _handle?: { fd?: unknown };
}

/** Writes the plaintext 400 to the connection's descriptor; false where that is not possible. */
function answerPlainHttp(sock: FailedSocket | undefined): boolean {
  const fd = sock?._handle?.fd;
  if (typeof fd !== "number" || fd < 0) return false;
  try {
    // A few hundred bytes on a fresh connection fit in the socket's send buffer: the
    // non-blocking write either takes them whole or fails, and a failure loses nothing.
    return writeSync(fd, ANSWER) === Buffer.byteLength(ANSWER);
  } catch {
    return false;
  }
}

/** A `tlsClientError` handler for `log`; `now` is injectable for tests. */
export function handshakeFailureLogger(log: Logger, now: () => number = Date.now): (e: Error & { code?: string }, sock?: FailedSocket) => void {
  let lastWarn = -Infinity;
  let since = 0;
  return (e, sock) => {
    if (e.code !== HTTP_REQUEST) {
      log.debug("TLS handshake failed", { error: e.message });
      return;
    }
    const answered = answerPlainHttp(sock);
    since++;
    if (now() - lastWarn < WARN_EVERY_MS) return;
    log.warn("A plain http:// request reached the TLS port: clients must use https://", {
      remote_addr: sock?.remoteAddress ?? "unknown",
      answered: answered ? "400" : "closed",
      count: since,
    });
    lastWarn = now();
    since = 0;
  };
}
