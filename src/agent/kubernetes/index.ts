/**
 * Kubernetes in the agent: the `kubernetes` join method, the `kubernetes_secret`
 * destination and the `kubernetes` output (builtins.ts registers all three).
 */

export { kubernetesJoin, readServiceAccountToken, TOKEN_PATH_ENV, DEFAULT_JOIN_TOKEN_PATH } from "./join.ts";
export { KubernetesSecretDestination, kubernetesSecretDestination, type SecretDestinationOptions } from "./secret.ts";
export { KUBECONFIG_FILE, kubernetesOutput, serverCaPem } from "./output.ts";
export { renderKubeconfig, proxyServerUrl, type KubeconfigInput, type KubeconfigCredentials } from "./kubeconfig.ts";
export { InClusterApi, SERVICE_ACCOUNT_DIR_ENV, DEFAULT_SERVICE_ACCOUNT_DIR, serviceAccountDir } from "./_apiclient.ts";
