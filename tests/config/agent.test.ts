// The agent config: scenario files load into the expected AgentConfig, serialize to
// pinned v2 YAML (UPDATE_GOLDEN=1 rewrites), and bad files fail with exact messages.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { loadAgentConfig, parseAgentConfig, serializeAgentConfig, type AgentConfig } from "../../src/config/index.ts";
import { TempDir } from "./_tmp.ts";
import { errorCases, failure, golden, type ErrorCase } from "../_support/cases.ts";

import { SCENARIOS } from "../_scenarios.ts";
const FIXTURES = join(import.meta.dir, "fixtures");



const withoutWarnings = (c: AgentConfig) => ({ ...c, warnings: [] });

// the agent's storage defaults to acls "off", output directories to "try"
const dir = (path: string) => ({ type: "directory" as const, path, symlinks: "try-secure" as const, acls: "off" as const });
const outDir = (path: string) => ({ ...dir(path), acls: "try" as const });

describe("scenario agent configs", () => {
  test("tbot-v1.yaml: a v1 destination with a cluster becomes a kubernetes output", async () => {
    const cfg = await loadAgentConfig(join(SCENARIOS, "tbot-v1.yaml"));
    expect(cfg).toEqual({
      authServer: "teleport.example.com:443",
      onboarding: {
        joinMethod: "token",
        token: "abcd123-insecure-do-not-use-this",
        caPins: ["sha256:abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678"],
        boundKeypair: {},
      },
      storage: dir("/var/lib/teleport/bot"),
      outputs: [{ type: "kubernetes", destination: outDir("/opt/machine-id"), kubernetesCluster: "example-k8s-cluster", roles: [] }],
      services: [],
      credentialTtlMs: 3_600_000,
      renewalIntervalMs: 1_200_000,
      oneshot: false,
      debug: false,
      insecure: false,
      logFormat: "text",
      warnings: [],
    });
  });

  test("tbot-static-env.yaml: bound keypair join through the proxy, no outputs", async () => {
    const cfg = await loadAgentConfig(join(SCENARIOS, "tbot-static-env.yaml"));
    expect(cfg.proxyServer).toBe("example.teleport.sh:443");
    expect(cfg.authServer).toBeUndefined();
    expect(cfg.onboarding).toEqual({ joinMethod: "bound_keypair", token: "example-token", caPins: [], boundKeypair: {} });
    expect(cfg.storage).toEqual(dir("/var/lib/teleport/bot"));
    expect(cfg.outputs).toEqual([]);
  });

  test("tbot-static-file.yaml: the static key path is kept", async () => {
    const cfg = await loadAgentConfig(join(SCENARIOS, "tbot-static-file.yaml"));
    expect(cfg.onboarding.boundKeypair).toEqual({ staticPrivateKeyPath: "/path/to/key" });
  });

  test("tbot-kubernetes.yaml: memory storage and a kubernetes_secret output", async () => {
    const cfg = await loadAgentConfig(join(SCENARIOS, "tbot-kubernetes.yaml"));
    expect(cfg.onboarding.joinMethod).toBe("kubernetes");
    expect(cfg.storage).toEqual({ type: "memory" });
    expect(cfg.outputs).toEqual([{ type: "identity", destination: { type: "kubernetes_secret", name: "identity-output" }, roles: [], sshConfig: true }]);
  });
});

