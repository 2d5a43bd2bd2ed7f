/**
 * From config to running parts: `start`'s config loading (file, then flags, then
 * the check), the scenario files turned into outputs, and output types and
 * destinations that register themselves and get the shared dependencies.
 */

import { describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, loadStartConfig, MemoryDestination, registerOutput, type OutputDeps } from "../../src/agent/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { agentConfig, startTestAuth, tempDir } from "./harness.ts";

import { SCENARIOS } from "../_scenarios.ts";
const PIN = "sha256:" + "1f".repeat(32);

const thrown = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
};

describe("start's config", () => {
  test("flags override the file and the result is checked", async () => {
    await using t = await tempDir();
    const file = join(t.path, "tbot.yaml");
    await writeFile(
      file,
      [
        "version: v2",
        "auth_server: file.example:3025",
        "onboarding:",
        "  token: from-file",
        `  ca_pins: ["sha256:${"00".repeat(32)}"]`,
        "renewal_interval: 20m",
        "outputs:",
        "  - type: identity",
        "    destination: {type: directory, path: /opt/from-file}",
        "",
      ].join("\n"),
    );
    const cfg = await loadStartConfig({
      config: file,
      authServer: "flag.example:3025",
      caPins: [PIN],
      renewalInterval: "2s",
      storage: "memory://",
      destinationDir: "/opt/from-flag",
      oneshot: true,
    });
    expect(cfg.authServer).toBe("flag.example:3025");
    expect(cfg.onboarding.token).toBe("from-file");
    expect(cfg.onboarding.caPins).toEqual([PIN]);
    expect(cfg.renewalIntervalMs).toBe(2000);
    expect(cfg.storage).toEqual({ type: "memory" });
    expect(cfg.oneshot).toBe(true);
    expect(cfg.outputs.map((o) => (o.destination.type === "directory" ? o.destination.path : ""))).toEqual(["/opt/from-flag"]);
  });

  test("flags alone are a config; what is missing is named", async () => {
    const cfg = await loadStartConfig({ authServer: "a.example:3025", token: "t0k3n-value", caPins: [PIN], destinationDir: "/opt/x" });
    expect(cfg.onboarding.joinMethod).toBe("token");
    expect(cfg.credentialTtlMs).toBe(3_600_000);
    const err = await loadStartConfig({ token: "t0k3n-value" }).catch((e) => e);
    expect(isAppError(err, "BAD_PARAMETER")).toBe(true);
    expect(err.message).toContain("Missing auth_server or proxy_server in agent config");
  });

  test("the v1 scenario (seed 002) loads into a kubernetes output", async () => {
    // the file's pin is a placeholder ("efgh…" is not hex): a real setup pastes the printed one
    const cfg = await loadStartConfig({ config: join(SCENARIOS, "tbot-v1.yaml"), caPins: [PIN] });
    expect(cfg.outputs).toEqual([
      {
        type: "kubernetes",
        destination: { type: "directory", path: "/opt/machine-id", symlinks: "try-secure", acls: "try" },
        kubernetesCluster: "example-k8s-cluster",
        roles: [],
      },
    ]);
    expect(new Agent({ config: cfg, log: silentLogger }).outputNames).toEqual(["kubernetes:/opt/machine-id"]);
  });

  test("the pod scenario (seed 000) loads into an identity output to a kubernetes_secret", async () => {
    const cfg = await loadStartConfig({ config: join(SCENARIOS, "tbot-kubernetes.yaml") });
    const names = new Agent({ config: cfg, log: silentLogger }).outputNames;
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^identity:kubernetes_secret "([^"/]+\/)?identity-output"#0$/);
  });
});

describe("registered outputs", () => {
  test("an output type registers itself, gets the shared dependencies and is rendered after the join", async () => {
    await using auth = await startTestAuth();
    const seen: string[] = [];
    let dest: MemoryDestination | undefined;
    const undo = registerOutput({
      type: "kubernetes",
      build(config, deps: OutputDeps, index) {
        dest = deps.destination({ type: "memory" }) as MemoryDestination;
        return {
          name: `kubernetes:${config.kubernetesCluster}#${index}`,
          destination: dest,
          async init() {
            seen.push("init");
          },
          async render() {
            seen.push(`render as ${deps.identity()?.botName}`);
            await dest!.write("cluster", config.kubernetesCluster);
          },
        };
      },
    });
    try {
      const cfg = agentConfig(auth, await auth.addBot(), undefined, []);
      cfg.outputs = [{ type: "kubernetes", destination: { type: "memory" }, kubernetesCluster: "k1", roles: [] }];
      const agent = new Agent({ config: cfg, log: silentLogger });
      expect(agent.outputNames).toEqual(["kubernetes:k1#0"]);
      await agent.oneshot();
      expect(seen).toEqual(["init", "render as ci"]);
      expect(await dest!.read("cluster")).toBe("k1");
      expect(agent.health.snapshot().status).toBe("healthy");
    } finally {
      undo();
    }
    // undo() puts back what was registered before: the real kubernetes output
    const restored = new Agent({ config: { ...agentConfig(auth, "x", undefined, []), outputs: [{ type: "kubernetes", destination: { type: "memory" }, kubernetesCluster: "k", roles: [] }] }, log: silentLogger });
    expect(restored.outputNames).not.toContain("kubernetes:k#0");
    expect(restored.outputNames).toHaveLength(1);
  });
});
