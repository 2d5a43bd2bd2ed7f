/**
 * `machine-id start`: load the config (file, then flags), then either one pass
 * (--oneshot) or the renewal loop with diagnostics, signal handling and systemd
 * notifications until SIGTERM/SIGINT.
 */

import { applyAgentFlags, checkAgentConfig, loadAgentConfig, parseAgentConfig, type AgentConfig, type AgentFlags } from "../config/index.ts";
import { badParameter, errorMessage } from "../lib/errors.ts";
import { Logger, type LogFormat } from "../lib/log.ts";
import { Agent, type Service } from "./agent.ts";

/** Flags of `start` as commander hands them over. */
export interface StartFlags extends AgentFlags {
  config?: string;
  /** --allow-no-outputs: a oneshot that only joins and keeps its identity in storage. */
  allowNoOutputs?: boolean;
}

/** Reads the config file (if any), applies the flags and checks the result. */
export async function loadStartConfig(flags: StartFlags): Promise<AgentConfig> {
  const { config: path, allowNoOutputs: _, ...overrides } = flags;
  const base = path ? await loadAgentConfig(path) : parseAgentConfig("", "command line");
  return checkAgentConfig(applyAgentFlags(base, overrides));
}

/** The logger a config asks for (flags already applied). */
export function agentLogger(cfg: Pick<AgentConfig, "debug" | "logFormat">): Logger {
  return new Logger({ level: cfg.debug ? "debug" : "info", format: cfg.logFormat as LogFormat, component: "agent" });
}

/** Runs services side by side until `signal` aborts; the first to fail aborts the others. */
export async function runServices(services: Service[], signal: AbortSignal, log: Logger): Promise<void> {
  const inner = new AbortController();
  const stop = () => inner.abort();
  signal.addEventListener("abort", stop, { once: true });
  try {
    await Promise.all(
      services.map(async (s) => {
        try {
          await s.run(inner.signal);
        } catch (e) {
          log.error("Service failed", { service: s.name, error: errorMessage(e) });
          inner.abort();
          throw e;
        }
      }),
    );
  } finally {
    signal.removeEventListener("abort", stop);
  }
}

/** The diagnostics listener as a Service: bound at start, closed when the agent stops. */
function diagService(addr: string, agent: Agent, log: Logger): Service {
  return {
    name: "diag",
    async run(signal) {
      const { startDiagServer } = await import("./diag/index.ts");
      const server = await startDiagServer({ addr, health: agent.health, metrics: agent.metrics, log: log.child("diag") });
      await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
      await server.stop();
    },
  };
}

/** `start`: see the module comment. Resolves when the agent has stopped; throws on a oneshot failure. */
export async function start(flags: StartFlags): Promise<void> {
  const cfg = await loadStartConfig(flags);
  const log = agentLogger(cfg);
  for (const w of cfg.warnings) log.warn(w);
  const nothingToWrite = cfg.outputs.length + cfg.services.length === 0;
  // Flags alone with no output: refused before joining, as the one-time token would be
  // spent on nothing. A config file states its outputs itself (tbot's own examples
  // say `outputs: []` until an access guide fills them in), so it is taken as asked.
  if (nothingToWrite && cfg.oneshot && flags.config === undefined && !flags.allowNoOutputs) {
    throw badParameter(
      `Nothing to write: --oneshot with no outputs would spend the join token and write no files; add --destination-dir DIR (or -c FILE with outputs), or pass --allow-no-outputs to only join and keep the identity in --storage`,
      { details: { reason: "no_outputs", usage: true } },
    );
  }
  if (nothingToWrite) log.warn("No outputs are configured: the agent only keeps its own identity fresh");
  const agent = new Agent({ config: cfg, log });

  if (cfg.oneshot) {
    await agent.oneshot();
    log.info("Oneshot done: every output written", { outputs: agent.outputNames.length });
    return;
  }

  // The daemon runs a few milliseconds of work every few minutes: keep it in the interpreter
  // for good (build.ts scales tier-up by 1,000, which ~800 renewals reach): JIT code and the
  // compilers' pages were ~10 MB of its RSS (bench/RESULTS.md).
  Bun.unsafe.setJITPolicy(1e6);
  // the daemon's own modules, which a oneshot does not load
  const { createNotifier, runWatchdog } = await import("./systemd/index.ts");
  const notifier = createNotifier(process.env, { logger: log.child("systemd") });
  const controller = new AbortController();
  const onStop = (sig: string) => () => {
    if (controller.signal.aborted) return;
    log.info("Stopping after the current write", { signal: sig });
    notifier.stopping();
    controller.abort();
  };
  const onTerm = onStop("SIGTERM");
  const onInt = onStop("SIGINT");
  const onHup = () => {
    notifier.reloading();
    loadStartConfig(flags)
      .then((next) => {
        for (const w of next.warnings) log.warn(w);
        agent.reload(next);
        notifier.ready("configuration reloaded");
      })
      .catch((e) => {
        // A broken edit must not take down a working agent: keep the old config.
        log.error("Cannot reload the configuration; keeping the previous one", { error: errorMessage(e) });
        notifier.ready("reload failed; running with the previous configuration");
      });
  };
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onInt);
  process.on("SIGHUP", onHup);

  let first = true;
  const services: Service[] = [
    agent.service({
      onIteration: (e) => {
        if (first) notifier.ready(e ? `started; first attempt failed: ${errorMessage(e)}` : "started");
        else notifier.status(e ? `last attempt failed: ${errorMessage(e)}` : "credentials fresh");
        first = false;
      },
    }),
    { name: "watchdog", run: (signal) => runWatchdog(notifier, signal) },
  ];
  if (cfg.diagAddr) services.push(diagService(cfg.diagAddr, agent, log));
  try {
    await runServices(services, controller.signal, log);
  } finally {
    process.off("SIGTERM", onTerm);
    process.off("SIGINT", onInt);
    process.off("SIGHUP", onHup);
    notifier.close();
  }
  log.info("Stopped");
}
