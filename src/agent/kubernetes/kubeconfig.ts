/**
 * The kubeconfig a kubernetes output writes: one cluster (the auth service's proxy
 * for it), one user (the output's certificate) and one context, all named after the
 * Kubernetes cluster, selected as the current context.
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

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

/** The proxy URL for `cluster` at `authAddr`. */
export function proxyServerUrl(authAddr: string, cluster: string): string {
  const addr = authAddr.replace(/^https:\/\//i, "").replace(/\/+$/, "");
  return `https://${addr}${kubernetesProxyPath(cluster)}`;
}

/** Renders kubeconfig YAML that kubectl and client libraries read. */
export function renderKubeconfig(input: KubeconfigInput): string {
  const c = input.credentials;
  const user = "certPath" in c ? { "client-certificate": c.certPath, "client-key": c.keyPath } : { "client-certificate-data": b64(c.certPem), "client-key-data": b64(c.keyPem) };
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: input.cluster,
        cluster: {
          server: proxyServerUrl(input.authAddr, input.cluster),
          "certificate-authority-data": b64(input.caPem),
          // The service's certificate always names this, however the agent reached it (IP, NAT, a load balancer).
          "tls-server-name": AUTH_SERVER_NAME,
        },
      },
    ],
    users: [{ name: input.cluster, user }],
    contexts: [{ name: input.cluster, context: { cluster: input.cluster, user: input.cluster } }],
    "current-context": input.cluster,
    preferences: {},
  };
  return stringify(doc, { lineWidth: 0 });
}
