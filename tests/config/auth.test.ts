// The auth config: defaults, flags, the check step, golden round trip, error messages.

import { describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { join } from "node:path";
import {
  applyAuthFlags,
  checkAuthConfig,
  defaultAuthConfig,
  loadAuthConfig,
  parseAuthConfig,
  serializeAuthConfig,
  splitHostPort,
} from "../../src/config/index.ts";
import { DEFAULT_AUDIT_RETENTION_MS } from "../../src/config/auth.ts";
import { errorCases, failure, golden, type ErrorCase } from "../_support/cases.ts";

const FIXTURES = join(import.meta.dir, "fixtures");


describe("auth config", () => {
  test("defaults: host name as cluster name, sqlite in the data dir, 0.0.0.0:3025", () => {
    const cfg = defaultAuthConfig();
    expect(cfg).toEqual({
      clusterName: hostname().toLowerCase(),
      dataDir: "/var/lib/machine-id-auth",
      listenAddr: "0.0.0.0:3025",
      storage: { type: "sqlite", path: "machine-id.db" },
      log: { level: "info", format: "text" },
      caKeyAlgorithm: "ecdsa-p256",
      audit: { retentionMs: 90 * 86_400_000 },
      warnings: [],
    });
    const checked = checkAuthConfig(cfg);
    expect(checked.storage).toEqual({ type: "sqlite", path: "/var/lib/machine-id-auth/machine-id.db" });
    expect(checked.publicAddr).toBe(`${hostname().toLowerCase()}:3025`);
  });

  test("flags override the file, and the sqlite file follows the data dir", () => {
    const cfg = applyAuthFlags(parseAuthConfig("version: v1\ncluster_name: file-name\n", "a.yaml"), {
      dataDir: "/tmp/auth-data",
      listenAddr: "127.0.0.1:0",
      publicAddr: "localhost:3025",
      clusterName: "flag-name",
    });
    const checked = checkAuthConfig(cfg);
    expect(checked).toMatchObject({ clusterName: "flag-name", dataDir: "/tmp/auth-data", listenAddr: "127.0.0.1:0", publicAddr: "localhost:3025" });
    expect(checked.storage).toEqual({ type: "sqlite", path: "/tmp/auth-data/machine-id.db" });
    expect(checkAuthConfig(checked)).toEqual(checked);
  });

  test("a relative data dir is made absolute against the working directory", () => {
    const checked = checkAuthConfig(applyAuthFlags(defaultAuthConfig(), { dataDir: "state" }));
    expect(checked.dataDir).toBe(join(process.cwd(), "state"));
  });

  test("auth-full.yaml: serialize is stable and round-trips", async () => {
    const cfg = await loadAuthConfig(join(FIXTURES, "auth-full.yaml"));
    expect(cfg.storage).toEqual({ type: "postgres", connString: "postgres://machine-id@db.example.com/machine_id?sslmode=verify-full" });
    expect(cfg.caKeyAlgorithm).toBe("ed25519");
    expect(cfg.limits).toEqual({ headersTimeoutMs: 5_000, requestTimeoutMs: 60_000, idleTimeoutMs: 45_000, maxConnections: 2048, maxConnectionsPerAddress: 64, maxKubernetesSessions: 200, maxKubernetesSessionsPerInstance: 8, failedJoinBurst: 50, failedJoinIntervalMs: 2_000 });
    // written as 720h, written back in days
    expect(cfg.audit).toEqual({ retentionMs: 30 * 86_400_000 });
    const out = serializeAuthConfig(cfg);
    golden(join(FIXTURES, "auth-full.golden.yaml"), out);
    expect(parseAuthConfig(out, "again.yaml")).toEqual(cfg);
    expect(checkAuthConfig(cfg).listenAddr).toBe("[::]:3025");
  });

  describe("audit.retention", () => {
    const retention = (value: string) => parseAuthConfig(`version: v1\ncluster_name: c\naudit:\n  retention: ${value}\n`, "a.yaml");

    test("defaults to 90 days, which is left out when written", () => {
      for (const text of ["version: v1\ncluster_name: c\n", "version: v1\ncluster_name: c\naudit: {}\n", "version: v1\ncluster_name: c\naudit:\n  retention:\n"]) {
        const cfg = parseAuthConfig(text, "a.yaml");
        expect(cfg.audit).toEqual({ retentionMs: DEFAULT_AUDIT_RETENTION_MS });
        expect(serializeAuthConfig(cfg)).not.toContain("audit");
      }
      expect(DEFAULT_AUDIT_RETENTION_MS).toBe(90 * 86_400_000);
      // "90d" said explicitly is the default too
      expect(serializeAuthConfig(retention("90d"))).not.toContain("audit");
    });

    test("takes durations of a day or more and forever, and writes them back", () => {
      const cases: [string, number | null, string][] = [
        ["1d", 86_400_000, "1d"],
        ["24h", 86_400_000, "1d"],
        ["36h", 36 * 3_600_000, "36h"],
        ["1d12h", 36 * 3_600_000, "36h"],
        ["365d", 365 * 86_400_000, "365d"],
        ["forever", null, "forever"],
      ];
      for (const [value, ms, written] of cases) {
        const cfg = retention(value);
        expect(cfg.audit.retentionMs).toBe(ms);
        const out = serializeAuthConfig(cfg);
        expect(out).toContain(`audit:\n  retention: ${written}\n`);
        expect(parseAuthConfig(out, "again.yaml")).toEqual(cfg);
        expect(checkAuthConfig(cfg).audit).toEqual(cfg.audit);
      }
    });

    const retentionCases: ErrorCase[] = [
      {
        name: "a retention that is not a duration",
        text: "version: v1\naudit:\n  retention: soon\n",
        message: `Invalid value "soon" for audit.retention in auth config: expected "forever" or a duration such as "90d" or "2160h"`,
        line: 3,
      },
      {
        name: "a retention shorter than a day (a mistyped unit)",
        text: "version: v1\naudit:\n  retention: 90m\n",
        message: `Invalid duration "90m" for audit.retention in auth config: must be at least 1d (24h), or "forever" to keep events for ever`,
        line: 3,
      },
      {
        name: "a retention of zero",
        text: "version: v1\naudit:\n  retention: 0s\n",
        message: `Invalid duration "0s" for audit.retention in auth config: must be at least 1d (24h), or "forever" to keep events for ever`,
        line: 3,
      },
      {
        name: "a retention given as a bare number",
        text: "version: v1\naudit:\n  retention: 90\n",
        message: `Invalid value 90 for audit.retention in auth config: expected "forever" or a duration such as "90d" or "2160h"`,
        line: 3,
      },
      {
        name: "forever in capitals",
        text: "version: v1\naudit:\n  retention: Forever\n",
        message: `Invalid value "Forever" for audit.retention in auth config: expected "forever" or a duration such as "90d" or "2160h"`,
        line: 3,
      },
      {
        name: "a misspelt audit field",
        text: "version: v1\naudit:\n  retension: 30d\n",
        message: `Unknown field "audit.retension" in auth config: did you mean "retention"?`,
        line: 3,
      },
      {
        name: "audit given as a value, not a section",
        text: "version: v1\naudit: 30d\n",
        message: `Invalid value "30d" for audit in auth config: expected a mapping`,
        line: 2,
      },
    ];
    errorCases(retentionCases, "auth.yaml", parseAuthConfig);
  });

  test("memory storage is allowed with a warning", () => {
    const cfg = checkAuthConfig(parseAuthConfig("version: v1\ncluster_name: c\nstorage: {type: memory}\n", "m.yaml"));
    expect(cfg.warnings).toEqual([`storage type "memory" keeps nothing across restarts: every bot must join again`]);
  });

  test("splitHostPort()", () => {
    expect(splitHostPort("0.0.0.0:3025")).toEqual({ host: "0.0.0.0", port: 3025 });
    expect(splitHostPort("[::1]:443")).toEqual({ host: "[::1]", port: 443 });
    expect(splitHostPort("auth.example.com")).toBeUndefined();
    expect(splitHostPort("auth:99999")).toBeUndefined();
    expect(splitHostPort("http://a:1")).toBeUndefined();
  });

  const fileCases: ErrorCase[] = [
    {
      name: "version is required",
      text: "cluster_name: c\n",
      message: `Missing required field "version" in auth config: expected "v1"`,
      line: 1,
    },
    {
      name: "a misspelt field",
      text: "version: v1\nlisten_adr: 0.0.0.0:3025\n",
      message: `Unknown field "listen_adr" in auth config: did you mean "listen_addr"?`,
      line: 2,
    },
    {
      name: "a misspelt storage type key: the same did-you-mean as the agent config",
      text: "version: v1\nstorage:\n  typ: sqlite\n",
      message: `Missing required field "storage.type" in auth config: found "storage.typ": did you mean "type"? (allowed values are "sqlite", "postgres", "memory")`,
      line: 3,
    },
    {
      name: "an unknown storage type",
      text: "version: v1\nstorage:\n  type: etcd\n",
      message: `Invalid value "etcd" for storage.type in auth config: allowed values are "sqlite", "postgres", "memory"`,
      line: 3,
    },
    {
      name: "postgres without a connection string",
      text: "version: v1\nstorage:\n  type: postgres\n",
      message: `Missing required field "storage.conn_string" in auth config`,
      line: 2,
    },
    {
      name: "a log level that does not exist",
      text: "version: v1\nlog:\n  level: verbose\n",
      message: `Invalid value "verbose" for log.level in auth config: allowed values are "debug", "info", "warn", "error"`,
      line: 3,
    },
    {
      name: "an unsupported CA key algorithm",
      text: "version: v1\nca_key_algorithm: rsa-2048\n",
      message: `Invalid value "rsa-2048" for ca_key_algorithm in auth config: allowed values are "ecdsa-p256", "ed25519"`,
      line: 2,
    },
    {
      name: "a limit that is not a duration",
      text: "version: v1\nlimits:\n  idle_timeout: soon\n",
      message: `Invalid duration "soon" for limits.idle_timeout in auth config: expected a number and a unit such as "90s", "20m" or "1h30m"`,
      line: 3,
    },
    {
      name: "a connection cap of zero",
      text: "version: v1\nlimits:\n  max_connections: 0\n",
      message: `Invalid value 0 for limits.max_connections in auth config: must be greater than 0`,
      line: 3,
    },
    {
      name: "a misspelt limit",
      text: "version: v1\nlimits:\n  idle_timout: 10s\n",
      message: `Unknown field "limits.idle_timout" in auth config: did you mean "idle_timeout"?`,
      line: 3,
    },
  ];
  errorCases(fileCases, "auth.yaml", parseAuthConfig);

  const checkCases: { name: string; flags: Parameters<typeof applyAuthFlags>[1]; message: string }[] = [
    {
      name: "a cluster name that cannot go in a certificate URI",
      flags: { clusterName: "My Cluster" },
      message: `Invalid value "My Cluster" for cluster_name in auth config: expected lowercase letters, digits, "-", "_" and ".", starting and ending with a letter or digit`,
    },
    {
      name: "a listen address without a port",
      flags: { listenAddr: "0.0.0.0" },
      message: `Invalid value "0.0.0.0" for listen_addr in auth config: expected "host:port", such as "0.0.0.0:3025"`,
    },
    {
      name: "a public address with a scheme",
      flags: { publicAddr: "https://auth.example.com:443" },
      message: `Invalid value "https://auth.example.com:443" for public_addr in auth config: expected "host:port", such as "auth.example.com:3025"`,
    },
  ];
  for (const c of checkCases) {
    test(`check: ${c.name}`, () => {
      expect(failure(() => checkAuthConfig(applyAuthFlags(defaultAuthConfig(), c.flags))).message).toBe(c.message);
    });
  }
});
