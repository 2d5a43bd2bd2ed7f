/**
 * `machine-id ctl …`: the admin verbs of tctl — status, create, get, rm, bots,
 * tokens, bot instances, locks, events and CA export — over the typed client.
 */

import { readFile } from "node:fs/promises";
import { Command, Option } from "commander";
import { stringify } from "yaml";
import { DEFAULT_STORAGE_PATH } from "../config/index.ts";
import { parseDuration } from "../lib/duration.ts";
import { badParameter } from "../lib/errors.ts";
import { fsError, writeFileAtomic } from "../lib/fs.ts";
import { CA_EXPORT_TYPES, type AddBotResponse, type AuthClient, type CAExportType } from "../protocol/index.ts";
import { CI_JOIN_METHODS, parseResources, serializeResources, type BotResource, type Resource, type RoleResource, type TokenResource } from "../resources/index.ts";
import { addCiBot, addCiOptions, isCiJoinMethod } from "./ci.ts";
import { connect, type ConnectOptions } from "./connect.ts";
import { addOutputAlias, parseFormat, relativeTime, table } from "./format.ts";
import { addKubernetesBot, addKubernetesOptions } from "./kubernetes.ts";

const out = (s: string): void => {
  process.stdout.write(s.endsWith("\n") ? s : s + "\n");
};

