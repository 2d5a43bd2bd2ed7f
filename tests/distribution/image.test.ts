/**
 * The container image `npm run image` builds, checked without a container runtime
 * (none can start here): the OCI archive is unpacked by hand, its digests, config and
 * root filesystem checked, and the executable is run from the unpacked rootfs with
 * chroot as the image's user — `version`, then a `--oneshot` join against an auth
 * service running from the host's dist/machine-id over 127.0.0.1 (chroot keeps the
 * network namespace), writing its identity into a directory inside the rootfs.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chownSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { has, requirePrereqs } from "../_prereq.ts";
import { requireChroot, runInRootfs } from "../_support/rootfs.ts";
import { ensureBinary, ROOT, sh, startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";

const ENTRYPOINT = "/usr/local/bin/machine-id";

let work: ReturnType<typeof tempDir>;
let binary = "";
let rootfs = "";
let buildOutput = "";
let config: { architecture: string; os: string; config: { Entrypoint?: string[]; Cmd?: string[]; User?: string; Labels?: Record<string, string> } };
let layerMediaType = "";
const blobDigestsOk: string[] = [];

const blob = (dir: string, digest: string) => join(dir, "blobs", ...digest.split(":"));

/** Every path under `dir`, relative with a leading slash, directories excluded. */
function files(dir: string, prefix = ""): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) => {
    const rel = `${prefix}/${e.name}`;
    return e.isDirectory() ? files(dir, rel) : [rel];
  });
}

const isElf = (path: string) => readFileSync(path).subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));

