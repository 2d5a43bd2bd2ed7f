/**
 * `machine-id auth start`: reads the config and flags, starts the service, tells
 * systemd when it is ready, reloads `kubernetes_clusters` on SIGHUP, and stops cleanly
 * on SIGTERM/SIGINT.
 */

import { dirname } from "node:path";
import { Command, Option } from "commander";
import { parse as parseYaml } from "yaml";
import { applyAuthFlags, checkAuthConfig, defaultAuthConfig, loadAuthConfig, restartOnlyChanges, type AuthConfig } from "../config/index.ts";
import { errorMessage } from "../lib/errors.ts";
import { Logger, type LogFormat, type LogLevel } from "../lib/log.ts";
import type { Notifier } from "../lib/sd_notify.ts";
import { createNotifier } from "../lib/sd_notify.ts";
import { readFileIfExists } from "../lib/fs.ts";
import { loadBuildChecksums } from "./install/index.ts";
import { startAuthService, type RunningAuth } from "./service.ts";

interface StartFlags {
  config?: string;
  dataDir?: string;
  listenAddr?: string;
  publicAddr?: string;
  clusterName?: string;
  distDir?: string;
  debug?: boolean;
  logFormat?: LogFormat;
}

/** Which of cluster_name / public_addr the config file itself sets (defaults are not choices). */
async function explicitInFile(path: string | undefined): Promise<{ clusterName: boolean; publicAddr: boolean }> {
  if (!path) return { clusterName: false, publicAddr: false };
  const raw = parseYaml((await readFileIfExists(path)) ?? "") as Record<string, unknown> | null;
  return { clusterName: raw?.cluster_name !== undefined, publicAddr: raw?.public_addr !== undefined };
}

async function resolveConfig(flags: StartFlags): Promise<{ cfg: AuthConfig; clusterName?: string; publicAddr?: string }> {
  const base = flags.config ? await loadAuthConfig(flags.config) : defaultAuthConfig();
  const cfg = checkAuthConfig(
    applyAuthFlags(base, {
      ...(flags.dataDir ? { dataDir: flags.dataDir } : {}),
      ...(flags.listenAddr ? { listenAddr: flags.listenAddr } : {}),
      ...(flags.publicAddr ? { publicAddr: flags.publicAddr } : {}),
      ...(flags.clusterName ? { clusterName: flags.clusterName } : {}),
    }),
  );
  const inFile = await explicitInFile(flags.config);
  // A data dir remembers its cluster name; only a name the user chose may contradict it.
  const clusterName = flags.clusterName ?? (inFile.clusterName ? cfg.clusterName : undefined);
  const publicAddr = flags.publicAddr ?? (inFile.publicAddr ? cfg.publicAddr : undefined);
  return { cfg, ...(clusterName ? { clusterName } : {}), ...(publicAddr ? { publicAddr } : {}) };
}

/**
 * SIGHUP: reads the config again as at start (file, then flags) and applies its
 * `kubernetes_clusters` to the running service, all or nothing. A config that does not
 * load, or a cluster file that cannot be read, changes nothing: the error is logged and
 * the previous clusters stay. Changed settings that need a restart are named in a warning.
 */
async function reload(flags: StartFlags, started: AuthConfig, running: RunningAuth, log: Logger, notifier: Notifier): Promise<void> {
  const file = flags.config ?? "(no file: flags only)";
  notifier.reloading();
  try {
    const { cfg } = await resolveConfig(flags);
    const needsRestart = restartOnlyChanges(started, cfg);
    const changes = await running.reloadKubernetes(cfg.kubernetesClusters ?? [], needsRestart);
    for (const w of cfg.warnings) if (!started.warnings.includes(w)) log.warn(w);
    for (const field of needsRestart) {
      log.warn(`"${field}" changed in "${file}" but a reload does not apply it: restart the auth service for it to take effect (only kubernetes_clusters apply on SIGHUP)`);
    }
    const clusters = (cfg.kubernetesClusters ?? []).map((c) => c.name).sort();
    log.info("Configuration reloaded", { config: file, added: changes.added.join(","), removed: changes.removed.join(","), changed: changes.changed.join(","), clusters: clusters.join(",") });
    notifier.ready(`Configuration reloaded; serving Kubernetes clusters: ${clusters.join(", ") || "none"}`);
  } catch (e) {
    log.error(`Cannot reload the configuration from "${file}": still serving the previous Kubernetes clusters; fix the file and send SIGHUP again`, { error: errorMessage(e) });
    notifier.ready("Reload failed; running with the previous configuration");
  }
}

