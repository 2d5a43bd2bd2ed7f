/**
 * install.sh end to end: shellcheck, then the script as an auth service would serve it,
 * fetched with curl over HTTPS and piped into bash with DESTDIR, against a local server
 * that serves the rendered script and the real compiled executable.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { caPinOf, loadBuildChecksums, renderInstallScript, serveDownload, serveInstallScript, type BuildChecksums } from "../../src/auth/install/index.ts";
import { compiledBinary, HOST_ARCH, makeTestCa, ROOT, run, runOk, sha256File, startServer, tempDir, type RunResult, type TestCa, type TestServer } from "./_helpers.ts";

const TIMEOUT = 60_000;

let dir: { path: string } & AsyncDisposable;
let ca: TestCa;
let pin: string;
let binary: string;
/** dist dirs by name: "good" has the real binary, "tampered" a file its checksum does not match, "empty" nothing. */
const dists: Record<string, string> = {};
let server: TestServer;
/** Which dist dir the server serves from, and an optional edit to the served script. */
let serving: { dist: string; alter?: (script: string) => string } = { dist: "good" };
/** The checksums of each dist dir, as an auth service reads them at start. */
const checksums: Record<string, BuildChecksums> = {};

beforeAll(async () => {
  dir = await tempDir();
  ca = await makeTestCa(dir.path);
  pin = caPinOf(ca.caPem);
  binary = await compiledBinary();
  const sum = await sha256File(binary);
  for (const name of ["good", "tampered", "empty"]) {
    dists[name] = join(dir.path, `dist-${name}`);
    await mkdir(dists[name]!);
  }
  const name = `machine-id-linux-${HOST_ARCH}`;
  await symlink(binary, join(dists.good!, name));
  await writeFile(join(dists.good!, `${name}.sha256`), `${sum}  machine-id\n`);
  await writeFile(join(dists.tampered!, name), "#!/bin/sh\necho tampered\n", { mode: 0o755 });
  await writeFile(join(dists.tampered!, `${name}.sha256`), `${sum}  ${name}\n`);

  // as the service reads them at start; "empty" stands for a binary removed since
  for (const name of ["good", "tampered"]) checksums[name] = await loadBuildChecksums({ distDir: dists[name]!, serveSelf: false });
  checksums.empty = checksums.good!;

  server = await startServer(ca, async (req) => {
    const sums = checksums[serving.dist]!;
    const script = serveInstallScript(req, { publicAddr: server.addr, caPin: pin, caCertPem: ca.caPem, version: "0.1.0", checksums: sums });
    if (script && serving.alter) return new Response(serving.alter(await script.text()));
    return script ?? (await serveDownload(req, { distDir: dists[serving.dist]!, serveSelf: false, checksums: sums }));
  });
}, TIMEOUT);

afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
  await dir?.[Symbol.asyncDispose]();
});

/** `curl -fsSL --cacert ca.pem https://…/scripts/install.sh | bash -s -- ARGS` with env. */
function curlPipeBash(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return run(["bash", "-c", `set -o pipefail; curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- ${quoted}`], {
    env: { PATH: process.env.PATH!, HOME: dir.path, CA: ca.caPath, ADDR: server.addr, ...env },
  });
}