describe("agent config round trip", () => {
  const inputs = [
    [join(SCENARIOS, "tbot-v1.yaml"), "tbot-v1.golden.yaml"],
    [join(SCENARIOS, "tbot-static-env.yaml"), "tbot-static-env.golden.yaml"],
    [join(SCENARIOS, "tbot-static-file.yaml"), "tbot-static-file.golden.yaml"],
    [join(SCENARIOS, "tbot-kubernetes.yaml"), "tbot-kubernetes.golden.yaml"],
    [join(FIXTURES, "agent-v2-full.yaml"), "agent-v2-full.golden.yaml"],
    [join(FIXTURES, "agent-v1-full.yaml"), "agent-v1-full.golden.yaml"],
    [join(FIXTURES, "agent-kubernetes-v2.yaml"), "agent-kubernetes-v2.golden.yaml"],
  ] as const;
  for (const [file, goldenName] of inputs) {
    const name = file.split("/").pop()!;
    test(`${name}: v2 output is stable against the golden file`, async () => {
      golden(join(FIXTURES, goldenName), serializeAgentConfig(await loadAgentConfig(file)));
    });
    test(`${name}: parse → serialize → parse gives the same config`, async () => {
      const cfg = await loadAgentConfig(file);
      const again = parseAgentConfig(serializeAgentConfig(cfg), "again.yaml");
      expect(again).toEqual(withoutWarnings(cfg));
      expect(serializeAgentConfig(again)).toBe(serializeAgentConfig(cfg));
    });
  }

  test("agent-kubernetes-v2.yaml: selectors by name and by labels, disable_exec_plugin", async () => {
    const cfg = await loadAgentConfig(join(FIXTURES, "agent-kubernetes-v2.yaml"));
    expect(cfg.outputs).toEqual([
      { type: "kubernetes/v2", destination: outDir("/opt/machine-id/kube"), selectors: [{ name: "prod-eu" }, { labels: { env: "prod", team: "payments" } }], disableExecPlugin: false },
      { type: "kubernetes/v2", destination: { type: "kubernetes_secret", name: "kube-clusters" }, selectors: [{ labels: { env: "staging" } }], disableExecPlugin: true },
    ]);
  });

  test("agent-v1-full.yaml: v1 forms translate and ignored template options are warned about", async () => {
    const cfg = await loadAgentConfig(join(FIXTURES, "agent-v1-full.yaml"));
    expect(cfg.storage).toEqual({ type: "memory" });
    expect(cfg.outputs).toEqual([
      { type: "identity", destination: { type: "directory", path: "/opt/one", symlinks: "insecure", acls: "try" }, roles: ["ops"], sshConfig: false },
      { type: "identity", destination: outDir("/opt/two"), roles: [], sshConfig: true },
      { type: "identity", destination: { type: "memory" }, roles: [], sshConfig: true },
    ]);
    expect(cfg.credentialTtlMs).toBe(90 * 60_000);
    expect(cfg.renewalIntervalMs).toBe(15 * 60_000);
    expect(cfg.warnings).toEqual(["destinations[1].configs[0].ssh_client: template options are not supported and are ignored"]);
  });

  test("agent-v2-full.yaml: certificate_ttl is the old name of credential_ttl; ssh_config off", async () => {
    const cfg = await loadAgentConfig(join(FIXTURES, "agent-v2-full.yaml"));
    expect(cfg.credentialTtlMs).toBe(7_200_000);
    expect(cfg.outputs[1]).toEqual({ type: "identity", destination: { type: "memory" }, roles: [], sshConfig: false });
    expect(cfg.services).toHaveLength(1);
    expect(cfg.logFormat).toBe("json");
  });

  test("an empty file is a v1 config with every default", () => {
    const cfg = parseAgentConfig("", "empty.yaml");
    expect(cfg.storage).toEqual(dir("/var/lib/machine-id"));
    expect(cfg.onboarding).toEqual({ joinMethod: "token", caPins: [], boundKeypair: {} });
    expect(cfg.credentialTtlMs).toBe(3_600_000);
    expect(cfg.renewalIntervalMs).toBe(1_200_000);
  });

  test("v2 storage of type directory defaults its path", () => {
    expect(parseAgentConfig("version: v2\nstorage:\n  type: directory\n", "s.yaml").storage).toEqual(dir("/var/lib/machine-id"));
  });
});

describe("onboarding.token from a file", () => {
  test("an absolute path to an existing file is read, trimmed, and its path remembered", () => {
    using tmp = new TempDir();
    const path = tmp.write("token", "  s3cret-token-value\n");
    const cfg = parseAgentConfig(`version: v2\nonboarding:\n  token: ${path}\n`, "t.yaml");
    expect(cfg.onboarding.token).toBe("s3cret-token-value");
    expect(cfg.onboarding.tokenPath).toBe(path);
    const out = serializeAgentConfig(cfg);
    expect(out).toContain(`token: ${path}`);
    expect(out).not.toContain("s3cret-token-value");
  });

  test("a ./ path is relative to the working directory", () => {
    using tmp = new TempDir();
    tmp.write("token", "relative-token\n");
    const cwd = process.cwd();
    process.chdir(tmp.path);
    try {
      const cfg = parseAgentConfig("onboarding:\n  token: ./token\n", "t.yaml");
      expect(cfg.onboarding.token).toBe("relative-token");
      expect(cfg.onboarding.tokenPath).toBe("./token");
    } finally {
      process.chdir(cwd);
    }
  });

  test("a path-like value naming no file is the token itself", () => {
    const cfg = parseAgentConfig("onboarding:\n  token: /no/such/token-file\n", "t.yaml");
    expect(cfg.onboarding.token).toBe("/no/such/token-file");
    expect(cfg.onboarding.tokenPath).toBeUndefined();
  });

  test("an empty token file is an error at the token's line", () => {
    using tmp = new TempDir();
    const path = tmp.write("token", "\n");
    const e = failure(() => parseAgentConfig(`version: v2\nonboarding:\n  join_method: token\n  token: ${path}\n`, "t.yaml"));
    expect(e.message).toBe(`Cannot use token file "${path}": it is empty`);
    expect(e.position).toEqual({ file: "t.yaml", line: 4, column: 10 });
  });

  test("an unreadable token file is an error that says why", () => {
    using tmp = new TempDir();
    // A directory exists but cannot be read as a file, even by root.
    const e = failure(() => parseAgentConfig(`onboarding:\n  token: ${tmp.path}\n`, "t.yaml"));
    expect(e.message).toStartWith(`Cannot read token file "${tmp.path}": `);
    expect(e.position?.line).toBe(2);
  });
});


