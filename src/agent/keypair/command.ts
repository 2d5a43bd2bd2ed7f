/**
 * The `machine-id keypair` command definition; its action imports what it runs, so
 * `keypair --help` and the other commands' startup load none of it.
 */

import { Command, Option } from "commander";
import type { KeyAlgorithm } from "../../crypto/index.ts";

interface CreateFlags {
  static?: boolean;
  staticKeyPath?: string;
  storage?: string;
  overwrite?: boolean;
  proxyServer?: string;
  format: "text" | "json";
  algorithm: KeyAlgorithm;
}

/** `machine-id keypair` with its one subcommand, `create`. */
export function keypairCommand(): Command {
  const keypair = new Command("keypair").description("Keys for the bound_keypair join method");
  keypair
    .command("create")
    .description("Create (or reuse) the key a bound_keypair token binds; print the public key, an example token and how the agent finds the key")
    .option("--static", "a static key you keep (file or $TBOT_BOUND_KEYPAIR_STATIC_KEY), for hosts without storage; needs insecure recovery, cannot rotate")
    .option("--static-key-path <path>", "with --static: write the private key to this file (0600) instead of printing it")
    .option("--storage <dir>", "without --static: the bot's storage directory or file:///path (default /var/lib/machine-id)")
    .option("--overwrite", "replace an existing key instead of reusing it")
    .option("--proxy-server <host:port>", "ping the cluster to show its name and check it is reachable")
    .addOption(new Option("--algorithm <alg>", "key algorithm").choices(["ed25519", "ecdsa-p256"]).default("ed25519"))
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action(async (o: CreateFlags) => {
      const [{ Logger }, { createKeypair }, { renderJson, renderText }, { registerBuiltins }] = await Promise.all([
        import("../../lib/log.ts"),
        import("./create.ts"),
        import("./_render.ts"),
        import("../builtins.ts"),
      ]);
      registerBuiltins(); // --storage names a destination type
      const log = new Logger({ component: "keypair" });
      const isStatic = o.static === true;
      const result = await createKeypair(
        {
          static: isStatic,
          overwrite: o.overwrite === true,
          algorithm: o.algorithm,
          ...(o.staticKeyPath !== undefined ? { staticKeyPath: o.staticKeyPath } : {}),
          ...(o.storage !== undefined ? { storage: o.storage } : {}),
          ...(o.proxyServer !== undefined ? { proxyServer: o.proxyServer } : {}),
        },
        log,
      );
      if (o.format === "json") {
        if (result.cluster) log.info("Cluster answered", { cluster: result.cluster.cluster_name, version: result.cluster.server_version });
        process.stdout.write(renderJson(result, isStatic) + "\n");
      } else {
        process.stdout.write(renderText(result, isStatic));
      }
    });
  return keypair;
}
