/**
 * The agent, compiled, beside its peers in the same run: startup (`version`, `--help`)
 * against a compiled Bun hello world and `cfssl version`; a static-key bound-keypair
 * `start --oneshot` writing the identity output against `cfssl gencert -remote` (key, CSR,
 * remote sign) to a local `cfssl serve`, alternated run by run, CPU, wall and peak RSS of
 * each process; and a daemon renewing every 50 ms: its memory asleep and at the peak of a
 * renewal (smaps_rollup: RSS, Pss, anonymous, file pages), CPU seconds and page faults
 * per renewal. The auth service and cfssl serve run pinned to
 * core 0, the clients to core 1.
 *
 *   bun bench/agent.ts [--runs 10] [--renewals 2000]   (renewals: 400 or more)
 */

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeAgentConfig } from "../tests/_support/agent_config.ts";
import { startCfssl } from "./issuance.ts";
import { Service, adminClient, cpuSeconds, fmt, freePort, helloWorld, median, runMeasured, startAuth, table, type Usage } from "./_lib.ts";

export interface AgentOptions {
  bin: string;
  dir: string;
  runs: number;
  renewals: number;
  log: (line: string) => void;
}

export interface AgentFigures {
  /** Startup of each command (peers first), `runs` alternated runs each. */
  startup: [string, Usage[]][];
  /** Static-key bound-keypair `start --oneshot` and `cfssl gencert -remote`, alternated. */
  oneshot: Usage[];
  gencert: Usage[];
  daemon: DaemonFigures;
}

/** /proc/<pid>/smaps_rollup, MiB: what is resident, and how much of it is anonymous or the executable's file pages. */
export interface Rollup {
  rss: number;
  pss: number;
  anonymous: number;
  /** Rss − Anonymous: pages of files (the executable, libc) mapped by the process */
  file: number;
}

export interface DaemonFigures {
  /**
   * Per window of 200 renewals, ending at the renewal count: RSS asleep (the least of
   * samples every ~5 ms, between renewals) and at its peak (the most, during a renewal).
   */
  rss: { n: number; asleep: Rollup; peak: Rollup }[];
  cpuPerRenewalMs: number;
  authCpuPerRenewalMs: number;
  minorFaultsPerRenewal: number;
  majorFaultsPerRenewal: number;
  renewalsPerSecond: number;
}

