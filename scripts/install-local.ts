/**
 * `npm run install-local`: puts `machine-id` on PATH from this checkout — a symlink to
 * dist/machine-id in ~/.local/bin, or in /usr/local/bin when run as root (`--dir DIR`
 * picks another). Builds the host's executable first when dist/ has none. The link
 * follows later builds; an existing file that is not such a link is left alone.
 */

import { existsSync, lstatSync, mkdirSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const target = join(root, "dist", "machine-id");

function fail(message: string): never {
  console.error(`install-local: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const dirFlag = args.indexOf("--dir");
if (dirFlag >= 0 && !args[dirFlag + 1]) fail("--dir needs a directory");
const isRoot = process.getuid?.() === 0;
const dir = resolve(dirFlag >= 0 ? args[dirFlag + 1]! : isRoot ? "/usr/local/bin" : join(homedir(), ".local", "bin"));

if (!existsSync(target)) {
  console.log("install-local: no dist/machine-id yet: building it");
  const r = Bun.spawnSync([process.execPath, join(root, "build.ts")], { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0 || !existsSync(target)) fail("the build failed; see above");
}

const link = join(dir, "machine-id");
let existing: ReturnType<typeof lstatSync> | undefined;
try {
  existing = lstatSync(link);
} catch {
  existing = undefined;
}
if (existing && !(existing.isSymbolicLink() && readlinkSync(link) === target)) {
  fail(`"${link}" exists and is not a link to "${target}": remove it first, or pass --dir DIR to link elsewhere`);
}
try {
  mkdirSync(dir, { recursive: true });
  rmSync(link, { force: true });
  symlinkSync(target, link);
} catch (e) {
  fail(`cannot link "${link}": ${(e as Error).message}${isRoot ? "" : " (pass --dir DIR for a directory you can write)"}`);
}
console.log(`Linked ${link} -> ${target}`);
const onPath = (process.env.PATH ?? "").split(delimiter).some((p) => p !== "" && resolve(p) === dir);
if (!onPath) console.log(`${dir} is not on your PATH: add it, e.g. export PATH="${dir}:$PATH" in ~/.profile`);
if (!isRoot) console.log(`sudo does not search ${dir}: run "sudo ${link} …" where a command needs root`);
