/**
 * systemd integration: the hardened unit files, `machine-id install systemd`, and
 * sd_notify for Type=notify services.
 */

export { renderUnit, escapeArg, DEFAULT_CONFIG, DEFAULT_EXEC_PATH, DEFAULT_STATE_DIRECTORY, DEFAULT_USER } from "./unit.ts";
export type { UnitKind, UnitOptions } from "./unit.ts";
export { installSystemd, installSystemdCommand, installCommand } from "./install.ts";
export type { InstallSystemdOptions, InstallSystemdResult, CommandIO } from "./install.ts";
export { createNotifier, runWatchdog } from "../../lib/sd_notify.ts";
export type { Notifier, NotifierOptions, NotifyTransport } from "../../lib/sd_notify.ts";
