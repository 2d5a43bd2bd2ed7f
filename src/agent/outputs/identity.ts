/**
 * The `identity` output: a fresh key per renewal and non-renewable certificates for
 * the bot's roles, written as key, certificates, CA bundles, known_hosts, ssh_config
 * and the combined identity file.
 */

import { formatSshPublicKey, generateKeyPair, privateKeyToPem } from "../../crypto/index.ts";
import type { Certs } from "../../protocol/index.ts";
import { AGENT_KEY_ALGORITHM, publicKeys } from "../bot/index.ts";
import type { Destination } from "../destinations/index.ts";
import { outputName, type Output, type OutputBuilder, type OutputDeps } from "./output.ts";
import { renderIdentityFiles } from "./identity_files.ts";

export interface IssuedIdentity {
  /** The identity files, by name, ready for `destination.writeAll`. */
  files: Record<string, string>;
  certs: Certs;
  keyPem: string;
}

/**
 * What every certificate-bearing output starts with: a new key (an output's key never
 * outlives its certificates), role certificates for it, and the identity files.
 */
export async function issueIdentityFiles(
  deps: OutputDeps,
  destination: Destination,
  opts: { roles: string[]; sshConfig: boolean; kubernetesCluster?: string; kubernetesClusters?: string[] },
): Promise<IssuedIdentity> {
  const key = generateKeyPair(AGENT_KEY_ALGORITHM);
  const res = await deps.botCerts({
    ...publicKeys(key),
    ttl_seconds: Math.max(1, Math.round(deps.credentialTtlMs / 1000)),
    ...(opts.roles.length > 0 ? { roles: opts.roles } : {}),
    ...(opts.kubernetesCluster ? { kubernetes_cluster: opts.kubernetesCluster } : {}),
    ...(opts.kubernetesClusters?.length ? { kubernetes_clusters: opts.kubernetesClusters } : {}),
  });
  const id = deps.identity();
  const keyPem = privateKeyToPem(key.privateKey);
  const files = renderIdentityFiles({
    keyPem,
    publicKeyLine: formatSshPublicKey(key.publicKey),
    certs: res.certs,
    ...(destination.path ? { dir: destination.path } : {}),
    ...(id ? { authServer: id.authServer, botName: id.botName } : {}),
    sshConfig: opts.sshConfig,
  });
  return { files, certs: res.certs, keyPem };
}

/** The `identity` output type (registered in builtins.ts). */
export const identityOutput: OutputBuilder<"identity"> = {
  type: "identity",
  build(config, deps, index): Output {
    const destination = deps.destination(config.destination);
    return {
      name: outputName("identity", destination, index),
      destination,
      async init() {
        await destination.init();
        await destination.verify();
      },
      async render() {
        const { files } = await issueIdentityFiles(deps, destination, { roles: config.roles, sshConfig: config.sshConfig });
        await destination.writeAll(files);
      },
    };
  },
};