/** Every path below `root` with its type, mode, size, mtime and content hash. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const st = await lstat(p);
      const rel = p.slice(root.length);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)} ${st.mtimeMs}`;
        await walk(p);
      } else {
        out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${st.mtimeMs} ${await sha256File(p)}`;
      }
    }
  };
  await walk(root);
  return out;
}

async function modeOf(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o7777).toString(8).padStart(4, "0");
}

async function isEmptyOrMissing(path: string): Promise<boolean> {
  return (await readdir(path).catch(() => [])).length === 0;
}

describe("install.sh", () => {
  test("passes shellcheck, as written and as served", async () => {
    const which = await run(["sh", "-c", "command -v shellcheck"]);
    expect(which.code, "shellcheck is not installed: apt-get install shellcheck").toBe(0);
    const template = await runOk(["shellcheck", "--shell=bash", join(ROOT, "install.sh")]);
    expect(template.stdout).toBe("");
    const rendered = join(dir.path, "rendered-install.sh");
    await writeFile(rendered, renderInstallScript({ publicAddr: "auth.example.com:3025", caPin: pin, caCertPem: ca.caPem, version: "0.1.0" }));
    const served = await runOk(["shellcheck", "--shell=bash", rendered]);
    expect(served.stdout).toBe("");
  });

  test(
    "installs into DESTDIR: binary, user-less state dir 0700, pinned config, units; a second run changes nothing",
    async () => {
      serving = { dist: "good" };
      await using target = await tempDir("machine-id-destdir-");
      const dest = target.path;
      const first = await curlPipeBash(["--token", "example-token"], { DESTDIR: dest });
      expect(first.stderr).toBe("");
      expect(first.code).toBe(0);
      expect(first.stdout).toContain("useradd --system");

      const bin = join(dest, "usr/local/bin/machine-id");
      expect(await modeOf(bin)).toBe("0755");
      expect(await sha256File(bin)).toBe(await sha256File(binary));
      expect(await modeOf(join(dest, "var/lib/machine-id"))).toBe("0700");
      expect(await modeOf(join(dest, "etc/machine-id.yaml"))).toBe("0640");
      expect(await modeOf(join(dest, "etc/systemd/system/machine-id.service"))).toBe("0644");
      expect(await readFile(join(dest, "etc/systemd/system/machine-id.service"), "utf8")).toBe(await readFile(join(ROOT, "systemd/machine-id.service"), "utf8"));
      expect(await readFile(join(dest, "etc/systemd/system/machine-id@.service"), "utf8")).toBe(await readFile(join(ROOT, "systemd/machine-id@.service"), "utf8"));
      const config = Bun.YAML.parse(await readFile(join(dest, "etc/machine-id.yaml"), "utf8")) as Record<string, any>;
      expect(config).toEqual({
        version: "v2",
        auth_server: server.addr,
        onboarding: { join_method: "bound_keypair", token: "example-token", ca_pins: [pin] },
        storage: { type: "directory", path: "/var/lib/machine-id" },
        outputs: [],
      });

      // The executable needs neither Node nor Bun: run it with a PATH that has no program at all.
      await using emptyPath = await tempDir("machine-id-nopath-");
      const version = await run([bin, "version"], { env: { PATH: emptyPath.path } });
      expect(version.code).toBe(0);
      expect(version.stdout).toMatch(/^machine-id v\d+\.\d+\.\d+/);

      const before = await snapshot(dest);
      const second = await curlPipeBash(["--token", "example-token"], { DESTDIR: dest });
      expect(second.code).toBe(0);
      expect(second.stdout).toContain("Nothing changed");
      expect(await snapshot(dest)).toEqual(before);
    },
    TIMEOUT,
  );

  test(
    "a later run keeps an edited config and PREFIX moves the binary and the unit's ExecStart",
    async () => {
      serving = { dist: "good" };
      await using target = await tempDir("machine-id-destdir-");
      await mkdir(join(target.path, "etc"), { recursive: true });
      await writeFile(join(target.path, "etc/machine-id.yaml"), "# mine\n");
      const r = await curlPipeBash([], { DESTDIR: target.path, PREFIX: "/opt/machine-id", MACHINE_ID_JOIN_METHOD: "token" });
      expect(r.code).toBe(0);
      expect(await readFile(join(target.path, "etc/machine-id.yaml"), "utf8")).toBe("# mine\n");
      expect(await modeOf(join(target.path, "opt/machine-id/bin/machine-id"))).toBe("0755");
      const unit = await readFile(join(target.path, "etc/systemd/system/machine-id.service"), "utf8");
      expect(unit).toContain("ExecStart=/opt/machine-id/bin/machine-id start -c /etc/machine-id.yaml\n");
      expect(unit).not.toContain("/usr/local/bin");
    },
    TIMEOUT,
  );

  test(
    "downloads with wget and without openssl when curl and openssl are missing",
    async () => {
      serving = { dist: "good" };
      await using target = await tempDir("machine-id-destdir-");
      await using shims = await tempDir("machine-id-shims-");
      // Exactly the tools the script may use, minus curl and openssl.
      const tools = ["bash", "wget", "sha256sum", "awk", "mktemp", "install", "mv", "rm", "mkdir", "chmod", "dirname", "id", "uname", "cat"];
      for (const t of tools) {
        const where = (await runOk(["sh", "-c", `command -v ${t}`])).stdout.trim();
        await symlink(where, join(shims.path, t));
      }
      const script = renderInstallScript({ publicAddr: server.addr, caPin: pin, caCertPem: ca.caPem, version: "0.1.0", checksums: checksums.good! });
      const scriptPath = join(dir.path, "wget-install.sh");
      await writeFile(scriptPath, script);
      const r = await run([join(shims.path, "bash"), "-c", `bash < "$SCRIPT"`], {
        env: { PATH: shims.path, DESTDIR: target.path, SCRIPT: scriptPath, HOME: target.path },
      });
      expect(r.stderr).toContain("openssl is not installed");
      expect(r.code).toBe(0);
      expect(await sha256File(join(target.path, "usr/local/bin/machine-id"))).toBe(await sha256File(binary));
    },
    TIMEOUT,
  );

  const failures: { name: string; dist: string; env?: Record<string, string>; args?: string[]; alter?: (s: string) => string; message: RegExp }[] = [
    { name: "a tampered binary (checksum mismatch)", dist: "tampered", message: /Checksum mismatch for "https:\/\/.*machine-id-linux-/ },
    { name: "a failed download", dist: "empty", message: /Cannot download "https:\/\/.*machine-id-linux-[a-z0-9]+"/ },
    {
      name: "no build checksum for the arch",
      dist: "good",
      alter: (s) => s.replace(/^SHA256_(X64|ARM64)='[0-9a-f]{64}'$/gm, "SHA256_$1=''"),
      message: /Cannot verify machine-id-linux-[a-z0-9]+: the auth service at .* had no build checksum for it when it started/,
    },
    { name: "an unsupported architecture", dist: "good", env: { MACHINE_ID_ARCH: "riscv64" }, message: /Cannot install on architecture "riscv64"/ },
    {
      name: "an embedded CA that does not match the pin",
      dist: "good",
      alter: (s) => s.replace(/^CA_PIN='sha256:[0-9a-f]{64}'$/m, `CA_PIN='sha256:${"0".repeat(64)}'`),
      message: /does not match pin sha256:0{64}/,
    },
    { name: "an unknown option", dist: "good", args: ["--tokn", "x"], message: /Unknown option "--tokn"/ },
    { name: "a token that would break the YAML", dist: "good", args: ["--token", 'x"\ny: 1'], message: /Invalid token/ },
  ];
  for (const f of failures) {
    test(
      `${f.name} exits non-zero and installs nothing`,
      async () => {
        serving = { dist: f.dist, ...(f.alter ? { alter: f.alter } : {}) };
        await using target = await tempDir("machine-id-destdir-");
        const r = await curlPipeBash(f.args ?? [], { DESTDIR: target.path, ...f.env });
        serving = { dist: "good" };
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(f.message);
        expect(await isEmptyOrMissing(target.path)).toBe(true);
      },
      TIMEOUT,
    );
  }

  test(
    "as root on a real root (overlay-isolated): creates the user, owns the state dir, runs systemctl; uninstall --purge undoes it",
    async () => {
      serving = { dist: "good" };
      await using w = await tempDir("machine-id-overlay-");
      await using shims = await tempDir("machine-id-shims-");
      // systemctl that records its arguments; nothing is enabled or active yet.
      await writeFile(
        join(shims.path, "systemctl"),
        `#!/bin/sh\necho "$*" >> "${w.path}/systemctl.log"\ncase "$1" in is-enabled|is-active) exit 1;; esac\nexit 0\n`,
        { mode: 0o755 },
      );
      // A private mount namespace whose /etc, /usr/local, /var/lib and /run are overlays:
      // the script runs for real (useradd, chown, units) and the host sees none of it.
      const inNamespace = (body: string) =>
        run(
          [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            `set -e; for d in /etc /usr/local /var/lib /run; do mkdir -p "$W$d/upper" "$W$d/work"; mount -t overlay overlay -o "lowerdir=$d,upperdir=$W$d/upper,workdir=$W$d/work" "$d"; done; mkdir -p /run/systemd/system; ${body}`,
          ],
          { env: { PATH: `${shims.path}:${process.env.PATH}`, W: w.path, CA: ca.caPath, ADDR: server.addr, HOME: w.path } },
        );
      const install = await inNamespace(
        `curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- --token t1; ` +
          `stat -c '%U:%G %a' /var/lib/machine-id /etc/machine-id.yaml /usr/local/bin/machine-id; getent passwd machine-id | cut -d: -f7`,
      );
      expect(install.stderr).toBe("");
      expect(install.code).toBe(0);
      const facts = install.stdout.trim().split("\n").slice(-4);
      expect(facts).toEqual(["machine-id:machine-id 700", "root:machine-id 640", "root:root 755", "/usr/sbin/nologin"]);
      expect(await readFile(join(w.path, "systemctl.log"), "utf8")).toBe("daemon-reload\nis-enabled --quiet machine-id.service\nenable machine-id.service\nis-active --quiet machine-id.service\n");
      expect(await readFile(join(w.path, "etc/upper/systemd/system/machine-id.service"), "utf8")).toBe(await readFile(join(ROOT, "systemd/machine-id.service"), "utf8"));

      await writeFile(join(w.path, "systemctl.log"), "");
      const purge = await inNamespace(
        `curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s -- --uninstall --purge; ` +
          `for f in /usr/local/bin/machine-id /etc/machine-id.yaml /var/lib/machine-id /etc/systemd/system/machine-id.service; do test ! -e "$f" || echo "left $f"; done; ` +
          `getent passwd machine-id || echo "no user"; test -f /etc/machine-id && echo "host machine ID kept"`,
      );
      expect(purge.code).toBe(0);
      expect(purge.stdout).toEndWith("machine-id is uninstalled\nno user\nhost machine ID kept\n");
      expect(await readFile(join(w.path, "systemctl.log"), "utf8")).toBe("disable --now machine-id.service\nstop machine-id@*.service\ndaemon-reload\n");
    },
    TIMEOUT,
  );

  test("refuses to run without root when DESTDIR is unset, before touching anything", async () => {
    const script = join(dir.path, "nonroot-install.sh");
    await writeFile(script, renderInstallScript({ publicAddr: server.addr, caPin: pin, caCertPem: ca.caPem, version: "0.1.0" }), { mode: 0o644 });
    // root opens the script (the temp dir is 0700) and hands it to bash as nobody, like `curl | bash`
    const r = await run(["sh", "-c", `setpriv --reuid=65534 --regid=65534 --clear-groups bash < "$S"`], { env: { PATH: process.env.PATH!, S: script } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("must run as root");
  });

  test("the unrendered template refuses to install but can uninstall", async () => {
    await using target = await tempDir("machine-id-destdir-");
    const r = await run(["bash", join(ROOT, "install.sh")], { env: { PATH: process.env.PATH!, DESTDIR: target.path } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("This is the install.sh template");
    expect(await isEmptyOrMissing(target.path)).toBe(true);
    const u = await run(["bash", join(ROOT, "install.sh"), "--uninstall"], { env: { PATH: process.env.PATH!, DESTDIR: target.path } });
    expect(u.code).toBe(0);
  });

  test(
    "--uninstall removes the binary and units but keeps config and data; --purge removes those too",
    async () => {
      serving = { dist: "good" };
      await using target = await tempDir("machine-id-destdir-");
      const dest = target.path;
      expect((await curlPipeBash([], { DESTDIR: dest })).code).toBe(0);
      await writeFile(join(dest, "var/lib/machine-id/identity"), "state");

      const purgeAlone = await curlPipeBash(["--purge"], { DESTDIR: dest });
      expect(purgeAlone.code).toBe(2);

      const u = await curlPipeBash(["--uninstall"], { DESTDIR: dest });
      expect(u.code).toBe(0);
      const kept = Object.keys(await snapshot(dest)).filter((x) => x.includes("machine-id"));
      expect(kept.sort()).toEqual(["/etc/machine-id.yaml", "/var/lib/machine-id", "/var/lib/machine-id/identity"]);
      expect(await readFile(join(dest, "etc/machine-id.yaml"), "utf8")).toContain(pin);

      const p = await curlPipeBash(["--uninstall", "--purge"], { DESTDIR: dest });
      expect(p.code).toBe(0);
      const after = Object.keys(await snapshot(dest));
      expect(after.filter((x) => x.includes("machine-id"))).toEqual([]);
    },
    TIMEOUT,
  );
});
