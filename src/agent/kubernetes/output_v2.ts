/**
 * The `kubernetes/v2` output (tbot's newer form): one certificate and one kubeconfig
 * for every Kubernetes cluster its selectors pick among those the bot's roles reach.
 * The selectors are resolved again on every renewal, so a cluster added to (or removed
 * from) the auth service, or a role change, shows in the kubeconfig after the next one.
 */

import { issueIdentityFiles, outputName, type Output, type OutputBuilder } from "../outputs/index.ts";
import { renderMultiKubeconfig } from "./kubeconfig.ts";
import { KUBECONFIG_FILE, joinedIdentity, kubeconfigCredentials, serverCaPem } from "./output.ts";
import { formatLabels, resolveSelectors } from "./selectors.ts";

/** The `kubernetes/v2` output type (registered in builtins.ts). */
export const kubernetesV2Output: OutputBuilder<"kubernetes/v2"> = {
  type: "kubernetes/v2",
  build(config, deps, index): Output {
    const destination = deps.destination(config.destination);
    const name = outputName("kubernetes/v2", destination, index);
    /** The clusters last written, to log what changed. */
    let written: string[] | undefined;
    return {
      name,
      destination,
      async init() {
        await destination.init();
        await destination.verify();
      },
      async render() {
        const id = joinedIdentity(deps);
        const selected = resolveSelectors(config.selectors, await deps.kubernetesClusters());
        for (const i of selected.unmatched) {
          const sel = config.selectors[i]!;
          deps.log.warn("A selector matches no Kubernetes cluster the bot's roles reach", { output: name, selector: `selectors[${i}]`, labels: "labels" in sel ? formatLabels(sel.labels) : "" });
        }
        if (selected.names.length === 0) {
          deps.log.warn("No Kubernetes cluster matches the output's selectors: the kubeconfig has no contexts until one does", { output: name });
        }
        const { files, certs, keyPem } = await issueIdentityFiles(deps, destination, { roles: [], sshConfig: false, kubernetesClusters: selected.names });
        files[KUBECONFIG_FILE] = renderMultiKubeconfig({
          clusterName: certs.cluster_name,
          kubeClusters: selected.names,
          authAddr: id.authServer,
          caPem: serverCaPem(certs),
          // disable_exec_plugin: tbot's switch between its exec plugin and embedded credentials
          credentials: kubeconfigCredentials(destination, certs, keyPem, config.disableExecPlugin),
        });
        await destination.writeAll(files);
        const added = selected.names.filter((n) => !written?.includes(n));
        const removed = (written ?? []).filter((n) => !selected.names.includes(n));
        const fields = { kubernetes_clusters: selected.names.join(",") || "none", destination: destination.description };
        if (written === undefined) deps.log.info("Generated identity for Kubernetes clusters", fields);
        else if (added.length || removed.length) {
          deps.log.info("The selected Kubernetes clusters changed; kubeconfig rewritten", { ...fields, added: added.join(","), removed: removed.join(",") });
        }
        written = selected.names;
      },
    };
  },
};
