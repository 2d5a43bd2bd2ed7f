// kubernetes_clusters in the auth config: what it loads into, the golden round trip,
// path resolution and warnings in the check step, and each refusal's message and line.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { checkAuthConfig, loadAuthConfig, parseAuthConfig, restartOnlyChanges, sameClusterConfig, serializeAuthConfig } from "../../src/config/index.ts";
import { errorCases, golden, type ErrorCase } from "../_support/cases.ts";

const FIXTURES = join(import.meta.dir, "fixtures");

describe("auth config: kubernetes_clusters", () => {
  test("loads each cluster with its credentials and labels", async () => {
    const cfg = await loadAuthConfig(join(FIXTURES, "auth-kubernetes.yaml"));
    expect(cfg.kubernetesClusters).toEqual([
      {
        name: "example-k8s-cluster",
        server: "https://10.0.0.1:6443",
        caPath: "/etc/machine-id/k8s-ca.crt",
        insecureSkipTlsVerify: false,
        tokenPath: "/etc/machine-id/k8s-token",
        labels: { env: "prod", team: "platform" },
      },
      {
        name: "staging",
        server: "https://gateway.example.com/k8s/clusters/c-123",
        insecureSkipTlsVerify: false,
        clientCertPath: "/etc/machine-id/staging.crt",
        clientKeyPath: "/etc/machine-id/staging.key",
        labels: {},
      },
      { name: "lab", server: "https://lab.internal:6443", insecureSkipTlsVerify: true, tokenPath: "./lab-token", labels: {} },
    ]);
  });

  test("serialize is stable and round-trips", async () => {
    const cfg = await loadAuthConfig(join(FIXTURES, "auth-kubernetes.yaml"));
    const out = serializeAuthConfig(cfg);
    golden(join(FIXTURES, "auth-kubernetes.golden.yaml"), out);
    expect(parseAuthConfig(out, "again.yaml")).toEqual(cfg);
  });

  test("a config without clusters has none, and writes none", () => {
    const cfg = parseAuthConfig("version: v1\ncluster_name: c\n", "a.yaml");
    expect(cfg.kubernetesClusters).toBeUndefined();
    expect(serializeAuthConfig(cfg)).not.toContain("kubernetes_clusters");
  });

  test("check: relative paths become absolute, and skipping TLS verification is warned about", async () => {
    const checked = checkAuthConfig(await loadAuthConfig(join(FIXTURES, "auth-kubernetes.yaml")));
    expect(checked.kubernetesClusters![2]!.tokenPath).toBe(join(process.cwd(), "lab-token"));
    expect(checked.kubernetesClusters![0]!.caPath).toBe("/etc/machine-id/k8s-ca.crt");
    expect(checked.warnings).toEqual([
      `kubernetes_clusters "lab": insecure_skip_tls_verify is set, so anyone on the path to "https://lab.internal:6443" can read what the proxy forwards`,
    ]);
    expect(checkAuthConfig(checked)).toEqual(checked);
  });

  const one = (fields: string) => `version: v1\nkubernetes_clusters:\n  - name: k\n${fields}`;
  const cases: ErrorCase[] = [
    {
      name: "a server over plain HTTP",
      text: one("    server: http://10.0.0.1:8080\n    token_path: /t\n"),
      message: `Invalid URL "http://10.0.0.1:8080" for kubernetes_clusters[0].server in auth config: expected an https:// URL such as "https://10.0.0.1:6443": the proxy only talks to API servers over TLS`,
      line: 4,
    },
    {
      name: "a server that is not a URL",
      text: one("    server: 10.0.0.1:6443\n    token_path: /t\n"),
      message: `Invalid URL "10.0.0.1:6443" for kubernetes_clusters[0].server in auth config: expected an https:// URL such as "https://10.0.0.1:6443"`,
      line: 4,
    },
    {
      name: "a server URL with a query",
      text: one("    server: https://k/?x=1\n    token_path: /t\n"),
      message: `Invalid URL "https://k/?x=1" for kubernetes_clusters[0].server in auth config: expected an https:// URL such as "https://10.0.0.1:6443", without a query, fragment or credentials`,
      line: 4,
    },
    {
      name: "no credentials for the API server",
      text: one("    server: https://k:6443\n"),
      message: `Missing required field "kubernetes_clusters[0].token_path" in auth config: the proxy needs an identity allowed to impersonate: set token_path, or client_cert_path and client_key_path`,
      line: 3,
    },
    {
      name: "a token and a client certificate",
      text: one("    server: https://k:6443\n    token_path: /t\n    client_cert_path: /c\n    client_key_path: /k\n"),
      message: `Unexpected field "kubernetes_clusters[0].client_cert_path" in auth config: token_path is set: use a token or a client certificate, not both`,
      line: 6,
    },
    {
      name: "a client certificate without its key",
      text: one("    server: https://k:6443\n    client_cert_path: /c\n"),
      message: `Missing required field "kubernetes_clusters[0].client_key_path" in auth config: required with client_cert_path`,
      line: 3,
    },
    {
      name: "a CA and skipping verification",
      text: one("    server: https://k:6443\n    token_path: /t\n    ca_path: /ca\n    insecure_skip_tls_verify: true\n"),
      message: `Unexpected field "kubernetes_clusters[0].insecure_skip_tls_verify" in auth config: ca_path is set: verify the API server with it or skip verification, not both`,
      line: 7,
    },
    {
      name: "two clusters with one name",
      text: one("    server: https://a:6443\n    token_path: /t\n  - name: k\n    server: https://b:6443\n    token_path: /t\n"),
      message: `Invalid name "k" for kubernetes_clusters[1].name in auth config: another cluster has this name already`,
      line: 6,
    },
    {
      name: "a name that cannot be a path segment",
      text: "version: v1\nkubernetes_clusters:\n  - name: My Cluster\n    server: https://k:6443\n    token_path: /t\n",
      message: `Invalid name "My Cluster" for kubernetes_clusters[0].name in auth config: expected lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit`,
      line: 3,
    },
    {
      name: "a label value that is not a string",
      text: one("    server: https://k:6443\n    token_path: /t\n    labels:\n      env: [prod]\n"),
      message: `Invalid value for kubernetes_clusters[0].labels.env in auth config: expected a string, got a list`,
      line: 7,
    },
    {
      name: "a misspelt field",
      text: one("    server: https://k:6443\n    tokn_path: /t\n"),
      message: `Unknown field "kubernetes_clusters[0].tokn_path" in auth config: did you mean "token_path"?`,
      line: 5,
    },
  ];
  errorCases(cases, "auth.yaml", parseAuthConfig);
});

