/**
 * Renders the hardened systemd units for the agent, the per-bot template and the auth
 * service. The files in the repository's systemd/ folder are this output for the defaults
 * (a test keeps them equal), and `machine-id install systemd` renders one for a config.
 */

import { badParameter } from "../../lib/errors.ts";

/** Which program the unit runs. */
export type UnitKind = "agent" | "agent-template" | "auth";

export interface UnitOptions {
  kind: UnitKind;
  /** Absolute path of the executable; default /usr/local/bin/machine-id. */
  execPath?: string;
  /** Absolute path of the config file; default per kind (see DEFAULT_CONFIG). */
  configPath?: string;
  /** Default machine-id. */
  user?: string;
  /** Default: the user's name. */
  group?: string;
  /**
   * Directory under /var/lib that systemd creates (owned by the user, mode 0700) and makes
   * writable; default per kind. Null when the config keeps no state on disk.
   */
  stateDirectory?: string | null;
  /** More absolute paths the service may write (output destinations, storage outside /var/lib). */
  readWritePaths?: string[];
  /** Overrides the Description= line. */
  description?: string;
}

export const DEFAULT_EXEC_PATH = "/usr/local/bin/machine-id";
export const DEFAULT_USER = "machine-id";

/**
 * Config file per kind. The template reads /etc/machine-id.d/%i.yaml, not /etc/machine-id/:
 * /etc/machine-id is the systemd machine ID file on every host and cannot be a directory.
 */
export const DEFAULT_CONFIG: Record<UnitKind, string> = {
  agent: "/etc/machine-id.yaml",
  "agent-template": "/etc/machine-id.d/%i.yaml",
  auth: "/etc/machine-id-auth.yaml",
};

/** State directory under /var/lib per kind. */
export const DEFAULT_STATE_DIRECTORY: Record<UnitKind, string> = {
  agent: "machine-id",
  "agent-template": "machine-id/%i",
  auth: "machine-id-auth",
};

const DESCRIPTION: Record<UnitKind, string> = {
  agent: "machine-id agent: short-lived certificates for a bot",
  "agent-template": "machine-id agent for bot %i: short-lived certificates for a bot",
  auth: "machine-id auth service",
};

const COMMAND: Record<UnitKind, string[]> = {
  agent: ["start", "-c"],
  "agent-template": ["start", "-c"],
  auth: ["auth", "start", "-c"],
};

type Line = string | [key: string, value: string];

