/**
 * The `kubernetes` output: certificates issued for one Kubernetes cluster (the auth
 * service puts the bot's Kubernetes users and groups in them) written as the identity
 * files plus `kubeconfig.yaml`, which sends kubectl through the auth service's proxy.
 */

import { join } from "node:path";
import { parseCertificate } from "../../crypto/index.ts";
import { AppError } from "../../lib/errors.ts";
import type { Certs } from "../../protocol/index.ts";
import { IDENTITY_FILES, issueIdentityFiles, outputName, type Output, type OutputBuilder } from "../outputs/index.ts";
import { renderKubeconfig } from "./kubeconfig.ts";

/** The kubeconfig's file name, as tbot writes it. */
export const KUBECONFIG_FILE = "kubeconfig.yaml";

/** The CA certificates that sign the auth service's own certificate: all but the one that signed the client certificate. */
export function serverCaPem(certs: Certs): string {
  const clientIssuer = parseCertificate(certs.tls_cert).issuerCommonName;
  const others = certs.tls_ca_certs.filter((pem) => parseCertificate(pem).subjectCommonName !== clientIssuer);
  const chosen = others.length > 0 ? others : certs.tls_ca_certs;
  return chosen.map((p) => (p.endsWith("\n") ? p : p + "\n")).join("");
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
        const id = deps.identity();
        if (!id) throw new AppError("BAD_PARAMETER", "The bot has no identity yet: it must join before outputs can be written");
        const { files, certs, keyPem } = await issueIdentityFiles(deps, destination, { roles: config.roles, sshConfig: false, kubernetesCluster: cluster });
        // A directory's files are referenced by path, so clients that reload them see renewals;
        // elsewhere (a Secret mounted at an unknown path) the credentials are inline.
        const credentials = destination.path
          ? { certPath: join(destination.path, IDENTITY_FILES.tlsCert), keyPath: join(destination.path, IDENTITY_FILES.key) }
          : { certPem: certs.tls_cert, keyPem };
        files[KUBECONFIG_FILE] = renderKubeconfig({ cluster, authAddr: id.authServer, caPem: serverCaPem(certs), credentials });
        await destination.writeAll(files);
        deps.log.info("Generated identity for Kubernetes cluster", { kubernetes_cluster: cluster, destination: destination.description });
      },
    };
  },
};
