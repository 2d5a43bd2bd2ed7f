/**
 * The agent's command-line: `start`, `init` and `keypair`, as commander commands the entry
 * point registers. Flags override the config file; the config layer merges and checks.
 */

import { Command, Option } from "commander";
import type { AgentConfig } from "../config/index.ts";
import type { StartFlags } from "./start.ts";
import { keypairCommand } from "./keypair/command.ts";

// The actions import what they run: `start --help` loads only these definitions.

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `machine-id start`. */
export function startCommand(): Command {
  return new Command("start")
    .description("Join the cluster, write the outputs and keep them fresh (until SIGTERM; SIGHUP reloads)")
    .option("-c, --config <path>", "agent config file (tbot v1 or v2 YAML)")
    .option("--auth-server <host:port>", "address of the auth service")
    .option("--proxy-server <host:port>", "address of the proxy (instead of --auth-server)")
    .option("--token <token|path>", "join token, or a file holding it")
    .option("--join-method <method>", "token, bound_keypair or kubernetes")
    .option("--ca-pin <sha256:hex>", "CA pin of the auth service (repeatable; replaces the config's pins)", collect)
    .option("--certificate-ttl <duration>", "lifetime of issued certificates, e.g. 1h")
    .option("--renewal-interval <duration>", "how often to renew, e.g. 20m")
    .option("--oneshot", "join or renew once, write every output and exit")
    .option("--allow-no-outputs", "with --oneshot: join even though no output is configured (the identity stays in --storage)")
    .option("--diag-addr <host:port>", "serve /livez, /readyz and /metrics here")
    .option("--storage <url>", "bot storage: a directory path, file:///path or memory://")
    .option("--destination-dir <path>", "write an identity output to this directory")
    .addOption(new Option("--log-format <format>", "log format").choices(["text", "json"]))
    .option("-d, --debug", "log debug messages")
    .option("--insecure", "do not verify the auth service's CA (tests only)")
    .action(async (opts: Record<string, unknown>) => {
      const flags: StartFlags = {};
      const str = (k: string) => (typeof opts[k] === "string" ? (opts[k] as string) : undefined);
      const set = <K extends keyof StartFlags>(key: K, value: StartFlags[K] | undefined) => {
        if (value !== undefined) flags[key] = value;
      };
      set("config", str("config"));
      set("authServer", str("authServer"));
      set("proxyServer", str("proxyServer"));
      set("token", str("token"));
      set("joinMethod", str("joinMethod"));
      set("caPins", opts.caPin as string[] | undefined);
      set("certificateTtl", str("certificateTtl"));
      set("renewalInterval", str("renewalInterval"));
      set("diagAddr", str("diagAddr"));
      set("storage", str("storage"));
      set("destinationDir", str("destinationDir"));
      set("logFormat", str("logFormat"));
      if (opts.oneshot) flags.oneshot = true;
      if (opts.allowNoOutputs) flags.allowNoOutputs = true;
      if (opts.debug) flags.debug = true;
      if (opts.insecure) flags.insecure = true;
      // zod compiles a parser (new Function) for each object schema on its first parse, which
      // pays off after thousands of parses; the agent parses each kind a few times per renewal.
      // It is read when a schema is built, so before the schemas' modules load.
      await import("./_jitless.ts");
      const [{ start }, { registerBuiltins }] = await Promise.all([import("./start.ts"), import("./builtins.ts")]);
      registerBuiltins();
      await start(flags);
    });
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
