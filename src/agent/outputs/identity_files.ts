/**
 * The files of an identity output, rendered from a key and the certificates issued
 * for it: what OpenSSH, OpenSSL and machine-id's own tools read. Pure text, so the
 * kubernetes output reuses it and tests check it with the real tools.
 */

import { join } from "node:path";
import { badParameter } from "../../lib/errors.ts";
import type { Certs } from "../../protocol/index.ts";
import { formatIdentityFile } from "../../protocol/index.ts";

/** File names of an identity output. */
export const IDENTITY_FILES = {
  key: "key",
  publicKey: "key.pub",
  tlsCert: "tlscert",
  sshCert: "key-cert.pub",
  tlsCaCerts: "tlscacerts",
  sshCaCerts: "sshcacerts",
  knownHosts: "known_hosts",
  sshConfig: "ssh_config",
  identity: "identity",
} as const;

export interface IdentityFilesInput {
  /** PKCS#8 PEM private key: OpenSSH and OpenSSL both read it. */
  keyPem: string;
  /** The key's OpenSSH public key line. */
  publicKeyLine: string;
  certs: Certs;
  /** Absolute directory the files land in, for the paths inside ssh_config; bare names when absent. */
  dir?: string;
  /** Auth service address, recorded in the combined identity file. */
  authServer?: string;
  botName?: string;
  sshConfig: boolean;
}

const withNewline = (s: string) => (s.endsWith("\n") ? s : s + "\n");

/** `@cert-authority` known_hosts lines for the host CA keys (the service sends them in that form already). */
export function knownHostsLines(hostCaKeys: string[]): string[] {
  return hostCaKeys.map((l) => l.trim()).filter(Boolean).map((l) => (l.startsWith("@cert-authority ") ? l : `@cert-authority * ${l}`));
}

/**
 * A path as an ssh_config argument: `%` starts a token in IdentityFile and friends, so
 * it is doubled; the whole is quoted for spaces. A `"` cannot be quoted at all.
 */
export function sshConfigPath(path: string): string {
  if (/["\r\n]/.test(path)) throw badParameter(`Cannot write an ssh_config for "${path}": the path contains a quote or a line break`);
  return `"${path.replace(/%/g, "%%")}"`;
}

/** An OpenSSH client config that authenticates with the output's key and certificate and trusts only the cluster's host CA. */
export function renderSshConfig(opts: { dir?: string; botName?: string; cluster: string }): string {
  if (opts.dir !== undefined && /["\r\n]/.test(opts.dir)) {
    throw badParameter(`Cannot write an ssh_config for directory "${opts.dir}": the path contains a quote or a line break`);
  }
  const file = (name: string) => sshConfigPath(opts.dir ? join(opts.dir, name) : name);
  const who = opts.botName ? ` for bot "${opts.botName}"` : "";
  return [
    `# OpenSSH client configuration written by machine-id${who}, cluster "${opts.cluster}".`,
    `# Rewritten on every renewal; use it with: ssh -F ${opts.dir ? sshConfigPath(join(opts.dir, IDENTITY_FILES.sshConfig)) : IDENTITY_FILES.sshConfig} user@host`,
    "Host *",
    `    IdentityFile ${file(IDENTITY_FILES.key)}`,
    `    CertificateFile ${file(IDENTITY_FILES.sshCert)}`,
    "    IdentitiesOnly yes",
    "    IdentityAgent none",
    `    UserKnownHostsFile ${file(IDENTITY_FILES.knownHosts)}`,
    "    GlobalKnownHostsFile /dev/null",
    "    StrictHostKeyChecking yes",
    "    UpdateHostKeys no",
    "",
  ].join("\n");
}

/** Every file of an identity output, by name. */
export function renderIdentityFiles(input: IdentityFilesInput): Record<string, string> {
  const { certs } = input;
  const known = knownHostsLines(certs.ssh_host_ca_keys);
  const files: Record<string, string> = {
    [IDENTITY_FILES.key]: withNewline(input.keyPem),
    [IDENTITY_FILES.publicKey]: withNewline(input.publicKeyLine.trim()),
    [IDENTITY_FILES.tlsCert]: withNewline(certs.tls_cert),
    [IDENTITY_FILES.sshCert]: withNewline(certs.ssh_cert.trim()),
    [IDENTITY_FILES.tlsCaCerts]: certs.tls_ca_certs.map(withNewline).join(""),
    [IDENTITY_FILES.sshCaCerts]: [...certs.ssh_user_ca_keys, ...certs.ssh_host_ca_keys].map((l) => withNewline(l.trim())).join(""),
    [IDENTITY_FILES.knownHosts]: known.map(withNewline).join(""),
    [IDENTITY_FILES.identity]: formatIdentityFile({
      cluster: certs.cluster_name,
      ...(input.authServer ? { authServer: input.authServer } : {}),
      keyPem: input.keyPem,
      tlsCertPem: certs.tls_cert,
      sshCert: certs.ssh_cert,
      tlsCaCertsPem: certs.tls_ca_certs,
      sshCaLines: known,
    }),
  };
  if (input.sshConfig) {
    files[IDENTITY_FILES.sshConfig] = renderSshConfig({
      cluster: certs.cluster_name,
      ...(input.dir ? { dir: input.dir } : {}),
      ...(input.botName ? { botName: input.botName } : {}),
    });
  }
  return files;
}
