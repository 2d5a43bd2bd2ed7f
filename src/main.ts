/**
 * The one entry point: `machine-id <agent command>`, `machine-id auth …`,
 * `machine-id ctl …`. Exit codes: 0 ok, 1 failure, 2 usage error.
 */

import { Command, CommanderError } from "commander";
import { formatError, isAppError } from "./lib/errors.ts";
import { VERSION, COMMIT } from "./lib/version.ts";

const program = new Command("machine-id")
  .description("Machine identity: short-lived X.509 and SSH certificates for bots")
  .showHelpAfterError()
  .exitOverride();

const versionLine = () => `machine-id v${VERSION} git:${COMMIT} bun:${Bun.version}`;
program.version(versionLine(), "--version", "Print the version and git commit");
program
  .command("version")
  .description("Print the version and git commit")
  .action(() => {
    console.log(versionLine());
  });

/**
 * Each role's code is loaded only for its own commands: an agent daemon never
 * evaluates the auth service, ctl or the Kubernetes proxy, which keeps its memory
 * down (the bundle holds them all; a dynamic import defers their evaluation). Help
 * and unknown commands load everything so the full command list is shown.
 */
const ROLES: Record<string, () => Promise<Command[]>> = {
  agent: async () => (await import("./agent/index.ts")).agentCommands(),
  auth: async () => [(await import("./auth/command.ts")).authCommand()],
  ctl: async () => [(await import("./ctl/index.ts")).ctlCommand()],
  install: async () => [(await import("./agent/systemd/index.ts")).installCommand()],
};
const ROLE_OF: Record<string, string> = { start: "agent", init: "agent", keypair: "agent", auth: "auth", ctl: "ctl", install: "install" };

async function loadCommands(argv: string[]): Promise<void> {
  const first = argv.slice(2).find((a) => !a.startsWith("-"));
  if (first === "version" || (first === undefined && argv.includes("--version"))) return;
  const role = first ? ROLE_OF[first] : undefined;
  const roles = role ? [role] : Object.keys(ROLES);
  for (const r of roles) for (const cmd of await ROLES[r]!()) program.addCommand(cmd);
  overrideExits(program);
}

/** Usage errors exit 2 everywhere: commander sets exitOverride per command, not per tree. */
function overrideExits(cmd: Command): void {
  cmd.exitOverride().showHelpAfterError();
  for (const sub of cmd.commands) overrideExits(sub);
}

// No top-level await: bytecode compilation (build.ts --bytecode) emits CommonJS.
async function main(): Promise<void> {
  try {
    await loadCommands(process.argv);
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are "errors" to commander; their exit code is 0
      process.exit(e.exitCode === 0 ? 0 : 2);
    }
    console.error(`ERROR: ${formatError(e)}`);
    // a usage mistake found after parsing (an action's own check) is still a usage error
    process.exit(isAppError(e, "BAD_PARAMETER") && e.details?.usage === true ? 2 : 1);
  }
}

void main();
