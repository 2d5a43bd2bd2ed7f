/**
 * The one entry point: `machine-id <agent command>`, `machine-id auth …`,
 * `machine-id ctl …`. Exit codes: 0 ok, 1 failure, 2 usage error.
 */

import "reflect-metadata";
import { Command, CommanderError } from "commander";
import { formatError } from "./lib/errors.ts";
import { VERSION, COMMIT } from "./lib/version.ts";
import { authCommand } from "./auth/command.ts";
import { ctlCommand } from "./ctl/index.ts";
import { installCommand } from "./agent/systemd/index.ts";
import { agentCommands } from "./agent/index.ts";

const program = new Command("machine-id")
  .description("Machine identity: short-lived X.509 and SSH certificates for bots")
  .showHelpAfterError()
  .exitOverride();

program
  .command("version")
  .description("Print the version and git commit")
  .action(() => {
    console.log(`machine-id v${VERSION} git:${COMMIT} bun:${Bun.version}`);
  });

for (const cmd of [...agentCommands(), authCommand(), ctlCommand(), installCommand()]) program.addCommand(cmd);

/** Usage errors exit 2 everywhere: commander sets exitOverride per command, not per tree. */
function overrideExits(cmd: Command): void {
  cmd.exitOverride().showHelpAfterError();
  for (const sub of cmd.commands) overrideExits(sub);
}
overrideExits(program);

// No top-level await: bytecode compilation (build.ts --bytecode) emits CommonJS.
async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are "errors" to commander; their exit code is 0
      process.exit(e.exitCode === 0 ? 0 : 2);
    }
    console.error(`ERROR: ${formatError(e)}`);
    process.exit(1);
  }
}

void main();
