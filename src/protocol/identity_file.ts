/**
 * The combined identity file: one file with a private key, its certificates and
 * the CA material to use them, readable by ctl (`--identity`) and by people. The
 * agent writes it as the `identity` artifact; the auth service writes one for the
 * local admin. Format: `# key: value` header lines, then PEM blocks and OpenSSH lines.
 */

import { badParameter } from "../lib/errors.ts";
import { pemDecodeAll, pemEncode } from "../lib/pem.ts";

export interface IdentityFile {
  cluster?: string;
  /** Address of the auth service this identity talks to, `host:port`. */
  authServer?: string;
  /** PKCS#8 PEM private key. */
  keyPem: string;
  tlsCertPem: string;
  sshCert?: string;
  /** CA certificates (PEM): the user CA and the host CA. */
  tlsCaCertsPem: string[];
  /** `@cert-authority` / plain CA lines. */
  sshCaLines: string[];
}

/** The admin identity's file name in the auth service's data directory (ctl looks for it there). */
export const ADMIN_IDENTITY_FILE = "admin-identity";

const HEADER = "# machine-id identity file: keep it secret (mode 0600)";

/** Serialises an identity file. The output ends with a newline. */
export function formatIdentityFile(id: IdentityFile): string {
  const lines = [HEADER];
  if (id.cluster) lines.push(`# cluster: ${id.cluster}`);
  if (id.authServer) lines.push(`# auth_server: ${id.authServer}`);
  let out = lines.join("\n") + "\n";
  out += id.keyPem.endsWith("\n") ? id.keyPem : id.keyPem + "\n";
  out += id.tlsCertPem.endsWith("\n") ? id.tlsCertPem : id.tlsCertPem + "\n";
  if (id.sshCert) out += id.sshCert.trim() + "\n";
  for (const ca of id.tlsCaCertsPem) out += ca.endsWith("\n") ? ca : ca + "\n";
  for (const l of id.sshCaLines) out += l.trim() + "\n";
  return out;
}

/** Parses an identity file; the first certificate is the identity's own, the rest are CAs. */
export function parseIdentityFile(text: string, file = "identity file"): IdentityFile {
  const header: Record<string, string> = {};
  const sshLines: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const m = /^#\s*([a-z_]+):\s*(.+)$/.exec(line);
    if (m) header[m[1]!] = m[2]!.trim();
    else if (/^(@cert-authority |ssh-|ecdsa-sha2-)/.test(line)) sshLines.push(line);
  }
  const blocks = pemDecodeAll(text);
  const key = blocks.find((b) => b.label === "PRIVATE KEY" || b.label === "EC PRIVATE KEY");
  const certs = blocks.filter((b) => b.label === "CERTIFICATE");
  if (!key) throw badParameter(`Cannot read ${file}: it holds no private key`);
  if (certs.length === 0) throw badParameter(`Cannot read ${file}: it holds no certificate`);
  const sshCert = sshLines.find((l) => /-cert-v01@openssh\.com /.test(l));
  const out: IdentityFile = {
    keyPem: pemEncode(key.label, key.der),
    tlsCertPem: pemEncode("CERTIFICATE", certs[0]!.der),
    tlsCaCertsPem: certs.slice(1).map((c) => pemEncode("CERTIFICATE", c.der)),
    sshCaLines: sshLines.filter((l) => l !== sshCert),
  };
  if (sshCert) out.sshCert = sshCert;
  if (header.cluster) out.cluster = header.cluster;
  if (header.auth_server) out.authServer = header.auth_server;
  return out;
}
