/**
 * Raw client sockets for tests that watch how the service treats a connection: a TLS
 * or plain TCP connection to 127.0.0.1, and how long the server took to close one.
 */

import net from "node:net";
import tls from "node:tls";

/** Resolves with the milliseconds it took the peer to close `sock`, or rejects after `deadlineMs`. */
export function closedWithin(sock: net.Socket, deadlineMs: number): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    if (sock.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`the server kept the connection open for more than ${deadlineMs}ms`)), deadlineMs);
    sock.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - start);
    });
  });
}

/** A TLS connection that has finished its handshake (the server's certificate is not checked). */
export function tlsConnect(port: number, opts: { localAddress?: string; alpn?: string } = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      ALPNProtocols: [opts.alpn ?? "http/1.1"],
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

/** A plain TCP connection that never starts TLS; resolves once connected. */
export function tcpConnect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}
