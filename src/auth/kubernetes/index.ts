/**
 * Kubernetes in the auth service: the clusters it proxies and the proxy itself (the
 * `kubernetes` join method is in auth/join/kubernetes.ts).
 */

export { KubernetesClusters, type ClusterChanges } from "./clusters.ts";
export { kubernetesProxy } from "./proxy.ts";
export { kubernetesUpgrade } from "./_upgrade.ts";
export { KubeSessions, DEFAULT_SESSION_LIMITS, type KubeSessionLimits } from "./_sessions.ts";
export { listKubernetesClusters } from "./_list.ts";
export { parseKubeApiRequest, roleKind, type KubeApiRequest, type ResourceRequest, type NonResourceRequest } from "./_apipath.ts";
export { authorizeRequest, allowObject, clusterAccess, type ProxyDecision } from "./_access.ts";
export { filterObject, filterListText, filterWatchStream, type ObjectCheck } from "./_filter.ts";
export { SERVICE_ACCOUNT_DIR_ENV, DEFAULT_SERVICE_ACCOUNT_DIR } from "./_upstream.ts";