export async function agentBench(o: AgentOptions): Promise<AgentFigures> {
  // the daemon's first 200 renewals warm it up; its memory is read per window of 200 after them
  if (!(o.renewals >= 400)) throw new Error(`--renewals ${o.renewals}: use 400 or more (200 renewals of warm-up, then windows of 200)`);
  const hello = helloWorld(o.dir);
  const commands: [string, string[]][] = [
    ["compiled Bun hello world (peer)", [hello]],
    ["`cfssl version` (peer)", ["cfssl", "version"]],
    ["`machine-id version`", [o.bin, "version"]],
    ["`machine-id --help`", [o.bin, "--help"]],
    ["`machine-id start --help`", [o.bin, "start", "--help"]],
  ];
  for (const [, argv] of commands) await runMeasured(argv); // page the binaries into the cache: "cold" is a new process, not a cold disk
  const startup: [string, Usage[]][] = commands.map(([name]) => [name, []]);
  for (let i = 0; i < o.runs; i++) for (const [k, [, argv]] of commands.entries()) startup[k]![1].push(await runMeasured(argv, { cpu: 1 }));

  const cfDir = join(o.dir, "cfssl");
  const cfssl = await startCfssl(cfDir);
  const { material: m, port: cfsslPort } = cfssl;
  const auth = await startAuth(o.bin, join(o.dir, "auth"), { cpu: 0 }).catch(async (e: unknown) => {
    await cfssl.service.stop();
    throw e;
  });
  const admin = adminClient(join(o.dir, "auth"), auth.addr);
  try {
    // the peer: a new P-256 key, its CSR and a remote sign over TLS, the answer written to a file
    const csrJson = join(cfDir, "gencert.json");
    writeFileSync(csrJson, JSON.stringify({ CN: "oneshot", key: { algo: "ecdsa", size: 256 }, names: [{ O: "bench" }] }));
    const gencert = [ "cfssl", "gencert", "-remote", `https://127.0.0.1:${cfsslPort}`, "-tls-remote-ca", m.ca, csrJson];

    // ours: an ephemeral node with a static bound key (seed 003): memory storage, the identity output
    const made = Bun.spawnSync([o.bin, "keypair", "create", "--static", "--format", "json"], { stdout: "pipe", stderr: "pipe" });
    if (made.exitCode !== 0) throw new Error(`keypair create --static failed: ${made.stderr.toString()}`);
    const key = JSON.parse(made.stdout.toString()) as { public_key: string; private_key: string };
    const bot = await admin.addBot({ name: "oneshot", roles: [] });
    await admin.createResources([
      {
        kind: "token",
        version: "v2",
        metadata: { name: "oneshot-static" },
        spec: { bot_name: "oneshot", join_method: "bound_keypair", roles: ["Bot"], bound_keypair: { onboarding: { initial_public_key: key.public_key }, recovery: { limit: 0, mode: "insecure" } } },
      },
    ]);
    const out = join(o.dir, "oneshot-out");
    const oneshotCfg = join(o.dir, "oneshot.yaml");
    writeFileSync(
      oneshotCfg,
      [
        "version: v2",
        `auth_server: "${auth.addr}"`,
        "onboarding:",
        "  join_method: bound_keypair",
        "  token: oneshot-static",
        "storage:",
        "  type: memory",
        "outputs:",
        "  - type: identity",
        "    destination:",
        "      type: directory",
        `      path: ${out}`,
        "",
      ].join("\n"),
    );
    const ours = [o.bin, "start", "-c", oneshotCfg, "--oneshot", "--ca-pin", bot.ca_pins[0]!];
    const env = { TBOT_BOUND_KEYPAIR_STATIC_KEY: Buffer.from(key.private_key).toString("base64") };
    await runMeasured(ours, { env }); // the first join binds the key; every later one is a recovery, as on a fresh node
    await runMeasured(gencert, { stdout: join(cfDir, "cert.json") });
    const oneshot: Usage[] = [];
    const peer: Usage[] = [];
    for (let i = 0; i < o.runs; i++) {
      rmSync(out, { recursive: true, force: true });
      oneshot.push(await runMeasured(ours, { cpu: 1, env }));
      if (!existsSync(join(out, "tlscert"))) throw new Error(`oneshot run ${i} exited 0 without writing ${out}/tlscert`);
      peer.push(await runMeasured(gencert, { cpu: 1, stdout: join(cfDir, "cert.json") }));
    }
    await cfssl.service.stop();
    o.log(`  oneshot median CPU ${fmt(median(oneshot.map((u) => u.cpuMs)), 1)} ms, cfssl gencert ${fmt(median(peer.map((u) => u.cpuMs)), 1)} ms`);

    return { startup, oneshot, gencert: peer, daemon: await daemonRun(o, auth.service, auth.addr, admin, "daemon") };
  } finally {
    await auth.service.stop();
    await cfssl.service.stop();
  }
}

/** The resident memory of `pid` from its smaps_rollup, MiB. */
export function rollup(pid: number): Rollup {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  const mib = (k: number) => k / 1024;
  return { rss: mib(kib("Rss")), pss: mib(kib("Pss")), anonymous: mib(kib("Anonymous")), file: mib(kib("Rss") - kib("Anonymous")) };
}

/** Minor and major page faults of `pid` so far, from /proc/<pid>/stat. */
function faults(pid: number): { minor: number; major: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { minor: Number(fields[7]), major: Number(fields[9]) }; // minflt and majflt, the 10th and 12th of the whole line
}

/**
 * A daemon renewing every 50 ms to `o.renewals` renewals (token join, directory storage,
 * the identity output). Its memory is sampled every ~5 ms
 * from /proc, which the daemon does not see; its renewal count is read from its
 * /metrics every 250 ms only, as a scrape maps the diagnostics server's code back in.
 */
