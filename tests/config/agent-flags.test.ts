// applyAgentFlags() over a loaded config, then checkAgentConfig(): the whole-config
// rules, their messages, and the warnings.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  applyAgentFlags,
  checkAgentConfig,
  loadAgentConfig,
  parseAgentConfig,
  parseStorageFlag,
  type AgentConfig,
} from "../../src/config/index.ts";
import { TempDir } from "./_tmp.ts";
import { failure } from "../_support/cases.ts";

import { SCENARIOS } from "../_scenarios.ts";
const PIN = "sha256:4f1a0b8d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";


/** `c` with no onboarding token (absent, as when the config names none). */
const withoutToken = ({ onboarding: { token: _, ...onboarding }, ...c }: AgentConfig): AgentConfig => ({ ...c, onboarding });
const base = (): AgentConfig => parseAgentConfig("version: v2\nauth_server: auth.example.com:3025\nonboarding:\n  token: t0ken-value\n", "base.yaml");

describe("applyAgentFlags()", () => {
  test("an address flag replaces whichever address the file had", async () => {
    const cfg = await loadAgentConfig(join(SCENARIOS, "tbot-static-env.yaml"));
    const out = applyAgentFlags(cfg, { authServer: "127.0.0.1:3025" });
    expect(out.authServer).toBe("127.0.0.1:3025");
    expect(out.proxyServer).toBeUndefined();
    expect(cfg.proxyServer).toBe("example.teleport.sh:443");
    expect(applyAgentFlags(out, { proxyServer: "p:443" })).toMatchObject({ proxyServer: "p:443" });
    expect(applyAgentFlags(out, { proxyServer: "p:443" }).authServer).toBeUndefined();
  });

  test("both address flags are kept for the check to refuse", () => {
    const out = applyAgentFlags(base(), { authServer: "a:3025", proxyServer: "p:443" });
    expect(failure(() => checkAgentConfig(out)).message).toBe(
      `Cannot use both auth_server "a:3025" and proxy_server "p:443" in agent config: set only one`,
    );
  });

  test("--ca-pin replaces the pins; --join-method, durations, booleans and log format apply", () => {
    const out = applyAgentFlags(parseAgentConfig("onboarding:\n  ca_pins: [sha256:old]\n", "x.yaml"), {
      caPins: [PIN],
      joinMethod: "bound_keypair",
      certificateTtl: "2h",
      renewalInterval: "10m",
      oneshot: true,
      debug: true,
      insecure: true,
      diagAddr: "127.0.0.1:0",
      logFormat: "json",
    });
    expect(out.onboarding.caPins).toEqual([PIN]);
    expect(out.onboarding.joinMethod).toBe("bound_keypair");
    expect(out).toMatchObject({ credentialTtlMs: 7_200_000, renewalIntervalMs: 600_000, oneshot: true, debug: true, insecure: true, diagAddr: "127.0.0.1:0", logFormat: "json" });
  });

  test("--token reads a file the same way the config does", () => {
    using tmp = new TempDir();
    const path = tmp.write("token", "from-file\n");
    const out = applyAgentFlags(base(), { token: path });
    expect(out.onboarding).toMatchObject({ token: "from-file", tokenPath: path });
    expect(applyAgentFlags(out, { token: "literal" }).onboarding.tokenPath).toBeUndefined();
  });

  test("--storage takes memory://, file:///path or a plain path", () => {
    expect(parseStorageFlag("memory://")).toEqual({ type: "memory" });
    expect(parseStorageFlag("file:///var/lib/bot")).toEqual({ type: "directory", path: "/var/lib/bot", symlinks: "try-secure", acls: "off" });
    expect(parseStorageFlag("./state")).toEqual({ type: "directory", path: "./state", symlinks: "try-secure", acls: "off" });
    expect(failure(() => parseStorageFlag("s3://bucket")).message).toBe(
      `Invalid value "s3://bucket" for --storage: expected "memory://", "file:///path" or a directory path`,
    );
    expect(failure(() => parseStorageFlag("file://relative")).field).toBe("--storage");
  });

  test("--destination-dir adds an identity output, or moves the first directory identity output", async () => {
    const v1 = await loadAgentConfig(join(SCENARIOS, "tbot-v1.yaml"));
    const added = applyAgentFlags(v1, { destinationDir: "/tmp/out" });
    expect(added.outputs).toHaveLength(2);
    expect(added.outputs[1]).toEqual({
      type: "identity",
      destination: { type: "directory", path: "/tmp/out", symlinks: "try-secure", acls: "try" },
      roles: [],
      sshConfig: true,
    });
    const moved = applyAgentFlags(added, { destinationDir: "/tmp/elsewhere" });
    expect(moved.outputs).toHaveLength(2);
    expect(moved.outputs[1]!.destination).toMatchObject({ path: "/tmp/elsewhere" });
    expect(moved.outputs[0]).toEqual(v1.outputs[0]!);
  });

  test("bad flag values are refused with the flag's name", () => {
    expect(failure(() => applyAgentFlags(base(), { logFormat: "xml" })).message).toBe(
      `Invalid value "xml" for --log-format: allowed values are "text", "json"`,
    );
    expect(failure(() => applyAgentFlags(base(), { joinMethod: "iam" })).message).toBe(
      `Invalid value "iam" for --join-method: allowed values are "token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"`,
    );
    const e = failure(() => applyAgentFlags(base(), { certificateTtl: "forever" }));
    expect(e.message).toBe(`Invalid duration "forever" for --certificate-ttl: expected a number and a unit such as "90s", "20m" or "1h30m"`);
    expect(e.field).toBe("--certificate-ttl");
  });

  test("a duration flag without a unit is refused as YAML refuses it, not read as seconds", () => {
    for (const [flag, key] of [
      ["--certificate-ttl", "certificateTtl"],
      ["--renewal-interval", "renewalInterval"],
    ] as const) {
      const e = failure(() => applyAgentFlags(base(), { [key]: "10" }));
      expect(e.message).toBe(`Invalid duration "10" for ${flag}: a number needs a unit: write "10s" for seconds or "10m" for minutes`);
    }
  });
});

