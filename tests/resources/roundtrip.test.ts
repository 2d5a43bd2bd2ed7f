// Scenario files parse as written; parse → serialize → parse is the identity, and the
// serialized form is pinned by golden files (UPDATE_GOLDEN=1 rewrites them).

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  checkAndSetDefaults,
  parseResource,
  parseResources,
  serializeResources,
  type Resource,
  type RoleResource,
  type TokenResource,
} from "../../src/resources/index.ts";
import { golden } from "../_support/cases.ts";

import { SCENARIOS } from "../_scenarios.ts";
const FIXTURES = join(import.meta.dir, "../fixtures/resources");


const inputs = [
  { file: join(SCENARIOS, "bot.yaml"), golden: "bot.golden.yaml" },
  { file: join(SCENARIOS, "role-kube.yaml"), golden: "role-kube.golden.yaml" },
  { file: join(SCENARIOS, "token-bound-keypair.yaml"), golden: "token-bound-keypair.golden.yaml" },
  { file: join(SCENARIOS, "token-kubernetes.yaml"), golden: "token-kubernetes.golden.yaml" },
  { file: join(FIXTURES, "all-kinds.yaml"), golden: "all-kinds.golden.yaml" },
  { file: join(FIXTURES, "token-ci.yaml"), golden: "token-ci.golden.yaml" },
];

describe("resource round trip", () => {
  for (const input of inputs) {
    const name = input.file.split("/").pop()!;

    test(`${name}: serialize is stable against the golden file`, () => {
      const rs = parseResources(readFileSync(input.file, "utf8"), input.file);
      golden(join(FIXTURES, input.golden), serializeResources(rs, "yaml"));
    });

    test(`${name}: parse → serialize → parse is the identity (YAML and JSON)`, () => {
      const rs = parseResources(readFileSync(input.file, "utf8"), input.file);
      expect(parseResources(serializeResources(rs, "yaml"), "again.yaml")).toEqual(rs);
      expect(parseResources(serializeResources(rs, "json"), "again.json")).toEqual(rs);
    });

    test(`${name}: checkAndSetDefaults is idempotent on parsed resources`, () => {
      const rs = parseResources(readFileSync(input.file, "utf8"), input.file);
      for (const r of rs) expect(checkAndSetDefaults(r)).toEqual(r);
    });
  }

  test("all-kinds.yaml: JSON form is stable against the golden file", () => {
    const file = join(FIXTURES, "all-kinds.yaml");
    golden(join(FIXTURES, "all-kinds.golden.json"), serializeResources(parseResources(readFileSync(file, "utf8"), file), "json"));
  });

  test("serialize writes kind, version, metadata, spec, status in that order", () => {
    const token = parseResources(readFileSync(join(FIXTURES, "all-kinds.yaml"), "utf8"), "all-kinds.yaml").find(
      (r) => r.metadata.name === "deploy-bound",
    )!;
    const shuffled = { status: (token as TokenResource).status, spec: token.spec, metadata: token.metadata, version: token.version, kind: token.kind };
    const out = serializeResources([shuffled as Resource], "yaml");
    const keys = out.split("\n").filter((l) => /^[a-z]+:/.test(l)).map((l) => l.split(":")[0]);
    expect(keys).toEqual(["kind", "version", "metadata", "spec", "status"]);
  });

  test("multi-document YAML output separates resources with ---", () => {
    const rs = parseResources(readFileSync(join(SCENARIOS, "bot.yaml"), "utf8") + "\n---\n" + readFileSync(join(SCENARIOS, "role-kube.yaml"), "utf8"), "two.yaml");
    expect(rs.map((r) => r.kind)).toEqual(["bot", "role"]);
    expect(serializeResources(rs, "yaml").split("\n").filter((l) => l === "---")).toHaveLength(1);
  });
});

