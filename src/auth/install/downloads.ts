/**
 * Serves the install script and the agent binaries: /scripts/install.sh and
 * /downloads/machine-id-linux-<arch>[.sha256|.gz|.xz|.zst]. Request in, Response out;
 * any other path returns undefined so the caller's router moves on.
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { readFileIfExists } from "../../lib/fs.ts";
import { renderInstallScript, type BuildChecksums, type InstallScriptOptions } from "./script.ts";

/** Architectures the script asks for, in Bun's naming (also process.arch's). */
export const DOWNLOAD_ARCHES = ["x64", "arm64"] as const;
export type DownloadArch = (typeof DOWNLOAD_ARCHES)[number];

export const INSTALL_SCRIPT_PATH = "/scripts/install.sh";
// The arch and the suffix are matched from closed lists, so no request can name another file.
const DOWNLOAD_ROUTE = /^\/downloads\/machine-id-linux-(x64|arm64)(\.sha256|\.gz|\.xz|\.zst)?$/;

/**
 * The compressed forms of a binary, made by build.ts beside it (scripts/compress.ts) and
 * served as they are: never compressed per request. install.sh checks the SHA-256 of what
 * it decompresses against the checksum it embeds, so a compressed file needs none of its own.
 */
const COMPRESSED: Record<string, string> = { ".gz": "application/gzip", ".xz": "application/x-xz", ".zst": "application/zstd" };

export interface DownloadOptions {
  /** Directory holding machine-id-linux-<arch> and, from the build, its .sha256. */
  distDir?: string;
  /**
   * Serve the running executable as machine-id-linux-<its arch> when distDir has no
   * file for that arch, so a compiled auth service can hand out itself. Default true.
   */
  serveSelf?: boolean;
  /** What `.sha256` answers: the checksums `loadBuildChecksums` read at start. */
  checksums?: BuildChecksums;
}

/**
 * The checksum of each binary the service will serve, read once, before it serves
 * anything, and kept in memory: the `.sha256` the build wrote beside the binary in
 * distDir, or, for the running executable served as itself, the SHA-256 of the
 * executable this process runs (read through /proc/self/exe, the inode executing,
 * which Linux keeps from being written while it runs). Nothing later written to the
 * download directory changes them: a binary swapped there after start, with or without
 * its `.sha256`, no longer matches what the served install.sh embeds. An arch whose
 * binary has no valid `.sha256` gets no checksum (`onMissing` is told), and the script
 * refuses to install it.
 */
export async function loadBuildChecksums(options: DownloadOptions, onMissing: (binary: string) => void = () => {}): Promise<BuildChecksums> {
  const out: Partial<Record<DownloadArch, string>> = {};
  for (const arch of DOWNLOAD_ARCHES) {
    const found = await locate(arch, options);
    if (!found) continue;
    let sum: string | undefined;
    if (found.sumPath !== undefined) {
      const recorded = (await readFileIfExists(found.sumPath))?.trim().split(/\s+/)[0];
      if (recorded !== undefined && /^[0-9a-f]{64}$/.test(recorded)) sum = recorded;
    } else {
      sum = await sha256Of("/proc/self/exe");
    }
    if (sum === undefined) onMissing(found.path);
    else out[arch] = sum;
  }
  return out;
}

/** Serves GET/HEAD /scripts/install.sh, rendered for this cluster; undefined for other paths. */
export function serveInstallScript(req: Request, options: InstallScriptOptions): Response | undefined {
  if (new URL(req.url).pathname !== INSTALL_SCRIPT_PATH) return undefined;
  const bad = checkMethod(req);
  if (bad) return bad;
  const body = renderInstallScript(options);
  return new Response(req.method === "HEAD" ? null : body, {
    headers: {
      "content-type": "text/x-shellscript; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      // Rendered from the current CA: a cached copy would go stale after a rotation.
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  });
}

/**
 * Serves GET/HEAD /downloads/machine-id-linux-<arch>, its `.sha256` and its compressed
 * forms (`.gz`, `.xz`, `.zst`: 404 when the build did not make that one); undefined for
 * other paths, 404 when there is no binary for the arch. The checksum is the one read
 * at start (`options.checksums`), never computed from the file served; 404 without one.
 */
export async function serveDownload(req: Request, options: DownloadOptions = {}): Promise<Response | undefined> {
  const m = DOWNLOAD_ROUTE.exec(new URL(req.url).pathname);
  if (!m) return undefined;
  const bad = checkMethod(req);
  if (bad) return bad;
  const arch = m[1] as DownloadArch;
  const name = `machine-id-linux-${arch}`;
  const found = await locate(arch, options);
  if (!found) return text(404, `No machine-id binary for linux-${arch} on this server\n`);

  if (m[2] === ".sha256") {
    const sum = options.checksums?.[arch];
    if (sum === undefined) return text(404, `No build checksum for ${name} was found when the auth service started\n`);
    const body = `${sum}  ${name}\n`;
    return new Response(req.method === "HEAD" ? null : body, {
      headers: { "content-type": "text/plain; charset=utf-8", "content-length": String(body.length), "cache-control": "no-cache" },
    });
  }
  let path = found.path;
  let size = found.size;
  const suffix = m[2] ?? "";
  if (suffix in COMPRESSED) {
    // only from the dist directory: the running executable served as itself has no compressed forms
    const st = found.sumPath !== undefined ? await stat(path + suffix).catch(() => undefined) : undefined;
    if (!st?.isFile()) return text(404, `No ${suffix} form of ${name} on this server; the uncompressed binary is at /downloads/${name}\n`);
    path += suffix;
    size = st.size;
  }
  const headers = {
    "content-type": COMPRESSED[suffix] ?? "application/octet-stream",
    "content-length": String(size),
    "content-disposition": `attachment; filename="${name}${suffix}"`,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
  };
  if (req.method === "HEAD") return new Response(null, { headers });
  // A BunFile body is streamed from disk (the binary is ~100 MB), never read into memory.
  return new Response(Bun.file(path), { headers });
}

interface Located {
  path: string;
  size: number;
  mtimeMs: number;
  /** The build's checksum file, when the binary came from distDir. */
  sumPath?: string;
}

async function locate(arch: DownloadArch, options: DownloadOptions): Promise<Located | undefined> {
  if (options.distDir !== undefined) {
    const path = join(options.distDir, `machine-id-linux-${arch}`);
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) return { path, size: st.size, mtimeMs: st.mtimeMs, sumPath: `${path}.sha256` };
  }
  if ((options.serveSelf ?? true) && Bun.main.startsWith("/$bunfs/") && process.platform === "linux" && process.arch === arch) {
    const st = await stat(process.execPath);
    return { path: process.execPath, size: st.size, mtimeMs: st.mtimeMs };
  }
  return undefined;
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function checkMethod(req: Request): Response | undefined {
  if (req.method === "GET" || req.method === "HEAD") return undefined;
  const res = text(405, "Only GET and HEAD are allowed here\n");
  res.headers.set("allow", "GET, HEAD");
  return res;
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}