/** Builds `auth` with its `start` subcommand. */
export function authCommand(): Command {
  const auth = new Command("auth").description("Run the auth service: the cluster's CA and source of truth");
  auth
    .command("start")
    .description("Start the auth service (until SIGTERM; SIGHUP reloads kubernetes_clusters)")
    .option("-c, --config <file>", "auth service config file (YAML)")
    .option("--data-dir <dir>", "where the service keeps its database and admin identity (default /var/lib/machine-id-auth)")
    .option("--listen-addr <addr>", "address to listen on, host:port (default 0.0.0.0:3025; port 0 picks a free one)")
    .option("--public-addr <addr>", "address agents and ctl reach the service at, host:port")
    .option("--cluster-name <name>", "cluster name, fixed on first start (default: this host's name)")
    .option("--dist-dir <dir>", "directory with machine-id-linux-<arch> binaries to serve at /downloads/ (default: the running binary's directory)")
    .option("-d, --debug", "debug logging")
    .addOption(new Option("--log-format <format>", "log format").choices(["text", "json"]))
    .action(async (flags: StartFlags) => {
      // Bun's default for SIGHUP ends the process: held until the service can reload.
      let onHup = () => {};
      const hup = () => onHup();
      process.on("SIGHUP", hup);
      const { cfg, clusterName, publicAddr } = await resolveConfig(flags);
      const level: LogLevel = flags.debug ? "debug" : cfg.log.level;
      const log = new Logger({ level, format: flags.logFormat ?? cfg.log.format, component: "auth" });
      onHup = () => log.warn("SIGHUP ignored: the auth service is still starting; send it again once it is ready");
      for (const w of cfg.warnings) log.warn(w);
      const notifier = createNotifier(process.env, { logger: log });
      const distDir = flags.distDir ?? dirname(process.execPath);
      // read once, before serving: install.sh embeds them (see loadBuildChecksums)
      const checksums = await loadBuildChecksums({ distDir }, (binary) =>
        log.warn(`No build checksum for "${binary}": install.sh will refuse to install it (the build writes its .sha256 beside it)`),
      );
      const running = await startAuthService({
        dataDir: cfg.dataDir,
        listenAddr: cfg.listenAddr,
        ...(publicAddr ? { publicAddr } : {}),
        ...(clusterName ? { clusterName } : {}),
        storage: cfg.storage,
        caKeyAlgorithm: cfg.caKeyAlgorithm,
        ...(cfg.limits ? { limits: cfg.limits } : {}),
        auditRetentionMs: cfg.audit.retentionMs,
        ...(cfg.kubernetesClusters ? { kubernetesClusters: cfg.kubernetesClusters } : {}),
        log,
        downloads: { distDir, checksums },
      });
      // The executable starts with JavaScriptCore's tier-up thresholds scaled up (build.ts,
      // --compile-jit-policy) for run-once commands and the agent; the service is hot code.
      Bun.unsafe.setJITPolicy(1);
      notifier.ready(`Listening on ${running.listener.host}:${running.listener.port}`);
      // one reload at a time, in the order the signals came
      let reloads = Promise.resolve();
      onHup = () => {
        log.info("Reloading the configuration", { signal: "SIGHUP" });
        reloads = reloads.then(() => reload(flags, cfg, running, log, notifier));
      };
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          log.info("Stopping", { signal: sig });
          notifier.stopping();
          resolve();
        };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      onHup = () => {}; // stopping: a late SIGHUP must not end the process with a signal
      await reloads;
      await running.close();
      notifier.close();
    });
  return auth;
}
