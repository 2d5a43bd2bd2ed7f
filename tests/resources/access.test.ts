// Access decisions over roles: logins, label selectors, globs and Kubernetes rules.

import { describe, expect, test } from "bun:test";
import {
  applyTraits,
  botTraits,
  globMatch,
  kubernetesAccess,
  kubernetesPrincipals,
  matchLabels,
  parseResource,
  roleLogins,
  type BotResource,
  type KubernetesRequest,
  type RoleResource,
} from "../../src/resources/index.ts";

function role(version: "v5" | "v6" | "v7", name: string, spec: Record<string, unknown>): RoleResource {
  return parseResource({ kind: "role", version, metadata: { name }, spec }) as RoleResource;
}

describe("globMatch()", () => {
  const cases: [string, string, boolean][] = [
    ["*", "", true],
    ["*", "anything/at all", true],
    ["prod", "prod", true],
    ["prod", "production", false],
    ["prod-*", "prod-eu", true],
    ["prod-*", "prod-", true],
    ["prod-*", "staging-prod-eu", false],
    ["*-eu", "prod-eu", true],
    ["a*b*c", "a123b456c", true],
    ["a*b*c", "a123c456b", false],
    ["a.b", "axb", false],
    ["(x)", "(x)", true],
    ["^prod-[0-9]+$", "prod-12", true],
    ["^prod-[0-9]+$", "prod-x", false],
    ["^prod-[0-9$", "prod-1", false],
  ];
  for (const [pattern, value, want] of cases) {
    test(`"${pattern}" ${want ? "matches" : "does not match"} "${value}"`, () => {
      expect(globMatch(pattern, value)).toBe(want);
    });
  }
});

describe("matchLabels()", () => {
  test("'*': '*' matches everything, even no labels", () => {
    expect(matchLabels({ "*": "*" }, {})).toBe(true);
    expect(matchLabels({ "*": ["*"] }, { env: "prod" })).toBe(true);
  });

  test("an empty or missing selector matches nothing", () => {
    expect(matchLabels({}, { env: "prod" })).toBe(false);
    expect(matchLabels(undefined, {})).toBe(false);
  });

  test("every key must match one of its values", () => {
    const sel = { env: ["staging", "prod-*"], region: "eu-*" };
    expect(matchLabels(sel, { env: "prod-1", region: "eu-west" })).toBe(true);
    expect(matchLabels(sel, { env: "dev", region: "eu-west" })).toBe(false);
    expect(matchLabels(sel, { env: "staging" })).toBe(false);
  });

  test("a label key inherited from Object.prototype is not a label", () => {
    expect(matchLabels({ constructor: "*" }, {})).toBe(false);
  });
});

describe("roleLogins()", () => {
  test("unions allowed logins, expands traits and removes denied ones", () => {
    const roles = [
      role("v7", "a", { allow: { logins: ["root", "{{internal.logins}}"] } }),
      role("v7", "b", { allow: { logins: ["ubuntu", "root", "svc-{{internal.logins}}"] }, deny: { logins: ["ubuntu"] } }),
    ];
    expect(roleLogins(roles, { logins: ["deploy", "ci"] })).toEqual(["root", "deploy", "ci", "svc-deploy", "svc-ci"]);
  });

  test("a template whose trait is missing grants nothing", () => {
    expect(roleLogins([role("v7", "a", { allow: { logins: ["{{internal.logins}}"] } })])).toEqual([]);
  });

  test("a deny glob removes every login it matches", () => {
    const roles = [role("v7", "a", { allow: { logins: ["root", "admin"] }, deny: { logins: ["*"] } })];
    expect(roleLogins(roles)).toEqual([]);
  });

  test("bot traits feed the templates", () => {
    const bot = parseResource({
      kind: "bot",
      version: "v1",
      metadata: { name: "b" },
      spec: { traits: [{ name: "logins", values: ["a"] }, { name: "logins", values: ["b"] }, { name: "__proto__", values: ["x"] }] },
    }) as BotResource;
    const traits = botTraits(bot);
    expect(traits.logins).toEqual(["a", "b"]);
    expect(applyTraits(["{{ internal.logins }}", "{{external.__proto__}}", "plain"], traits)).toEqual(["a", "b", "x", "plain"]);
  });
});