beforeAll(async () => {
  requirePrereqs({ buildah: [has("buildah"), "apt-get install buildah"], tar: [has("tar"), "apt-get install tar"], ldd: [has("ldd"), "apt-get install libc-bin"] });
  binary = realpathSync(ensureBinary());
  work = tempDir("mid-image-");
  const archive = join(work.path, "machine-id.oci.tar");
  // exactly what `npm run image` runs, writing into the temp dir instead of dist/
  const build = Bun.spawnSync([process.execPath, join(ROOT, "scripts/image.ts"), "--binary", binary, "--out", archive], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  buildOutput = build.stdout.toString() + build.stderr.toString();
  if (build.exitCode !== 0) throw new Error(`scripts/image.ts exited ${build.exitCode}:\n${buildOutput}`);

  const oci = join(work.path, "oci");
  mkdirSync(oci);
  sh(["tar", "-xf", archive, "-C", oci]);
  const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
  const manifestDigest: string = index.manifests[0].digest;
  const manifest = JSON.parse(readFileSync(blob(oci, manifestDigest), "utf8"));
  config = JSON.parse(readFileSync(blob(oci, manifest.config.digest), "utf8"));
  // content addressing: each blob's name is the sha256 of its bytes
  for (const d of [manifestDigest, manifest.config.digest, ...manifest.layers.map((l: { digest: string }) => l.digest)]) {
    if (`sha256:${createHash("sha256").update(readFileSync(blob(oci, d))).digest("hex")}` === d) blobDigestsOk.push(d);
  }
  expect(manifest.layers).toHaveLength(1);
  layerMediaType = manifest.layers[0].mediaType;
  rootfs = join(work.path, "rootfs");
  mkdirSync(rootfs);
  sh(["tar", "-xzf", blob(oci, manifest.layers[0].digest), "-C", rootfs]);
}, 180_000);

afterAll(() => work?.[Symbol.dispose]());

describe("npm run image: the OCI archive", () => {
  test("every blob matches its digest, and the one layer is gzip-compressed", () => {
    expect(blobDigestsOk).toHaveLength(3);
    expect(layerMediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    expect(buildOutput).toMatch(/built .*\(\d+\.\d MiB; executable \d+\.\d MiB\)/);
  });

  test("the config runs the executable as uid 65532 and carries the OCI version, revision and source labels", () => {
    expect(config.os).toBe("linux");
    expect(config.architecture).toBe(process.arch === "arm64" ? "arm64" : "amd64");
    expect(config.config.Entrypoint).toEqual([ENTRYPOINT]);
    expect(config.config.Cmd ?? []).toEqual([]);
    expect(config.config.User).toBe("65532:65532");
    const labels = config.config.Labels ?? {};
    expect(labels["org.opencontainers.image.version"]).toBe(pkg.version);
    const head = sh(["git", "-C", ROOT, "rev-parse", "HEAD"]).stdout.trim();
    expect(labels["org.opencontainers.image.revision"]).toMatch(new RegExp(`^${head}(-dirty)?$`));
    expect(labels["org.opencontainers.image.source"]).toBeTruthy();
  });

  test("the rootfs holds the executable, exactly the libraries ldd names, CA certificates, passwd and group — nothing else", () => {
    const ldd = sh(["ldd", binary]).stdout;
    const libs = [...ldd.matchAll(/(?:=>\s*|^\s*)(\/\S+)\s+\(/gm)].map((m) => m[1]!);
    expect(libs.length).toBeGreaterThan(0); // Bun's executable links glibc
    expect(files(rootfs).sort()).toEqual([ENTRYPOINT, ...libs, "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"].sort());
    // the only programs are the executable and the libraries: no shell, no package manager
    expect(files(rootfs).filter((f) => isElf(join(rootfs, f))).sort()).toEqual([ENTRYPOINT, ...libs].sort());
    expect(readFileSync(join(rootfs, ENTRYPOINT))).toEqual(readFileSync(binary));
    expect(readFileSync(join(rootfs, "etc/ssl/certs/ca-certificates.crt"), "utf8")).toContain("-----BEGIN CERTIFICATE-----");
    // root owns everything: the image's user cannot change a file even on a writable root filesystem
    for (const f of files(rootfs)) expect(statSync(join(rootfs, f)).uid).toBe(0);
  });

  test("passwd names the non-root user 65532 with no usable shell, and group its group", () => {
    const passwd = readFileSync(join(rootfs, "etc/passwd"), "utf8");
    const nonroot = passwd.split("\n").find((l) => l.split(":")[2] === "65532")!;
    expect(nonroot.split(":").slice(0, 4)).toEqual(["nonroot", "x", "65532", "65532"]);
    for (const line of passwd.trim().split("\n")) expect(files(rootfs)).not.toContain(line.split(":")[6]);
    expect(readFileSync(join(rootfs, "etc/group"), "utf8")).toContain("nonroot:x:65532:");
  });
});

describe("the executable in the unpacked rootfs, chrooted as 65532", () => {
  let auth: AuthProcess | undefined;

  beforeAll(() => requireChroot());
  afterAll(async () => {
    await auth?.[Symbol.asyncDispose]();
  });

  test("a shell cannot be started in it", async () => {
    const r = await runInRootfs(rootfs, ["/bin/sh", "-c", "id"], {});
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("No such file or directory");
  }, 60_000);

  test("`version` prints the same version and commit as the host's executable", async () => {
    const host = sh([binary, "version"]).stdout;
    expect(host).toStartWith(`machine-id v${pkg.version} git:`);
    const r = await runInRootfs(rootfs, [ENTRYPOINT, "version"], {});
    expect(r).toMatchObject({ code: 0, stdout: host });
  }, 60_000);

  test("`start --oneshot` joins the host's auth service by name over 127.0.0.1 and writes the identity inside the rootfs", async () => {
    auth = await startAuth(join(work.path, "auth"));
    // runtimes mount /etc/hosts; the name resolves through the image's nsswitch.conf and glibc
    writeFileSync(join(rootfs, "etc/hosts"), "127.0.0.1 auth.machine-id.test\n");
    const bot = JSON.parse(await auth.ctlOk("bots", "add", "in-image", "--format", "json")) as { token: string; ca_pins: string[] };
    const out = join(rootfs, "out");
    mkdirSync(out, { mode: 0o700 });
    chownSync(out, 65532, 65532);
    const r = await runInRootfs(
      rootfs,
      [ENTRYPOINT, "start", "--oneshot", "--auth-server", `auth.machine-id.test:${auth.port}`, "--token", bot.token, "--ca-pin", bot.ca_pins[0]!, "--storage", "memory://", "--destination-dir", "/out"],
      {},
    );
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    for (const f of ["tlscert", "key", "tlscacerts"]) expect(statSync(join(out, f)).uid).toBe(65532);
    expect(sh(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")]).stdout).toBe(`${join(out, "tlscert")}: OK\n`);
    expect(sh(["openssl", "x509", "-noout", "-subject", "-in", join(out, "tlscert")]).stdout).toContain("CN = bot-in-image");
  }, 120_000);
});
