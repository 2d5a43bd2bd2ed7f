/**
 * `ctl bots add NAME --format kubernetes`: seed 000's bot, join token and agent config
 * in one step. It creates the bot (and the `kubernetes` join token when it can: with
 * the cluster's JWKS, or `in_cluster`), and prints the token and a kustomize overlay of
 * deploy/kubernetes with this cluster's values — auth address, CA pin, token name, the
 * projected token's audience — so a user's remaining step is `kubectl apply -k`.
 */

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { stringify } from "yaml";
import { badParameter } from "../lib/errors.ts";
import { fsError } from "../lib/fs.ts";
import { VERSION } from "../lib/version.ts";
import type { AuthClient } from "../protocol/index.ts";

/** The placeholder seed 000's bot-token.yaml carries where the cluster's JWKS goes. */
export const JWKS_PLACEHOLDER = `{"keys":[ ...the data returned by the cluster's /openid/v1/jwks endpoint... ]}`;

// block literals (`|`) for the config and the JWKS, as people write them in manifests
const YAML_OPTIONS = { lineWidth: 0, blockQuote: "literal" } as const;

/** The options `--format kubernetes` reads, added to `bots add` by addKubernetesOptions. */
export interface KubernetesBotOptions {
  roles?: string | undefined;
  logins?: string | undefined;
  jwks?: string | undefined;
  inCluster?: boolean | undefined;
  namespace?: string | undefined;
  serviceAccount?: string | undefined;
  podAuthServer?: string | undefined;
  image?: string | undefined;
  base?: string | undefined;
  outDir?: string | undefined;
  joinMethod?: string | undefined;
}

/** Adds the options of `--format kubernetes` to the `bots add` command. */
export function addKubernetesOptions(cmd: Command): Command {
  return cmd
    .option("--jwks <file>", "kubernetes: the cluster's JWKS (kubectl get --raw /openid/v1/jwks > FILE); creates the join token")
    .option("--in-cluster", "kubernetes: the auth service runs in the same cluster and asks its API server (TokenReview); creates the join token")
    .option("--namespace <ns>", "kubernetes: the namespace the agent runs in", "default")
    .option("--service-account <name>", "kubernetes: the agent pods' service account", "tbot")
    .option("--pod-auth-server <host:port>", "kubernetes: the auth address as the pods reach it (default: the service's public_addr, else the one ctl uses)")
    .option("--image <ref>", "kubernetes: the agent image as the cluster pulls it", `machine-id:${VERSION}`)
    .option("--base <path>", "kubernetes: the kustomization base, relative to the overlay", "../../base")
    .option("--out-dir <dir>", "kubernetes: write kustomization.yaml and bot-token.yaml here instead of printing them");
}

const list = (v: string | undefined) =>
  (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

async function readJwks(path: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, "utf8")).trim();
  } catch (e) {
    throw fsError("read the cluster's JWKS (--jwks)", path, e);
  }
  let keys: unknown;
  try {
    keys = (JSON.parse(text) as { keys?: unknown }).keys;
  } catch {
    keys = undefined;
  }
  if (!Array.isArray(keys) || keys.length === 0) {
    throw badParameter(`Cannot use --jwks "${path}": it is not a JWKS with keys; save the cluster's with "kubectl get --raw /openid/v1/jwks > jwks.json" and pass --jwks jwks.json`);
  }
  return text;
}

/** The agent config the overlay puts in the tbot-config ConfigMap (deploy/kubernetes/base/tbot.yaml with values). */
export function podAgentConfig(v: { authServer: string; token: string; caPin: string }): string {
  return stringify({
    version: "v2",
    auth_server: v.authServer,
    onboarding: { join_method: "kubernetes", token: v.token, ca_pins: [v.caPin] },
    storage: { type: "memory" },
    diag_addr: "0.0.0.0:3001",
    outputs: [{ type: "identity", destination: { type: "kubernetes_secret", name: "identity-output" } }],
  });
}

/** The overlay of deploy/kubernetes/base with one cluster's values, as kustomization.yaml text. */
export function kubernetesOverlay(v: { base: string; namespace: string; image: string; audience: string; config: string }): string {
  const at = v.image.lastIndexOf(":");
  const [newName, newTag] = at > v.image.lastIndexOf("/") ? [v.image.slice(0, at), v.image.slice(at + 1)] : [v.image, "latest"];
  const doc = {
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: [v.base],
    ...(v.namespace !== "default" ? { namespace: v.namespace } : {}),
    images: [{ name: "machine-id", newName, newTag }],
    patches: [
      {
        target: { kind: "ConfigMap", name: "tbot-config" },
        patch: stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "tbot-config" }, data: { "tbot.yaml": v.config } }, YAML_OPTIONS),
      },
      {
        target: { kind: "Deployment", name: "tbot" },
        patch: stringify({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "tbot" },
          spec: {
            template: {
              spec: {
                volumes: [{ name: "join-sa-token", projected: { sources: [{ serviceAccountToken: { path: "join-sa-token", expirationSeconds: 600, audience: v.audience } }] } }],
              },
            },
          },
        }, YAML_OPTIONS),
      },
    ],
  };
  return stringify(doc, YAML_OPTIONS);
}

