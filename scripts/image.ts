/**
 * `npm run image`: the agent's container image, built FROM scratch with buildah from
 * the compiled executable, written as an OCI archive under dist/. Nothing is pulled
 * from a registry (none is reachable from the build machines, and a base image would be
 * code we did not build): the root filesystem holds the executable, exactly the shared
 * libraries `ldd` says it links, the host's CA bundle, /etc/passwd and /etc/group with
 * the non-root user 65532 — no shell, no package manager.
 *
 * Usage: bun scripts/image.ts [--binary PATH] [--out FILE]
 * Env: MACHINE_ID_SOURCE overrides the org.opencontainers.image.source label.
 */

import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import pkg from "../package.json" with { type: "json" };

const ROOT = join(import.meta.dir, "..");

/** The image's user, as distroless names it: uid and gid 65532, no login shell. */
export const IMAGE_UID = 65532;
/** Where the executable lives in the image (the entrypoint). */
export const IMAGE_ENTRYPOINT = "/usr/local/bin/machine-id";
const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * The shared libraries `binary` links, as absolute paths, from `ldd` (the loader
 * included). An empty list means a static executable.
 */
export function linkedLibraries(binary: string): string[] {
  const r = Bun.spawnSync(["ldd", binary], { stdout: "pipe", stderr: "pipe" });
  const text = r.stdout.toString() + r.stderr.toString();
  if (r.exitCode !== 0) {
    if (/not a dynamic executable|statically linked/.test(text)) return [];
    throw new Error(`Cannot list the shared libraries of "${binary}": ldd exited ${r.exitCode}: ${text.trim()}`);
  }
  const libs: string[] = [];
  for (const line of text.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"; vdso has no file
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
    else if (/not found/.test(line)) throw new Error(`Cannot build the image: "${binary}" links a library the host lacks: ${line.trim()}`);
  }
  return libs;
}

/** Copies `from` to `to` inside the rootfs, following symlinks (the image holds the real bytes under the linked name). */
function place(rootfs: string, to: string, from: string, mode: number): void {
  const dest = join(rootfs, to);
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  copyFileSync(realpathSync(from), dest);
  chmodSync(dest, mode);
}

function write(rootfs: string, to: string, text: string, mode = 0o644): void {
  const dest = join(rootfs, to);
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  writeFileSync(dest, text, { mode });
}

/**
 * Assembles the image's root filesystem in `rootfs` (an empty or missing directory):
 * the executable at IMAGE_ENTRYPOINT, its libraries at the paths ldd printed, the
 * host's CA bundle, passwd/group/nsswitch, and an empty /tmp. Returns the libraries.
 */