function splitList(v: string | undefined): string[] {
  return (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A TTL flag in whole seconds, checked here so the server's field name never shows. */
function ttlSeconds(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const seconds = Math.round(parseDuration(v, flag) / 1000);
  if (seconds < 1) throw badParameter(`Invalid ${flag} "${v}": must be at least 1s`, { field: flag });
  return seconds;
}

/** Splits `kind/name`, accepting the plural and capitalised forms tctl users type. */
export function parseRef(ref: string): { kind: string; name?: string } {
  const [rawKind, ...rest] = ref.split("/");
  const k = (rawKind ?? "").toLowerCase().replace(/s$/, "");
  const kind = k === "tokens" ? "token" : k;
  if (!["role", "bot", "token"].includes(kind)) {
    throw badParameter(`Unknown resource kind "${rawKind}": allowed kinds are "role", "bot", "token"`);
  }
  const name = rest.join("/");
  return name ? { kind, name } : { kind };
}

function describe(r: Resource): string[] {
  switch (r.kind) {
    case "role": {
      const role = r as RoleResource;
      return [r.metadata.name, role.version, (role.spec.allow?.logins ?? []).join(",") || "-"];
    }
    case "bot": {
      const bot = r as BotResource;
      return [r.metadata.name, (bot.spec.roles ?? []).join(",") || "-", bot.spec.max_session_ttl ?? "-"];
    }
    case "token": {
      const t = r as TokenResource;
      return [t.metadata.name, t.spec.join_method, t.spec.bot_name, t.metadata.expires ? relativeTime(t.metadata.expires) : "never"];
    }
  }
}

const HEADERS: Record<string, string[]> = {
  role: ["Name", "Version", "Logins"],
  bot: ["Name", "Roles", "Max TTL"],
  token: ["Token", "Join Method", "Bot", "Expires"],
};

function printResources(kind: string, rs: Resource[], format: string): void {
  const f = parseFormat(format);
  if (f === "json") out(JSON.stringify(rs, null, 2));
  else if (f === "yaml") out(rs.length ? serializeResources(rs, "yaml") : "");
  else out(table(HEADERS[kind] ?? ["Name"], rs.map(describe)));
}

/** A ready v2 agent config for a new bot. */
export function agentConfigYaml(addr: string, res: AddBotResponse): string {
  const onboarding: Record<string, unknown> = { join_method: res.join_method, token: res.token, ca_pins: res.ca_pins };
  if (res.registration_secret) onboarding.bound_keypair = { registration_secret: res.registration_secret };
  return stringify({
    version: "v2",
    auth_server: addr,
    onboarding,
    storage: { type: "directory", path: DEFAULT_STORAGE_PATH },
    outputs: [{ type: "identity", destination: { type: "directory", path: "/opt/machine-id" } }],
  });
}

/** How the new bot will hold its key, when ctl knows: it shapes the printed start command. */
interface KeyHint {
  initialPublicKey?: string;
  recoveryMode?: string;
}

function printNewToken(res: AddBotResponse, addr: string, format: string, what: "bot" | "token", key: KeyHint = {}): void {
  if (parseFormat(format, ["text", "json"]) === "json") {
    out(
      JSON.stringify(
        {
          bot: res.bot,
          token: res.token,
          join_method: res.join_method,
          ca_pins: res.ca_pins,
          expires: res.expires ?? null,
          ...(res.registration_secret ? { registration_secret: res.registration_secret } : {}),
        },
        null,
        2,
      ),
    );
    return;
  }
  const lines: string[] = [];
  if (what === "bot") lines.push(`Bot "${res.bot}" created.`, "");
  lines.push(`The ${res.join_method === "token" ? "bot join token" : "bound keypair join token"}: ${res.token}`);
  if (res.expires) lines.push(`This token will expire ${relativeTime(res.expires)} (${res.expires}).`);
  if (res.registration_secret) lines.push(`Registration secret: ${res.registration_secret}`);
  // A static key (insecure recovery) comes from the environment; a bound key without it
  // lives in the storage that `keypair create --storage DIR` wrote.
  const staticKey = key.initialPublicKey !== undefined && key.recoveryMode === "insecure";
  lines.push(
    "",
    "Run this on the new bot node:",
    "",
    `> ${staticKey ? "TBOT_BOUND_KEYPAIR_STATIC_KEY=<the value keypair create --static printed> " : ""}machine-id start \\`,
    `    --auth-server=${addr} \\`,
    `    --join-method=${res.join_method} \\`,
    `    --token=${res.token} \\`,
    ...res.ca_pins.map((p) => `    --ca-pin=${p} \\`),
    `    --storage=${DEFAULT_STORAGE_PATH} \\`,
    `    --destination-dir=./machine-id`,
    "",
    `--storage keeps the bot's renewable identity; ${DEFAULT_STORAGE_PATH} needs root: as another user pass a directory it owns, e.g. --storage ~/.local/state/machine-id.`,
    ...(key.initialPublicKey !== undefined && !staticKey
      ? [`The token is bound to the public key you gave: use the --storage directory where "machine-id keypair create --storage DIR" wrote its private key.`]
      : []),
    "",
    "Or write this configuration to /etc/machine-id.yaml and run `machine-id start -c /etc/machine-id.yaml`:",
    "",
    agentConfigYaml(addr, res).trimEnd(),
    "",
    `The CA pin of this cluster: ${res.ca_pins.join(", ")}`,
  );
  out(lines.join("\n"));
}

/** Builds the `ctl` command tree. `run` wraps each action with a connected client. */
export function ctlCommand(): Command {
  const ctl = new Command("ctl")
    .description("Administer the auth service: bots, roles, join tokens, locks and audit events")
    .option("--auth-server <addr>", "auth service address host:port (default: from the identity file)")
    .option("-i, --identity <file>", "identity file (default: admin-identity in the auth data directory)")
    .option("--data-dir <dir>", "auth service data directory, to find admin-identity on the auth host");

  const run =
    <A extends unknown[]>(fn: (c: { client: AuthClient; addr: string }, ...args: A) => Promise<void>) =>
    async (...args: A) => {
      const conn = await connect(ctl.opts<ConnectOptions>());
      await fn(conn, ...args);
    };

  ctl
    .command("status")
    .description("Show the cluster name, version and CA pin")
    .action(
      run(async ({ client }) => {
        const s = await client.status();
        out(
          [
            `Cluster  ${s.cluster_name}`,
            `Version  ${s.server_version}`,
            ...(s.public_addr ? [`Address  ${s.public_addr}`] : []),
            `Bots     ${s.counts.bots ?? 0} (${s.counts.bot_instances ?? 0} instances)`,
            `CA pin   ${s.ca_pin}`,
          ].join("\n"),
        );
      }),
    );

  ctl
    .command("create")
    .description("Create resources from a YAML or JSON file (several documents allowed)")
    .argument("[file]", "resource file")
    .option("-f, --filename <file>", "resource file")
    .option("--force", "replace resources that already exist")
    .action(
      run(async ({ client }, fileArg: string | undefined, o: { filename?: string; force?: boolean }) => {
        const file = o.filename ?? fileArg;
        if (!file) throw badParameter("Missing resource file: pass -f FILE");
        let text: string;
        try {
          text = file === "-" ? await Bun.stdin.text() : await readFile(file, "utf8");
        } catch (e) {
          throw fsError("read", file, e);
        }
        const resources = parseResources(text, file);
        const res = await client.createResources(resources, o.force ?? false);
        for (const name of res.created) out(`${name} has been ${o.force ? "created or replaced" : "created"}`);
      }),
    );

  ctl
    .command("get")
    .description("Show resources: get role, get bot/example, get token/NAME")
    .argument("<ref>", "KIND or KIND/NAME")
    .addOption(new Option("--format <format>", "output format").choices(["text", "yaml", "json"]).default("text"))
    .action(
      run(async ({ client }, ref: string, o: { format: string }) => {
        const { kind, name } = parseRef(ref);
        const rs = name ? [(await client.getResource(kind, name)) as Resource] : ((await client.listResources(kind)) as Resource[]);
        if (name && parseFormat(o.format) === "text") {
          // one resource in text form: show everything, as YAML reads best
          out(serializeResources(rs, "yaml"));
          return;
        }
        printResources(kind, rs, o.format);
      }),
    );

  ctl
    .command("rm")
    .alias("delete")
    .description("Delete a resource: rm role/NAME, rm bot/NAME, rm token/NAME")
    .argument("<ref>", "KIND/NAME")
    .action(
      run(async ({ client }, ref: string) => {
        const { kind, name } = parseRef(ref);
        if (!name) throw badParameter(`Missing name in "${ref}": expected KIND/NAME`);
        await client.deleteResource(kind, name);
        out(`${kind} "${name}" has been deleted`);
      }),
    );

  const bots = ctl.command("bots").description("Manage bots");
  const botsAdd = bots
    .command("add")
    .description("Create a bot and a join token for it")
    .argument("<name>", "bot name")
    .option("--roles <roles>", "comma-separated roles the bot holds", "")
    .option("--logins <logins>", "comma-separated logins, as the bot's logins trait")
    .option("--ttl <duration>", "how long the join token is valid", "1h")
    .addOption(new Option("--join-method <method>", "join method of the token").choices(["token", "bound_keypair", ...CI_JOIN_METHODS]))
    .option("--initial-public-key <key>", "bound keypair: the public key to bind (ssh-ed25519 …)")
    .option("--registration-secret <secret>", "bound keypair: a one-time registration secret (generated when neither this nor a key is given)")
    .addOption(new Option("--recovery-mode <mode>", "bound keypair recovery mode").choices(["standard", "relaxed", "insecure"]))
    .option("--recovery-limit <n>", "bound keypair recovery limit")
    .addOption(new Option("--format <format>", "output format; kubernetes: a kubernetes join token and a kustomize overlay").choices(["text", "json", "kubernetes"]).default("text"));
  addKubernetesOptions(botsAdd).action(
      run(async ({ client, addr }, name: string, o: Record<string, string | undefined>) => {
        if (o.format === "kubernetes") return addKubernetesBot({ client, addr }, name, o);
        const limit = o.recoveryLimit;
        if (limit !== undefined && !/^\d+$/.test(limit)) throw badParameter(`Invalid --recovery-limit "${limit}": expected a whole number`);
        if (isCiJoinMethod(o.joinMethod)) {
          const logins = o.logins !== undefined ? splitList(o.logins) : undefined;
          return out(await addCiBot(client, addr, { name, roles: splitList(o.roles), ...(logins ? { logins } : {}) }, o.joinMethod, o, o.format ?? "text"));
        }
        const res = await client.addBot({
          name,
          roles: splitList(o.roles),
          ...(o.logins !== undefined ? { logins: splitList(o.logins) } : {}),
          ...(o.ttl ? { ttl_seconds: ttlSeconds(o.ttl, "--ttl")! } : {}),
          ...(o.joinMethod ? { join_method: o.joinMethod as "token" | "bound_keypair" } : {}),
          ...(o.initialPublicKey ? { initial_public_key: o.initialPublicKey } : {}),
          ...(o.registrationSecret ? { registration_secret: o.registrationSecret } : {}),
          ...(o.recoveryMode ? { recovery_mode: o.recoveryMode as "standard" } : {}),
          ...(limit !== undefined ? { recovery_limit: Number(limit) } : {}),
        });
        printNewToken(res, addr, o.format ?? "text", "bot", {
          ...(o.initialPublicKey ? { initialPublicKey: o.initialPublicKey } : {}),
          ...(o.recoveryMode ? { recoveryMode: o.recoveryMode } : {}),
        });
      }),
    );
  addCiOptions(botsAdd);
  bots
    .command("ls")
    .description("List bots")
    .addOption(new Option("--format <format>", "output format").choices(["text", "yaml", "json"]).default("text"))
    .action(run(async ({ client }, o: { format: string }) => printResources("bot", (await client.listResources("bot")) as Resource[], o.format)));
  bots
    .command("rm")
    .description("Delete a bot, its join tokens and its instances")
    .argument("<name>", "bot name")
    .action(
      run(async ({ client }, name: string) => {
        await client.deleteResource("bot", name);
        out(`Bot "${name}" has been deleted`);
      }),
    );
  const instances = bots.command("instances").description("Bot instances: one per joined copy of a bot");
  instances
    .command("ls")
    .description("List bot instances with their generation and last renewal")
    .argument("[bot]", "only this bot's instances")
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action(
      run(async ({ client }, bot: string | undefined, o: { format: string }) => {
        const list = await client.listBotInstances(bot);
        if (parseFormat(o.format, ["text", "json"]) === "json") return out(JSON.stringify(list, null, 2));
        out(
          table(
            ["Bot", "Instance ID", "Join Method", "Generation", "Last Renewed", "Expires", "Locked"],
            list.map((i) => [
              i.bot_name,
              i.instance_id,
              i.join_method,
              String(i.generation),
              relativeTime(i.last_renewed_at),
              relativeTime(i.expires_at),
              i.locked ? "yes" : "no",
            ]),
          ),
        );
      }),
    );

  const tokens = ctl.command("tokens").description("Manage join tokens");
  tokens
    .command("add")
    .description("Create a join token for a bot")
    .requiredOption("--bot-name <name>", "bot the token joins as")
    .addOption(new Option("--type <type>", "token type").choices(["bot"]).default("bot"))
    .option("--ttl <duration>", "how long the token is valid", "1h")
    .addOption(new Option("--join-method <method>", "join method").choices(["token", "bound_keypair"]).default("token"))
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action(
      run(async ({ client, addr }, o: { botName: string; ttl: string; joinMethod: "token" | "bound_keypair"; format: string }) => {
        const res = await client.addToken({ bot_name: o.botName, join_method: o.joinMethod, ttl_seconds: ttlSeconds(o.ttl, "--ttl")! });
        printNewToken(res, addr, o.format, "token");
      }),
    );
  tokens
    .command("ls")
    .description("List join tokens")
    .addOption(new Option("--format <format>", "output format").choices(["text", "yaml", "json"]).default("text"))
    .action(run(async ({ client }, o: { format: string }) => printResources("token", (await client.listResources("token")) as Resource[], o.format)));
  tokens
    .command("rm")
    .description("Delete a join token")
    .argument("<name>", "token name")
    .action(
      run(async ({ client }, name: string) => {
        await client.deleteResource("token", name);
        out(`Token has been deleted`);
      }),
    );

  const auth = ctl.command("auth").description("Cluster certificate authorities");
  auth
    .command("export")
    .description("Print public CA material: PEM for TLS, OpenSSH lines for SSH")
    .addOption(new Option("--type <type>", "which CA").choices([...CA_EXPORT_TYPES]).makeOptionMandatory())
    .action(run(async ({ client }, o: { type: CAExportType }) => out(await client.exportCA(o.type))));

  auth
    .command("sign-host")
    .description("Certify an sshd host key with the host CA, so agents' known_hosts trust the host")
    .requiredOption("--key <file>", "the host's public key file, e.g. /etc/ssh/ssh_host_ed25519_key.pub")
    .requiredOption("--principals <names>", "comma-separated host names and addresses the certificate is valid for")
    .option("--ttl <duration>", "validity", "720h")
    .option("--out <file>", "write the certificate here instead of printing it (e.g. /etc/ssh/ssh_host_ed25519_key-cert.pub)")
    .action(
      run(async ({ client }, o: { key: string; principals: string; ttl: string; out?: string }) => {
        let publicKey: string;
        try {
          publicKey = (await readFile(o.key, "utf8")).trim();
        } catch (e) {
          throw fsError("read", o.key, e);
        }
        const res = await client.signHost({ public_key: publicKey, principals: splitList(o.principals), ttl_seconds: ttlSeconds(o.ttl, "--ttl")! });
        if (o.out) {
          await writeFileAtomic(o.out, res.certificate + "\n", { mode: 0o644 });
          out(`Wrote host certificate to ${o.out} (valid until ${res.valid_before}); add "HostCertificate ${o.out}" to sshd_config`);
        } else out(res.certificate);
      }),
    );

  const events = ctl.command("events").description("The audit log");
  events
    .command("ls")
    .description("List the newest audit events (at most --limit), oldest first, as tail shows them")
    .option("--type <types>", "comma-separated event types, e.g. bot.join,join.failed")
    .option("--since <time>", "RFC 3339 time or a duration ago such as 1h")
    .option("--limit <n>", "show the newest N events", "1000")
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action(
      run(async ({ client }, o: { type?: string; since?: string; limit: string; format: string }) => {
        if (!/^\d+$/.test(o.limit)) throw badParameter(`Invalid --limit "${o.limit}": expected a whole number`);
        const list = await client.listEvents({ ...(o.type ? { type: o.type } : {}), ...(o.since ? { since: o.since } : {}), limit: Number(o.limit) });
        if (parseFormat(o.format, ["text", "json"]) === "json") return out(JSON.stringify(list, null, 2));
        out(
          table(
            ["Time", "Type", "Details"],
            list.map((e) => [
              e.time,
              e.type,
              Object.entries(e.fields)
                .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
                .join(" "),
            ]),
          ),
        );
      }),
    );

  ctl
    .command("lock")
    .description("Lock a bot instance, a bot or a token: its certificates stop working at once")
    .option("--bot-instance <id>", "bot instance id")
    .option("--bot <name>", "every instance of a bot")
    .option("--token <name>", "a join token")
    .option("--message <text>", "why, shown to the locked party")
    .option("--ttl <duration>", "lift the lock automatically after this long")
    .action(
      run(async ({ client }, o: { botInstance?: string; bot?: string; token?: string; message?: string; ttl?: string }) => {
        const lock = await client.lock({
          ...(o.botInstance ? { bot_instance_id: o.botInstance } : {}),
          ...(o.bot ? { bot: o.bot } : {}),
          ...(o.token ? { token: o.token } : {}),
          ...(o.message ? { message: o.message } : {}),
          ...(o.ttl ? { ttl_seconds: ttlSeconds(o.ttl, "--ttl")! } : {}),
        });
        out(`Created lock "${lock.name}"`);
      }),
    );
  ctl
    .command("unlock")
    .description("Remove a lock: unlock bot_instance/ID, or --bot-instance ID")
    .argument("[name]", "lock name as `ctl locks ls` shows it")
    .option("--bot-instance <id>", "bot instance id")
    .option("--bot <name>", "bot name")
    .option("--token <name>", "token name")
    .action(
      run(async ({ client }, name: string | undefined, o: { botInstance?: string; bot?: string; token?: string }) => {
        const lockName =
          name ?? (o.botInstance ? `bot_instance/${o.botInstance}` : o.bot ? `bot/${o.bot}` : o.token ? `token/${o.token}` : undefined);
        if (!lockName) throw badParameter("Missing lock: pass a lock name or --bot-instance ID");
        await client.unlock(lockName);
        out(`Removed lock "${lockName}"`);
      }),
    );
  ctl
    .command("locks")
    .description("Locks")
    .command("ls")
    .description("List locks")
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action(
      run(async ({ client }, o: { format: string }) => {
        const list = await client.listLocks();
        if (parseFormat(o.format, ["text", "json"]) === "json") return out(JSON.stringify(list, null, 2));
        out(table(["Lock", "Created", "Message"], list.map((l) => [l.name, l.created_at, l.message ?? ""])));
      }),
    );
  addOutputAlias(ctl);
  return ctl;
}
