/**
 * What the end-to-end tests of the Kubernetes proxy share: running kubectl (and other
 * tools) with a HOME of the test's own, the lines of one `kubernetes_clusters` entry,
 * an agent config with one kubernetes/v2 output, and the contexts of the kubeconfig it
 * writes.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";

/** kubectl and other tools, run with HOME (and kubectl's cache) in `home()`. */
export function kubeTools(home: () => string) {
  const tool = async (cmd: string[]): Promise<{ code: number; out: string }> => {
    const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: home() } });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out: out + err };
  };
  const kubectl = (kubeconfig: string, ...args: string[]) => tool(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(home(), "kube-cache"), ...args]);
  return { tool, kubectl };
}

/** One entry of `kubernetes_clusters` in auth.yaml, as lines. */
export function clusterYaml(c: { name: string; server: string; caPath: string; tokenPath: string; labels: Record<string, string> }): string[] {
  return [`  - name: ${c.name}`, `    server: ${c.server}`, `    ca_path: ${c.caPath}`, `    token_path: ${c.tokenPath}`, `    labels: ${JSON.stringify(c.labels)}`];
}

/** A tbot v2 config joining with `token` and writing one kubernetes/v2 output to `outDir`, renewing every 2 s. */
export function v2AgentYaml(o: { authAddr: string; token: string; caPin: string; outDir: string; credentialTtl: string; selectors: string[] }): string {
  return [
    "version: v2",
    `auth_server: "${o.authAddr}"`,
    "onboarding:",
    "  join_method: token",
    `  token: "${o.token}"`,
    `  ca_pins: ["${o.caPin}"]`,
    "storage: {type: memory}",
    `credential_ttl: ${o.credentialTtl}`,
    "renewal_interval: 2s",
    "outputs:",
    "  - type: kubernetes/v2",
    "    destination:",
    "      type: directory",
    `      path: ${o.outDir}`,
    "    selectors:",
    ...o.selectors.map((s) => `      - ${s}`),
    "",
  ].join("\n");
}

/** The context names of the kubeconfig at `path`; none while it is not written. */
export async function kubeconfigContexts(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text ? ((parseYaml(text).contexts ?? []) as { name: string }[]).map((c) => c.name) : [];
}