export function assembleRootfs(binary: string, rootfs: string): string[] {
  mkdirSync(rootfs, { recursive: true, mode: 0o755 });
  place(rootfs, IMAGE_ENTRYPOINT, binary, 0o755);
  const libs = linkedLibraries(binary);
  for (const lib of libs) place(rootfs, lib, lib, 0o755);
  if (!existsSync(CA_BUNDLE)) throw new Error(`Cannot build the image: "${CA_BUNDLE}" is missing; apt-get install ca-certificates`);
  place(rootfs, CA_BUNDLE, CA_BUNDLE, 0o644);
  // nonroot as distroless spells it; its shell names no file, since the image has none
  write(rootfs, "/etc/passwd", `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${IMAGE_UID}:${IMAGE_UID}:nonroot:/home/nonroot:/sbin/nologin\n`);
  write(rootfs, "/etc/group", `root:x:0:\nnonroot:x:${IMAGE_UID}:\n`);
  // glibc reads it to resolve the auth service's name (files, then the pod's resolv.conf)
  write(rootfs, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n");
  mkdirSync(join(rootfs, "home/nonroot"), { recursive: true });
  mkdirSync(join(rootfs, "tmp"), { recursive: true });
  chmodSync(join(rootfs, "tmp"), 0o1777);
  return libs;
}

function git(...args: string[]): string | undefined {
  const r = Bun.spawnSync(["git", ...args], { cwd: ROOT, stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() || undefined : undefined;
}

/** The OCI labels: version from package.json, revision the full commit (with -dirty), source the repository. */
export function imageLabels(): Record<string, string> {
  const commit = git("rev-parse", "HEAD") ?? "unknown";
  const dirty = git("status", "--porcelain", "--untracked-files=no") ? "-dirty" : "";
  return {
    "org.opencontainers.image.title": "machine-id",
    "org.opencontainers.image.description": pkg.description,
    "org.opencontainers.image.version": pkg.version,
    "org.opencontainers.image.revision": commit + dirty,
    "org.opencontainers.image.source": process.env.MACHINE_ID_SOURCE ?? git("config", "--get", "remote.origin.url") ?? "unknown (set MACHINE_ID_SOURCE)",
  };
}

/** The archive `npm run image` writes for the host's architecture. */
export function imageArchivePath(arch = process.arch === "arm64" ? "arm64" : "amd64"): string {
  return join(ROOT, "dist", `machine-id-image-linux-${arch}.oci.tar`);
}

function buildah(storage: string, args: string[], check = true): string {
  // vfs and a private storage root: no overlay mounts (not allowed in every sandbox or
  // CI container) and nothing left in, or shared with, the host's image store
  const r = Bun.spawnSync(["buildah", "--root", join(storage, "root"), "--runroot", join(storage, "run"), "--storage-driver", "vfs", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (check && r.exitCode !== 0) throw new Error(`buildah ${args.join(" ")} exited ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString().trim();
}

/** Builds the OCI archive `out` from `binary`; returns what went in. */
export function buildImage(binary: string, out: string): { libs: string[]; labels: Record<string, string> } {
  const work = mkdtempSync(join(tmpdir(), "machine-id-image-"));
  try {
    const rootfs = join(work, "rootfs");
    const libs = assembleRootfs(binary, rootfs);
    const labels = imageLabels();
    const arch = process.arch === "arm64" ? "arm64" : "amd64";
    const c = buildah(work, ["from", "--arch", arch, "--os", "linux", "scratch"]);
    try {
      // every file is owned by root (buildah copy's default): the image's user can read
      // and run them, never change them, even where the root filesystem is writable
      buildah(work, ["copy", c, rootfs + "/", "/"]);
      const config = ["--entrypoint", JSON.stringify([IMAGE_ENTRYPOINT]), "--user", `${IMAGE_UID}:${IMAGE_UID}`, "--workingdir", "/"];
      config.push("--env", "SSL_CERT_FILE=" + CA_BUNDLE);
      for (const [k, v] of Object.entries(labels)) config.push("--label", `${k}=${v}`);
      buildah(work, ["config", ...config, c]);
      mkdirSync(dirname(out), { recursive: true });
      rmSync(out, { force: true });
      buildah(work, ["commit", "--quiet", "--format", "oci", "--disable-compression=false", "--rm", c, `oci-archive:${out}:machine-id:${pkg.version}`]);
    } catch (e) {
      buildah(work, ["rm", c], false);
      throw e;
    }
    return { libs, labels };
  } finally {
    // vfs layers are plain root-owned files: a recursive delete is enough
    rmSync(work, { recursive: true, force: true });
  }
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

if (import.meta.main) {
  const args = process.argv.slice(2);
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (!Bun.which("buildah")) {
    console.error("image: buildah is not installed: apt-get install buildah (scripts/install-test-deps.sh does)");
    process.exit(1);
  }
  let binary = flag("--binary") ?? join(ROOT, "dist", `machine-id-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
  if (!flag("--binary") && !existsSync(binary)) {
    const r = Bun.spawnSync([process.execPath, join(ROOT, "build.ts")], { cwd: ROOT, env: { ...process.env, MACHINE_ID_ARCHES: process.arch === "arm64" ? "arm64" : "x64" }, stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) process.exit(1);
  }
  binary = realpathSync(binary);
  const out = flag("--out") ?? imageArchivePath();
  const { libs, labels } = buildImage(binary, out);
  const sum = createHash("sha256").update(readFileSync(out)).digest("hex");
  writeFileSync(`${out}.sha256`, `${sum}  ${basename(out)}\n`);
  console.log(`image: libraries from ldd: ${libs.length ? libs.join(", ") : "none (static executable)"}`);
  console.log(`image: revision ${labels["org.opencontainers.image.revision"]}, source ${labels["org.opencontainers.image.source"]}`);
  console.log(`built ${out.replace(ROOT + "/", "")} (${mib(statSync(out).size)}; executable ${mib(statSync(binary).size)}) sha256 ${sum}`);
}
