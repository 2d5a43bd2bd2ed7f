// The agent's Kubernetes pieces register themselves: the seed scenarios that name
// them build, and the names they register under are the ones the config layer uses.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Agent, createDestination, joinMethod, loadStartConfig } from "../../src/agent/index.ts";
import { KubernetesSecretDestination } from "../../src/agent/kubernetes/index.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { SCENARIOS } from "./_auth.ts";

const PIN = "sha256:" + "ab".repeat(32);

describe("registration", () => {
  test("seed 002's tbot-v1.yaml builds a kubernetes output", async () => {
    const cfg = await loadStartConfig({ config: join(SCENARIOS, "tbot-v1.yaml"), caPins: [PIN] });
    const agent = new Agent({ config: cfg, log: silentLogger });
    expect(agent.outputNames).toEqual(["kubernetes:/opt/machine-id"]);
  });

  test("seed 000's tbot-kubernetes.yaml builds: kubernetes join, memory storage, a kubernetes_secret destination", async () => {
    const cfg = await loadStartConfig({ config: join(SCENARIOS, "tbot-kubernetes.yaml") });
    const agent = new Agent({ config: cfg, log: silentLogger });
    // $POD_NAMESPACE, when the tests run in a pod, shows in the name
    expect(agent.outputNames).toHaveLength(1);
    expect(agent.outputNames[0]).toMatch(/^identity:kubernetes_secret "([^"/]+\/)?identity-output"#0$/);
    expect(joinMethod("kubernetes")).toMatchObject({ name: "kubernetes", rejoinable: true });
  });

  test("createDestination() builds a kubernetes_secret destination without touching the network", () => {
    const d = createDestination({ type: "kubernetes_secret", name: "identity-output", namespace: "apps" }, { log: silentLogger });
    expect(d).toBeInstanceOf(KubernetesSecretDestination);
    expect(d.description).toBe(`kubernetes_secret "apps/identity-output"`);
    expect(d.path).toBeUndefined();
  });
});
