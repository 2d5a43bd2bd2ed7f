/**
 * `bun run bench`: every benchmark in one run on this machine — issuance against cfssl,
 * the agent, and scale — with the machine described, printed as markdown and written
 * into bench/RESULTS.md between its `bench:begin`/`bench:end` markers (the analysis
 * around them is kept). Never part of `bun test`.
 *
 *   bun bench/run.ts [--quick] [--only issuance,agent,download,storm,scale,breakdown] [--no-write]
 */

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { agentBench, agentTable, oneshotTable, rssSamples, startupTable } from "./agent.ts";
import { downloadBench, downloadTable } from "./download.ts";
import { stormBench, stormTable } from "./storm.ts";
import { issuance, issuanceTable } from "./issuance.ts";
import { ROOT, machine, privateBinary, tempDir } from "./_lib.ts";
import { scaleBench, scaleTable } from "./scale.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string", default: "issuance,agent,download,storm,scale,breakdown" },
    "no-write": { type: "boolean", default: false },
  },
});
const only = new Set(flags.only.split(","));
const quick = flags.quick;
const log = (l: string) => console.error(l);

// The machine may be shared (other test runs): wait a while for it to go quiet, and say how busy it was.
const loadavg = () => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
for (const until = Date.now() + (quick ? 0 : 300_000); loadavg() > 0.5 && Date.now() < until; ) await Bun.sleep(5000);
const loadBefore = loadavg();
const m = machine();
const command = `bun run bench${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}`;
const sections: string[] = [
  `Measured ${m.date} with \`${command}\` (build, then \`bun bench/run.ts\`).`,
  "",
  `Machine: ${m.nproc} cores (\`nproc\`), ${m.cpu}, ${m.ramGiB} GiB RAM, Linux ${m.kernel}, Bun ${m.bun}; peer: cfssl ${m.cfssl} (Debian golang-cfssl).`,
];

using dir = tempDir("bench-run-");
const bin = privateBinary(dir.path);
const sub = (name: string) => {
  const p = join(dir.path, name);
  Bun.spawnSync(["mkdir", "-p", p]);
  return p;
};

if (only.has("issuance")) {
  const runs = quick ? 1 : 3;
  const seconds = quick ? 2 : 5;
  log(`issuance vs cfssl: ${runs} run(s) of ${seconds}s per cell`);
  const cells = await issuance({ bin, dir: sub("issuance"), runs, seconds, clients: [1, 16, 64], log });
  sections.push(
    "",
    "### Issuance against cfssl",
    "",
    `Servers pinned to core 0 (\`taskset -c 0\`), the load generator (bench/load.ts, a separate process) to core 1; ` +
      `keep-alive HTTPS on both sides; medians of ${runs} interleaved run(s) of ${seconds} s after 1 s of warm-up. ` +
      "cfssl: `POST /api/v1/cfssl/sign` with a P-256 CSR, ECDSA P-256 CA, TLS listener. Ours: `renew` = mTLS renewal " +
      "(X.509 + SSH certificate + storage write) on one keep-alive mTLS connection per client, which each renewal moves to " +
      "the renewed identity; `renew (new conn.)` = the same with a new TLS session per renewal presenting the newest " +
      "certificate (what the agent does, its renewals being minutes apart); `certs` = `/v1/bot/certs` output certificates on one keep-alive mTLS connection per client, " +
      "`bkp join` = bound-keypair begin + signed challenge + solve. Server CPU is the server's CPU time over the window " +
      "(1.00 = the whole core).",
    "",
    issuanceTable(cells),
  );
}

if (only.has("agent")) {
  const runs = quick ? 5 : 10;
  const renewals = quick ? 400 : 2000;
  log(`agent: ${runs} runs of version and oneshot, a daemon to ${renewals} renewals`);
  const f = await agentBench({ bin, dir: sub("agent"), runs, renewals, log });
  sections.push(
    "",
    "### Agent (compiled binary)",
    "",
    `Startup: each command ${runs} times, alternated with its peers, pinned to core 1; CPU (user + system) from the process's rusage, ` +
      "peak RSS from GNU time. The hello world is `console.log` compiled by this run with the build's flags (`--compile --minify --bytecode`).",
    "",
    startupTable(f),
    "",
    `One join on an ephemeral node: a static-key bound-keypair \`start --oneshot\` (memory storage, the identity output written to a directory) ` +
      `against \`cfssl gencert -remote https://…\` (a new P-256 key, its CSR, a remote sign over TLS, the answer written to a file) to a local \`cfssl serve\`; ` +
      `${runs} runs each, alternated, clients pinned to core 1, auth service and cfssl serve to core 0, loopback.`,
    "",
    oneshotTable(f),
    "",
    `Daemon: \`start -c\` with \`renewal_interval: 50ms\` to ${renewals} renewals (token join, directory storage, the identity output); ` +
      `memory from /proc/<pid>/smaps_rollup every ~5 ms, the least per 200 renewals (asleep) and the most (a renewal's peak).`,
    "",
    agentTable(f),
    "",
    `RSS asleep / peak by renewal (MiB): ${rssSamples(f.daemon)}.`,
  );
}

