/**
 * The systemd units: the files in systemd/ are the generator's output, every unit passes
 * `systemd-analyze verify`, the agent unit's security exposure stays "OK" and matches the
 * figure recorded in docs/systemd.md, and `machine-id install systemd` renders per config.
 */

import { describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { installSystemd, installSystemdCommand, renderUnit, type UnitKind } from "../../src/agent/systemd/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { compiledBinary, ROOT, run, tempDir } from "./_helpers.ts";

const FILES: Record<string, UnitKind> = {
  "machine-id.service": "agent",
  "machine-id@.service": "agent-template",
  "machine-id-auth.service": "auth",
};

/**
 * Runs `systemd-analyze verify` on units whose ExecStart= points at the compiled binary
 * (verify insists the executable exists, and the real path is not installed here).
 */
async function verify(units: Record<string, string>): Promise<{ code: number; output: string }> {
  const bin = await compiledBinary();
  await using d = await tempDir("machine-id-units-");
  const paths: string[] = [];
  for (const [name, text] of Object.entries(units)) {
    const p = join(d.path, name);
    await writeFile(p, text.replaceAll("/usr/local/bin/machine-id", bin));
    paths.push(p);
  }
  const r = await run(["systemd-analyze", "verify", "--man=no", ...paths]);
  return { code: r.code, output: r.stdout + r.stderr };
}

async function exposure(name: string, text: string): Promise<number> {
  await using d = await tempDir("machine-id-units-");
  const p = join(d.path, name);
  await writeFile(p, text);
  const r = await run(["systemd-analyze", "security", "--offline=true", "--no-pager", p]);
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout + r.stderr);
  if (!m) throw new Error(`no exposure level in:\n${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

describe("systemd units", () => {
  for (const [file, kind] of Object.entries(FILES)) {
    test(`systemd/${file} is renderUnit({ kind: "${kind}" })`, async () => {
      // After changing unit.ts: UPDATE_UNITS=1 bun test tests/distribution/units.test.ts
      if (process.env.UPDATE_UNITS === "1") await writeFile(join(ROOT, "systemd", file), renderUnit({ kind }));
      expect(await readFile(join(ROOT, "systemd", file), "utf8")).toBe(renderUnit({ kind }));
    });
  }

  test("every unit passes systemd-analyze verify", async () => {
    const units: Record<string, string> = {};
    for (const file of Object.keys(FILES)) units[file] = await readFile(join(ROOT, "systemd", file), "utf8");
    const r = await verify(units);
    expect(r.output).toBe("");
    expect(r.code).toBe(0);
  }, 30_000);

  test("machine-id.service exposure is OK (≤ 2.0) and is the figure docs/systemd.md records", async () => {
    const level = await exposure("machine-id.service", await readFile(join(ROOT, "systemd/machine-id.service"), "utf8"));
    expect(level).toBeLessThanOrEqual(2.0);
    const docs = await readFile(join(ROOT, "docs/systemd.md"), "utf8");
    expect(docs).toContain(`machine-id.service | ${level.toFixed(1)} OK`);
  }, 30_000);

  test("the auth unit may bind :443 and nothing else is privileged", () => {
    const unit = renderUnit({ kind: "auth" });
    expect(unit).toContain("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n");
    expect(unit).toContain("ExecStart=/usr/local/bin/machine-id auth start -c /etc/machine-id-auth.yaml\n");
    expect(renderUnit({ kind: "agent" })).toContain("CapabilityBoundingSet=\n");
  });

  test("renderUnit() quotes and escapes paths systemd would split or expand", () => {
    const unit = renderUnit({ kind: "agent", execPath: "/opt/my bots/machine-id", configPath: "/etc/50%/$HOME.yaml", readWritePaths: ["/srv/out put", "/home/ci/certs"] });
    expect(unit).toContain('ExecStart="/opt/my bots/machine-id" start -c /etc/50%%/$$HOME.yaml\n');
    expect(unit).toContain('ReadWritePaths="-/srv/out put"\n');
    expect(unit).toContain("ReadWritePaths=-/home/ci/certs\n");
    // a writable path under /home needs ProtectHome=read-only: =yes would hide it
    expect(unit).toContain("ProtectHome=read-only\n");
  });

  const bad: [string, Parameters<typeof renderUnit>[0], string][] = [
    ["a relative executable", { kind: "agent", execPath: "machine-id" }, 'Invalid executable path "machine-id": it must be absolute'],
    ["a newline in the config path", { kind: "agent", configPath: "/etc/a\nExecStartPre=/bin/evil" }, 'Invalid config path "/etc/a\\nExecStartPre=/bin/evil": it contains a control character'],
    ["a user name with spaces", { kind: "agent", user: "bad user" }, 'Invalid user "bad user": expected a system account name such as "machine-id"'],
    ["a state directory escaping /var/lib", { kind: "agent", stateDirectory: "../etc" }, 'Invalid state directory "../etc": expected a relative path under /var/lib such as "machine-id"'],
  ];
  for (const [name, options, message] of bad) {
    test(`renderUnit() rejects ${name}`, () => {
      expect(() => renderUnit(options)).toThrow(message);
    });
  }
});

describe("machine-id install systemd", () => {
  const V2 = `version: v2
auth_server: auth.example.com:3025
onboarding: { join_method: bound_keypair, token: t }
storage: { type: directory, path: /var/lib/bots/ci }
outputs:
  - type: identity
    destination: { type: directory, path: /opt/machine-id }
  - type: identity
    destination: { type: memory }
`;
  const V1 = `auth_server: "teleport.example.com:443"
storage:
  directory: /srv/bot-state
destinations:
  - directory: /opt/machine-id
    kubernetes_cluster: example-k8s-cluster
`;

  test("derives StateDirectory= and ReadWritePaths= from a v2 config, and the unit verifies", async () => {
    await using d = await tempDir();
    const config = join(d.path, "bot.yaml");
    await writeFile(config, V2);
    const r = await installSystemd({ name: "ci-bot", config, execPath: "/usr/local/bin/machine-id" });
    expect(r.action).toBe("printed");
    expect(r.unit).toContain("StateDirectory=bots/ci\n");
    expect(r.unit).toContain("ReadWritePaths=-/opt/machine-id\n");
    expect(r.unit).toContain(`ExecStart=/usr/local/bin/machine-id start -c ${config}\n`);
    expect(r.unit).toContain("Description=machine-id agent ci-bot: short-lived certificates for a bot\n");
    const v = await verify({ "ci-bot.service": r.unit });
    expect(v.output).toBe("");
    expect(v.code).toBe(0);
  }, 30_000);

  test("a v1 config with storage outside /var/lib gets it as a writable path", async () => {
    await using d = await tempDir();
    const config = join(d.path, "tbot.yaml");
    await writeFile(config, V1);
    const r = await installSystemd({ config });
    expect(r.unit).not.toContain("StateDirectory=");
    expect(r.unit).toContain("ReadWritePaths=-/opt/machine-id\nReadWritePaths=-/srv/bot-state\n");
  });

  test("an output under /tmp is refused (PrivateTmp=yes would hide it) unless --force, which notes it", async () => {
    await using d = await tempDir();
    const config = join(d.path, "tmp-out.yaml");
    await writeFile(config, V2.replace("path: /opt/machine-id", "path: /tmp/bot-out"));
    const e = await installSystemd({ config }).catch((x) => x);
    expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
    expect(e.details.reason).toBe("private_tmp");
    expect(e.message).toContain('"/tmp/bot-out"');
    expect(e.message).toContain("PrivateTmp=yes");
    expect(e.message).toContain("--force");
    const forced = await installSystemd({ config, force: true });
    expect(forced.unit).toContain("ReadWritePaths=-/tmp/bot-out\n");
    expect(forced.notes.join("\n")).toContain("PrivateTmp=yes");
  });

  test("a missing config renders the default unit with a note", async () => {
    await using d = await tempDir();
    const r = await installSystemd({ config: join(d.path, "absent.yaml"), execPath: "/usr/local/bin/machine-id" });
    expect(r.notes[0]).toContain("does not exist yet");
    expect(r.unit).toBe(renderUnit({ kind: "agent", configPath: join(d.path, "absent.yaml") }));
  });

  test("a config that is not YAML is reported with its file and line", async () => {
    await using d = await tempDir();
    const config = join(d.path, "broken.yaml");
    await writeFile(config, "version: v2\nstorage: [\n");
    const e = await installSystemd({ config }).catch((x) => x);
    expect(isAppError(e, "BAD_PARAMETER")).toBe(true);
    expect(e.message).toStartWith(`Cannot read config "${config}"`);
    expect(e.position.line).toBeGreaterThan(1);
  });

  test("writes the unit, reports an identical rewrite as unchanged, refuses a different one without --force", async () => {
    await using d = await tempDir();
    const config = join(d.path, "bot.yaml");
    await writeFile(config, V2);
    const first = await installSystemd({ config, writeTo: d.path });
    expect(first.action).toBe("created");
    expect(first.path).toBe(join(d.path, "machine-id.service"));
    expect(((await Bun.file(first.path!).stat()).mode & 0o777).toString(8)).toBe("644");
    expect((await installSystemd({ config, writeTo: d.path })).action).toBe("unchanged");

    const e = await installSystemd({ config, writeTo: d.path, user: "other" }).catch((x) => x);
    expect(isAppError(e, "ALREADY_EXISTS")).toBe(true);
    expect(e.message).toBe(`Cannot write "${first.path}": a different unit is already there; pass --force to replace it`);
    expect(await readFile(first.path!, "utf8")).toBe(first.unit);

    const forced = await installSystemd({ config, writeTo: d.path, user: "other", force: true });
    expect(forced.action).toBe("replaced");
    expect(await readFile(first.path!, "utf8")).toContain("User=other\nGroup=other\n");
  });

  test("rejects a template name and a missing target directory", async () => {
    await expect(installSystemd({ name: "machine-id@x" })).rejects.toThrow(/use the machine-id@.service template/);
    await expect(installSystemd({ config: "/nonexistent.yaml", writeTo: "/nonexistent-dir" })).rejects.toThrow('Cannot write units into "/nonexistent-dir": no such file or directory');
  });

  test("the commander command parses its flags and prints or writes", async () => {
    await using d = await tempDir();
    const config = join(d.path, "bot.yaml");
    await writeFile(config, V2);
    let out = "";
    let err = "";
    const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t) };
    await installSystemdCommand(io).parseAsync(["--config", config, "--user", "bots", "--group", "certs"], { from: "user" });
    expect(out).toContain("User=bots\nGroup=certs\n");
    out = "";
    await installSystemdCommand(io).parseAsync(["-c", config, "--name", "ci", "--write-to", d.path], { from: "user" });
    expect(out).toBe(`Wrote ${join(d.path, "ci.service")}\nNext: systemctl daemon-reload && systemctl enable --now ci.service\n`);
    expect(err).toBe("");
  });
});