describe("kubernetesAccess()", () => {
  const kubeRole = role("v6", "machine-id-kube-role", {
    allow: { kubernetes_labels: { "*": "*" }, kubernetes_resources: [{ kind: "pod", namespace: "*", name: "*" }], kubernetes_groups: ["example"] },
  });
  const req = (over: Partial<KubernetesRequest>): KubernetesRequest => ({
    clusterLabels: { env: "prod" },
    kind: "pod",
    namespace: "demo",
    name: "web-1",
    verb: "list",
    ...over,
  });

  test("the scenario role may list pods in any namespace", () => {
    expect(kubernetesAccess([kubeRole], req({}))).toEqual({ allowed: true, reason: `role "machine-id-kube-role" allows list on pod "demo/web-1"` });
  });

  test("v6 rules govern pods only: other kinds are left to Kubernetes RBAC", () => {
    const narrow = role("v6", "narrow", {
      allow: { kubernetes_labels: { "*": "*" }, kubernetes_resources: [{ kind: "pod", namespace: "team-a", name: "*" }] },
    });
    expect(kubernetesAccess([narrow], req({ namespace: "team-b" })).allowed).toBe(false);
    expect(kubernetesAccess([narrow], req({ kind: "deployment", namespace: "team-b" })).allowed).toBe(true);
  });

  test("v7 rules govern every kind and check verbs", () => {
    const r = role("v7", "deployer", {
      allow: { kubernetes_labels: { env: "prod" }, kubernetes_resources: [{ kind: "deployment", namespace: "apps", name: "web-*", verbs: ["get", "update"] }] },
    });
    expect(kubernetesAccess([r], req({ kind: "deployment", namespace: "apps", name: "web-1", verb: "update" })).allowed).toBe(true);
    expect(kubernetesAccess([r], req({ kind: "deployment", namespace: "apps", name: "web-1", verb: "delete" })).allowed).toBe(false);
    expect(kubernetesAccess([r], req({ kind: "pod", namespace: "apps", name: "web-1", verb: "get" })).allowed).toBe(false);
    expect(kubernetesAccess([r], req({ kind: "deployment", namespace: "apps", name: "web-1", verb: "get", clusterLabels: { env: "dev" } })).allowed).toBe(false);
  });

  test("cluster-wide objects match only a namespace pattern that matches nothing in particular", () => {
    const scoped = role("v7", "scoped", { allow: { kubernetes_labels: { "*": "*" }, kubernetes_resources: [{ kind: "*", namespace: "apps", name: "*" }] } });
    const wide = role("v7", "wide", { allow: { kubernetes_labels: { "*": "*" }, kubernetes_resources: [{ kind: "clusterrole", namespace: "*", name: "view" }] } });
    const { namespace: _, ...clusterRole } = req({ kind: "clusterrole", name: "view", verb: "get" });
    expect(kubernetesAccess([scoped], clusterRole).allowed).toBe(false);
    expect(kubernetesAccess([wide], clusterRole).allowed).toBe(true);
  });

  test("deny wins over allow", () => {
    const deny = role("v7", "no-secrets", { deny: { kubernetes_resources: [{ kind: "secret", namespace: "*", name: "*" }] } });
    const all = role("v7", "all", { allow: { kubernetes_labels: { "*": "*" } } });
    expect(kubernetesAccess([all], req({ kind: "secret" })).allowed).toBe(true);
    expect(kubernetesAccess([all, deny], req({ kind: "secret" }))).toEqual({ allowed: false, reason: `role "no-secrets" denies list on secret "demo/web-1"` });
    expect(kubernetesAccess([deny, all], req({ kind: "configmap" })).allowed).toBe(true);
  });

  test("deny labels without resources deny the whole cluster; with resources only on matching clusters", () => {
    const blockProd = role("v7", "block-prod", { deny: { kubernetes_labels: { env: "prod" } } });
    expect(kubernetesAccess([kubeRole, blockProd], req({})).reason).toBe(`role "block-prod" denies access to this Kubernetes cluster`);
    expect(kubernetesAccess([kubeRole, blockProd], req({ clusterLabels: { env: "dev" } })).allowed).toBe(true);
    const prodSecrets = role("v7", "prod-secrets", {
      deny: { kubernetes_labels: { env: "prod" }, kubernetes_resources: [{ kind: "pod", namespace: "kube-system", name: "*" }] },
    });
    expect(kubernetesAccess([kubeRole, prodSecrets], req({ namespace: "kube-system" })).allowed).toBe(false);
    expect(kubernetesAccess([kubeRole, prodSecrets], req({ namespace: "kube-system", clusterLabels: { env: "dev" } })).allowed).toBe(true);
  });

  test("v5 roles have no resource rules: matching labels allow everything", () => {
    const legacy = role("v5", "legacy", { allow: { kubernetes_labels: { env: "prod" } } });
    expect(kubernetesAccess([legacy], req({ kind: "secret", verb: "delete" })).allowed).toBe(true);
    expect(kubernetesAccess([legacy], req({ clusterLabels: {} })).allowed).toBe(false);
  });

  test("no roles allow nothing", () => {
    expect(kubernetesAccess([], req({}))).toEqual({ allowed: false, reason: `no role allows list on pod "demo/web-1"` });
  });
});

describe("kubernetesPrincipals()", () => {
  test("collects users and groups from roles matching the cluster, minus denied ones", () => {
    const roles = [
      role("v6", "a", { allow: { kubernetes_labels: { "*": "*" }, kubernetes_groups: ["example", "ops"], kubernetes_users: ["alice"] } }),
      role("v7", "b", { allow: { kubernetes_labels: { env: "dev" }, kubernetes_groups: ["dev-only"] } }),
      role("v7", "c", { deny: { kubernetes_groups: ["ops"] } }),
      role("v7", "d", { allow: { kubernetes_labels: { "*": "*" }, kubernetes_users: ["{{internal.kube_users}}"] } }),
    ];
    expect(kubernetesPrincipals(roles, { env: "prod" }, { kube_users: ["bot-ci"] })).toEqual({ users: ["alice", "bot-ci"], groups: ["example"] });
  });
});
