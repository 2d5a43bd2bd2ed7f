/**
 * The agent, compiled: `version` cold start, `start --oneshot` from exec to exit with
 * the identity written, and a daemon renewing every 50 ms: RSS along the way and CPU
 * seconds per renewal. The auth service runs pinned to core 0, the agent to core 1.
 *
 *   bun bench/agent.ts [--runs 10] [--renewals 2000]
 */

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { writeAgentConfig } from "../tests/reliability/_helpers.ts";
import { Service, adminClient, cpuSeconds, fmt, freePort, median, pinned, rssMiB, startAuth, table } from "./_lib.ts";

export interface AgentOptions {
  bin: string;
  dir: string;
  runs: number;
  renewals: number;
  log: (line: string) => void;
}

export interface AgentFigures {
  versionMs: number[];
  oneshotMs: number[];
  /** RSS (MiB) by renewal count, sampled every 200 renewals. */
  rss: [number, number][];
  cpuPerRenewalMs: number;
  authCpuPerRenewalMs: number;
  renewalsPerSecond: number;
}

/** Wall time of one process from exec to exit, in ms; throws when it fails. */
async function timed(argv: string[]): Promise<number> {
  const t0 = performance.now();
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err}`);
  return ms;
}

export async function agentBench(o: AgentOptions): Promise<AgentFigures> {
  const versionMs: number[] = [];
  await timed([o.bin, "version"]); // page the binary into the cache: "cold" is a new process, not a cold disk
  for (let i = 0; i < o.runs; i++) versionMs.push(await timed(pinned(1, [o.bin, "version"])));

  const auth = await startAuth(o.bin, join(o.dir, "auth"), { cpu: 0 });
  const admin = adminClient(join(o.dir, "auth"), auth.addr);
  try {
    const oneshotMs: number[] = [];
    const bot = await admin.addBot({ name: "oneshot", roles: [] });
    for (let i = 0; i < o.runs; i++) {
      const { token } = i === 0 ? bot : await admin.addToken({ bot_name: "oneshot", join_method: "token" });
      const out = join(o.dir, `oneshot-out-${i}`);
      oneshotMs.push(
        await timed(
          pinned(1, [o.bin, "start", "--oneshot", "--auth-server", auth.addr, "--token", token, "--ca-pin", bot.ca_pins[0]!, "--storage", join(o.dir, `oneshot-state-${i}`), "--destination-dir", out]),
        ),
      );
      if (!existsSync(join(out, "tlscert"))) throw new Error(`oneshot run ${i} exited 0 without writing ${out}/tlscert`);
    }
    o.log(`  oneshot median ${fmt(median(oneshotMs))} ms`);

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
              versionMs,
              oneshotMs,
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
  }
}

export function agentTable(f: AgentFigures): string {
  const first = f.rss[0]!;
  const lastRss = f.rss[f.rss.length - 1]!;
  // the targets are in MB (10^6 bytes); /proc reports KiB
  const mb = (mib: number) => `${fmt(mib, 1)} MiB = ${fmt((mib * 2 ** 20) / 1e6, 1)} MB`;
  return table(
    ["measure", "figure", "target"],
    [
      ["`version` cold start, median (min–max)", `${fmt(median(f.versionMs))} ms (${fmt(Math.min(...f.versionMs))}–${fmt(Math.max(...f.versionMs))})`, "–"],
      ["`start --oneshot` exec → exit with identity written, median (min–max)", `${fmt(median(f.oneshotMs))} ms (${fmt(Math.min(...f.oneshotMs))}–${fmt(Math.max(...f.oneshotMs))})`, "< 250 ms"],
      [`daemon RSS at renewal ${first[0]}`, mb(first[1]), "< 80 MB"],
      [`daemon RSS at renewal ${lastRss[0]}`, mb(lastRss[1]), "< 80 MB"],
      [`RSS growth ${first[0]} → ${lastRss[0]}`, mb(lastRss[1] - first[1]), "< 5 MB"],
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
  console.log(agentTable(f));
  console.log(`RSS samples: ${f.rss.map(([n, r]) => `${n}: ${fmt(r, 1)}`).join(", ")}`);
}