async function daemonRun(o: AgentOptions, auth: Service, authAddr: string, admin: ReturnType<typeof adminClient>, name: string): Promise<DaemonFigures> {
  const bot = await admin.addBot({ name, roles: [] });
  const diagPort = await freePort();
  const cfgDir = join(o.dir, name);
  mkdirSync(cfgDir);
  const cfg = writeAgentConfig(cfgDir, {
    authAddr,
    token: bot.token,
    caPin: bot.ca_pins[0]!,
    storageDir: join(cfgDir, "state"),
    destinationDir: join(cfgDir, "out"),
    diagPort,
    renewalInterval: "50ms",
    credentialTtl: "10m",
  });
  const { service: agent } = await Service.start([o.bin, "start", "-c", cfg], { cpu: 1, logPath: join(cfgDir, "agent.log"), ready: /Diagnostics listening/ });
  try {
    const renewals = async () => {
      const text = await (await fetch(`http://127.0.0.1:${diagPort}/metrics`)).text();
      const v = (s: string) => Number(text.split("\n").find((l) => l.startsWith(s + " "))?.slice(s.length + 1) ?? 0);
      return v('machine_id_task_iterations_total{task="identity"}') - v('machine_id_task_iterations_failed_total{task="identity"}');
    };
    const rss: DaemonFigures["rss"] = [];
    let window: { asleep: Rollup; peak: Rollup } | undefined;
    let next = 200;
    const mark = () => ({ cpu: cpuSeconds(agent.pid), auth: cpuSeconds(auth.pid), faults: faults(agent.pid), t: performance.now() });
    let at200: ReturnType<typeof mark> | undefined;
    const deadline = Date.now() + o.renewals * 1000; // far beyond 50 ms each
    let polled = 0;
    for (;;) {
      if (at200) {
        const r = rollup(agent.pid);
        if (!window) window = { asleep: r, peak: r };
        if (r.rss < window.asleep.rss) window.asleep = r;
        if (r.rss > window.peak.rss) window.peak = r;
      }
      if (performance.now() - polled >= 250) {
        polled = performance.now();
        const n = await renewals();
        if (n >= next) {
          const last = mark();
          if (!at200) at200 = last;
          else rss.push({ n, ...window! });
          window = undefined;
          if (n >= o.renewals) {
            const span = n - 200;
            const per = (a: number, b: number) => (a - b) / span;
            o.log(`  ${name}: ${n} renewals, RSS asleep ${fmt(rss[rss.length - 1]!.asleep.rss, 1)} MiB, peak ${fmt(rss[rss.length - 1]!.peak.rss, 1)} MiB`);
            return {
              rss,
              cpuPerRenewalMs: per(last.cpu, at200.cpu) * 1000,
              authCpuPerRenewalMs: per(last.auth, at200.auth) * 1000,
              minorFaultsPerRenewal: per(last.faults.minor, at200.faults.minor),
              majorFaultsPerRenewal: per(last.faults.major, at200.faults.major),
              renewalsPerSecond: span / ((last.t - at200.t) / 1000),
            };
          }
          next = Math.max(next + 200, Math.ceil(n / 200) * 200);
        }
        if (Date.now() > deadline) throw new Error(`the daemon made only ${n} renewals:\n${agent.log().slice(-3000)}`);
        if (agent.proc.exitCode !== null) throw new Error(`the daemon exited with ${agent.proc.exitCode}:\n${agent.log().slice(-3000)}`);
      }
      await Bun.sleep(5);
    }
  } finally {
    await agent.stop();
  }
}

/** Medians of CPU, wall and peak RSS of each command's startup, with the ratio to the hello world. */
export function startupTable(f: AgentFigures): string {
  const base = median(f.startup[0]![1].map((u) => u.cpuMs));
  return table(
    ["command", "CPU ms (user+sys)", "wall ms", "peak RSS MiB", "CPU / hello world", "target"],
    f.startup.map(([name, us]) => {
      const cpu = median(us.map((u) => u.cpuMs));
      return [name, fmt(cpu, 1), fmt(median(us.map((u) => u.wallMs)), 1), fmt(median(us.map((u) => u.rssMiB)), 1), fmt(cpu / base, 2), name.startsWith("`machine-id") && !name.includes("start") ? "≤ 1.20" : "–"];
    }),
  );
}

