/**
 * The one entry point: `machine-id <agent command>`, `machine-id auth …`,
 * `machine-id ctl …`. Exit codes: 0 ok, 1 failure, 2 usage error.
 */

import type { Command, OutputConfiguration } from "commander";
import { VERSION, COMMIT } from "./lib/version.ts";

// Startup cost is what every boot and CI job pays (bench/RESULTS.md, "Startup"): nothing is
// imported at the top that `version` does not need; commander and each role load on demand.
const versionLine = () => `machine-id v${VERSION} git:${COMMIT} bun:${Bun.version}`;

/**
 * Each role's code is loaded only for its own commands: an agent daemon never
 * evaluates the auth service, ctl or the Kubernetes proxy, which keeps its memory
 * down (the bundle holds them all; a dynamic import defers their evaluation).
 */
const ROLES: Record<string, () => Promise<Command[]>> = {
  agent: async () => (await import("./agent/commands.ts")).agentCommands(),
  auth: async () => [(await import("./auth/command.ts")).authCommand()],
  ctl: async () => [(await import("./ctl/index.ts")).ctlCommand()],
  install: async () => [(await import("./agent/systemd/index.ts")).installCommand()],
};

/**
 * The top-level commands with the one line `machine-id --help` lists for each: that list
 * is printed without loading any role (each command's own help comes from its role).
 */
const COMMANDS: [name: string, role: string, summary: string][] = [
  ["start", "agent", "Join the cluster, write the outputs and keep them fresh (until SIGTERM; SIGHUP reloads)"],
  ["init", "agent", "Create an output directory for the agent and grant a reader user access with POSIX ACLs"],
  ["keypair", "agent", "Keys for the bound_keypair join method"],
  ["auth", "auth", "Run the auth service: the cluster's CA and source of truth"],
  ["ctl", "ctl", "Administer the auth service: bots, roles, join tokens, locks and audit events"],
  ["install", "install", "Install machine-id as a service"],
];

const DESCRIPTION = "Machine identity: short-lived X.509 and SSH certificates for bots";
const VERSION_SUMMARY = "Print the version and git commit";

/**
 * `machine-id --help`, laid out as commander lays it out (80 columns), written here so the
 * list of commands costs no more than a hello world: loading commander and the Node
 * builtins it requires (child_process, fs, path, process) is ~8 ms, more than the
 * process's whole startup. tests/e2e/startup.test.ts compares it with commander's own.
 */
function topLevelHelp(): string {
  const options: [string, string][] = [
    ["--version", VERSION_SUMMARY],
    ["-h, --help", "display help for command"],
  ];
  const commands: [string, string][] = [["version", VERSION_SUMMARY], ...COMMANDS.map(([name, , summary]): [string, string] => [name, summary]), ["help [command]", "display help for command"]];
  const pad = Math.max(...[...options, ...commands].map(([t]) => t.length)) + 2;
  const item = ([term, text]: [string, string]) => {
    const lines: string[] = [];
    let line = "";
    for (const word of text.split(" ")) {
      if (line && 2 + pad + line.length + 1 + word.length > 80) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
    return `  ${term.padEnd(pad)}${lines.join(`\n${" ".repeat(2 + pad)}`)}`;
  };
  return ["Usage: machine-id [options] [command]", "", DESCRIPTION, "", "Options:", ...options.map(item), "", "Commands:", ...commands.map(item)].join("\n");
}

async function buildProgram(argv: string[], { Command }: typeof import("commander")): Promise<Command> {
  const program = new Command("machine-id")
    .description(DESCRIPTION)
    .showHelpAfterError()
    .exitOverride();
  program.version(versionLine(), "--version", VERSION_SUMMARY);
  program
    .command("version")
    .description(VERSION_SUMMARY)
    .action(() => {
      console.log(versionLine());
    });
  const first = argv.slice(2).find((a) => !a.startsWith("-"));
  const role = COMMANDS.find(([name]) => name === first)?.[1];
  if (first === undefined) {
    // `machine-id [--help]`: the list of commands, no role loaded
    for (const [name, , summary] of COMMANDS) program.command(name).description(summary);
  } else {
    // a command's role; `help <command>` and unknown commands load every role, so the
    // full tree is there for the help and for commander's suggestions
    for (const r of role ? [role] : Object.keys(ROLES)) for (const cmd of await ROLES[r]!()) program.addCommand(cmd);
  }
  overrideExits(program, await outputConfiguration());
  return program;
}

/**
 * Help and usage errors written straight to the file descriptors: commander's default asks
 * process.stdout for colours and width, and creating that stream costs ~4 ms, a third of
 * `--help`. A terminal still gets its width; no help text is coloured.
 */
async function outputConfiguration(): Promise<OutputConfiguration> {
  const { fstatSync, writeSync } = await import("node:fs");
  // a terminal is a character device (node:tty's isatty would load the streams too)
  const width = (fd: 1 | 2) => (fstatSync(fd).isCharacterDevice() ? ((fd === 1 ? process.stdout : process.stderr).columns ?? 80) : 80);
  return {
    writeOut: (s) => void writeSync(1, s),
    writeErr: (s) => void writeSync(2, s),
    getOutHelpWidth: () => width(1),
    getErrHelpWidth: () => width(2),
    getOutHasColors: () => false,
    getErrHasColors: () => false,
  };
}

/** Usage errors exit 2 everywhere: commander sets exitOverride per command, not per tree. */
function overrideExits(cmd: Command, output: OutputConfiguration): void {
  cmd.exitOverride().showHelpAfterError().configureOutput(output);
  for (const sub of cmd.commands) overrideExits(sub, output);
}

// No top-level await: bytecode compilation (build.ts --bytecode) emits CommonJS.
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // the one command that needs nothing else is answered before commander loads
  if (args.length === 1 && (args[0] === "version" || args[0] === "--version")) return console.log(versionLine());
  if (args.length === 1 && (args[0] === "--help" || args[0] === "-h")) return console.log(topLevelHelp());
  // a plain `start` line (what every oneshot and service runs) is parsed without commander;
  // help, mistakes and anything unusual go to commander, which words them
  if (args[0] === "start") {
    const { parseStartArgs, runStart } = await import("./agent/start_args.ts");
    const opts = parseStartArgs(args.slice(1));
    if (opts) return runStart(opts).catch(fail);
  }
  const commander = await import("commander");
  try {
    await (await buildProgram(process.argv, commander)).parseAsync(process.argv);
  } catch (e) {
    if (e instanceof commander.CommanderError) {
      // help and version are "errors" to commander; their exit code is 0
      process.exit(e.exitCode === 0 ? 0 : 2);
    }
    await fail(e);
  }
}

/** Prints a command's failure and exits 1, or 2 for a usage mistake. */
async function fail(e: unknown): Promise<never> {
  const { formatError, isAppError } = await import("./lib/errors.ts");
  console.error(`ERROR: ${formatError(e)}`);
  // a usage mistake found after parsing (an action's own check) is still a usage error
  process.exit(isAppError(e, "BAD_PARAMETER") && e.details?.usage === true ? 2 : 1);
}

void main();
