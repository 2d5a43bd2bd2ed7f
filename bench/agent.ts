/**
 * The agent, compiled, beside its peers in the same run: startup (`version`, `--help`)
 * against a compiled Bun hello world and `cfssl version`; a static-key bound-keypair
 * `start --oneshot` writing the identity output against `cfssl gencert -remote` (key, CSR,
 * remote sign) to a local `cfssl serve`, alternated run by run, CPU, wall and peak RSS of
 * each process; and a daemon renewing every 50 ms: RSS along the way and CPU seconds per
 * renewal. The auth service and cfssl serve run pinned to core 0, the clients to core 1.
 *
 *   bun bench/agent.ts [--runs 10] [--renewals 2000]
 */

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeAgentConfig } from "../tests/reliability/_helpers.ts";
import { startCfssl } from "./issuance.ts";
import { Service, adminClient, cpuSeconds, fmt, freePort, helloWorld, median, rssMiB, runMeasured, startAuth, table, type Usage } from "./_lib.ts";

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
  /** RSS (MiB) by renewal count, sampled every 200 renewals. */
  rss: [number, number][];
  cpuPerRenewalMs: number;
  authCpuPerRenewalMs: number;
  renewalsPerSecond: number;
}

export async function agentBench(o: AgentOptions): Promise<AgentFigures> {
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

    const daemon = await admin.addBot({ name: "daemon", roles: [] });
    const diagPort = await freePort();
    const cfgDir = join(o.dir, "daemon");
    mkdirSync(cfgDir);
    const cfg = writeAgentConfig(cfgDir, {
      authAddr: auth.addr,
      token: daemon.token,
      caPin: daemon.ca_pins[0]!,
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
      const rss: [number, number][] = [];
      let next = 200;
      let at200: { cpu: number; auth: number; t: number } | undefined;
      let last = { cpu: 0, auth: 0, t: 0 };
      const deadline = Date.now() + o.renewals * 1000; // far beyond 50 ms each
      for (;;) {
        const n = await renewals();
        if (n >= next) {
          rss.push([n, rssMiB(agent.pid)]);
          last = { cpu: cpuSeconds(agent.pid), auth: cpuSeconds(auth.service.pid), t: performance.now() };
          if (next === 200) at200 = last;
          if (n >= o.renewals) {
            const span = n - 200;
            o.log(`  daemon: ${n} renewals, RSS ${fmt(rss[rss.length - 1]![1], 1)} MiB`);
            return {
              startup,
              oneshot,
              gencert: peer,
              rss,
              cpuPerRenewalMs: ((last.cpu - at200!.cpu) / span) * 1000,
              authCpuPerRenewalMs: ((last.auth - at200!.auth) / span) * 1000,
              renewalsPerSecond: span / ((last.t - at200!.t) / 1000),
            };
          }
          next += 200;
        }
        if (Date.now() > deadline) throw new Error(`the daemon made only ${n} renewals:\n${agent.log().slice(-3000)}`);
        if (agent.proc.exitCode !== null) throw new Error(`the daemon exited with ${agent.proc.exitCode}:\n${agent.log().slice(-3000)}`);
        await Bun.sleep(10);
      }
    } finally {
      await agent.stop();
    }
  } finally {
    await auth.service.stop();
    await cfssl.service.stop();
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

export function agentTable(f: AgentFigures): string {
  const first = f.rss[0]!;
  const lastRss = f.rss[f.rss.length - 1]!;
  // the targets are in MB (10^6 bytes); /proc reports KiB
  const mb = (mib: number) => `${fmt(mib, 1)} MiB = ${fmt((mib * 2 ** 20) / 1e6, 1)} MB`;
  return table(
    ["measure", "figure", "target"],
    [
      [`daemon RSS at renewal ${first[0]}`, mb(first[1]), "–"],
      [`daemon RSS at renewal ${lastRss[0]}`, mb(lastRss[1]), "≤ 45 MB"],
      [`RSS growth ${first[0]} → ${lastRss[0]}`, mb(lastRss[1] - first[1]), "< 2 MB"],
      ["agent CPU per renewal", `${fmt(f.cpuPerRenewalMs, 2)} ms`, "–"],
      ["auth service CPU per renewal (same run)", `${fmt(f.authCpuPerRenewalMs, 2)} ms`, "–"],
      ["renewals per second at a 50 ms interval", fmt(f.renewalsPerSecond, 1), "–"],
    ],
  );
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, renewals: { type: "string", default: "2000" } } });
  const { privateBinary, tempDir } = await import("./_lib.ts");
  using dir = tempDir("bench-agent-");
  const f = await agentBench({ bin: privateBinary(dir.path), dir: dir.path, runs: Number(values.runs), renewals: Number(values.renewals), log: (l) => console.error(l) });
  console.log([startupTable(f), "", oneshotTable(f), "", agentTable(f)].join("\n"));
  console.log(`RSS samples: ${f.rss.map(([n, r]) => `${n}: ${fmt(r, 1)}`).join(", ")}`);
}