describe("checkAgentConfig()", () => {
  test("the scenario configs pass once real pins are given", async () => {
    for (const f of ["tbot-static-env.yaml", "tbot-static-file.yaml", "tbot-kubernetes.yaml"]) {
      expect(checkAgentConfig(await loadAgentConfig(join(SCENARIOS, f))).warnings).toEqual([]);
    }
    const v1 = await loadAgentConfig(join(SCENARIOS, "tbot-v1.yaml"));
    expect(checkAgentConfig(applyAgentFlags(v1, { caPins: [PIN] })).onboarding.caPins).toEqual([PIN]);
  });

  test("the placeholder pin of tbot-v1.yaml is not hex", async () => {
    const v1 = await loadAgentConfig(join(SCENARIOS, "tbot-v1.yaml"));
    const e = failure(() => checkAgentConfig(v1));
    expect(e.message).toBe(
      `Invalid CA pin "sha256:abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678abdc1245efgh5678" for onboarding.ca_pins[0] in agent config: expected "sha256:" followed by 64 hexadecimal digits`,
    );
    expect(e.field).toBe("onboarding.ca_pins[0]");
  });

  const cases: { name: string; cfg: (c: AgentConfig) => AgentConfig; message: string }[] = [
    {
      name: "no address at all",
      cfg: ({ authServer: _, ...c }) => applyAgentFlags(c, {}),
      message: `Missing auth_server or proxy_server in agent config: set one in the config file or pass --auth-server or --proxy-server`,
    },
    {
      name: "an address with a scheme",
      cfg: (c) => applyAgentFlags(c, { authServer: "https://auth.example.com" }),
      message: `Invalid address "https://auth.example.com" for auth_server in agent config: expected "host:port" without a scheme, such as "auth.example.com:3025"`,
    },
    {
      name: "no token for a token join",
      cfg: withoutToken,
      message: `Missing required field "onboarding.token" in agent config: join method "token" needs a token; set it in the config file or pass --token`,
    },
    {
      name: "no token for a bound keypair join without a registration secret",
      cfg: (c) => applyAgentFlags(withoutToken(c), { joinMethod: "bound_keypair" }),
      message: `Missing required field "onboarding.token" in agent config: join method "bound_keypair" needs a token (or a registration secret); set it in the config file or pass --token`,
    },
    {
      name: "a TTL over 7 days",
      cfg: (c) => applyAgentFlags(c, { certificateTtl: "169h" }),
      message: `Invalid duration "169h" for credential_ttl in agent config: must be at most 168h (7 days)`,
    },
    {
      name: "a zero renewal interval",
      cfg: (c) => applyAgentFlags(c, { renewalInterval: "0s" }),
      message: `Invalid duration "0s" for renewal_interval in agent config: must be longer than 0s`,
    },
    {
      name: "two outputs in one directory",
      cfg: (c) => applyAgentFlags(parseAgentConfig("version: v2\noutputs:\n  - {type: identity, destination: {type: directory, path: /opt/a}}\n  - {type: kubernetes, kubernetes_cluster: k, destination: {type: directory, path: /opt/a/}}\n", "o.yaml"), { authServer: c.authServer!, token: "t0ken" }),
      message: `Invalid value "/opt/a/" for outputs[1].destination.path in agent config: outputs[0] already writes there`,
    },
    {
      name: "an output in the storage directory",
      cfg: (c) => applyAgentFlags(c, { destinationDir: "/var/lib/machine-id" }),
      message: `Invalid value "/var/lib/machine-id" for outputs[0].destination.path in agent config: the agent's storage already writes there`,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const e = failure(() => checkAgentConfig(c.cfg(base())));
      expect(e.code).toBe("BAD_PARAMETER");
      expect(e.message).toBe(c.message);
    });
  }

  test("a bound keypair join with a registration secret needs no token", () => {
    const cfg = parseAgentConfig(
      "version: v2\nproxy_server: p:443\nonboarding:\n  join_method: bound_keypair\n  bound_keypair:\n    registration_secret: abc\n",
      "bk.yaml",
    );
    expect(checkAgentConfig(cfg).onboarding.token).toBeUndefined();
  });

  test("every problem is listed in details", () => {
    const e = failure(() => checkAgentConfig(applyAgentFlags(base(), { caPins: ["x", "y"], renewalInterval: "0s" })));
    expect((e.details!.errors as { field: string }[]).map((x) => x.field)).toEqual(["onboarding.ca_pins[0]", "onboarding.ca_pins[1]", "renewal_interval"]);
  });

  test("a TTL below the renewal interval is a warning, once however often the check runs", () => {
    const cfg = checkAgentConfig(applyAgentFlags(base(), { certificateTtl: "10m" }));
    expect(cfg.warnings).toEqual(["credential_ttl 10m is shorter than renewal_interval 20m: credentials will expire between renewals"]);
    expect(checkAgentConfig(cfg).warnings).toEqual(cfg.warnings);
  });

  test("insecure is warned about", () => {
    expect(checkAgentConfig(applyAgentFlags(base(), { insecure: true })).warnings).toEqual([
      "insecure is set: the auth service's certificate is not verified, so anyone on the network path can impersonate it",
    ]);
  });

  test("the check never changes its argument", () => {
    const cfg = applyAgentFlags(base(), { certificateTtl: "10m" });
    const copy = structuredClone(cfg);
    checkAgentConfig(cfg);
    expect(cfg).toEqual(copy);
  });
});