/** The oneshot against cfssl gencert: medians (min–max) and ratios. */
export function oneshotTable(f: AgentFigures): string {
  const cell = (us: Usage[], k: keyof Usage, d = 1) => {
    const xs = us.map((u) => u[k]);
    return `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)})`;
  };
  const ratio = (k: keyof Usage) => fmt(median(f.oneshot.map((u) => u[k])) / median(f.gencert.map((u) => u[k])), 2);
  return table(
    ["measure, median (min–max)", "machine-id start --oneshot", "cfssl gencert -remote", "ratio", "target"],
    [
      ["CPU ms (user+sys)", cell(f.oneshot, "cpuMs"), cell(f.gencert, "cpuMs"), ratio("cpuMs"), "≤ 2.5 ×"],
      ["wall ms", cell(f.oneshot, "wallMs"), cell(f.gencert, "wallMs"), ratio("wallMs"), "≤ 2.5 ×"],
      ["peak RSS MiB", cell(f.oneshot, "rssMiB"), cell(f.gencert, "rssMiB"), ratio("rssMiB"), "≤ 35 MiB"],
    ],
  );
}

/** The daemon: memory asleep and at the peak of a renewal, growth, and the cost per renewal. */
export function agentTable(f: AgentFigures): string {
  // the targets are in MB (10^6 bytes); /proc reports KiB
  const mb = (mib: number) => `${fmt(mib, 1)} MiB = ${fmt((mib * 2 ** 20) / 1e6, 1)} MB`;
  const d = f.daemon;
  const last = d.rss[d.rss.length - 1]!;
  const n = last.n;
  return table(
    ["measure", "figure", "target"],
    [
      [`RSS at the peak of a renewal, renewals ${n - 200}–${n}`, mb(last.peak.rss), "≤ 45 MB"],
      ["… of it anonymous (JS heap, malloc) / file pages (the executable, libc)", `${fmt(last.peak.anonymous, 1)} / ${fmt(last.peak.file, 1)} MiB`, "–"],
      [`RSS asleep (between renewals), renewals ${n - 200}–${n}`, mb(last.asleep.rss), "–"],
      ["… of it anonymous / file pages", `${fmt(last.asleep.anonymous, 1)} / ${fmt(last.asleep.file, 1)} MiB`, "–"],
      ["… Pss asleep (file pages shared with the auth service counted half)", `${fmt(last.asleep.pss, 1)} MiB`, "–"],
      [`RSS growth at the peak, renewals 200–400 → ${n - 200}–${n}`, mb(last.peak.rss - d.rss[0]!.peak.rss), "< 2 MB"],
      ["agent CPU per renewal", `${fmt(d.cpuPerRenewalMs, 2)} ms`, "–"],
      ["agent page faults per renewal, minor / major", `${fmt(d.minorFaultsPerRenewal, 0)} / ${fmt(d.majorFaultsPerRenewal, 1)}`, "–"],
      ["auth service CPU per renewal (same run)", `${fmt(d.authCpuPerRenewalMs, 2)} ms`, "–"],
      ["renewals per second at a 50 ms interval", fmt(d.renewalsPerSecond, 1), "–"],
    ],
  );
}

/** RSS asleep / at the peak by renewal count. */
export function rssSamples(d: DaemonFigures): string {
  return d.rss.map((w) => `${w.n}: ${fmt(w.asleep.rss, 1)} / ${fmt(w.peak.rss, 1)}`).join(", ");
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, renewals: { type: "string", default: "2000" } } });
  const { privateBinary, tempDir } = await import("./_lib.ts");
  using dir = tempDir("bench-agent-");
  const f = await agentBench({ bin: privateBinary(dir.path), dir: dir.path, runs: Number(values.runs), renewals: Number(values.renewals), log: (l) => console.error(l) });
  console.log([startupTable(f), "", oneshotTable(f), "", agentTable(f)].join("\n"));
  console.log(`RSS asleep / peak by renewal (MiB): ${rssSamples(f.daemon)}`);
}