const cases: ErrorCase[] = [
  {
    name: "a v2 field in a file without version",
    text: "proxy_server: example.teleport.sh:443\noutputs: []\n",
    message: `Unknown field "proxy_server" in agent config: it is a v2 field: add "version: v2" at the top of the file`,
    line: 1,
    column: 1,
  },
  {
    name: "an unknown version",
    text: "version: v3\n",
    message: `Invalid value "v3" for version in agent config: allowed values are "v1", "v2"`,
    line: 1,
    column: 10,
  },
  {
    name: "a misspelt onboarding field",
    text: "version: v2\nonboarding:\n  join_mthod: token\n",
    message: `Unknown field "onboarding.join_mthod" in agent config: did you mean "join_method"?`,
    line: 3,
    column: 3,
  },
  {
    name: "an unknown join method",
    text: "version: v2\nonboarding:\n  join_method: iam\n",
    message: `Invalid value "iam" for onboarding.join_method in agent config: allowed values are "token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"`,
    line: 3,
    column: 16,
  },
  {
    name: "an unknown storage type",
    text: "version: v2\nstorage:\n  type: s3\n",
    message: `Invalid value "s3" for storage.type in agent config: allowed values are "directory", "memory", "kubernetes_secret"`,
    line: 3,
    column: 9,
  },
  {
    name: "a misspelt storage type key",
    text: "version: v2\nstorage:\n  typ: directory\n  path: /x\n",
    message: `Missing required field "storage.type" in agent config: found "storage.typ": did you mean "type"? (allowed values are "directory", "memory", "kubernetes_secret")`,
    line: 3,
    column: 3,
  },
  {
    name: "v2 storage in a file without version: says to add version: v2",
    text: "auth_server: a:3025\nstorage:\n  type: directory\n  path: /x\n",
    message: `Missing "version: v2" in agent config: storage.type is a v2 field, and a file without a version is read as v1; add "version: v2" at the top of the file`,
    line: 1,
    column: 1,
  },
  {
    name: "storage without a type",
    text: "version: v2\nstorage:\n  path: /x\n",
    message: `Missing required field "storage.type" in agent config: allowed values are "directory", "memory", "kubernetes_secret"`,
    line: 2,
  },
  {
    name: "an output with an unknown type",
    text: "version: v2\noutputs:\n  - type: ssh_host\n    destination: {type: memory}\n",
    message: `Invalid value "ssh_host" for outputs[0].type in agent config: allowed values are "identity", "kubernetes", "kubernetes/v2"`,
    line: 3,
  },
  {
    name: "a service of a type we do not run",
    text: "version: v2\nservices:\n  - type: ssh-multiplexer\n",
    message: `Invalid value "ssh-multiplexer" for services[0].type in agent config: allowed values are "identity", "kubernetes", "kubernetes/v2"`,
    line: 3,
  },
  {
    name: "a kubernetes output without a cluster",
    text: "version: v2\noutputs:\n  - type: kubernetes\n    destination:\n      type: directory\n      path: /opt/k\n",
    message: `Missing required field "outputs[0].kubernetes_cluster" in agent config`,
    line: 3,
  },
  {
    name: "a kubernetes/v2 output without selectors",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n",
    message: `Missing required field "outputs[0].selectors" in agent config`,
    line: 3,
  },
  {
    name: "a kubernetes/v2 output with an empty selector list",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors: []\n",
    message: `Invalid list for outputs[0].selectors in agent config: at least one selector is needed, such as "- name: <cluster>" or "- labels: {env: prod}"`,
    line: 5,
  },
  {
    name: "a kubernetes/v2 selector with both name and labels",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors:\n      - name: prod\n        labels: {env: prod}\n",
    message: `Unexpected field "outputs[0].selectors[0].labels" in agent config: name is set: a selector picks a cluster by name or by labels, not both (use two selectors)`,
    line: 7,
  },
  {
    name: "a kubernetes/v2 selector with neither name nor labels",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors:\n      - labels: {}\n",
    message: `Missing required field "outputs[0].selectors[0].name" in agent config: a selector needs "name: <cluster>" or "labels: {key: value}"`,
    line: 6,
  },
  {
    name: "a kubernetes/v2 selector with a misspelt field",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors:\n      - lables: {env: prod}\n",
    message: `Unknown field "outputs[0].selectors[0].lables" in agent config: did you mean "labels"?`,
    line: 6,
  },
  {
    name: "a kubernetes/v2 label value that is not a string",
    text: "version: v2\noutputs:\n  - type: kubernetes/v2\n    destination: {type: memory}\n    selectors:\n      - labels: {env: [a, b]}\n",
    message: `Invalid value for outputs[0].selectors[0].labels.env in agent config: expected a string, got a list`,
    line: 6,
  },
  {
    name: "a directory destination without a path",
    text: "version: v2\noutputs:\n  - type: identity\n    destination:\n      type: directory\n",
    message: `Missing required field "outputs[0].destination.path" in agent config`,
    line: 4,
  },
  {
    name: "a bad symlinks mode",
    text: "version: v2\noutputs:\n  - type: identity\n    destination:\n      type: directory\n      path: /o\n      symlinks: maybe\n",
    message: `Invalid value "maybe" for outputs[0].destination.symlinks in agent config: allowed values are "secure", "try-secure", "insecure"`,
    line: 7,
  },
  {
    name: "ssh_config takes on or off",
    text: "version: v2\noutputs:\n  - type: identity\n    destination: {type: memory}\n    ssh_config: sometimes\n",
    message: `Invalid value "sometimes" for outputs[0].ssh_config in agent config: allowed values are "on", "off"`,
    line: 5,
  },
  {
    name: "a bad duration",
    text: "version: v2\ncredential_ttl: 1 hour\n",
    message: `Invalid duration "1 hour" for credential_ttl in agent config: expected a number and a unit such as "90s", "20m" or "1h30m"`,
    line: 2,
    column: 17,
  },
  {
    name: "a duration without a unit: the same rule as the flags",
    text: "version: v2\nrenewal_interval: 10\n",
    message: `Invalid duration 10 for renewal_interval in agent config: a number needs a unit: write "10s" for seconds or "10m" for minutes`,
    line: 2,
    column: 19,
  },
  {
    name: "both names of the TTL",
    text: "version: v2\ncredential_ttl: 1h\ncertificate_ttl: 2h\n",
    message: `Unexpected field "certificate_ttl" in agent config: it is another name for credential_ttl: set only one`,
    line: 3,
  },
  {
    name: "oneshot is a boolean",
    text: "version: v2\noneshot: yes\n",
    message: `Invalid value "yes" for oneshot in agent config: expected true or false`,
    line: 2,
  },
  {
    name: "ca_pins is a list",
    text: "onboarding:\n  ca_pins: sha256:abc\n",
    message: `Invalid value "sha256:abc" for onboarding.ca_pins in agent config: expected a list of strings`,
    line: 2,
  },
  {
    name: "a token of the wrong type is not echoed",
    text: "onboarding:\n  token: 12345\n",
    message: `Invalid value for onboarding.token in agent config: expected a string, got an integer`,
    line: 2,
  },
  {
    name: "a v1 destination that is both a directory and memory",
    text: "destinations:\n  - directory: /x\n    memory: true\n",
    message: `Unexpected field "destinations[0].memory" in agent config: a destination is either a directory or memory: remove one`,
    line: 3,
  },
  {
    name: "a v1 destination that is neither",
    text: "destinations:\n  - kubernetes_cluster: k\n",
    message: `Missing required field "destinations[0].directory" in agent config: set "directory: <path>" or "memory: true"`,
    line: 2,
  },
  {
    name: "a v1 template that does not exist",
    text: "destinations:\n  - directory: /x\n    configs: [ssh_clinet]\n",
    message: `Invalid value "ssh_clinet" for destinations[0].configs[0] in agent config: allowed values are "ssh_client", "identity", "tls", "tls_cas", "kubernetes"`,
    line: 3,
  },
  {
    name: "a v1 template with options under a misspelt name",
    text: "destinations:\n  - directory: /x\n    configs:\n      - ssh_clinet: {proxy_port: 443}\n",
    message: `Unknown field "destinations[0].configs[0].ssh_clinet" in agent config: did you mean "ssh_client"?`,
    line: 4,
  },
  {
    name: "two YAML documents",
    text: "version: v2\n---\nversion: v2\n",
    message: `Expected one YAML document in "agent.yaml", found 2`,
    line: 3,
  },
  {
    name: "a YAML syntax error",
    text: "version: v2\nonboarding:\n  token: [abc\n",
    message: `Invalid YAML: flow sequence in block collection must be sufficiently indented and end with a ]`,
    line: 4,
  },
  {
    name: "a document that is a list",
    text: "- version: v2\n",
    message: `Invalid agent config: expected a mapping, got a list`,
    line: 1,
  },
];

describe("agent config errors", () => {
  errorCases(cases, "agent.yaml", parseAgentConfig);

  test("a missing config file says so", async () => {
    await expect(loadAgentConfig("/no/such/agent.yaml")).rejects.toThrow(`Cannot read config "/no/such/agent.yaml": no such file or directory`);
  });
});
