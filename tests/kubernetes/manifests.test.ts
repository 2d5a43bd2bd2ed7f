/**
 * deploy/kubernetes as `kubectl kustomize` renders it, checked field by field against
 * what the agent reads: the config it is started with, the env vars, the token path,
 * the diag listener the probes hit, the one Secret the Role lets it write, and the
 * image's user. The pod actually running from these manifests is
 * tests/e2e/kubernetes_deploy.test.ts.
 */

import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { AgentMetrics, diagHandler, HealthRegistry, parseListenAddr } from "../../src/agent/diag/index.ts";
import { DEFAULT_JOIN_TOKEN_PATH, TOKEN_PATH_ENV } from "../../src/agent/kubernetes/index.ts";
import { parseAgentConfig, type AgentConfig } from "../../src/config/index.ts";
import { systemClock } from "../../src/lib/clock.ts";
import { kubernetesOverlay, podAgentConfig } from "../../src/ctl/kubernetes.ts";
import { IMAGE_UID } from "../../scripts/image.ts";
import { has, requirePrereqs } from "../_prereq.ts";
import { kustomize, one, type K8sObject } from "../_support/kustomize.ts";

const DEPLOY = join(import.meta.dir, "../../deploy/kubernetes");

/** The pieces of a rendered kustomization the agent's pod is made of. */
function pod(objects: K8sObject[]) {
  const deployment = one(objects, "Deployment", "tbot");
  const spec = deployment.spec.template.spec;
  const container = spec.containers[0];
  const volume = (mountPath: string) => {
    const m = container.volumeMounts.find((v: { mountPath: string }) => v.mountPath === mountPath);
    return m && spec.volumes.find((v: { name: string }) => v.name === m.name);
  };
  const [, , configPath] = container.args as string[];
  const configDir = configPath!.slice(0, configPath!.lastIndexOf("/"));
  const configMap = one(objects, "ConfigMap", volume(configDir).configMap.name);
  const configText: string = configMap.data[configPath!.slice(configDir.length + 1)];
  const config: AgentConfig = parseAgentConfig(configText, "tbot.yaml");
  const env = Object.fromEntries((container.env as { name: string; value?: string; valueFrom?: unknown }[]).map((e) => [e.name, e]));
  return { deployment, spec, container, volume, configPath: configPath!, configMap, configText, config, env };
}

let objects: K8sObject[];

beforeAll(() => {
  requirePrereqs({ kubectl: [has("kubectl"), "apt-get install kubernetes-client"] });
  objects = kustomize(DEPLOY);
});

describe("kubectl kustomize deploy/kubernetes", () => {
  test("renders seed 000's objects, all in namespace default", () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, "-<hash>")}`).sort()).toEqual(
      ["ConfigMap/tbot-config-<hash>", "Deployment/tbot", "Role/tbot-secrets", "RoleBinding/tbot-secrets", "Secret/identity-output", "ServiceAccount/tbot"].sort(),
    );
    for (const o of objects) expect(o.metadata.namespace).toBe("default");
  });

  test("the container runs the image's entrypoint with `start -c <the mounted ConfigMap's file>`, and the config loads as the agent reads it", () => {
    const { container, config, configPath } = pod(objects);
    expect(container.command).toBeUndefined(); // the image's entrypoint, the executable
    expect(container.args).toEqual(["start", "-c", configPath]);
    expect(config.onboarding.joinMethod).toBe("kubernetes");
    expect(config.onboarding.token).toBe("example-bot");
    expect(config.onboarding.caPins).toHaveLength(1);
    expect(config.storage).toEqual({ type: "memory" });
    expect(config.authServer).toBe("auth.example.com:3025");
  });

  test("POD_NAMESPACE is the pod's namespace and KUBERNETES_TOKEN_PATH the projected token, for the cluster name", () => {
    const { env, volume } = pod(objects);
    expect(env.POD_NAMESPACE).toEqual({ name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } });
    const tokenPath: string = env[TOKEN_PATH_ENV]!.value!;
    expect(tokenPath).toBe(DEFAULT_JOIN_TOKEN_PATH);
    const dir = tokenPath.slice(0, tokenPath.lastIndexOf("/"));
    const source = volume(dir).projected.sources[0].serviceAccountToken;
    expect(`${dir}/${source.path}`).toBe(tokenPath);
    expect(source.audience).toBe("example.teleport.sh");
    expect(source.expirationSeconds).toBe(600);
  });

  test("the probes hit /readyz and /livez on the port diag_addr listens on, on every interface", async () => {
    const { container, config } = pod(objects);
    const listen = parseListenAddr(config.diagAddr!);
    expect(listen.hostname).toBe("0.0.0.0"); // the kubelet probes the pod's IP, not loopback
    const port = container.ports.find((p: { name: string }) => p.name === "diag");
    expect(port.containerPort).toBe(listen.port);
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "diag" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/livez", port: "diag" });
    // the agent's diag handler serves both paths (a typo would be its 404)
    const handler = diagHandler({ health: new HealthRegistry(), metrics: new AgentMetrics({ clock: systemClock, identityExpiry: () => undefined }) });
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect((await handler(new Request(`http://pod${probe.httpGet.path}`))).status).not.toBe(404);
    }
  });

  test("the Role lets the service account get and update only the Secret the identity output writes, which the manifests create", () => {
    const { config, spec } = pod(objects);
    const dest = config.outputs[0]!.destination;
    expect(dest).toEqual({ type: "kubernetes_secret", name: "identity-output" });
    const role = one(objects, "Role");
    // GET then PUT is all the destination does to a Secret that exists; RBAC cannot limit create by name
    expect(role.rules).toEqual([{ apiGroups: [""], resources: ["secrets"], resourceNames: ["identity-output"], verbs: ["get", "update"] }]);
    expect(one(objects, "Secret", "identity-output").type).toBe("Opaque");
    const binding = one(objects, "RoleBinding");
    expect(binding.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: spec.serviceAccountName, namespace: "default" }]);
    one(objects, "ServiceAccount", spec.serviceAccountName);
  });

  test("the pod runs the image as its user 65532, read-only, without privilege escalation or capabilities", () => {
    const { spec, container } = pod(objects);
    expect(container.image).toBe(`machine-id:${pkg.version}`);
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID, fsGroup: IMAGE_UID });
    expect(container.securityContext).toEqual({ readOnlyRootFilesystem: true, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    for (const m of container.volumeMounts) expect(m.readOnly).toBe(true);
  });

  test("memory is requested and limited (the figures measured in docs/kubernetes.md)", () => {
    const { resources } = pod(objects).container;
    const mi = (v: string) => Number(/^(\d+)Mi$/.exec(v)![1]);
    expect(mi(resources.requests.memory)).toBeGreaterThan(0);
    expect(mi(resources.limits.memory)).toBeGreaterThan(mi(resources.requests.memory));
    expect(resources.limits.cpu).toBeUndefined(); // a CPU limit would only throttle the rare renewal
  });
});

