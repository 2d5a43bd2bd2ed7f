/**
 * POSIX ACLs through the `getfacl`/`setfacl` tools (Debian package `acl`): Node and
 * Bun have no xattr API, and the tools are what administrators use and trust. Used by
 * `machine-id init` to grant a reader user access, and by directory destinations to
 * notice a directory prepared that way.
 */

import { AppError, errorMessage } from "../../lib/errors.ts";

/** One ACL entry: `user::rw-`, `user:app:r--`, `mask::r--`… */
export interface AclEntry {
  tag: "user" | "group" | "mask" | "other";
  /** User or group name (or id); empty for the owner, owning group, mask and other. */
  qualifier: string;
  perms: string;
}

/** Runs an ACL tool; undefined when it is not installed. */
async function run(tool: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  let proc;
  try {
    proc = Bun.spawn([tool, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || /not found|ENOENT/i.test(errorMessage(e))) return undefined;
    throw e;
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Parses getfacl's output (comments and blank lines ignored). */
export function parseAcl(text: string): AclEntry[] {
  const out: AclEntry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const m = /^(?:default:)?(user|group|mask|other):([^:]*):([rwx-]{3})/.exec(line);
    if (m) out.push({ tag: m[1] as AclEntry["tag"], qualifier: m[2]!, perms: m[3]! });
  }
  return out;
}

/**
 * The access and default ACLs of `path` from one getfacl run (each run is a process
 * start: ~3 ms of a oneshot's wall): `access` only the base entries when there is no
 * extended ACL, `default` [] when there is none; undefined when getfacl is not installed.
 */
export async function getAcls(path: string): Promise<{ access: AclEntry[]; default: AclEntry[] } | undefined> {
  const r = await run("getfacl", ["--omit-header", "--absolute-names", "--", path]);
  if (!r) return undefined;
  if (r.code !== 0) throw new AppError("BAD_PARAMETER", `Cannot read the ACL of "${path}": ${r.stderr.trim() || `getfacl exited with ${r.code}`}`);
  const lines = r.stdout.split("\n");
  const isDefault = (l: string) => l.trimStart().startsWith("default:");
  return { access: parseAcl(lines.filter((l) => !isDefault(l)).join("\n")), default: parseAcl(lines.filter(isDefault).join("\n")) };
}

/** Whether an ACL has entries beyond the owner/group/other mode bits. */
export function isExtendedAcl(acl: AclEntry[]): boolean {
  return acl.some((e) => e.qualifier !== "" || e.tag === "mask");
}

/**
 * Whether files created in a directory with this default ACL may carry group bits:
 * only when the owning group and others get nothing, so the group bits act purely
 * as the ACL mask for the named readers.
 */
export function aclGrantsNamedReaders(acl: AclEntry[]): boolean {
  const entry = (tag: AclEntry["tag"]) => acl.find((e) => e.tag === tag && e.qualifier === "");
  const named = acl.filter((e) => (e.tag === "user" || e.tag === "group") && e.qualifier !== "" && e.perms[0] === "r");
  return named.length > 0 && entry("group")?.perms === "---" && entry("other")?.perms === "---";
}

/** Applies ACL entries with `setfacl -m` (`-d` for the default ACL). NOT_IMPLEMENTED when setfacl is missing. */
export async function setAcl(path: string, spec: string, options: { default?: boolean } = {}): Promise<void> {
  const args = [...(options.default ? ["-d"] : []), "-m", spec, "--", path];
  const r = await run("setfacl", args);
  if (!r) {
    throw new AppError(
      "NOT_IMPLEMENTED",
      `Cannot set the ACL of "${path}": setfacl is not installed (Debian and Ubuntu: "apt-get install acl"; RHEL: "dnf install acl")`,
    );
  }
  if (r.code !== 0) {
    const why = r.stderr.trim() || `setfacl exited with ${r.code}`;
    const hint = /not supported/i.test(why) ? ": the file system does not support ACLs (mount it with the acl option)" : "";
    throw new AppError("BAD_PARAMETER", `Cannot set the ACL "${spec}" on "${path}": ${why}${hint}`);
  }
}
