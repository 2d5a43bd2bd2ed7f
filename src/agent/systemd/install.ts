/**
 * `machine-id install systemd`: renders a hardened unit for one agent config and prints
 * it or writes it into a unit directory, refusing to replace a different unit unless forced.
 */

import { Command } from "commander";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { alreadyExists, badParameter } from "../../lib/errors.ts";
import { readFileIfExists, writeFileAtomic, fsError } from "../../lib/fs.ts";
import { configPaths } from "./_config_paths.ts";
import { DEFAULT_CONFIG, DEFAULT_EXEC_PATH, DEFAULT_STATE_DIRECTORY, DEFAULT_USER, renderUnit } from "./unit.ts";

export interface InstallSystemdOptions {
  /** Unit name without ".service"; default "machine-id". */
  name?: string;
  /** Agent config the unit starts with; default /etc/machine-id.yaml. Read when it exists. */
  config?: string;
  user?: string;
  group?: string;
  /** Directory to write `<name>.service` into; when absent the unit is only returned. */
  writeTo?: string;
  /** Replace an existing, different unit file. */
  force?: boolean;
  /** The executable ExecStart= runs; default: this executable when compiled, else /usr/local/bin/machine-id. */
  execPath?: string;
}

export interface InstallSystemdResult {
  unit: string;
  /** Where the unit was written, when `writeTo` was given. */
  path?: string;
  /** "printed" without writeTo; "unchanged" when the same unit was already there. */
  action: "printed" | "created" | "replaced" | "unchanged";
  /** Things the user should know, e.g. that the config was not found. */
  notes: string[];
}

/**
 * Renders the unit for `options.config` and writes it when asked. Idempotent: writing the
 * same unit again reports "unchanged". Throws ALREADY_EXISTS when a different unit is in
 * the way and `force` is not set.
 */
export async function installSystemd(options: InstallSystemdOptions = {}): Promise<InstallSystemdResult> {
  const name = unitName(options.name ?? "machine-id");
  const config = resolve(options.config ?? DEFAULT_CONFIG.agent);
  const notes: string[] = [];

  const text = await readFileIfExists(config);
  let stateDirectory: string | null = DEFAULT_STATE_DIRECTORY.agent;
  let readWritePaths: string[] = [];
  if (text === undefined) {
    notes.push(`Config "${config}" does not exist yet: the unit allows writes to /var/lib/${stateDirectory} only`);
  } else {
    ({ stateDirectory, readWritePaths } = configPaths(text, config));
  }
  // PrivateTmp=yes gives the unit its own /tmp and /var/tmp: files written there are
  // invisible to everyone else and gone when the service stops.
  const inPrivateTmp = readWritePaths.filter((p) => /^\/(var\/)?tmp(\/|$)/.test(p));
  if (inPrivateTmp.length > 0) {
    const list = inPrivateTmp.map((p) => `"${p}"`).join(", ");
    const why = `${list} in "${config}" ${inPrivateTmp.length === 1 ? "is" : "are"} under /tmp or /var/tmp, which the unit's PrivateTmp=yes replaces with a private, empty directory: nothing else would see the files`;
    if (!options.force) {
      throw badParameter(`Cannot render a unit that writes into a private /tmp: ${why}; move the output elsewhere (e.g. /run/machine-id or /opt/machine-id), or pass --force to render it anyway`, {
        details: { reason: "private_tmp", paths: inPrivateTmp },
      });
    }
    notes.push(`${why} (rendered anyway: --force)`);
  }
  const unit = renderUnit({
    kind: "agent",
    execPath: options.execPath ?? defaultExecPath(),
    configPath: config,
    user: options.user ?? DEFAULT_USER,
    ...(options.group === undefined ? {} : { group: options.group }),
    stateDirectory,
    readWritePaths,
    ...(name === "machine-id" ? {} : { description: `machine-id agent ${name}: short-lived certificates for a bot` }),
  });
  if (options.writeTo === undefined) return { unit, action: "printed", notes };

  const dir = resolve(options.writeTo);
  const st = await stat(dir).catch((e) => {
    throw fsError("write units into", dir, e);
  });
  if (!st.isDirectory()) throw badParameter(`Cannot write units into "${dir}": it is not a directory`);
  const path = join(dir, `${name}.service`);
  const existing = await readFileIfExists(path);
  if (existing === unit) return { unit, path, action: "unchanged", notes };
  if (existing !== undefined && !options.force) {
    throw alreadyExists(`Cannot write "${path}": a different unit is already there; pass --force to replace it`);
  }
  // Units are configuration, not secrets: 0644 like every other unit file.
  await writeFileAtomic(path, unit, { mode: 0o644 });
  return { unit, path, action: existing === undefined ? "created" : "replaced", notes };
}

function unitName(name: string): string {
  const n = name.replace(/\.service$/, "");
  if (n.includes("@")) {
    throw badParameter(`Invalid unit name "${name}": templates are not rendered per config; use the machine-id@.service template`);
  }
  if (!/^[A-Za-z0-9:_.-]{1,200}$/.test(n)) {
    throw badParameter(`Invalid unit name "${name}": use letters, digits, ":", "_", "." and "-"`);
  }
  return n;
}

/** The compiled executable knows where it is; from a source checkout assume the install path. */
function defaultExecPath(): string {
  return Bun.main.startsWith("/$bunfs/") ? process.execPath : DEFAULT_EXEC_PATH;
}

/** Where the command writes; tests pass their own. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
}

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** The `systemd` subcommand of `install`, for commander. Errors propagate as AppError. */
export function installSystemdCommand(io: CommandIO = processIO): Command {
  return new Command("systemd")
    .description("Render a hardened systemd unit for an agent config, like `tbot install systemd`")
    .option("--name <name>", "unit name, without .service", "machine-id")
    .option("-c, --config <path>", "agent config the unit starts with", DEFAULT_CONFIG.agent)
    .option("--user <user>", "user the agent runs as", DEFAULT_USER)
    .option("--group <group>", "group the agent runs as (default: the user's name)")
    .option("--write-to <dir>", "write <name>.service into this directory instead of printing it (e.g. /etc/systemd/system)")
    .option("--force", "replace an existing, different unit file; render even with outputs under /tmp", false)
    .option("--exec-path <path>", "executable the unit runs (default: this one)")
    .action(async (opts: { name: string; config: string; user: string; group?: string; writeTo?: string; force: boolean; execPath?: string }) => {
      const result = await installSystemd(opts);
      for (const note of result.notes) io.err(`NOTE: ${note}\n`);
      if (result.action === "printed") {
        io.out(result.unit);
        return;
      }
      const name = result.path!.split("/").pop()!;
      io.out(
        result.action === "unchanged"
          ? `${result.path} is already up to date\n`
          : `Wrote ${result.path}\nNext: systemctl daemon-reload && systemctl enable --now ${name}\n`,
      );
    });
}

/** `install` with its `systemd` subcommand, ready for `program.addCommand()`. */
export function installCommand(io: CommandIO = processIO): Command {
  return new Command("install").description("Install machine-id as a service").addCommand(installSystemdCommand(io));
}
