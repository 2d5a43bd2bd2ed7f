/**
 * The identity output against the real consumers: OpenSSL verifies the certificate,
 * ssh-keygen reads the key and the certificate, and a real sshd accepts
 * `ssh -F ssh_config`, verifying the server through the known_hosts CA line.
 */

import { describe, expect, test } from "bun:test";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Agent, IDENTITY_FILES, renderSshConfig } from "../../src/agent/index.ts";
import { parsePublicKey, signSshCertificate } from "../../src/crypto/index.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { parseIdentityFile } from "../../src/protocol/index.ts";
import { agentConfig, startTestAuth, tempDir } from "./harness.ts";
import { canRunSshd, runSsh, startSshd } from "./sshd.ts";
import { requirePrereqs } from "../_prereq.ts";

const run = (args: string[]) => {
  const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
};

describe("identity output", () => {
  test("writes every file 0600 in a 0700 directory, readable by OpenSSL, ssh-keygen and sshd", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const out = join(t.path, "out");
    const agent = new Agent({ config: agentConfig(auth, await auth.addBot(), join(t.path, "state"), [out], { credentialTtlMs: 30 * 60_000 }), log: silentLogger });
    await agent.oneshot();

    expect((await stat(out)).mode & 0o777).toBe(0o700);
    const names = (await readdir(out)).sort();
    expect(names).toEqual(Object.values(IDENTITY_FILES).sort());
    for (const n of names) expect(((await stat(join(out, n))).mode & 0o777).toString(8)).toBe("600");

    const verify = run(["openssl", "verify", "-CAfile", join(out, "tlscacerts"), join(out, "tlscert")]);
    expect(verify.out).toContain(": OK");
    expect(verify.code).toBe(0);
    expect(run(["openssl", "pkey", "-in", join(out, "key"), "-noout"]).code).toBe(0);

    const pub = run(["ssh-keygen", "-y", "-f", join(out, "key")]);
    expect(pub.code).toBe(0);
    expect(pub.out.trim()).toBe((await readFile(join(out, "key.pub"), "utf8")).trim());

    const listing = run(["ssh-keygen", "-L", "-f", join(out, "key-cert.pub")]);
    expect(listing.code).toBe(0);
    expect(listing.out).toMatch(/Principals:\s*\n\s+deploy\n\s+root\n/);
    const valid = /Valid: from (\S+) to (\S+)/.exec(listing.out)!;
    const lifetimeMs = new Date(valid[2]! + "Z").getTime() - new Date(valid[1]! + "Z").getTime();
    // credential_ttl plus the minute the service backdates certificates by
    expect(Math.abs(lifetimeMs - 31 * 60_000)).toBeLessThanOrEqual(2000);

    const id = parseIdentityFile(await readFile(join(out, "identity"), "utf8"));
    expect(id.tlsCertPem).toBe(await readFile(join(out, "tlscert"), "utf8"));
    expect(id.authServer).toBe(auth.addr);
    expect((await readFile(join(out, "known_hosts"), "utf8")).trim()).toStartWith("@cert-authority * ssh-ed25519 ");
  });

  test("a real sshd accepts ssh -F ssh_config and the host is verified through known_hosts", async () => {
    requirePrereqs({ "sshd and ssh, run as root": [canRunSshd, "apt-get install openssh-server openssh-client; run as root"] });
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const out = join(t.path, "out");
    await new Agent({ config: agentConfig(auth, await auth.addBot(), undefined, [out]), log: silentLogger }).oneshot();

    const hostKey = join(t.path, "hostkey");
    expect(run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey]).code).toBe(0);
    const now = Date.now();
    const hostCert = signSshCertificate({
      caKey: auth.auth.ctx.authorities.host.sshKey.privateKey,
      publicKey: parsePublicKey(await readFile(hostKey + ".pub", "utf8")),
      certType: "host",
      keyId: "test-sshd",
      principals: ["127.0.0.1", "localhost"],
      validAfter: new Date(now - 60_000),
      validBefore: new Date(now + 3_600_000),
    });
    await using sshd = await startSshd({ dir: t.path, userCaLine: auth.auth.ctx.authorities.user.sshPublicLine, hostKeyPath: hostKey, hostCertLine: hostCert });

    const ok = runSsh(["-F", join(out, "ssh_config"), "-p", String(sshd.port), "root@127.0.0.1", "echo", "ok"]);
    if (ok.code !== 0) console.error(ok.stderr, sshd.log());
    expect(ok.stdout.trim()).toBe("ok");
    expect(ok.code).toBe(0);

    // a login the role does not grant is refused
    const denied = runSsh(["-F", join(out, "ssh_config"), "-p", String(sshd.port), "nobody@127.0.0.1", "true"]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain("Permission denied");
  });
});

describe("ssh_config", () => {
  test("uses absolute, quoted paths and escapes % so OpenSSH does not expand tokens", () => {
    const text = renderSshConfig({ dir: "/opt/machine id/%h", botName: "ci", cluster: "c" });
    expect(text).toContain('    IdentityFile "/opt/machine id/%%h/key"\n');
    expect(text).toContain('    CertificateFile "/opt/machine id/%%h/key-cert.pub"\n');
    expect(text).toContain('    UserKnownHostsFile "/opt/machine id/%%h/known_hosts"\n');
    expect(text).toContain("    StrictHostKeyChecking yes\n");
    expect(() => renderSshConfig({ dir: '/opt/a"b', cluster: "c" })).toThrow('Cannot write an ssh_config for directory "/opt/a"b": the path contains a quote or a line break');
  });

  test("OpenSSH parses the rendered file (ssh -G)", async () => {
    requirePrereqs({ ssh: [Bun.which("ssh") !== null, "apt-get install openssh-client"] });
    await using t = await tempDir();
    const cfg = join(t.path, "ssh_config");
    await Bun.write(cfg, renderSshConfig({ dir: "/opt/machine-id", cluster: "c" }));
    const r = run(["ssh", "-G", "-F", cfg, "deploy@example.com"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("identityfile /opt/machine-id/key");
    expect(r.out).toContain("certificatefile /opt/machine-id/key-cert.pub");
    expect(r.out).toContain("userknownhostsfile /opt/machine-id/known_hosts");
    expect(r.out).toContain("stricthostkeychecking true");
  });
});
