/**
 * Issue 5 end to end: the compiled auth service serves install.sh (with its address
 * and CA pin filled in) and the compiled binary; `curl … | DESTDIR=… bash` installs
 * into a temporary root; a second run changes nothing; a binary whose checksum does
 * not match is refused and nothing is installed.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { loadAgentConfig, checkAgentConfig } from "../../src/config/index.ts";
import { BIN, ROOT, ensureBinary, sh, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

const ARCH = process.arch === "arm64" ? "arm64" : "x64";
const NAME = `machine-id-linux-${ARCH}`;

let dir: ReturnType<typeof tempDir>;
let auth: AuthProcess;
let caFile: string;
let pin: string;

beforeAll(async () => {
  ensureBinary();
  dir = tempDir("mid-install-");
  const good = join(dir.path, "dist-good");
  mkdirSync(good);
  symlinkSync(join(ROOT, "dist", NAME), join(good, NAME));
  copyFileSync(join(ROOT, "dist", `${NAME}.sha256`), join(good, `${NAME}.sha256`));
  auth = await startAuth(join(dir.path, "auth"), { args: ["--dist-dir", good, "--cluster-name", "install.example"] });
  caFile = join(dir.path, "ca.pem");
  writeFileSync(caFile, await auth.ctlOk("auth", "export", "--type", "tls-host"));
  pin = /CA pin\s+(\S+)/.exec(await auth.ctlOk("status"))![1]!;
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  dir?.[Symbol.dispose]();
});

/** `curl -fsSL --cacert ca.pem https://auth/scripts/install.sh | DESTDIR=root bash -s -- ARGS`, PATH without node or bun. */
function install(root: string, args: string[] = [], addr = auth.addr) {
  const quoted = args.map((a) => `'${a}'`).join(" ");
  return sh(["bash", "-c", `set -o pipefail; curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- ${quoted}`], {
    env: { PATH: "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", DESTDIR: root, CA: caFile, ADDR: addr, HOME: dir.path },
  });
}

function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p);
      const rel = relative(root, p);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else {
        out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`;
      }
    }
  };
  walk(root);
  return out;
}

describe("curl | bash from the auth service", () => {
  test("installs the binary, state dir, config with the CA pin and the unit; a second run is a no-op", async () => {
    const root = join(dir.path, "root");
    mkdirSync(root);
    const r = install(root, ["--token", "example-token", "--join-method", "bound_keypair"]);
    if (r.code !== 0) console.error(r.stdout, r.stderr);
    expect(r.code).toBe(0);

    const bin = join(root, "usr/local/bin/machine-id");
    expect(statSync(bin).mode & 0o777).toBe(0o755);
    // the installed file is the served build, byte for byte, and runs without node or bun
    expect(createHash("sha256").update(readFileSync(bin)).digest("hex")).toBe(readFileSync(join(ROOT, "dist", `${NAME}.sha256`), "utf8").split(" ")[0]!);
    // an empty environment whose PATH holds neither node nor bun (nor anything else)
    const v = sh(["/usr/bin/env", "-i", "PATH=/nonexistent", bin, "version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(sh([BIN, "version"]).stdout);

    expect(statSync(join(root, "var/lib/machine-id")).mode & 0o777).toBe(0o700);
    const configPath = join(root, "etc/machine-id.yaml");
    const config = readFileSync(configPath, "utf8");
    expect(config).toContain(pin);
    expect(config).toContain(auth.addr);
    // root:machine-id 0640: the agent's group reads it, nobody else (it may hold a join token)
    expect(statSync(configPath).mode & 0o777).toBe(0o640);
    // the written config is one the agent accepts as it is
    const cfg = checkAgentConfig(await loadAgentConfig(configPath));
    expect(cfg.onboarding).toMatchObject({ joinMethod: "bound_keypair", token: "example-token", caPins: [pin] });
    expect(cfg.authServer ?? cfg.proxyServer).toBe(auth.addr);
    expect(existsSync(join(root, "etc/systemd/system/machine-id.service"))).toBe(true);
    expect(readFileSync(join(root, "etc/systemd/system/machine-id.service"), "utf8")).toContain("ExecStart=/usr/local/bin/machine-id start -c /etc/machine-id.yaml");

    const before = snapshot(root);
    const again = install(root, ["--token", "example-token", "--join-method", "bound_keypair"]);
    expect(again.code).toBe(0);
    expect(snapshot(root)).toEqual(before);
  }, 120_000);

  test("a binary that does not match its served checksum is refused and nothing is installed", async () => {
    const bad = join(dir.path, "dist-bad");
    mkdirSync(bad);
    copyFileSync(join(ROOT, "dist", NAME), join(bad, NAME));
    // the checksum published at build time no longer matches what is served
    writeFileSync(join(bad, NAME), Buffer.concat([readFileSync(join(bad, NAME)), Buffer.from("tampered")]));
    copyFileSync(join(ROOT, "dist", `${NAME}.sha256`), join(bad, `${NAME}.sha256`));
    const second = await startAuth(join(dir.path, "auth2"), { args: ["--dist-dir", bad, "--cluster-name", "tampered.example"] });
    try {
      writeFileSync(caFile, await second.ctlOk("auth", "export", "--type", "tls-host"));
      const root = join(dir.path, "root-bad");
      mkdirSync(root);
      const r = install(root, [], second.addr);
      expect(r.code).not.toBe(0);
      expect(r.stderr.toLowerCase()).toContain("checksum");
      expect(readdirSync(root)).toEqual([]);
    } finally {
      await second[Symbol.asyncDispose]();
      writeFileSync(caFile, await auth.ctlOk("auth", "export", "--type", "tls-host"));
    }
  }, 120_000);

  test("the served script refuses an unknown download architecture path", async () => {
    const res = await fetch(`https://${auth.addr}/downloads/machine-id-linux-mips`, { tls: { ca: readFileSync(caFile, "utf8"), serverName: "localhost" } } as RequestInit);
    expect(res.status).toBe(404);
  });
});
