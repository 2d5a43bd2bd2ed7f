/**
 * `machine-id init`: an output directory owned by the bot's user whose files a
 * reader user can read through POSIX ACLs, and nobody else; checked with getfacl
 * and by reading as the reader.
 */

import { describe, expect, test } from "bun:test";
import { chmod, stat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Agent, initDestinationDir, initDirectory, parseAcl } from "../../src/agent/index.ts";
import { parseAgentConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { agentConfig, startTestAuth, tempDir } from "./harness.ts";

import { requirePrereqs } from "../_prereq.ts";

const isRoot = process.getuid?.() === 0;
const hasAclTools = Bun.which("setfacl") !== null && Bun.which("getfacl") !== null;
const asNobody = (args: string[]) => Bun.spawnSync(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...args], { stdout: "pipe", stderr: "pipe" });
const getfacl = (path: string, def = false) =>
  parseAcl(Bun.spawnSync(["getfacl", "--omit-header", ...(def ? ["--default"] : []), path], { stdout: "pipe" }).stdout.toString());

describe("init", () => {
  test(
    "grants the reader read access to every file the agent writes later, and nobody else",
    async () => {
      requirePrereqs({
        root: [isRoot, "run as root"],
        "setfacl and getfacl": [hasAclTools, "apt-get install acl"],
        setpriv: [Bun.which("setpriv") !== null, "apt-get install util-linux"],
      });
      await using auth = await startTestAuth();
      await using t = await tempDir();
      await chmod(t.path, 0o711); // let the reader traverse the temp directory
      const dir = join(t.path, "machine-id");
      const res = await initDestinationDir(dir, { botUser: "root", owner: "root:root", readerUser: "nobody" }, silentLogger);
      expect(res.actions).toEqual([`created "${dir}" with mode 0700`, "owner set to root:root", '"nobody" may read every file the agent writes here (default ACL)']);
      expect(getfacl(dir)).toContainEqual({ tag: "user", qualifier: "nobody", perms: "r-x" });
      expect(getfacl(dir, true)).toContainEqual({ tag: "user", qualifier: "nobody", perms: "r-x" });
      // idempotent
      await initDestinationDir(dir, { botUser: "root", owner: "root:root", readerUser: "nobody" }, silentLogger);

      const cfg = agentConfig(auth, await auth.addBot(), undefined, [dir]);
      const out = cfg.outputs[0]!;
      if (out.destination.type === "directory") out.destination.acls = "try";
      await new Agent({ config: cfg, log: silentLogger }).oneshot();

      for (const name of await readdir(dir)) expect((await stat(join(dir, name))).mode & 0o777).toBe(0o640);
      const read = asNobody(["cat", join(dir, "tlscert")]);
      expect(read.exitCode).toBe(0);
      expect(read.stdout.toString()).toStartWith("-----BEGIN CERTIFICATE-----");
      // the owning group and others get nothing, whatever the mode bits show
      const acl = getfacl(join(dir, "key"));
      expect(acl).toContainEqual({ tag: "group", qualifier: "", perms: "---" });
      expect(acl).toContainEqual({ tag: "other", qualifier: "", perms: "---" });
    },
  );

  test("an unknown user is refused before anything is created", async () => {
    requirePrereqs({ root: [isRoot, "run as root"] });
    await using t = await tempDir();
    const dir = join(t.path, "d");
    await expect(initDestinationDir(dir, { botUser: "root", readerUser: "no-such-user-here" }, silentLogger)).rejects.toThrow(
      'Unknown user "no-such-user-here": it does not exist on this host',
    );
    expect(await Bun.file(dir).exists()).toBe(false);
    expect(await readdir(t.path)).toEqual([]);
  });

  test("a reader needs the bot user, and --owner must be user[:group]", async () => {
    await using t = await tempDir();
    await expect(initDestinationDir(join(t.path, "d"), { readerUser: "nobody" }, silentLogger)).rejects.toThrow(
      "Missing --bot-user: --reader-user needs the user the agent runs as",
    );
    await expect(initDestinationDir(join(t.path, "d"), { owner: "a:b:c" }, silentLogger)).rejects.toThrow('Invalid --owner "a:b:c": expected "user:group" or "user"');
  });

  test("the directory comes from --init-dir or the config's only directory output", () => {
    const v1 = parseAgentConfig("auth_server: a:1\ndestinations:\n  - directory: /opt/machine-id\n", "tbot.yaml");
    expect(initDirectory(v1, undefined)).toBe("/opt/machine-id");
    expect(initDirectory(v1, "/srv/x/")).toBe("/srv/x");
    const two = parseAgentConfig("auth_server: a:1\ndestinations:\n  - directory: /a\n  - directory: /b\n", "tbot.yaml");
    expect(() => initDirectory(two, undefined)).toThrow('Missing --init-dir: the config has 2 directory outputs ("/a", "/b"); name the one to prepare');
    expect(() => initDirectory(undefined, undefined)).toThrow("Missing --init-dir: the config has no directory output to prepare");
  });
});
