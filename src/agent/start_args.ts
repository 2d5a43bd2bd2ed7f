/**
 * The options of `machine-id start` in one table, read by commander's definition
 * (commands.ts) and by the entry point's own parse of a plain `start` command line,
 * which spares a oneshot loading commander (~2.4 ms of CPU and ~4 MiB of RSS before it
 * does anything, bench/RESULTS.md); and what `start` runs once its options are known.
 */

import type { StartFlags } from "./start.ts";

/** One option of `start`, in commander's notation. */
export interface StartOption {
  flags: string;
  description: string;
  /** Each use adds a value (commander's collect). */
  repeatable?: true;
  choices?: readonly string[];
}

export const START_OPTIONS: readonly StartOption[] = [
  { flags: "-c, --config <path>", description: "agent config file (tbot v1 or v2 YAML)" },
  { flags: "--auth-server <host:port>", description: "address of the auth service" },
  { flags: "--proxy-server <host:port>", description: "address of the proxy (instead of --auth-server)" },
  { flags: "--token <token|path>", description: "join token, or a file holding it" },
  { flags: "--join-method <method>", description: "token, bound_keypair or kubernetes" },
  { flags: "--ca-pin <sha256:hex>", description: "CA pin of the auth service (repeatable; replaces the config's pins)", repeatable: true },
  { flags: "--certificate-ttl <duration>", description: "lifetime of issued certificates, e.g. 1h" },
  { flags: "--renewal-interval <duration>", description: "how often to renew, e.g. 20m" },
  { flags: "--oneshot", description: "join or renew once, write every output and exit" },
  { flags: "--allow-no-outputs", description: "with --oneshot: join even though no output is configured (the identity stays in --storage)" },
  { flags: "--diag-addr <host:port>", description: "serve /livez, /readyz and /metrics here" },
  { flags: "--storage <url>", description: "bot storage: a directory path, file:///path or memory://" },
  { flags: "--destination-dir <path>", description: "write an identity output to this directory" },
  { flags: "--log-format <format>", description: "log format", choices: ["text", "json"] },
  { flags: "-d, --debug", description: "log debug messages" },
  { flags: "--insecure", description: "do not verify the auth service's CA (tests only)" },
];

interface Parsed {
  key: string;
  value: boolean;
  option: StartOption;
}

/** `-c, --config <path>` → the names it is written as, the key commander stores it under, and whether it takes a value. */
function names(o: StartOption): { short?: string; long: string; key: string; value: boolean } {
  const m = /^(?:(-\w), )?(--[\w-]+)( <[^>]+>)?$/.exec(o.flags)!;
  const key = m[2]!.slice(2).replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
  return { ...(m[1] ? { short: m[1] } : {}), long: m[2]!, key, value: m[3] !== undefined };
}

/**
 * The options of a plain `start` command line, as commander's action would get them; or
 * undefined for anything else (help, an unknown or repeated option, a missing or odd
 * value, an argument, `--`), which commander then parses and, if need be, refuses with
 * its usual message. `args` follow the word `start`.
 */
export function parseStartArgs(args: readonly string[]): Record<string, unknown> | undefined {
  const byName = new Map<string, Parsed>();
  for (const option of START_OPTIONS) {
    const n = names(option);
    const p = { key: n.key, value: n.value, option };
    byName.set(n.long, p);
    if (n.short) byName.set(n.short, p);
  }
  const opts: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const p = byName.get(name);
    if (!p) return undefined;
    if (!p.value) {
      if (eq > 0 || p.key in opts) return undefined;
      opts[p.key] = true;
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined || value.startsWith("-")) return undefined;
    if (p.option.choices && !p.option.choices.includes(value)) return undefined;
    if (p.option.repeatable) opts[p.key] = [...((opts[p.key] as string[] | undefined) ?? []), value];
    else if (p.key in opts) return undefined;
    else opts[p.key] = value;
  }
  return opts;
}

/** What `start` runs with commander's options object. */
export async function runStart(opts: Record<string, unknown>): Promise<void> {
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
}