/** Renders a unit file. Throws BAD_PARAMETER for a relative path or a name systemd would misread. */
export function renderUnit(options: UnitOptions): string {
  const kind = options.kind;
  const execPath = checkPath(options.execPath ?? DEFAULT_EXEC_PATH, "executable path");
  const template = kind === "agent-template";
  // The template's %i is a specifier on purpose; any other path is taken literally.
  const configPath = options.configPath === undefined ? DEFAULT_CONFIG[kind] : escapeArg(checkPath(options.configPath, "config path"));
  const user = checkName(options.user ?? DEFAULT_USER, "user");
  const group = checkName(options.group ?? user, "group");
  const stateDirectory =
    options.stateDirectory === undefined ? DEFAULT_STATE_DIRECTORY[kind] : options.stateDirectory === null ? null : checkStateDirectory(options.stateDirectory);
  const rw = [...new Set((options.readWritePaths ?? []).map((p) => checkPath(p, "writable path")))].sort();
  // ProtectHome=yes hides /home entirely and a writable path below it cannot be carved out;
  // read-only plus ReadWritePaths= can.
  const underHome = rw.some((p) => /^\/(home|root|run\/user)(\/|$)/.test(p));

  const lines: Line[] = [
    `# ${(options.description ?? DESCRIPTION[kind]).replace(/%i/g, "<name>")}.`,
    "# Rendered by machine-id; docs/systemd.md explains every setting.",
    "",
    "[Unit]",
    ["Description", options.description ?? DESCRIPTION[kind]],
    ...(kind === "auth" ? [] : ([["After", "network-online.target"], ["Wants", "network-online.target"]] as Line[])),
    ...(kind === "auth" ? ([["After", "network.target"]] as Line[]) : []),
    "",
    "[Service]",
    "# The process sends READY=1 to $NOTIFY_SOCKET itself (sd_notify over bun:ffi, no native",
    "# addon), so units ordered after this one start once it is really up.",
    ["Type", "notify"],
    ["NotifyAccess", "main"],
    ["User", user],
    ["Group", group],
    ["ExecStart", [escapeArg(execPath), ...COMMAND[kind], configPath].join(" ")],
    ["ExecReload", "/bin/kill -HUP $MAINPID"],
    ["Restart", "on-failure"],
    ["RestartSec", "5s"],
    ...(stateDirectory === null
      ? []
      : ([
          ["StateDirectory", stateDirectory],
          ["StateDirectoryMode", "0700"],
        ] as Line[])),
    ["UMask", "0077"],
    "",
    "# Sandboxing. `systemd-analyze security` rates this unit in docs/systemd.md.",
    ["NoNewPrivileges", "yes"],
    ["ProtectSystem", "strict"],
    ...rw.map((p): Line => ["ReadWritePaths", escapePathEntry(p)]),
    ["ProtectHome", underHome ? "read-only" : "yes"],
    ["PrivateTmp", "yes"],
    ["PrivateDevices", "yes"],
    ["DevicePolicy", "closed"],
    ["PrivateIPC", "yes"],
    ["PrivateMounts", "yes"],
    ...capabilities(kind),
    ["RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"],
    ["RestrictNamespaces", "yes"],
    ["RestrictRealtime", "yes"],
    ["RestrictSUIDSGID", "yes"],
    ["LockPersonality", "yes"],
    ["ProtectClock", "yes"],
    ["ProtectHostname", "yes"],
    ["ProtectKernelTunables", "yes"],
    ["ProtectKernelModules", "yes"],
    ["ProtectKernelLogs", "yes"],
    ["ProtectControlGroups", "yes"],
    ["ProtectProc", "invisible"],
    ["ProcSubset", "pid"],
    ["RemoveIPC", "yes"],
    ["KeyringMode", "private"],
    ["SystemCallArchitectures", "native"],
    ["SystemCallFilter", "@system-service"],
    ["SystemCallFilter", "~@privileged @resources"],
    // EPERM instead of the default SIGSYS: a syscall the runtime merely probes must fail
    // softly rather than kill the process.
    ["SystemCallErrorNumber", "EPERM"],
    "# MemoryDenyWriteExecute= stays off: Bun's JavaScriptCore JIT maps its code region",
    "# writable and executable, so under W^X it silently falls back to the interpreter, which",
    "# runs JavaScript about 1.7 times slower (tests/distribution/sandbox.test.ts checks this).",
    "",
    "[Install]",
    ["WantedBy", "multi-user.target"],
  ];
  return lines.map((l) => (typeof l === "string" ? l : `${l[0]}=${l[1]}`)).join("\n") + "\n";
}

function capabilities(kind: UnitKind): Line[] {
  if (kind !== "auth") {
    return [
      ["CapabilityBoundingSet", ""],
      ["AmbientCapabilities", ""],
    ];
  }
  // The auth service's public address is usually :443; binding it is the one privilege it needs.
  return [
    "# Binding a port below 1024 (the usual :443) is the one privilege the auth service needs.",
    ["CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"],
    ["AmbientCapabilities", "CAP_NET_BIND_SERVICE"],
  ];
}

/** Quotes an ExecStart= argument and escapes the characters systemd would expand. */
export function escapeArg(arg: string): string {
  return quoteWord(arg.replace(/%/g, "%%").replace(/\$/g, "$$$$"));
}

/** Double-quotes a word that systemd would otherwise split or unescape. */
function quoteWord(word: string): string {
  return /[\s"'\\;]/.test(word) ? `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"` : word;
}

/**
 * One ReadWritePaths= entry, prefixed with "-" so a destination that does not exist yet
 * does not stop the unit from starting (the agent then reports the missing directory
 * itself). Paths expand %-specifiers but not $VARIABLES.
 */
function escapePathEntry(path: string): string {
  return quoteWord("-" + path.replace(/%/g, "%%"));
}

function checkPath(path: string, what: string): string {
  if (!path.startsWith("/")) throw badParameter(`Invalid ${what} "${path}": it must be absolute`);
  // A control character would end the unit line and let the rest become a new directive.
  if (/[\x00-\x1f\x7f]/.test(path)) throw badParameter(`Invalid ${what} ${JSON.stringify(path)}: it contains a control character`);
  return path;
}

function checkName(name: string, what: string): string {
  // The shape useradd accepts for system accounts, which also keeps the unit line intact.
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) {
    throw badParameter(`Invalid ${what} "${name}": expected a system account name such as "machine-id"`);
  }
  return name;
}

function checkStateDirectory(dir: string): string {
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(dir) || dir.split("/").some((p) => p === "." || p === "..")) {
    throw badParameter(`Invalid state directory "${dir}": expected a relative path under /var/lib such as "machine-id"`);
  }
  return dir;
}