if (only.has("download")) {
  const runs = quick ? 2 : 5;
  log(`download: the executable compressed in each form (minutes of CPU), then ${runs} installs per form`);
  const f = await downloadBench({ bin, dir: sub("download"), runs, log });
  sections.push(
    "",
    "### Download",
    "",
    `\`curl … /scripts/install.sh | DESTDIR=… bash\` against the auth service on loopback (service on core 0, install on core 1), ` +
      `\`MACHINE_ID_DOWNLOAD_FORMAT\` naming each form, ${runs} runs per form, alternated; the install includes the download, the decompression and the SHA-256 of the binary.`,
    "",
    downloadTable(f),
  );
}

if (only.has("storm")) {
  const nodes = quick ? 500 : 2000;
  log(`storm: ${nodes} static-key nodes joining at once`);
  const f = await stormBench({ bin, dir: sub("storm"), nodes, deadlineS: 300, log });
  sections.push(
    "",
    "### Join storm",
    "",
    `${nodes.toLocaleString("en-US")} static-key nodes (a bound-keypair token and key each) start \`Agent.oneshot()\` at the same instant ` +
      "against one auth service (the compiled binary, core 0; the agents in one process on core 1, memory storage, so all from 127.0.0.1). " +
      "The agents' own retry: a 429's Retry-After, and the backoff after a connection the service closed at its 256-per-address cap. " +
      "Times are from the start of the storm to each node's identity.",
    "",
    stormTable(f),
  );
}

if (only.has("scale")) {
  const bots = quick ? 10_000 : 100_000;
  const runs = quick ? 1 : 5;
  log(`scale: ${bots} bots, ${runs} renewal runs on each service`);
  const f = await scaleBench({ bin, dir: sub("scale"), bots, runs, seconds: quick ? 3 : 5, log });
  sections.push("", "### Scale", "", `Two auth services from the same binary, both pinned to core 0: one on an empty SQLite database, one on a database holding ${bots.toLocaleString("en-US")} bots (each with one instance); their renewal runs alternate (ABBA order), ${runs} each.`, "", scaleTable(f));
}

if (only.has("breakdown")) {
  log("breakdown: the bare listener and the handler in process");
  const p = Bun.spawn([process.execPath, join(ROOT, "bench", "breakdown.ts"), "--seconds", quick ? "2" : "5"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`bench/breakdown.ts failed: ${err}`);
  sections.push(
    "",
    "### Where the time goes",
    "",
    "The same listener (src/auth/listener.ts) with a handler that answers `{}`, pinned to core 0 with 16 clients on core 1, " +
      "beside the floor of any HTTP server on Bun's TLS sockets (`Bun.listen`, client certificate read, a fixed answer, no parser); " +
      "and the service's request handler called in process, no sockets, one request at a time on core 0.",
    "",
    out.trim(),
  );
}

sections.splice(3, 0, "", `1-minute load average before the run ${loadBefore.toFixed(2)}, after ${loadavg().toFixed(2)} (the benchmark itself keeps up to 2 cores busy).`);
const text = sections.join("\n");
console.log(text);
if (!flags["no-write"]) {
  const path = join(ROOT, "bench", "RESULTS.md");
  const begin = "<!-- bench:begin -->";
  const end = "<!-- bench:end -->";
  const old = existsSync(path) ? readFileSync(path, "utf8") : `# Benchmark results\n\n${begin}\n${end}\n`;
  const i = old.indexOf(begin);
  const j = old.indexOf(end);
  const next = i >= 0 && j > i ? old.slice(0, i + begin.length) + "\n" + text + "\n" + old.slice(j) : old + `\n${begin}\n${text}\n${end}\n`;
  writeFileSync(path, next);
  log(`wrote ${path}`);
}
