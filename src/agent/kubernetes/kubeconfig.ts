/**
 * The kubeconfigs the Kubernetes outputs write. `kubernetes`: one cluster (the auth
 * service's proxy for it), one user (the output's certificate) and one context, all
 * named after the Kubernetes cluster. `kubernetes/v2`: one user named after the
 * machine-id cluster and, per Kubernetes cluster, a cluster and a context named
 * `<machine-id cluster>-<Kubernetes cluster>`, as tbot names them.
 */

import { stringify } from "yaml";
import { AUTH_SERVER_NAME, kubernetesProxyPath } from "../../protocol/index.ts";

/** The client credentials: file paths (a directory output; renewals are picked up by long-running clients) or inline PEM. */
export type KubeconfigCredentials = { certPath: string; keyPath: string } | { certPem: string; keyPem: string };

export interface KubeconfigInput {
  /** The Kubernetes cluster's name in machine-id (`kubernetes_cluster`). */
  cluster: string;
  /** `host:port` of the auth service the agent reaches. */
  authAddr: string;
  /** PEM CA certificate(s) the auth service's TLS certificate chains to. */
  caPem: string;
  credentials: KubeconfigCredentials;
}

/** What a kubernetes/v2 kubeconfig is made of. */
export interface MultiKubeconfigInput {
  /** The machine-id cluster's name: the user's name and the contexts' prefix. */
  clusterName: string;
  /** The Kubernetes clusters, in order; the first is the current context. May be empty. */
  kubeClusters: readonly string[];
  authAddr: string;
  caPem: string;
  credentials: KubeconfigCredentials;
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

/** The proxy URL for `cluster` at `authAddr`. */
export function proxyServerUrl(authAddr: string, cluster: string): string {
  const addr = authAddr.replace(/^https:\/\//i, "").replace(/\/+$/, "");
  return `https://${addr}${kubernetesProxyPath(cluster)}`;
}

/** The context (and cluster entry) name of Kubernetes cluster `kube` in a kubernetes/v2 kubeconfig, as tbot forms it. */
export function kubeContextName(clusterName: string, kube: string): string {
  return `${clusterName}-${kube}`;
}

function userEntry(c: KubeconfigCredentials): Record<string, string> {
  return "certPath" in c ? { "client-certificate": c.certPath, "client-key": c.keyPath } : { "client-certificate-data": b64(c.certPem), "client-key-data": b64(c.keyPem) };
}

function clusterEntry(authAddr: string, kube: string, caPem: string) {
  return {
    server: proxyServerUrl(authAddr, kube),
    "certificate-authority-data": b64(caPem),
    // The service's certificate always names this, however the agent reached it (IP, NAT, a load balancer).
    "tls-server-name": AUTH_SERVER_NAME,
  };
}

/** Renders kubeconfig YAML that kubectl and client libraries read. */
export function renderKubeconfig(input: KubeconfigInput): string {
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: input.cluster, cluster: clusterEntry(input.authAddr, input.cluster, input.caPem) }],
    users: [{ name: input.cluster, user: userEntry(input.credentials) }],
    contexts: [{ name: input.cluster, context: { cluster: input.cluster, user: input.cluster } }],
    "current-context": input.cluster,
    preferences: {},
  };
  return stringify(doc, { lineWidth: 0 });
}

/** Renders a kubernetes/v2 kubeconfig: one user, a cluster and a context per Kubernetes cluster; no current context when there are none. */
export function renderMultiKubeconfig(input: MultiKubeconfigInput): string {
  const user = input.clusterName;
  const names = input.kubeClusters.map((k) => kubeContextName(input.clusterName, k));
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: input.kubeClusters.map((k, i) => ({ name: names[i]!, cluster: clusterEntry(input.authAddr, k, input.caPem) })),
    users: [{ name: user, user: userEntry(input.credentials) }],
    contexts: names.map((name) => ({ name, context: { cluster: name, user } })),
    "current-context": names[0] ?? "",
    preferences: {},
  };
  return stringify(doc, { lineWidth: 0 });
}
