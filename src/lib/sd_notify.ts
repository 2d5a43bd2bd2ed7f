/**
 * sd_notify for `Type=notify` units: tells systemd when the process is ready, reloading
 * or stopping, and pings the watchdog. A no-op outside systemd (no `$NOTIFY_SOCKET`).
 */

import { systemClock, type Clock } from "./clock.ts";
import { badParameter, errorMessage } from "./errors.ts";
import { silentLogger, type Logger } from "./log.ts";
import { UnixDatagramSender } from "./_datagram.ts";

/** Where notifications go; the real one is a unix datagram socket, tests may pass their own. */
export interface NotifyTransport {
  send(message: string): void;
  close(): void;
}

/**
 * The state changes a service reports to its manager. Every method is safe to call when
 * not running under systemd (it does nothing and returns false) and never throws: a lost
 * notification is logged, not fatal, because the service itself is still fine.
 */
export interface Notifier {
  /** True when `$NOTIFY_SOCKET` was set, so messages are actually sent. */
  readonly enabled: boolean;
  /**
   * How often to call watchdog(): half of `$WATCHDOG_USEC`, or undefined when the unit
   * sets no `WatchdogSec=` (or the watchdog is meant for another process).
   */
  readonly watchdogIntervalMs: number | undefined;
  /** `READY=1`: start-up is complete; systemd starts the units ordered after this one. */
  ready(status?: string): boolean;
  /** `RELOADING=1`: a reload (SIGHUP) began; call ready() when it is done. */
  reloading(status?: string): boolean;
  /** `STOPPING=1`: shutdown began. */
  stopping(status?: string): boolean;
  /** `WATCHDOG=1`: the process is alive; a no-op unless the watchdog is enabled. */
  watchdog(): boolean;
  /** `STATUS=…`: one line shown by `systemctl status`. */
  status(text: string): boolean;
  /** Releases the socket. */
  close(): void;
}

export interface NotifierOptions {
  logger?: Logger;
  /** Replaces the unix datagram socket (for tests). */
  transport?: NotifyTransport;
  /** The process id compared with `$WATCHDOG_PID`; default process.pid. */
  pid?: number;
}

/**
 * Creates a notifier from the environment systemd gives a `Type=notify` service.
 * Throws BAD_PARAMETER when `$NOTIFY_SOCKET` is set to an address that is not a path or
 * an abstract name (such as systemd 254's `vsock:`), so a broken setup fails at start
 * instead of timing out later.
 */
export function createNotifier(env: Record<string, string | undefined> = process.env, options: NotifierOptions = {}): Notifier {
  const socket = env.NOTIFY_SOCKET;
  const log = options.logger ?? silentLogger;
  if (!socket) return disabledNotifier;
  const transport = options.transport ?? new UnixDatagramSender(socket);
  const watchdogIntervalMs = watchdogInterval(env, options.pid ?? process.pid);

  const send = (fields: Record<string, string>): boolean => {
    const message = Object.entries(fields)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n");
    try {
      transport.send(message);
      return true;
    } catch (e) {
      log.warn("Cannot notify systemd", { socket, message: Object.keys(fields).join(","), error: errorMessage(e) });
      return false;
    }
  };
  const withStatus = (fields: Record<string, string>, status?: string) =>
    status === undefined ? fields : { ...fields, STATUS: oneLine(status) };

  return {
    enabled: true,
    watchdogIntervalMs,
    ready: (status) => send(withStatus({ READY: "1" }, status)),
    // MONOTONIC_USEC lets systemd ≥ 253 (Type=notify-reload) match the reload to this message.
    reloading: (status) => send(withStatus({ RELOADING: "1", MONOTONIC_USEC: monotonicUsec() }, status)),
    stopping: (status) => send(withStatus({ STOPPING: "1" }, status)),
    watchdog: () => (watchdogIntervalMs === undefined ? false : send({ WATCHDOG: "1" })),
    status: (text) => send({ STATUS: oneLine(text) }),
    close: () => transport.close(),
  };
}

const disabledNotifier: Notifier = {
  enabled: false,
  watchdogIntervalMs: undefined,
  ready: () => false,
  reloading: () => false,
  stopping: () => false,
  watchdog: () => false,
  status: () => false,
  close: () => {},
};

function watchdogInterval(env: Record<string, string | undefined>, pid: number): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (!usec) return undefined;
  if (!/^\d+$/.test(usec) || Number(usec) === 0) {
    throw badParameter(`Invalid WATCHDOG_USEC "${usec}": expected a positive number of microseconds`);
  }
  // The watchdog belongs to another process (e.g. we were started by a wrapper script).
  if (env.WATCHDOG_PID && env.WATCHDOG_PID !== String(pid)) return undefined;
  // Half the timeout, as sd_watchdog_enabled(3) recommends, so one late tick is not fatal.
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** A newline would start a new assignment in the datagram; STATUS is one line by contract. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").trim();
}

function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}

/**
 * Pings the watchdog every `notifier.watchdogIntervalMs` until `signal` aborts. Resolves
 * at once when the watchdog is disabled. The pings come from the event loop, so a hung
 * loop (the failure the watchdog is for) stops them and systemd restarts the service.
 */
export async function runWatchdog(notifier: Notifier, signal: AbortSignal, clock: Clock = systemClock): Promise<void> {
  const interval = notifier.watchdogIntervalMs;
  if (interval === undefined) return;
  while (!signal.aborted) {
    notifier.watchdog();
    try {
      await clock.sleep(interval, signal);
    } catch {
      return; // stopped
    }
  }
}
