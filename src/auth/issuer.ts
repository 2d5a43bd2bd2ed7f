/**
 * Certificate issuance: turns a decided identity and the caller's public keys into
 * an X.509 client certificate and an OpenSSH user certificate, both from the user CA.
 * Deciding *what* to issue (roles, TTL caps, locks) happens before this is called.
 */

import { randomBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { issueCertificate, parsePublicKey, signSshCertificate, type CertIdentity } from "../crypto/index.ts";
import { badParameter } from "../lib/errors.ts";
import type { Certs, KeyRequest } from "../protocol/index.ts";
import { exportAuthority, type Authorities, type Authority } from "./authorities.ts";

/**
 * The principal a renewable bot identity's SSH certificate carries. An OpenSSH
 * certificate with no principals is valid for *every* user, so the internal
 * identity gets one that no Unix account can have (it starts with "-").
 */
export const INTERNAL_PRINCIPAL = "-machine-id-internal";

/** Backdate certificates a little so a client with a slightly slow clock can use them at once. */
const CLOCK_SKEW_MS = 60_000;

export interface IssueRequest {
  identity: CertIdentity;
  publicTlsKey: KeyObject;
  publicSshKey: KeyObject;
  notAfter: Date;
  now: Date;
}

/**
 * Parses and checks the two public keys of a request; BAD_PARAMETER names the bad field.
 * Agents send one key in two encodings, and then both fields get the same KeyObject.
 */
export function requestKeys(req: KeyRequest): { tls: KeyObject; ssh: KeyObject } {
  const tls = parsePublicKey(req.public_tls_key, "public_tls_key");
  return { tls, ssh: parsePublicKey(req.public_ssh_key, "public_ssh_key", tls) };
}

/** A random positive 64-bit serial, shared by both certificates so audit can tie them together. */
function newSerial(): bigint {
  const b = randomBytes(8);
  b[0]! &= 0x7f;
  return b.readBigUInt64BE();
}

/** The SSH CA lines every answer carries, for the authority objects they were made from. */
interface CaLines {
  user: Authority;
  host: Authority;
  cluster: string;
  sshUser: string;
  sshHost: string;
}

const caLinesCache = new WeakMap<Authorities, CaLines>();

/**
 * The exported SSH CA lines, made once per loaded authorities rather than per answer
 * (the known_hosts line is re-encoded and re-checked each time it is built). An entry
 * is rebuilt if the authorities object is given other authorities or cluster name.
 */
function caLines(auth: Authorities): CaLines {
  const hit = caLinesCache.get(auth);
  if (hit && hit.user === auth.user && hit.host === auth.host && hit.cluster === auth.cluster) return hit;
  const lines: CaLines = {
    user: auth.user,
    host: auth.host,
    cluster: auth.cluster,
    sshUser: exportAuthority(auth, "ssh-user").trim(),
    sshHost: exportAuthority(auth, "ssh-host").trim(),
  };
  caLinesCache.set(auth, lines);
  return lines;
}

/** Issues the X.509 and SSH certificates for `identity`. */
export async function issueCerts(auth: Authorities, req: IssueRequest): Promise<{ certs: Certs; serial: string }> {
  const { identity, now, notAfter } = req;
  if (notAfter.getTime() <= now.getTime()) throw badParameter("Cannot issue a certificate that is already expired");
  const notBefore = new Date(now.getTime() - CLOCK_SKEW_MS);
  const serial = newSerial();
  const serialHex = serial.toString(16);
  const uri =
    identity.kind === "bot"
      ? `machine-id://${encodeURIComponent(auth.cluster)}/bot/${encodeURIComponent(identity.botName ?? identity.username)}`
      : `machine-id://${encodeURIComponent(auth.cluster)}/admin/${encodeURIComponent(identity.username)}`;
  const tlsCert = await issueCertificate({
    caCertPem: auth.user.tlsCertPem,
    caKey: auth.user.tlsKey,
    publicKey: req.publicTlsKey,
    commonName: identity.username,
    organization: [auth.cluster],
    uris: [uri],
    notBefore,
    notAfter,
    usage: "client",
    identity,
    serialNumber: serialHex,
  });
  const principals = identity.renewable || identity.logins.length === 0 ? [INTERNAL_PRINCIPAL] : identity.logins;
  const sshCert = signSshCertificate({
    caKey: auth.user.sshKey.privateKey,
    publicKey: req.publicSshKey,
    certType: "user",
    keyId: `${identity.username}${identity.botInstanceId ? `/${identity.botInstanceId}` : ""}`,
    principals,
    validAfter: notBefore,
    validBefore: notAfter,
    serial,
  });
  const lines = caLines(auth);
  return {
    serial: serialHex,
    certs: {
      tls_cert: tlsCert,
      ssh_cert: sshCert,
      tls_ca_certs: [auth.user.tlsCertPem, auth.host.tlsCertPem],
      ssh_user_ca_keys: [lines.sshUser],
      ssh_host_ca_keys: [lines.sshHost],
      cluster_name: auth.cluster,
      valid_after: notBefore.toISOString(),
      valid_before: notAfter.toISOString(),
    },
  };
}

/** A fresh random id for bot instances, challenges and generated tokens. */
export function randomId(bytes = 16): string {
  return randomBytes(bytes).toString("hex");
}

/** Default lifetime of a host certificate: hosts are re-certified by whoever runs sshd. */
export const DEFAULT_HOST_CERT_TTL_MS = 30 * 86_400_000;

/** Certifies an SSH host key with the host CA for `principals` (host names or addresses). */
export function signHostKey(auth: Authorities, publicKey: KeyObject, principals: string[], now: Date, notAfter: Date): string {
  return signSshCertificate({
    caKey: auth.host.sshKey.privateKey,
    publicKey,
    certType: "host",
    keyId: `host/${principals[0]}`,
    principals,
    validAfter: new Date(now.getTime() - CLOCK_SKEW_MS),
    validBefore: notAfter,
    serial: newSerial(),
  });
}