/**
 * Creates bot `name` (and its kubernetes join token, given --jwks or --in-cluster) and
 * prints, or writes to --out-dir, the token and the overlay.
 */
export async function addKubernetesBot(conn: { client: AuthClient; addr: string }, name: string, o: KubernetesBotOptions): Promise<void> {
  if (o.joinMethod && o.joinMethod !== "kubernetes") {
    throw badParameter(`Cannot combine --join-method "${o.joinMethod}" with --format kubernetes: the pods join with the kubernetes method`);
  }
  if (o.jwks && o.inCluster) throw badParameter("Pass --jwks or --in-cluster, not both: a kubernetes join token checks tokens one way");
  const namespace = o.namespace ?? "default";
  const serviceAccount = o.serviceAccount ?? "tbot";
  const status = await conn.client.status();
  const tokenName = `${name}-bot`;
  const jwks = o.jwks ? await readJwks(o.jwks) : undefined;
  const created = Boolean(jwks || o.inCluster);
  const logins = list(o.logins);
  const bot = {
    kind: "bot",
    version: "v1",
    metadata: { name },
    spec: { roles: list(o.roles), ...(logins.length ? { traits: [{ name: "logins", values: logins }] } : {}) },
  };
  const token = {
    kind: "token",
    version: "v2",
    metadata: { name: tokenName },
    spec: {
      roles: ["Bot"],
      bot_name: name,
      join_method: "kubernetes",
      kubernetes: {
        type: o.inCluster ? "in_cluster" : "static_jwks",
        ...(o.inCluster ? {} : { static_jwks: { jwks: `${jwks ?? JWKS_PLACEHOLDER}\n` } }),
        allow: [{ service_account: `${namespace}:${serviceAccount}` }],
      },
    },
  };
  // one request, all or nothing: a bot without its token is not left behind
  await conn.client.createResources(created ? [bot, token] : [bot]);

  const tokenHeader = created
    ? `# The join token, created: pods of service account "${namespace}:${serviceAccount}" join as bot "${name}".\n`
    : [
        `# The join token, NOT created yet: replace the JWKS placeholder with the output of`,
        `#   kubectl get --raw /openid/v1/jwks`,
        `# (the public keys your cluster signs service-account tokens with), then run`,
        `#   machine-id ctl create -f bot-token.yaml`,
        `# Or run this command again with --jwks FILE, or --in-cluster when the auth service runs in this cluster.`,
        "",
      ].join("\n");
  const config = podAgentConfig({ authServer: o.podAuthServer ?? status.public_addr ?? conn.addr, token: tokenName, caPin: status.ca_pin });
  const overlay =
    [
      `# machine-id's agent for bot "${name}": deploy/kubernetes/base with this cluster's values`,
      `# (auth address, CA pin, join token "${tokenName}", audience "${status.cluster_name}"). Apply with`,
      `#   kubectl apply -k <this directory>`,
      `# "resources" must point at deploy/kubernetes/base from here (--base).`,
      "",
    ].join("\n") + kubernetesOverlay({ base: o.base ?? "../../base", namespace, image: o.image ?? `machine-id:${VERSION}`, audience: status.cluster_name, config });
  const tokenYaml = tokenHeader + stringify(token, YAML_OPTIONS);

  if (o.outDir) {
    await mkdir(o.outDir, { recursive: true });
    for (const [file, text] of [["bot-token.yaml", tokenYaml], ["kustomization.yaml", overlay]] as const) {
      const path = join(o.outDir, file);
      try {
        await writeFile(path, text);
      } catch (e) {
        throw fsError("write", path, e);
      }
    }
    process.stdout.write(
      [
        `Bot "${name}" created${created ? `, with join token "${tokenName}"` : ""}.`,
        `Wrote ${join(o.outDir, "kustomization.yaml")} and ${join(o.outDir, "bot-token.yaml")}.`,
        created ? `Next: kubectl apply -k ${o.outDir}` : `Next: fill in the JWKS in ${join(o.outDir, "bot-token.yaml")}, machine-id ctl create -f it, then kubectl apply -k ${o.outDir}`,
        "",
      ].join("\n"),
    );
    return;
  }
  process.stdout.write(`# ---- bot-token.yaml\n${tokenYaml}---\n# ---- kustomization.yaml\n${overlay}`);
}
