/**
 * The `kubernetes` output: certificates issued for one Kubernetes cluster (the auth
 * service puts the bot's Kubernetes users and groups in them) written as the identity
 * files plus `kubeconfig.yaml`, which sends kubectl through the auth service's proxy.
 */

import { join } from "node:path";
import { parseCertificate } from "../../crypto/index.ts";
import { AppError } from "../../lib/errors.ts";
import type { Certs } from "../../protocol/index.ts";
import type { Destination } from "../destinations/index.ts";
import { IDENTITY_FILES, issueIdentityFiles, outputName, type Output, type OutputBuilder, type OutputDeps } from "../outputs/index.ts";
import { renderKubeconfig, type KubeconfigCredentials } from "./kubeconfig.ts";

/** The kubeconfig's file name, as tbot writes it. */
export const KUBECONFIG_FILE = "kubeconfig.yaml";

/** The CA certificates that sign the auth service's own certificate: all but the one that signed the client certificate. */
export function serverCaPem(certs: Certs): string {
  const clientIssuer = parseCertificate(certs.tls_cert).issuerCommonName;
  const others = certs.tls_ca_certs.filter((pem) => parseCertificate(pem).subjectCommonName !== clientIssuer);
  const chosen = others.length > 0 ? others : certs.tls_ca_certs;
  return chosen.map((p) => (p.endsWith("\n") ? p : p + "\n")).join("");
}

/** The bot's current identity, whose auth service the kubeconfig points at; the bot must have joined. */
export function joinedIdentity(deps: OutputDeps): NonNullable<ReturnType<OutputDeps["identity"]>> {
  const id = deps.identity();
  if (!id) throw new AppError("BAD_PARAMETER", "The bot has no identity yet: it must join before outputs can be written");
  return id;
}

/**
 * The client credentials a kubeconfig names: a directory's files by path, so clients that
 * reload them see renewals; inline elsewhere (a Secret mounted at an unknown path) or when
 * `inline` is asked for (kubernetes/v2's disable_exec_plugin).
 */
export function kubeconfigCredentials(destination: Destination, certs: Certs, keyPem: string, inline = false): KubeconfigCredentials {
  return destination.path && !inline
    ? { certPath: join(destination.path, IDENTITY_FILES.tlsCert), keyPath: join(destination.path, IDENTITY_FILES.key) }
    : { certPem: certs.tls_cert, keyPem };
}

/** The `kubernetes` output type (registered in builtins.ts). */
export const kubernetesOutput: OutputBuilder<"kubernetes"> = {
  type: "kubernetes",
  build(config, deps, index): Output {
    const destination = deps.destination(config.destination);
    const cluster = config.kubernetesCluster;
    return {
      name: outputName("kubernetes", destination, index),
      destination,
      async init() {
        await destination.init();
        await destination.verify();
      },
      async render() {
        const id = joinedIdentity(deps);
        const { files, certs, keyPem } = await issueIdentityFiles(deps, destination, { roles: config.roles, sshConfig: false, kubernetesCluster: cluster });
        files[KUBECONFIG_FILE] = renderKubeconfig({ cluster, authAddr: id.authServer, caPem: serverCaPem(certs), credentials: kubeconfigCredentials(destination, certs, keyPem) });
        await destination.writeAll(files);
        deps.log.info("Generated identity for Kubernetes cluster", { kubernetes_cluster: cluster, destination: destination.description });
      },
    };
  },
};