describe("kubectl kustomize deploy/kubernetes/overlays/example", () => {
  test("sets the auth address, CA pin, token name, audience and image, and keeps the rest", () => {
    const overlay = kustomize(join(DEPLOY, "overlays/example"));
    const { config, container, volume, configMap } = pod(overlay);
    expect(config.authServer).toBe("auth.example.com:3025");
    expect(config.onboarding.caPins).toEqual(["sha256:1f4d4a6d2b1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f"]);
    expect(config.onboarding.token).toBe("example-bot");
    expect(config.diagAddr).toBe(pod(objects).config.diagAddr);
    expect(volume("/var/run/secrets/tokens").projected.sources[0].serviceAccountToken).toEqual({ path: "join-sa-token", expirationSeconds: 600, audience: "example.teleport.sh" });
    expect(container.image).toBe(`registry.example.com/machine-id:${pkg.version}`);
    expect(configMap.metadata.name).toMatch(/^tbot-config-[a-z0-9]{10}$/);
    expect(overlay).toHaveLength(objects.length);
  });

  test("is what `ctl bots add --format kubernetes` writes for the same values, object for object", () => {
    const dir = mkdtempSync(join(tmpdir(), "mid-overlay-"));
    try {
      const config = podAgentConfig({ authServer: "auth.example.com:3025", token: "example-bot", caPin: "sha256:1f4d4a6d2b1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f" });
      const base = relative(dir, join(DEPLOY, "base"));
      writeFileSync(join(dir, "kustomization.yaml"), kubernetesOverlay({ base, namespace: "default", image: `registry.example.com/machine-id:${pkg.version}`, audience: "example.teleport.sh", config }));
      expect(kustomize(dir)).toEqual(kustomize(join(DEPLOY, "overlays/example")));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("ctl's agent config differs from base/tbot.yaml only in the values an overlay sets", () => {
    const ctl = parseAgentConfig(podAgentConfig({ authServer: "a.example:3025", token: "t-bot", caPin: "sha256:" + "ab".repeat(32) }), "ctl");
    const { config } = pod(objects);
    // ctl's values out, base's in (a value base leaves unset stays absent)
    const { authServer: _a, onboarding: { token: _t, ...onboarding }, ...rest } = ctl;
    const { authServer } = config;
    const { token, caPins } = config.onboarding;
    const withBaseValues: AgentConfig = {
      ...rest,
      ...(authServer !== undefined ? { authServer } : {}),
      onboarding: { ...onboarding, ...(token !== undefined ? { token } : {}), caPins },
    };
    expect(withBaseValues).toEqual(config);
  });
});
