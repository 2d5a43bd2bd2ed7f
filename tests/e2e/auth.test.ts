/**
 * Issue 2 end to end with the compiled binary: the auth service on port 0 in a temp
 * dir, `ctl` against it, the CA pin checked with openssl, resources surviving a
 * restart, and bad input refused with file:line messages and nothing stored.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync, statSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ensureBinary, run, sh, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

import { SCENARIOS } from "../_scenarios.ts";

let dir: ReturnType<typeof tempDir>;
let auth: AuthProcess;

beforeAll(async () => {
  ensureBinary();
  dir = tempDir();
  auth = await startAuth(join(dir.path, "data"), { args: ["--cluster-name", "e2e.example"] });
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  dir?.[Symbol.dispose]();
});

function opensslPin(pem: string): string {
  const pub = sh(["openssl", "x509", "-pubkey", "-noout"], { stdin: pem });
  expect(pub.code).toBe(0);
  const der = Bun.spawnSync(["openssl", "pkey", "-pubin", "-outform", "der"], { stdin: new TextEncoder().encode(pub.stdout), stdout: "pipe" });
  const sum = Bun.spawnSync(["sha256sum"], { stdin: der.stdout, stdout: "pipe" });
  return "sha256:" + sum.stdout.toString().split(" ")[0];
}

describe("auth service and ctl, compiled", () => {
  test("version prints the version and git commit", async () => {
    const r = await run(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^machine-id v\d+\.\d+\.\d+ git:[0-9a-f]{7,}(-dirty)? bun:/);
  });

  test("the data dir is 0700 and its secrets 0600", () => {
    expect(statSync(auth.dataDir).mode & 0o777).toBe(0o700);
    for (const f of ["admin-identity", "machine-id.db"]) expect(statSync(join(auth.dataDir, f)).mode & 0o777).toBe(0o600);
  });

  test("ctl status prints the pin openssl computes from the exported host CA", async () => {
    const status = await auth.ctlOk("status");
    expect(status).toContain("Cluster  e2e.example");
    const pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(status)?.[1];
    expect(pin).toBeDefined();
    const hostCa = await auth.ctlOk("auth", "export", "--type", "tls-host");
    expect(hostCa).toStartWith("-----BEGIN CERTIFICATE-----");
    expect(opensslPin(hostCa)).toBe(pin!);
    // the user CA is a different CA with a different pin
    expect(opensslPin(await auth.ctlOk("auth", "export", "--type", "tls-user"))).not.toBe(pin!);
    // the same material is served without authentication
    const res = await fetch(`https://${auth.addr}/webapi/auth/export?type=tls-host`, { tls: { rejectUnauthorized: false } } as RequestInit);
    expect(await res.text()).toBe(hostCa);
  });

  test("ssh CA exports are OpenSSH lines ssh-keygen reads", async () => {
    const user = await auth.ctlOk("auth", "export", "--type", "ssh-user");
    expect(user).toMatch(/^ssh-ed25519 AAAA\S+ /);
    const f = join(dir.path, "user_ca.pub");
    writeFileSync(f, user);
    expect(sh(["ssh-keygen", "-l", "-f", f]).code).toBe(0);
    expect(await auth.ctlOk("auth", "export", "--type", "ssh-host")).toMatch(/^@cert-authority \* ssh-ed25519 AAAA/);
  });

  test("create the scenario bot and role, get them in text, yaml and json, rm removes", async () => {
    expect(await auth.ctlOk("create", "-f", join(SCENARIOS, "role-kube.yaml"))).toContain("role/machine-id-kube-role has been created");
    expect(await auth.ctlOk("create", join(SCENARIOS, "bot.yaml"))).toContain("bot/example has been created");

    const text = await auth.ctlOk("get", "bot");
    expect(text).toMatch(/^Name\s+Roles/);
    expect(text).toContain("example");
    const yaml = parseYaml(await auth.ctlOk("get", "role/machine-id-kube-role", "--format", "yaml"));
    expect(yaml.kind).toBe("role");
    expect(yaml.spec.allow.kubernetes_groups).toEqual(["example"]);
    expect(yaml.spec.allow.kubernetes_resources[0]).toMatchObject({ kind: "pod", namespace: "*", name: "*" });
    const json = JSON.parse(await auth.ctlOk("get", "bot/example", "--format", "json"));
    expect(json[0]).toMatchObject({ kind: "bot", version: "v1", metadata: { name: "example" }, spec: { roles: [] } });

    // a second create is refused; --force replaces
    const again = await auth.ctl("create", "-f", join(SCENARIOS, "bot.yaml"));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already exists");
    expect((await auth.ctl("create", "-f", join(SCENARIOS, "bot.yaml"), "--force")).code).toBe(0);

    const tmpBot = join(dir.path, "tmp-bot.yaml");
    writeFileSync(tmpBot, "kind: bot\nversion: v1\nmetadata:\n  name: short-lived\nspec:\n  roles: []\n");
    await auth.ctlOk("create", "-f", tmpBot);
    expect(await auth.ctlOk("rm", "bot/short-lived")).toContain("deleted");
    const gone = await auth.ctl("get", "bot/short-lived");
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('bot "short-lived" not found');
  });

  test("bots add prints a token, the pin and a ready config; tokens ls shows the token", async () => {
    const out = await auth.ctlOk("bots", "add", "robot", "--roles=machine-id-kube-role", "--format", "json");
    const j = JSON.parse(out);
    expect(Object.keys(j)).toEqual(expect.arrayContaining(["bot", "token", "ca_pins", "expires"]));
    expect(j.bot).toBe("robot");
    expect(j.token).toMatch(/^[0-9a-f]{32}$/);
    expect(j.ca_pins[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(new Date(j.expires).getTime() - Date.now()).toBeGreaterThan(59 * 60_000);
    expect(await auth.ctlOk("tokens", "ls")).toContain(j.token);

    const text = await auth.ctlOk("bots", "add", "robot2", "--roles=machine-id-kube-role", "--ttl", "10m");
    expect(text).toContain("The bot join token:");
    expect(text).toContain(`--ca-pin=${j.ca_pins[0]}`);
    expect(text).toContain("version: v2");
    expect(await auth.ctlOk("bots", "ls")).toContain("robot2");
  });

  describe("bad input: a clear message with the line, exit 1, nothing stored", () => {
    const cases: [string, string, RegExp][] = [
      [
        "misspelt role field",
        "kind: role\nversion: v7\nmetadata:\n  name: typo-role\nspec:\n  allow:\n    logns: [root]\n",
        /:7:5: .*Unknown field "spec\.allow\.logns".*did you mean "logins"\?/,
      ],
      [
        "unknown join method",
        "kind: token\nversion: v2\nmetadata:\n  name: typo-token-0123456789\nspec:\n  roles: [Bot]\n  bot_name: example\n  join_method: tokn\n",
        /:8:16: .*"tokn".*spec\.join_method.*"token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"/,
      ],
      ["YAML syntax error", "kind: role\nversion: v7\nmetadata:\n  name: [broken\nspec: {}\n", /bad\.yaml:\d+:\d+: /],
    ];
    for (const [name, body, message] of cases) {
      test(name, async () => {
        const before = await auth.ctlOk("get", "role", "--format", "json");
        const beforeTokens = await auth.ctlOk("get", "token", "--format", "json");
        const f = join(dir.path, "bad.yaml");
        writeFileSync(f, body);
        const r = await auth.ctl("create", "-f", f);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(message);
        expect(await auth.ctlOk("get", "role", "--format", "json")).toBe(before);
        expect(await auth.ctlOk("get", "token", "--format", "json")).toBe(beforeTokens);
      });
    }
  });

  test("usage errors exit 2", async () => {
    expect((await run(["ctl", "--data-dir", auth.dataDir, "get"])).code).toBe(2);
    expect((await run(["no-such-command"])).code).toBe(2);
    const r = await run(["ctl", "--data-dir", auth.dataDir, "get", "bot", "--format", "xml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("xml");
  });

  test("ctl without an identity names the file and what to do", async () => {
    const r = await run(["ctl", "--data-dir", join(dir.path, "nowhere"), "status"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("nowhere/admin-identity");
    expect(r.stderr).toContain("--identity");
  });

  test("a restart keeps the CA and the resources", async () => {
    const ca = await auth.ctlOk("auth", "export", "--type", "tls-host");
    const sshCa = await auth.ctlOk("auth", "export", "--type", "ssh-user");
    const bots = await auth.ctlOk("get", "bot", "--format", "json");
    const roles = await auth.ctlOk("get", "role", "--format", "json");
    const identity = readFileSync(join(auth.dataDir, "admin-identity"), "utf8");
    expect(await auth.stop("SIGTERM")).toBe(0);
    auth = await startAuth(auth.dataDir);
    expect(await auth.ctlOk("auth", "export", "--type", "tls-host")).toBe(ca);
    expect(await auth.ctlOk("auth", "export", "--type", "ssh-user")).toBe(sshCa);
    expect(await auth.ctlOk("get", "bot", "--format", "json")).toBe(bots);
    expect(await auth.ctlOk("get", "role", "--format", "json")).toBe(roles);
    expect(await auth.ctlOk("status")).toContain("e2e.example");
    // the admin identity is re-issued on start, from the same CA
    expect(readFileSync(join(auth.dataDir, "admin-identity"), "utf8")).not.toBe(identity);
  }, 60_000);

  test("a data dir refuses another cluster name", async () => {
    await auth.stop("SIGTERM");
    const r = await run(["auth", "start", "--data-dir", auth.dataDir, "--listen-addr", "127.0.0.1:0", "--cluster-name", "other.example"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('belongs to cluster "e2e.example"');
    auth = await startAuth(auth.dataDir);
  }, 60_000);
});