describe("defaults", () => {
  test("the scenario role (v6) may reach every pod, and max_session_ttl defaults to 30h", () => {
    const [role] = parseResources(readFileSync(join(SCENARIOS, "role-kube.yaml"), "utf8"), "role-kube.yaml") as [RoleResource];
    expect(role.spec.allow.kubernetes_resources).toEqual([{ kind: "pod", namespace: "*", name: "*" }]);
    expect(role.spec.options.max_session_ttl).toBe("30h");
    expect(role.spec.deny).toEqual({});
  });

  test("a v7 role with cluster labels and no resources may reach every resource with every verb", () => {
    const role = parseResource({
      kind: "role",
      version: "v7",
      metadata: { name: "r" },
      spec: { allow: { kubernetes_labels: { "*": "*" } } },
    }) as RoleResource;
    expect(role.spec.allow.kubernetes_resources).toEqual([{ kind: "*", namespace: "*", name: "*", verbs: ["*"] }]);
  });

  test("v7 rules without verbs get every verb; a role without Kubernetes labels gets no resources", () => {
    const role = parseResource({
      kind: "role",
      version: "v7",
      metadata: { name: "r" },
      spec: { allow: { logins: ["root"] }, deny: { kubernetes_resources: [{ kind: "secret", namespace: "*", name: "*" }] } },
    }) as RoleResource;
    expect(role.spec.allow.kubernetes_resources).toBeUndefined();
    expect(role.spec.deny.kubernetes_resources).toEqual([{ kind: "secret", namespace: "*", name: "*", verbs: ["*"] }]);
  });

  test("bot defaults: no roles, no traits, max_session_ttl 12h", () => {
    const [bot] = parseResources(readFileSync(join(SCENARIOS, "bot.yaml"), "utf8"), "bot.yaml");
    expect(bot!.spec).toEqual({ roles: [], traits: [], max_session_ttl: "12h" });
  });

  test("bound keypair recovery mode defaults to standard; kubernetes type to in_cluster", () => {
    const rs = parseResources(readFileSync(join(FIXTURES, "all-kinds.yaml"), "utf8"), "all-kinds.yaml") as TokenResource[];
    expect(rs.find((r) => r.metadata.name === "deploy-bound")!.spec.bound_keypair!.recovery).toEqual({ limit: 2, mode: "standard" });
    expect(rs.find((r) => r.metadata.name === "in-cluster")!.spec.kubernetes!.type).toBe("in_cluster");
  });

  test("the scenario JWKS placeholder, which is not JSON, is accepted verbatim", () => {
    const [token] = parseResources(readFileSync(join(SCENARIOS, "token-kubernetes.yaml"), "utf8"), "t.yaml") as [TokenResource];
    expect(token.spec.kubernetes!.static_jwks!.jwks).toBe(`{"keys":[ ...the data returned by the cluster's /openid/v1/jwks endpoint... ]}\n`);
  });

  test("a real JWKS is accepted", () => {
    const jwks = JSON.stringify({ keys: [{ kty: "RSA", kid: "a", n: "xyz", e: "AQAB" }] });
    const token = parseResource({
      kind: "token",
      version: "v2",
      metadata: { name: "k8s" },
      spec: {
        roles: ["Bot"],
        bot_name: "b",
        join_method: "kubernetes",
        kubernetes: { type: "static_jwks", static_jwks: { jwks }, allow: [{ service_account: "default:tbot" }] },
      },
    }) as TokenResource;
    expect(token.spec.kubernetes!.static_jwks!.jwks).toBe(jwks);
  });

  test("checkAndSetDefaults fills defaults on a resource built in code and leaves the input alone", () => {
    const input = { kind: "bot" as const, version: "v1" as const, metadata: { name: "ci", description: undefined }, spec: { roles: ["ops"] } };
    const out = checkAndSetDefaults(input as never);
    expect(out).toEqual({ kind: "bot", version: "v1", metadata: { name: "ci" }, spec: { roles: ["ops"], traits: [], max_session_ttl: "12h" } } as never);
    expect(input.spec).toEqual({ roles: ["ops"] });
  });

  test("JSON nulls are absent fields, as in Go", () => {
    const bot = parseResource({ kind: "bot", version: "v1", metadata: { name: "b", labels: null }, spec: { roles: null } });
    expect(bot.spec).toEqual({ roles: [], traits: [], max_session_ttl: "12h" });
  });
});

describe("document separators", () => {
  test("leading, trailing and doubled --- add no documents", () => {
    const bot = readFileSync(join(SCENARIOS, "bot.yaml"), "utf8");
    expect(parseResources(`---\n${bot}---\n---\n${bot.replace("example", "other")}---\n`, "seps.yaml").map((r) => r.metadata.name)).toEqual([
      "example",
      "other",
    ]);
  });
});
