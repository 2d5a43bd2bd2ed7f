/**
 * Issue 5 end to end: the compiled auth service serves install.sh (with its address
 * and CA pin filled in) and the compiled binary; `curl … | DESTDIR=… bash` installs
 * into a temporary root; a second run changes nothing; a binary whose checksum does
 * not match is refused and nothing is installed, also when the binary and its .sha256
 * were both replaced in the dist dir after the service started.
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
function install(root: string, args: string[] = [], addr = auth.addr, env: Record<string, string> = {}) {
  const quoted = args.map((a) => `'${a}'`).join(" ");
  return sh(["bash", "-c", `set -o pipefail; curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- ${quoted}`], {
    env: { PATH: "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", DESTDIR: root, CA: caFile, ADDR: addr, HOME: dir.path, ...env },
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

  test("a binary swapped in the dist dir after start, with a matching .sha256, is refused and nothing is installed", async () => {
    const swapped = join(dir.path, "dist-swapped");
    mkdirSync(swapped);
    copyFileSync(join(ROOT, "dist", NAME), join(swapped, NAME));
    copyFileSync(join(ROOT, "dist", `${NAME}.sha256`), join(swapped, `${NAME}.sha256`));
    const third = await startAuth(join(dir.path, "auth3"), { args: ["--dist-dir", swapped, "--cluster-name", "swapped.example"] });
    try {
      // whoever can write the dist dir replaces the binary and its checksum file together
      const evil = Buffer.from("#!/bin/sh\necho evil\n");
      writeFileSync(join(swapped, NAME), evil, { mode: 0o755 });
      const evilSum = createHash("sha256").update(evil).digest("hex");
      writeFileSync(join(swapped, `${NAME}.sha256`), `${evilSum}  ${NAME}\n`);
      writeFileSync(caFile, await third.ctlOk("auth", "export", "--type", "tls-host"));
      const root = join(dir.path, "root-swapped");
      mkdirSync(root);
      const r = install(root, [], third.addr);
      expect(r.code).not.toBe(0);
      const buildSum = readFileSync(join(ROOT, "dist", `${NAME}.sha256`), "utf8").split(" ")[0]!;
      expect(r.stderr).toContain(`Checksum mismatch for "https://${third.addr}/downloads/${NAME}": expected ${buildSum}, got ${evilSum}; nothing was installed`);
      expect(readdirSync(root)).toEqual([]);
      // the .sha256 the service publishes is still the one it read at start
      const published = sh(["curl", "-fsS", "--cacert", caFile, `https://${third.addr}/downloads/${NAME}.sha256`]);
      expect(published.stdout).toBe(`${buildSum}  ${NAME}\n`);
    } finally {
      await third[Symbol.asyncDispose]();
      writeFileSync(caFile, await auth.ctlOk("auth", "export", "--type", "tls-host"));
    }
  }, 120_000);

  test(
    "installed for real (overlay-isolated), the agent started as the unit's ExecStart joins with a static key and writes outputs",
    async () => {
      const keys = JSON.parse(sh([BIN, "keypair", "create", "--static", "--format", "json"]).stdout) as { public_key: string; private_key: string };
      const tokenFile = join(dir.path, "edge.yaml");
      writeFileSync(
        tokenFile,
        [
          "kind: bot",
          "version: v1",
          "metadata:",
          "  name: edge",
          "spec:",
          "  roles: []",
          "---",
          "kind: token",
          "version: v2",
          "metadata:",
          "  name: edge-token",
          "spec:",
          "  roles: [Bot]",
          "  bot_name: edge",
          "  join_method: bound_keypair",
          "  bound_keypair:",
          "    onboarding:",
          `      initial_public_key: "${keys.public_key.trim()}"`,
          "    recovery:",
          "      limit: 0",
          "      mode: insecure",
          "",
        ].join("\n"),
      );
      await auth.ctlOk("create", "-f", tokenFile);
      const w = join(dir.path, "overlay");
      const shims = join(dir.path, "shims");
      mkdirSync(w);
      mkdirSync(shims);
      writeFileSync(join(shims, "systemctl"), "#!/bin/sh\ncase \"$1\" in is-enabled|is-active) exit 1;; esac\nexit 0\n", { mode: 0o755 });
      // A private mount namespace whose /etc, /usr/local, /var/lib, /run and /opt are
      // overlays: install.sh runs as root for real and the host sees none of it.
      const script = [
        "set -e",
        'for d in /etc /usr/local /var/lib /run /opt; do mkdir -p "$W$d/upper" "$W$d/work"; mount -t overlay overlay -o "lowerdir=$d,upperdir=$W$d/upper,workdir=$W$d/work" "$d"; done',
        "mkdir -p /run/systemd/system",
        'curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- --token edge-token --join-method bound_keypair > "$W/install.log"',
        // the admin adds an output, and prepares its directory for the service user
        "printf 'outputs:\\n  - type: identity\\n    destination:\\n      type: directory\\n      path: /opt/machine-id\\n' > /tmp/outputs.yaml",
        "sed -i '/^outputs: \\[\\]$/d' /etc/machine-id.yaml && cat /tmp/outputs.yaml >> /etc/machine-id.yaml",
        "/usr/local/bin/machine-id init -c /etc/machine-id.yaml --init-dir /opt/machine-id --bot-user machine-id --owner machine-id:machine-id > /dev/null",
        // start it the way the unit does: its User=, UMask= and ExecStart= line
        "UNIT=/etc/systemd/system/machine-id.service",
        "EXEC=$(sed -n 's/^ExecStart=//p' $UNIT); USR=$(sed -n 's/^User=//p' $UNIT)",
        "umask $(sed -n 's/^UMask=//p' $UNIT)",
        'setpriv --reuid="$USR" --regid="$USR" --init-groups env -i PATH=/usr/bin:/bin TBOT_BOUND_KEYPAIR_STATIC_KEY="$KEY" $EXEC > "$W/agent.log" 2>&1 &',
        "PID=$!",
        "for i in $(seq 1 300); do [ -s /opt/machine-id/tlscert ] && break; kill -0 $PID 2>/dev/null || break; sleep 0.1; done",
        "kill -TERM $PID; wait $PID; echo \"exit=$?\"",
        "echo \"exec=$EXEC user=$USR\"",
        "stat -c '%n %U %a' /opt/machine-id /opt/machine-id/tlscert /opt/machine-id/key /var/lib/machine-id",
        "openssl verify -CAfile /opt/machine-id/tlscacerts /opt/machine-id/tlscert",
      ].join("\n");
      const r = sh(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], {
        env: {
          PATH: `${shims}:${process.env.PATH}`,
          W: w,
          CA: caFile,
          ADDR: auth.addr,
          HOME: w,
          KEY: Buffer.from(keys.private_key).toString("base64"),
        },
      });
      if (r.code !== 0) console.error(r.stdout, r.stderr, sh(["cat", join(w, "agent.log"), join(w, "install.log")]).stdout);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("exit=0");
      expect(r.stdout).toContain("exec=/usr/local/bin/machine-id start -c /etc/machine-id.yaml user=machine-id");
      expect(r.stdout).toContain("/opt/machine-id machine-id 700");
      expect(r.stdout).toContain("/opt/machine-id/tlscert machine-id 600");
      expect(r.stdout).toContain("/opt/machine-id/key machine-id 600");
      expect(r.stdout).toContain("/var/lib/machine-id machine-id 700");
      expect(r.stdout).toContain("/opt/machine-id/tlscert: OK");
      const inst = JSON.parse(await auth.ctlOk("bots", "instances", "ls", "edge", "--format", "json"));
      expect(inst).toHaveLength(1);
      expect(inst[0].join_method).toBe("bound_keypair");
      // the host itself was not touched
      expect(existsSync("/etc/machine-id.yaml")).toBe(false);
      expect(existsSync("/opt/machine-id")).toBe(false);
    },
    120_000,
  );

  test("the served script refuses an unknown download architecture path", async () => {
    const res = await fetch(`https://${auth.addr}/downloads/machine-id-linux-mips`, { tls: { ca: readFileSync(caFile, "utf8"), serverName: "localhost" } } as RequestInit);
    expect(res.status).toBe(404);
  });
});

describe("compressed downloads", () => {
  const buildSum = () => readFileSync(join(ROOT, "dist", `${NAME}.sha256`), "utf8").split(" ")[0]!;
  const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

  /** An auth service of its own serving `files` (name suffix → path or bytes) beside the build's binary and checksum. */
  async function serving(name: string, files: Record<string, string | Buffer>): Promise<AuthProcess> {
    const d = join(dir.path, `dist-${name}`);
    mkdirSync(d);
    symlinkSync(join(ROOT, "dist", NAME), join(d, NAME));
    copyFileSync(join(ROOT, "dist", `${NAME}.sha256`), join(d, `${NAME}.sha256`));
    for (const [suffix, content] of Object.entries(files)) {
      if (typeof content === "string") symlinkSync(content, join(d, NAME + suffix));
      else writeFileSync(join(d, NAME + suffix), content);
    }
    return startAuth(join(dir.path, `auth-${name}`), { args: ["--dist-dir", d, "--cluster-name", `${name}.example`] });
  }

  /** Compresses the built binary with a fast level (the build's own levels take minutes; only the format matters here). */
  function compressed(argv: string[], ext: string): string {
    const out = join(dir.path, `${NAME}.${ext}`);
    const r = Bun.spawnSync([...argv, join(ROOT, "dist", NAME)], { stdout: Bun.file(out), stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
    return out;
  }

  async function withCa<T>(svc: AuthProcess, f: () => T): Promise<T> {
    writeFileSync(caFile, await svc.ctlOk("auth", "export", "--type", "tls-host"));
    try {
      return f();
    } finally {
      writeFileSync(caFile, await auth.ctlOk("auth", "export", "--type", "tls-host"));
    }
  }

  test("each of gz, xz and zst installs the build, verified after decompression; by default zst, the first form the host can undo", async () => {
    const files = { ".gz": join(ROOT, "dist", `${NAME}.gz`), ".xz": compressed(["xz", "-0", "-T2", "-c"], "xz"), ".zst": compressed(["zstd", "-q", "-1", "-c"], "zst") };
    await using svc = await serving("compressed", files);
    for (const format of ["gz", "xz", "zst", "raw", ""]) {
      const root = join(dir.path, `root-format-${format || "auto"}`);
      mkdirSync(root);
      const r = await withCa(svc, () => install(root, [], svc.addr, format ? { MACHINE_ID_DOWNLOAD_FORMAT: format } : {}));
      if (r.code !== 0) console.error(format, r.stdout, r.stderr);
      expect(r.code).toBe(0);
      const servedAs = format === "raw" ? NAME : `${NAME}.${format || "zst"}`;
      expect(r.stdout).toContain(`Verified ${NAME} (sha256 ${buildSum()}, downloaded as ${servedAs})`);
      expect(sha(join(root, "usr/local/bin/machine-id"))).toBe(buildSum());
    }
    // a form the build did not make is a 404, and the script says which forms are asked for
    const gzOnly = await serving("gz-only", { ".gz": files[".gz"] });
    await using _gz = gzOnly;
    const root = join(dir.path, "root-gz-only");
    mkdirSync(root);
    const r = await withCa(gzOnly, () => install(root, [], gzOnly.addr, { MACHINE_ID_DOWNLOAD_FORMAT: "zst" }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("has no machine-id-linux-");
    expect(readdirSync(root)).toEqual([]);
    const auto = await withCa(gzOnly, () => install(root, [], gzOnly.addr));
    expect(auto.code).toBe(0);
    expect(auto.stdout).toContain(`downloaded as ${NAME}.gz)`);
  }, 300_000);

  test("a damaged compressed file, or one of another binary, is refused and nothing is installed", async () => {
    const gz = readFileSync(join(ROOT, "dist", `${NAME}.gz`));
    const damaged = Buffer.from(gz.subarray(0, gz.length >> 1));
    const evil = Buffer.from(Bun.gzipSync(Buffer.from("#!/bin/sh\necho evil\n")));
    await using svc = await serving("damaged", { ".gz": damaged, ".zst": Buffer.from("not a compressed file at all") });
    const damagedRoot = join(dir.path, "root-damaged");
    mkdirSync(damagedRoot);
    const r = await withCa(svc, () => install(damagedRoot, [], svc.addr, { MACHINE_ID_DOWNLOAD_FORMAT: "gz" }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Cannot decompress "https://${svc.addr}/downloads/${NAME}.gz" with gzip`);
    expect(r.stderr).toContain("nothing was installed");
    expect(readdirSync(damagedRoot)).toEqual([]);

    // a valid archive of something else: decompresses, and its checksum is not the build's
    const evilRoot = join(dir.path, "root-evil-gz");
    mkdirSync(evilRoot);
    writeFileSync(join(dir.path, "dist-damaged", `${NAME}.gz`), evil);
    const e = await withCa(svc, () => install(evilRoot, [], svc.addr, { MACHINE_ID_DOWNLOAD_FORMAT: "gz" }));
    expect(e.code).not.toBe(0);
    expect(e.stderr).toContain(`Checksum mismatch for "https://${svc.addr}/downloads/${NAME}.gz": expected ${buildSum()}`);
    expect(readdirSync(evilRoot)).toEqual([]);

    // bytes that are no archive at all
    const zstRoot = join(dir.path, "root-zst-not-zst");
    mkdirSync(zstRoot);
    const z = await withCa(svc, () => install(zstRoot, [], svc.addr, { MACHINE_ID_DOWNLOAD_FORMAT: "zst" }));
    expect(z.code).not.toBe(0);
    expect(z.stderr).toContain("Cannot decompress");
    expect(readdirSync(zstRoot)).toEqual([]);
  }, 300_000);

  test("MACHINE_ID_DOWNLOAD_FORMAT names a form or the script stops before changing anything", async () => {
    const root = join(dir.path, "root-bad-format");
    mkdirSync(root);
    const r = install(root, [], auth.addr, { MACHINE_ID_DOWNLOAD_FORMAT: "bz2" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('MACHINE_ID_DOWNLOAD_FORMAT must be zst, xz, gz or raw, not "bz2"');
    expect(readdirSync(root)).toEqual([]);
  }, 120_000);
});
