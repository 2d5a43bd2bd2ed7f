/**
 * Kubernetes in the agent: the `kubernetes` join method, the `kubernetes_secret`
 * destination and the `kubernetes` and `kubernetes/v2` outputs (builtins.ts registers them).
 */

export { kubernetesJoin, readServiceAccountToken, TOKEN_PATH_ENV, DEFAULT_JOIN_TOKEN_PATH } from "./join.ts";
export { KubernetesSecretDestination, kubernetesSecretDestination, type SecretDestinationOptions } from "./secret.ts";
export { KUBECONFIG_FILE, kubernetesOutput, serverCaPem } from "./output.ts";
export { kubernetesV2Output } from "./output_v2.ts";
export { resolveSelectors, labelsInclude, type SelectedClusters } from "./selectors.ts";
export {
  renderKubeconfig,
  renderMultiKubeconfig,
  kubeContextName,
  proxyServerUrl,
  type KubeconfigInput,
  type MultiKubeconfigInput,
  type KubeconfigCredentials,
} from "./kubeconfig.ts";
export { InClusterApi, SERVICE_ACCOUNT_DIR_ENV, DEFAULT_SERVICE_ACCOUNT_DIR, serviceAccountDir } from "./_apiclient.ts";
