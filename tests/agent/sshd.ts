/**
 * A real OpenSSH server for tests: runs /usr/sbin/sshd in the foreground on a
 * loopback port, trusting the given user CA and presenting a host key certified by
 * the given host CA, so `ssh -F ssh_config` from an identity output can be checked
 * end to end. Needs root (privilege separation) and Debian's openssh-server.
 */

import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { connect } from "node:net";

export const SSHD = "/usr/sbin/sshd";
/** Whether this machine can run the sshd tests. */
export const canRunSshd = (await Bun.file(SSHD).exists()) && process.getuid?.() === 0 && Bun.which("ssh") !== null;

/** A free loopback port (bound then released; sshd binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port, or rejects at the deadline. */
export async function waitForPort(port: number, deadlineMs = 10_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect({ host: "127.0.0.1", port }, () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${deadlineMs}ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface TestSshd {
  port: number;
  /** stderr of sshd so far (its log, with -e). */
  log(): string;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface SshdOptions {
  dir: string;
  /** `TrustedUserCAKeys` content (one OpenSSH public key line). */
  userCaLine: string;
  /** Host private key file (OpenSSH format) and, when the host CA signed it, its certificate line. */
  hostKeyPath: string;
  hostCertLine?: string;
}

/** Starts sshd; dispose kills and reaps it. */
export async function startSshd(o: SshdOptions): Promise<TestSshd> {
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 }); // privilege separation directory
  const port = await freePort();
  await writeFile(join(o.dir, "user_ca.pub"), o.userCaLine.trim() + "\n", { mode: 0o644 });
  if (o.hostCertLine) await writeFile(join(o.dir, "host-cert.pub"), o.hostCertLine.trim() + "\n", { mode: 0o644 });
  const config = [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${o.hostKeyPath}`,
    ...(o.hostCertLine ? [`HostCertificate ${join(o.dir, "host-cert.pub")}`] : []),
    `TrustedUserCAKeys ${join(o.dir, "user_ca.pub")}`,
    "AuthorizedKeysFile none",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password",
    "UsePAM no",
    "StrictModes no",
    `PidFile ${join(o.dir, "sshd.pid")}`,
    "LogLevel VERBOSE",
    "",
  ].join("\n");
  const cfgPath = join(o.dir, "sshd_config");
  await writeFile(cfgPath, config, { mode: 0o600 });
  const proc = Bun.spawn([SSHD, "-D", "-e", "-f", cfgPath], { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  let log = "";
  const reader = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr) log += dec.decode(chunk);
  })();
  try {
    await Promise.race([
      waitForPort(port),
      proc.exited.then((code) => {
        throw new Error(`sshd exited with ${code} before listening:\n${log}`);
      }),
    ]);
  } catch (e) {
    proc.kill();
    await proc.exited;
    throw e;
  }
  return {
    port,
    log: () => log,
    async [Symbol.asyncDispose]() {
      proc.kill();
      await proc.exited;
      await reader.catch(() => {});
    },
  };
}

/** Runs `ssh` non-interactively; returns exit code and output. */
export function runSsh(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
