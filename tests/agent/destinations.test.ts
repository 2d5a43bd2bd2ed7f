/**
 * Destinations: the directory destination's modes, atomic single and batch writes,
 * symlink policies and ACL awareness; the memory destination; the type registry.
 */

import { describe, expect, test } from "bun:test";
import { mkdir, readdir, readFile, stat, symlink, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { createDestination, DirectoryDestination, MemoryDestination, parseAcl, getAcls, aclGrantsNamedReaders } from "../../src/agent/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { memoryLogger, tempDir } from "./harness.ts";

const mode = async (p: string) => (await stat(p)).mode & 0o7777;
const dirDest = (path: string, extra: Partial<ConstructorParameters<typeof DirectoryDestination>[0]> = {}) =>
  new DirectoryDestination({ path, log: silentLogger, ...extra });
import { requirePrereqs } from "../_prereq.ts";

const hasSetfacl = Bun.which("setfacl") !== null;

describe("directory destination", () => {
  test("init() creates the directory 0700 and write() creates files 0600", async () => {
    await using t = await tempDir();
    const d = dirDest(join(t.path, "a/b/out"));
    await d.init();
    await d.verify();
    expect(await mode(d.path!)).toBe(0o700);
    await d.write("tlscert", "cert");
    expect(await mode(join(d.path!, "tlscert"))).toBe(0o600);
    expect(await d.read("tlscert")).toBe("cert");
    expect(await d.read("missing")).toBeUndefined();
  });

  test("init() tightens an existing world-readable directory to 0700", async () => {
    await using t = await tempDir();
    const p = join(t.path, "out");
    await mkdir(p);
    await chmod(p, 0o755);
    await dirDest(p).init();
    expect(await mode(p)).toBe(0o700);
  });

  test("verify() refuses a directory others can enter", async () => {
    await using t = await tempDir();
    const d = dirDest(join(t.path, "out"));
    await d.init();
    await chmod(d.path!, 0o755);
    await expect(d.verify()).rejects.toThrow(`Cannot use directory "${d.path}": mode 0755 lets others in; expected 0700`);
  });

  test("writeAll() replaces every file and leaves no temp files", async () => {
    await using t = await tempDir();
    const d = dirDest(join(t.path, "out"));
    await d.init();
    await d.writeAll({ key: "k1", tlscert: "c1" });
    await d.writeAll({ key: "k2", tlscert: "c2" });
    expect((await readdir(d.path!)).sort()).toEqual(["key", "tlscert"]);
    expect(await readFile(join(d.path!, "key"), "utf8")).toBe("k2");
    expect(await mode(join(d.path!, "tlscert"))).toBe(0o600);
  });

  test("writeAll() that fails while staging leaves the previous set untouched", async () => {
    await using t = await tempDir();
    const d = dirDest(join(t.path, "out"));
    await d.init();
    await d.writeAll({ key: "old-key", tlscert: "old-cert" });
    // the second file cannot be written: staging fails before anything is renamed
    const bad = { key: "new-key", tlscert: Symbol("not data") } as unknown as Record<string, string>;
    await expect(d.writeAll(bad)).rejects.toThrow();
    expect(await readFile(join(d.path!, "key"), "utf8")).toBe("old-key");
    expect(await readFile(join(d.path!, "tlscert"), "utf8")).toBe("old-cert");
    expect((await readdir(d.path!)).sort()).toEqual(["key", "tlscert"]);
  });

  test("file names that could leave the directory are refused", async () => {
    await using t = await tempDir();
    const d = dirDest(join(t.path, "out"));
    await d.init();
    for (const name of ["../x", "a/b", "..", ""]) {
      await expect(d.write(name, "x")).rejects.toThrow(`Invalid file name "${name}"`);
    }
    await expect(d.writeAll({ ok: "1", "../evil": "2" })).rejects.toThrow('Invalid file name "../evil"');
    expect(await readdir(d.path!)).toEqual([]);
  });

  test("symlinks: secure refuses a symlinked ancestor, try-secure warns, insecure follows", async () => {
    await using t = await tempDir();
    await mkdir(join(t.path, "real"));
    await symlink(join(t.path, "real"), join(t.path, "link"));
    const target = join(t.path, "link", "out");

    const secure = dirDest(target, { symlinks: "secure" });
    const err = await secure.init().catch((e) => e);
    expect(isAppError(err, "ACCESS_DENIED")).toBe(true);
    expect(err.message).toBe(`Refusing to use "${target}": "${join(t.path, "link")}" is a symlink and symlinks are set to "secure"`);

    const { log, lines } = memoryLogger();
    const trying = new DirectoryDestination({ path: target, symlinks: "try-secure", log });
    await trying.init();
    await trying.write("key", "k");
    expect(await readFile(join(t.path, "real", "out", "key"), "utf8")).toBe("k");
    expect(lines.join("")).toContain("Destination path goes through a symlink");

    await dirDest(target, { symlinks: "insecure" }).write("key", "k2");
    expect(await readFile(join(t.path, "real", "out", "key"), "utf8")).toBe("k2");
  });

  test("try-secure refuses a symlinked destination directory and symlinked files", async () => {
    await using t = await tempDir();
    await mkdir(join(t.path, "real"), { mode: 0o700 });
    await symlink(join(t.path, "real"), join(t.path, "out"));
    await expect(dirDest(join(t.path, "out")).init()).rejects.toThrow(`Refusing to use "${join(t.path, "out")}": it is a symlink`);

    const d = dirDest(join(t.path, "dest"));
    await d.init();
    await writeFile(join(t.path, "victim"), "secret");
    await symlink(join(t.path, "victim"), join(d.path!, "key"));
    await expect(d.read("key")).rejects.toThrow("it is a symlink");
    await expect(d.write("key", "x")).rejects.toThrow("it is a symlink");
    expect(await readFile(join(t.path, "victim"), "utf8")).toBe("secret");
  });

  test("a path that is a file is refused", async () => {
    await using t = await tempDir();
    await writeFile(join(t.path, "f"), "x");
    await expect(dirDest(join(t.path, "f")).init()).rejects.toThrow(`Cannot use directory "${join(t.path, "f")}": it is not a directory`);
  });

  test("acls required without a default ACL is refused with the init command to run", async () => {
    await using t = await tempDir();
    await mkdir(join(t.path, "out"), { mode: 0o700 });
    const err = await dirDest(join(t.path, "out"), { acls: "required" })
      .init()
      .catch((e) => e);
    expect(err.message).toContain(`Cannot use directory "${join(t.path, "out")}" with acls "required"`);
    expect(err.message).toContain("machine-id init --init-dir");
  });

  test("with a reader's default ACL and acls try, files are written 0640 and the ACL survives", async () => {
    requirePrereqs({ setfacl: [hasSetfacl, "apt-get install acl"] });
    await using t = await tempDir();
    const p = join(t.path, "out");
    await mkdir(p, { mode: 0o700 });
    const run = (args: string[]) => Bun.spawnSync(args, { stderr: "pipe" });
    expect(run(["setfacl", "-m", "u:nobody:r-x,g::---,o::---,m::r-x", p]).exitCode).toBe(0);
    expect(run(["setfacl", "-d", "-m", "u::rwx,g::---,o::---,u:nobody:r-x,m::rwx", p]).exitCode).toBe(0);
    const d = dirDest(p, { acls: "try" });
    await d.init();
    await d.verify();
    expect(d.mode).toBe(0o640);
    await d.writeAll({ key: "k" });
    const acl = parseAcl(run(["getfacl", "--omit-header", join(p, "key")]).stdout.toString());
    expect(acl).toContainEqual({ tag: "user", qualifier: "nobody", perms: "r-x" });
    expect(acl).toContainEqual({ tag: "mask", qualifier: "", perms: "r--" });
    expect(acl).toContainEqual({ tag: "group", qualifier: "", perms: "---" });
    expect(acl).toContainEqual({ tag: "other", qualifier: "", perms: "---" });
    // the directory's ACL mask was left alone (a chmod 0700 would have cleared it)
    expect(await mode(p)).toBe(0o750);
  });
});

describe("getAcls()", () => {
  test("reads the access and the default ACL apart from one getfacl run", async () => {
    requirePrereqs({ setfacl: [hasSetfacl, "apt-get install acl"] });
    await using t = await tempDir();
    const run = (args: string[]) => expect(Bun.spawnSync(args, { stderr: "pipe" }).exitCode).toBe(0);
    const onlyDefault = join(t.path, "default");
    await mkdir(onlyDefault, { mode: 0o700 });
    run(["setfacl", "-d", "-m", "u::rwx,g::---,o::---,u:nobody:r-x,m::rwx", onlyDefault]);
    const a = (await getAcls(onlyDefault))!;
    expect(a.access).toEqual([
      { tag: "user", qualifier: "", perms: "rwx" },
      { tag: "group", qualifier: "", perms: "---" },
      { tag: "other", qualifier: "", perms: "---" },
    ]);
    expect(a.default).toContainEqual({ tag: "user", qualifier: "nobody", perms: "r-x" });
    expect(a.default).toContainEqual({ tag: "mask", qualifier: "", perms: "rwx" });

    const onlyAccess = join(t.path, "access");
    await mkdir(onlyAccess, { mode: 0o700 });
    run(["setfacl", "-m", "u:nobody:r-x", onlyAccess]);
    const b = (await getAcls(onlyAccess))!;
    expect(b.access).toContainEqual({ tag: "user", qualifier: "nobody", perms: "r-x" });
    expect(b.default).toEqual([]);
  });

  test("names the path when getfacl cannot read it", async () => {
    await using t = await tempDir();
    const missing = join(t.path, "missing");
    const err = await getAcls(missing).catch((e: unknown) => e);
    if (err === undefined) return; // getfacl not installed: nothing to read with
    expect(isAppError(err, "BAD_PARAMETER")).toBe(true);
    expect((err as Error).message).toContain(`Cannot read the ACL of "${missing}"`);
  });
});

describe("ACL parsing", () => {
  test("aclGrantsNamedReaders() needs a named reader and nothing for the owning group or others", () => {
    const base = "user::rwx\ngroup::---\nother::---\nmask::rwx\n";
    expect(aclGrantsNamedReaders(parseAcl(base + "user:app:r-x\n"))).toBe(true);
    expect(aclGrantsNamedReaders(parseAcl(base))).toBe(false);
    expect(aclGrantsNamedReaders(parseAcl("user::rwx\ngroup::r-x\nother::---\nuser:app:r-x\n"))).toBe(false);
    expect(parseAcl("# file: x\ndefault:user:app:r-x #effective:r--\n")).toEqual([{ tag: "user", qualifier: "app", perms: "r-x" }]);
  });
});

describe("memory destination and registry", () => {
  test("memory keeps files by name and is not persistent", async () => {
    const m = new MemoryDestination();
    await m.writeAll({ a: "1", b: new TextEncoder().encode("2") });
    expect(await m.read("a")).toBe("1");
    expect(await m.read("b")).toBe("2");
    expect(m.isPersistent).toBe(false);
  });

  test("createDestination() builds registered types and refuses others clearly", async () => {
    expect(createDestination({ type: "memory" }, { log: silentLogger })).toBeInstanceOf(MemoryDestination);
    const dir = createDestination({ type: "directory", path: "/tmp/x", symlinks: "secure", acls: "off" }, { log: silentLogger });
    expect(dir.description).toBe('directory "/tmp/x"');
    const err = (() => {
      try {
        createDestination({ type: "s3", bucket: "b" } as never, { log: silentLogger });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(isAppError(err, "NOT_IMPLEMENTED")).toBe(true);
    expect(err!.message).toStartWith('Destination type "s3" is not available in this build: use one of ');
  });
});
