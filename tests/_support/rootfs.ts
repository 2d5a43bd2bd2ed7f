/**
 * Running the executable the way a container runtime would, without one (this machine
 * cannot start containers): chrooted into an unpacked image root filesystem, as the
 * image's user, with a fresh /proc — Bun's standalone executable reads its own payload
 * through /proc/self/exe — in private mount and PID namespaces, so the /proc mount
 * vanishes with the process and nothing is left mounted if a test dies.
 */

import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { has, isRoot, requirePrereqs } from "../_prereq.ts";

/** Fails unless this process can chroot and mount (root, with unshare and chroot from util-linux/coreutils). */
export function requireChroot(): void {
  requirePrereqs({
    root: [isRoot, "run as root (chroot and mounting /proc need it)"],
    unshare: [has("unshare"), "apt-get install util-linux"],
    chroot: [has("chroot"), "apt-get install coreutils"],
  });
}

/** The argv that runs `argv` (a path inside `rootfs` first) chrooted into `rootfs` as `uid:gid`. */
export function chrootArgv(rootfs: string, argv: string[], user = "65532:65532"): string[] {
  mkdirSync(join(rootfs, "proc"), { recursive: true });
  // absolute tool paths: the child's environment is the container's, without the host's PATH
  return [Bun.which("unshare")!, "--mount", "--pid", "--fork", `--mount-proc=${join(rootfs, "proc")}`, Bun.which("chroot")!, `--userspec=${user}`, rootfs, ...argv];
}

/** Runs `argv` in `rootfs` with exactly `env` (a container's environment, nothing from the host) and reaps it. */
export async function runInRootfs(
  rootfs: string,
  argv: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(chrootArgv(rootfs, argv), { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** A long-running process in a rootfs: `pid` is the program's own (host) pid, under unshare. */
export interface RootfsProcess {
  proc: ReturnType<typeof Bun.spawn>;
  /** The chrooted program's pid as the host sees it (unshare's forked child). */
  pid(): number;
  output(): string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts `argv` in `rootfs` with exactly `env`; its stdout and stderr are collected. */
export function spawnInRootfs(rootfs: string, argv: string[], env: Record<string, string>): RootfsProcess {
  const proc = Bun.spawn(chrootArgv(rootfs, argv), { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of s) out += dec.decode(chunk);
  };
  void pump(proc.stdout as ReadableStream<Uint8Array>);
  void pump(proc.stderr as ReadableStream<Uint8Array>);
  return {
    proc,
    pid() {
      const children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim();
      if (!children) throw new Error(`unshare (pid ${proc.pid}) has no child yet`);
      return Number(children.split(" ")[0]);
    },
    output: () => out,
    async [Symbol.asyncDispose]() {
      if (proc.exitCode === null) {
        // SIGKILL reaches the namespace's init from outside; unshare then exits too
        try {
          process.kill(this.pid(), "SIGKILL");
        } catch {}
        proc.kill("SIGKILL");
      }
      await proc.exited;
    },
  };
}
