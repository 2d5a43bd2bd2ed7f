/**
 * The main job, end to end, with the compiled binary: an auth service on a SQLite
 * data dir in a temp folder, a role and a bot created with `ctl`, and an agent
 * that joins with the printed token and CA pin and writes its identity files.
 * Run with `npm run demo` (which builds first). Leaves nothing running.
 */

import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const bin = join(root, "dist", "machine-id");
const tmp = mkdtempSync(join(tmpdir(), "machine-id-demo-"));
const dataDir = join(tmp, "auth");
const outDir = join(tmp, "out");
// Bold headings on a terminal only: piped output (CI logs, `| less`) and NO_COLOR get plain text.
const bold = process.stdout.isTTY === true && !process.env.NO_COLOR;
const step = (s: string) => console.log(bold ? `\n\x1b[1m==> ${s}\x1b[0m` : `\n==> ${s}`);
const authLog = join(tmp, "auth.log");

function run(args: string[], opts: { input?: string } = {}): string {
  console.log(`$ machine-id ${args.join(" ")}`);
  const r = Bun.spawnSync([bin, ...args], { stdout: "pipe", stderr: "pipe", ...(opts.input ? { stdin: Buffer.from(opts.input) } : {}) });
  const out = r.stdout.toString();
  if (out.trim()) console.log(out.trimEnd());
  if (r.exitCode !== 0) {
    console.error(r.stderr.toString().trimEnd());
    throw new Error(`machine-id ${args[0]} exited with ${r.exitCode}`);
  }
  return out;
}

async function waitFor(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

let auth: ReturnType<typeof Bun.spawn> | undefined;
try {
  step("Start the auth service (SQLite in a temp data dir, a free port; its log is shown at the end)");
  // The service's log goes to a file, so its audit lines do not interleave with ctl's output.
  const logFile = Bun.file(authLog);
  auth = Bun.spawn([bin, "auth", "start", "--data-dir", dataDir, "--listen-addr", "127.0.0.1:0", "--cluster-name", "demo.local"], {
    stdout: logFile,
    stderr: logFile,
  });
  await waitFor(() => existsSync(join(dataDir, "admin-identity")), "the auth service to start");
  const ctl = ["ctl", "--data-dir", dataDir];
  run([...ctl, "status"]);

  step("Create a role and a bot that holds it");
  const roleFile = join(tmp, "role.yaml");
  writeFileSync(
    roleFile,
    `kind: role\nversion: v7\nmetadata:\n  name: demo-deployer\nspec:\n  allow:\n    logins: [deploy]\n`,
  );
  run([...ctl, "create", "-f", roleFile]);
  const added = JSON.parse(run([...ctl, "bots", "add", "demo", "--roles=demo-deployer", "--format", "json"]));

  step("Join an agent with the printed token and CA pin (--oneshot)");
  const addr = (readFileSync(join(dataDir, "admin-identity"), "utf8").match(/# auth_server: (\S+)/) ?? [])[1]!;
  run([
    "start",
    "--oneshot",
    "--auth-server",
    addr,
    "--join-method",
    "token",
    "--token",
    added.token,
    "--ca-pin",
    added.ca_pins[0],
    "--storage",
    join(tmp, "bot-state"),
    "--destination-dir",
    outDir,
  ]);

  step(`Identity files written to ${outDir}`);
  for (const f of readdirSync(outDir).sort()) {
    console.log(`  ${(statSync(join(outDir, f)).mode & 0o777).toString(8)}  ${f}`);
  }
  step("Check them with real tools");
  const sh = (cmd: string[]) => {
    console.log(`$ ${cmd.join(" ")}`);
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    console.log((r.stdout.toString() + r.stderr.toString()).trimEnd());
  };
  sh(["openssl", "verify", "-CAfile", join(outDir, "tlscacerts"), join(outDir, "tlscert")]);
  sh(["ssh-keygen", "-L", "-f", join(outDir, "key-cert.pub")]);
  run([...ctl, "bots", "instances", "ls"]);
  run([...ctl, "events", "ls"]);
} finally {
  auth?.kill("SIGTERM");
  await auth?.exited;
  if (existsSync(authLog)) {
    step("The auth service's log");
    console.log(readFileSync(authLog, "utf8").trimEnd());
  }
  rmSync(tmp, { recursive: true, force: true });
}
console.log("\nDemo finished: everything above ran against real processes.");
