/**
 * Finds the directories an agent config writes to, so a ProtectSystem=strict unit can
 * allow exactly those. Reads only storage and directory destinations of tbot v1 and v2
 * configs; validating the rest of the file is the config loader's job at start-up.
 */

import { parseDocument } from "yaml";
import { badParameter } from "../../lib/errors.ts";

export interface ConfigPaths {
  /** The storage directory relative to /var/lib, when it is below it (systemd creates it). */
  stateDirectory: string | null;
  /** Absolute paths the agent writes outside its state directory. */
  readWritePaths: string[];
}

type Yaml = Record<string, unknown>;

const isObject = (v: unknown): v is Yaml => typeof v === "object" && v !== null && !Array.isArray(v);

/** The writable paths of the config text from `file` (named in errors only). */
export function configPaths(text: string, file: string): ConfigPaths {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const at = err.linePos?.[0];
    // The position travels separately; the first line of yaml's message says what is wrong.
    const what = err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    throw badParameter(`Cannot read config "${file}": ${what}`, {
      position: at ? { file, line: at.line, column: at.col } : { file },
      cause: err,
    });
  }
  const root: unknown = doc.toJS();
  if (!isObject(root)) throw badParameter(`Cannot read config "${file}": expected a mapping at the top level`);

  const dirs: string[] = [];
  let storage: string | undefined;
  if (root.version === "v2") {
    const s = root.storage;
    if (isObject(s) && s.type === "directory" && typeof s.path === "string") storage = s.path;
    for (const out of Array.isArray(root.outputs) ? root.outputs : []) {
      const d = isObject(out) ? out.destination : undefined;
      if (isObject(d) && d.type === "directory" && typeof d.path === "string") dirs.push(d.path);
    }
  } else {
    // v1: `storage: {directory: P}` (or `{directory: {path: P}}`), `destinations: [{directory: P}]`
    const s = root.storage;
    if (isObject(s)) storage = directoryOf(s.directory);
    for (const d of Array.isArray(root.destinations) ? root.destinations : []) {
      const p = isObject(d) ? directoryOf(d.directory) : undefined;
      if (p !== undefined) dirs.push(p);
    }
  }
  for (const p of [storage, ...dirs]) {
    if (p !== undefined && !p.startsWith("/")) throw badParameter(`Cannot use directory "${p}" from "${file}": it must be absolute`);
  }

  let stateDirectory: string | null = null;
  const normStorage = storage?.replace(/\/+$/, "");
  if (normStorage !== undefined) {
    if (normStorage.startsWith("/var/lib/") && !normStorage.includes("/../")) stateDirectory = normStorage.slice("/var/lib/".length);
    else dirs.push(normStorage);
  }
  return { stateDirectory, readWritePaths: [...new Set(dirs.map((d) => d.replace(/\/+$/, "") || "/"))] };
}

function directoryOf(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v.path === "string") return v.path;
  return undefined;
}
