/**
 * The agent's command-line: `start`, `init` and `keypair`, as commander commands the entry
 * point registers. Flags override the config file; the config layer merges and checks.
 */

import { Command, Option } from "commander";
import type { AgentConfig } from "../config/index.ts";
import { keypairCommand } from "./keypair/command.ts";
import { START_OPTIONS, runStart } from "./start_args.ts";

// The actions import what they run: `start --help` loads only these definitions.

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `machine-id start` (its options: start_args.ts). */
export function startCommand(): Command {
  const cmd = new Command("start").description("Join the cluster, write the outputs and keep them fresh (until SIGTERM; SIGHUP reloads)");
  for (const o of START_OPTIONS) {
    if (o.choices) cmd.addOption(new Option(o.flags, o.description).choices(o.choices));
    else if (o.repeatable) cmd.option(o.flags, o.description, collect);
    else cmd.option(o.flags, o.description);
  }
  return cmd.action((opts: Record<string, unknown>) => runStart(opts));
}

/** `machine-id init`. */
export function initCommand(): Command {
  return new Command("init")
    .description("Create an output directory for the agent and grant a reader user access with POSIX ACLs")
    .option("-c, --config <path>", "agent config whose directory output to prepare")
    .option("--init-dir <path>", "the directory to prepare (default: the config's directory output)")
    .option("--bot-user <user>", "the user the agent runs as")
    .option("--owner <user:group>", "owner of the directory")
    .option("--reader-user <user>", "the user that reads the credentials")
    .action(async (opts: { config?: string; initDir?: string; botUser?: string; owner?: string; readerUser?: string }) => {
      const [{ Logger }, { loadAgentConfig }, { initDestinationDir, initDirectory }, { registerBuiltins }] = await Promise.all([
        import("../lib/log.ts"),
        import("../config/index.ts"),
        import("./init.ts"),
        import("./builtins.ts"),
      ]);
      registerBuiltins();
      const log = new Logger({ component: "init" });
      const cfg: AgentConfig | undefined = opts.config ? await loadAgentConfig(opts.config) : undefined;
      const dir = initDirectory(cfg, opts.initDir);
      const res = await initDestinationDir(
        dir,
        {
          ...(opts.botUser ? { botUser: opts.botUser } : {}),
          ...(opts.owner ? { owner: opts.owner } : {}),
          ...(opts.readerUser ? { readerUser: opts.readerUser } : {}),
        },
        log,
      );
      for (const a of res.actions) console.log(a);
      const out = cfg?.outputs.find((o) => o.destination.type === "directory" && o.destination.path.replace(/\/+$/, "") === dir);
      if (opts.readerUser && out?.destination.type === "directory" && out.destination.acls === "off") {
        console.log(`note: set "acls: try" on this destination in the config, or files are written 0600 and "${opts.readerUser}" cannot read them`);
      }
    });
}

/** The agent's commands, for the entry point to register. */
export function agentCommands(): Command[] {
  return [startCommand(), initCommand(), keypairCommand()];
}
