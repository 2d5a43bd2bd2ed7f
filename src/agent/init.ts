/**
 * `machine-id init`: prepares an output directory before the agent runs, as root
 * or as its owner: creates it 0700, hands it to the bot's user, and grants a reader
 * user read access with POSIX ACLs (a default ACL, so every file the agent writes
 * later is readable by the reader and by nobody else).
 */

import { chown, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { AgentConfig } from "../config/index.ts";
import { AppError, badParameter, isAppError } from "../lib/errors.ts";
import { ensureDir, fsError } from "../lib/fs.ts";
import type { Logger } from "../lib/log.ts";
import { setAcl } from "./destinations/index.ts";

export interface InitOptions {
  /** The directory; default: the config's one directory output. */
  initDir?: string;
  /** The user the agent runs as; gets full access when it is not the owner. */
  botUser?: string;
  /** `user:group` to own the directory. */
  owner?: string;
  /** The user of the application that reads the credentials. */
  readerUser?: string;
}

export interface InitResult {
  dir: string;
  /** What was done, one line each, for the command to print. */
  actions: string[];
}

/** Looks up a user or group id with getent (so NSS users work); numbers pass through. */
async function lookupId(db: "passwd" | "group", name: string): Promise<number> {
  if (/^\d+$/.test(name)) return Number(name);
  const what = db === "passwd" ? "user" : "group";
  const proc = Bun.spawn(["getent", db, name], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  const id = Number(out.split(":")[2]);
  if (code !== 0 || !Number.isInteger(id)) throw badParameter(`Unknown ${what} "${name}": it does not exist on this host`);
  return id;
}

/** The directory init prepares: --init-dir, else the config's only directory output. */
export function initDirectory(cfg: AgentConfig | undefined, initDir: string | undefined): string {
  if (initDir) return resolve(initDir);
  const dirs = [...(cfg?.outputs ?? []), ...(cfg?.services ?? [])].flatMap((o) => (o.destination.type === "directory" ? [o.destination.path] : []));
  if (dirs.length === 1) return resolve(dirs[0]!);
  if (dirs.length === 0) throw badParameter("Missing --init-dir: the config has no directory output to prepare");
  throw badParameter(`Missing --init-dir: the config has ${dirs.length} directory outputs (${dirs.map((d) => `"${d}"`).join(", ")}); name the one to prepare`);
}

/** Prepares the directory; see the module comment. Idempotent. */
export async function initDestinationDir(dir: string, opts: InitOptions, log: Logger): Promise<InitResult> {
  const actions: string[] = [];
  if (opts.readerUser && !opts.botUser) throw badParameter("Missing --bot-user: --reader-user needs the user the agent runs as");
  const [ownerUser, ownerGroup] = (opts.owner ?? "").split(":");
  if (opts.owner !== undefined && (!ownerUser || opts.owner.split(":").length > 2)) {
    throw badParameter(`Invalid --owner "${opts.owner}": expected "user:group" or "user"`);
  }
  // Resolve every name before touching anything, so a typo changes nothing.
  const uid = ownerUser ? await lookupId("passwd", ownerUser) : undefined;
  const gid = ownerGroup ? await lookupId("group", ownerGroup) : undefined;
  const botUid = opts.botUser ? await lookupId("passwd", opts.botUser) : undefined;
  if (opts.readerUser) await lookupId("passwd", opts.readerUser);

  await ensureDir(dir, 0o700);
  actions.push(`created "${dir}" with mode 0700`);
  if (uid !== undefined) {
    await chown(dir, uid, gid ?? -1).catch((e) => {
      throw fsError("change the owner of", dir, e);
    });
    actions.push(`owner set to ${opts.owner}`);
  }
  const owner = (await stat(dir)).uid;
  const botIsOwner = botUid === undefined || botUid === owner;

  const access = ["g::---", "o::---"];
  const defaults = ["u::rwx", "g::---", "o::---"];
  if (!botIsOwner) {
    access.push(`u:${opts.botUser}:rwx`);
    defaults.push(`u:${opts.botUser}:rwx`);
  }
  if (opts.readerUser) {
    access.push(`u:${opts.readerUser}:r-x`);
    defaults.push(`u:${opts.readerUser}:r-x`);
  }
  if (access.length === 2) return { dir, actions };
  try {
    await setAcl(dir, [...access, "m::rwx"].join(","));
    await setAcl(dir, [...defaults, "m::rwx"].join(","), { default: true });
    // Files already there (from an earlier run) get the reader entry too.
    for (const name of await readdir(dir)) {
      const file = join(dir, name);
      if (!(await stat(file)).isFile()) continue;
      const entries = [...(opts.readerUser ? [`u:${opts.readerUser}:r--`] : []), ...(!botIsOwner ? [`u:${opts.botUser}:rw-`] : []), "m::rw-"];
      await setAcl(file, entries.join(","));
    }
  } catch (e) {
    if (!isAppError(e)) throw e;
    const who = [opts.readerUser && `"${opts.readerUser}" read access`, !botIsOwner && `"${opts.botUser}" write access`].filter(Boolean).join(" and ");
    throw new AppError(e.code, `Created "${dir}", but cannot grant ${who}: ${e.message}`, { cause: e });
  }
  if (!botIsOwner) actions.push(`"${opts.botUser}" may write (ACL)`);
  if (opts.readerUser) actions.push(`"${opts.readerUser}" may read every file the agent writes here (default ACL)`);
  log.debug("Initialised destination directory", { dir, actions });
  return { dir, actions };
}