describe("auth config: what a reload applies", () => {
  const base = (extra = "") => checkAuthConfig(parseAuthConfig(`version: v1\ncluster_name: c\ndata_dir: /d\n${extra}`, "auth.yaml"));
  const cluster = (labels: string) => `kubernetes_clusters:\n  - {name: k, server: "https://10.0.0.1:6443", token_path: /t, labels: ${labels}}\n`;

  test("restartOnlyChanges names each changed setting a reload does not apply, never kubernetes_clusters", () => {
    expect(restartOnlyChanges(base(), base())).toEqual([]);
    expect(restartOnlyChanges(base(cluster("{a: b}")), base(cluster("{a: c}")))).toEqual([]);
    const next = checkAuthConfig(
      parseAuthConfig(
        "version: v1\ncluster_name: other\ndata_dir: /e\nlisten_addr: 0.0.0.0:4000\nca_key_algorithm: ed25519\nlimits: {max_connections: 5}\nlog: {level: debug}\naudit: {retention: 30d}\nstorage: {type: postgres, conn_string: 'postgres://u:secret@h/db'}\n",
        "auth.yaml",
      ),
    );
    const changed = restartOnlyChanges(base(), next);
    expect(changed).toEqual(["cluster_name", "data_dir", "listen_addr", "public_addr", "storage", "log", "ca_key_algorithm", "limits", "audit"]);
    expect(changed.join()).not.toContain("secret");
  });

  test("sameClusterConfig compares labels whatever their order", () => {
    const [a] = base(cluster("{x: '1', y: '2'}")).kubernetesClusters!;
    const [b] = base(cluster("{y: '2', x: '1'}")).kubernetesClusters!;
    const [c] = base(cluster("{x: '1'}")).kubernetesClusters!;
    expect(sameClusterConfig(a!, b!)).toBe(true);
    expect(sameClusterConfig(a!, c!)).toBe(false);
  });
});
