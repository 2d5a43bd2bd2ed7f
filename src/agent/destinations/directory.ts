/**
 * The `directory` destination: a 0700 directory of 0600 files, each replaced by a
 * fsynced temp file and a rename, so a reader never sees a half-written
 * certificate. Symlinks in the path are refused or tolerated per `symlinks`.
 */

import { closeSync, constants, fchmodSync, fsync, lstatSync, openSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { stat, chmod } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { AppError, badParameter } from "../../lib/errors.ts";
import { assertNoSymlinks, ensureDir, formatMode, fsError, fsyncDir, readFileIfExists, writeFileAtomic } from "../../lib/fs.ts";
import type { Logger } from "../../lib/log.ts";
import type { AclsMode, SymlinksMode } from "../../config/index.ts";
import { aclGrantsNamedReaders, getAcls, isExtendedAcl } from "./acl.ts";
import { checkFileName, type Destination, type DestinationFactory, type FileData } from "./destination.ts";

export interface DirectoryOptions {
  path: string;
  /** default "try-secure" */
  symlinks?: SymlinksMode;
  /** default "try" */
  acls?: AclsMode;
  log: Logger;
}

/** A directory of credential files. */
export class DirectoryDestination implements Destination {
  readonly isPersistent = true;
  readonly path: string;
  readonly description: string;
  private readonly symlinks: SymlinksMode;
  private readonly acls: AclsMode;
  private readonly log: Logger;
  /** 0600, or 0640 when the directory's default ACL makes the group bits the readers' mask. */
  private fileMode = 0o600;
  private warnedSymlink = false;
  /** The directory carries an extended ACL, so its group bits are the ACL mask. */
  private hasAcl = false;

  constructor(options: DirectoryOptions) {
    this.path = resolve(options.path);
    this.description = `directory "${this.path}"`;
    this.symlinks = options.symlinks ?? "try-secure";
    this.acls = options.acls ?? "try";
    this.log = options.log;
  }

  /** Mode new files get (exposed for tests and diagnostics). */
  get mode(): number {
    return this.fileMode;
  }

  /**
   * Creates the directory 0700 when missing. An existing one with group or other bits
   * is tightened to 0700 unless it carries an ACL (`machine-id init` prepared it): then
   * the ACL decides who reads, and with acls try/required files get mode 0640 so the
   * group bits act as the ACL mask for the named readers (the owning group and others
   * still get nothing: the default ACL says so, or 0600 is used).
   */
  async init(): Promise<void> {
    await this.checkSymlinks(this.path);
    const existing = await stat(this.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw fsError("inspect", this.path, e);
    });
    if (existing && !existing.isDirectory()) throw badParameter(`Cannot use ${this.description}: it is not a directory`);
    const looksShared = existing !== undefined && (existing.mode & 0o077) !== 0;
    const acls = existing && (this.acls !== "off" || looksShared) ? await getAcls(this.path) : undefined;
    const acl = acls?.access;
    const defaults = this.acls !== "off" ? acls?.default : undefined;
    this.hasAcl = acl !== undefined && isExtendedAcl(acl);
    const prepared = defaults !== undefined && defaults.length > 0;
    if (this.acls === "required" && !prepared) {
      const why = existing && defaults === undefined ? "getfacl is not installed" : "it carries no default ACL";
      throw badParameter(
        `Cannot use ${this.description} with acls "required": ${why}; prepare it with "machine-id init --init-dir ${this.path} --bot-user U --reader-user R"`,
      );
    }
    if (!existing) {
      await ensureDir(this.path, 0o700);
    } else if (looksShared && !this.hasAcl) {
      // Without an ACL nobody else has any business in here: tighten what mkdir left.
      this.log.info("Restricting destination directory to its owner", { path: this.path, mode: formatMode(existing.mode) });
      await chmod(this.path, 0o700).catch((e) => {
        throw fsError("change the mode of", this.path, e);
      });
    } else if (this.hasAcl && this.acls === "off") {
      this.log.warn("Destination directory has an ACL but acls is off: files are written 0600, so the readers it names cannot read them; set acls: try", {
        path: this.path,
      });
    }
    this.fileMode = prepared && aclGrantsNamedReaders(defaults!) ? 0o640 : 0o600;
  }

  async verify(): Promise<void> {
    await this.checkSymlinks(this.path);
    let st;
    try {
      st = await stat(this.path);
    } catch (e) {
      throw fsError("use destination", this.path, e);
    }
    if (!st.isDirectory()) throw badParameter(`Cannot use ${this.description}: it is not a directory`);
    const uid = process.getuid?.();
    // With an ACL (init --bot-user for a directory someone else owns) the ACL grants access.
    if (uid !== undefined && uid !== 0 && st.uid !== uid && !this.hasAcl) {
      throw new AppError("ACCESS_DENIED", `Cannot use ${this.description}: it belongs to uid ${st.uid}, not to this user (uid ${uid})`);
    }
    if (!this.hasAcl && (st.mode & 0o077) !== 0) {
      throw new AppError("ACCESS_DENIED", `Cannot use ${this.description}: mode ${formatMode(st.mode)} lets others in; expected 0700`);
    }
  }

  async write(name: string, data: FileData): Promise<void> {
    const file = join(this.path, checkFileName(name));
    await this.checkSymlinks(file);
    await writeFileAtomic(file, data, { mode: this.fileMode });
  }

  /**
   * Stages every file (temp file, write, fsync) before renaming any into place, then
   * fsyncs the directory. Hand-written next to lib's writeFileAtomic because that one
   * renames as it goes: a full disk on the fifth file would leave a new key beside an
   * old certificate, while here it leaves the previous set whole.
   *
   * The checks, opens, writes and renames are synchronous calls: each takes microseconds,
   * while each awaited `fs/promises` call cost ~70 µs of CPU in its thread hand-offs, and
   * the identity output's nine files took ~80 of them (6 ms of a oneshot's CPU). Only the
   * fsyncs, which wait on the disk, stay off the event loop, all nine at once.
   */
  async writeAll(files: Record<string, FileData>): Promise<void> {
    const names = Object.keys(files).map(checkFileName);
    for (const n of names) await this.checkSymlinks(join(this.path, n));
    const staged: { tmp: string; file: string }[] = [];
    try {
      const synced: Promise<void>[] = [];
      for (const n of names) {
        const file = join(this.path, n);
        const tmp = join(this.path, `.${n}.tmp-${randomBytes(6).toString("hex")}`);
        staged.push({ tmp, file });
        synced.push(writeTemp(tmp, file, files[n]!, this.fileMode));
      }
      const failed = (await Promise.allSettled(synced)).find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      for (const s of staged) {
        try {
          renameSync(s.tmp, s.file);
        } catch (e) {
          throw fsError("write", s.file, e);
        }
      }
    } catch (e) {
      for (const s of staged) {
        try {
          rmSync(s.tmp, { force: true });
        } catch {
          // best effort: the error that matters is e
        }
      }
      throw e;
    }
    await fsyncDir(this.path);
  }

  async read(name: string): Promise<string | undefined> {
    const file = join(this.path, checkFileName(name));
    await this.checkSymlinks(file);
    return readFileIfExists(file);
  }

  /**
   * secure: any symlink in the path is refused. try-secure: a symlinked ancestor (say
   * /var → /private/var) is tolerated with a warning, but the destination directory
   * and its files must not be symlinks. insecure: no checks.
   */
  private async checkSymlinks(path: string): Promise<void> {
    if (this.symlinks === "insecure") return;
    if (this.symlinks === "secure") return assertNoSymlinks(path);
    for (const p of path === this.path ? [this.path] : [this.path, path]) {
      // lstatSync: microseconds, where an awaited lstat costs ~70 µs of CPU (see writeAll)
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (st?.isSymbolicLink()) {
        throw new AppError("ACCESS_DENIED", `Refusing to use "${p}": it is a symlink and symlinks are set to "try-secure"`);
      }
    }
    if (!this.warnedSymlink) {
      try {
        await assertNoSymlinks(this.path);
      } catch (e) {
        this.warnedSymlink = true;
        this.log.warn("Destination path goes through a symlink; set symlinks: secure to refuse it", { path: this.path, reason: (e as Error).message });
      }
    }
  }
}

/**
 * Creates `tmp` exclusively (never following a planted link) with `mode` and writes it;
 * resolves once it is fsynced and closed. A failed write or fsync leaves the temp file
 * for the caller to remove.
 */
function writeTemp(tmp: string, file: string, data: FileData, mode: number): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = openSync(tmp, flags, mode);
  } catch (e) {
    return Promise.reject(fsError("write", file, e));
  }
  try {
    writeFileSync(fd, data);
    fchmodSync(fd, mode); // the umask may have narrowed the mode
  } catch (e) {
    closeSync(fd);
    return Promise.reject(fsError("write", file, e));
  }
  return new Promise((resolve, reject) =>
    fsync(fd, (err) => {
      try {
        closeSync(fd);
      } catch {
        // the data is on disk or err says why not; a failed close changes neither
      }
      if (err) reject(fsError("write", file, err));
      else resolve();
    }),
  );
}

/** The `directory` destination type (registered in builtins.ts). */
export const directoryDestination: DestinationFactory = (config, deps) => {
  if (config.type !== "directory") throw new TypeError(`directory factory given a "${config.type}" destination`);
  return new DirectoryDestination({ path: config.path, symlinks: config.symlinks, acls: config.acls, log: deps.log });
};
