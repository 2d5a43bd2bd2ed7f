/**
 * Issuance against a real peer: cfssl's `sign` endpoint and our renewal, output
 * certificates and bound-keypair join, on the same machine in the same run, each server
 * pinned to core 0 and the load generator (bench/load.ts, its own process) to core 1.
 * Every cell runs `runs` times, interleaved, and the median is reported.
 *
 *   bun bench/issuance.ts [--runs 3] [--seconds 5] [--clients 1,16,64]
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, Service, fmt, freePort, median, pinned, startAuth, table } from "./_lib.ts";

export interface LoadResult {
  mode: string;
  clients: number;
  requests: number;
  errors: number;
  first_error?: string;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  generator_cpu: number;
  /** Connections the generator opened during the measured window. */
  connections_opened: number;
  service_cpu?: number;
}

/** Runs bench/load.ts pinned to `cpu` and returns its JSON line. */
export async function runLoad(args: string[], cpu = 1): Promise<LoadResult> {
  const p = Bun.spawn(pinned(cpu, [process.execPath, join(ROOT, "bench", "load.ts"), ...args]), { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`load generator failed (${code}): ${err}${out}`);
  return JSON.parse(out.trim().split("\n").pop()!) as LoadResult;
}

/** A cfssl CA (ECDSA P-256), a TLS certificate for its listener, and 64 P-256 CSRs, made with cfssl and openssl. */
/** `cfssl serve` with its own CA and a TLS listener on loopback, pinned to core 0. */
export async function startCfssl(dir: string): Promise<{ service: Service; port: number; material: ReturnType<typeof cfsslMaterial> }> {
  mkdirSync(dir);
  const m = cfsslMaterial(dir);
  // cfssl 1.2 reports the port it was given, so give it a free one rather than 0
  const port = await freePort();
  const { service } = await Service.start(
    ["cfssl", "serve", "-ca", m.ca, "-ca-key", m.caKey, "-address", "127.0.0.1", "-port", String(port), "-tls-cert", m.cert, "-tls-key", m.key],
    { cpu: 0, logPath: join(dir, "serve.log"), ready: /Now listening on https:\/\/127\.0\.0\.1:(\d+)/ },
  );
  return { service, port, material: m };
}

function cfsslMaterial(dir: string): { ca: string; caKey: string; cert: string; key: string; csrDir: string } {
  const run = (cmd: string[], stdin?: string) => {
    const r = Bun.spawnSync(cmd, { cwd: dir, stdout: "pipe", stderr: "pipe", ...(stdin ? { stdin: Buffer.from(stdin) } : {}) });
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
    return r.stdout.toString();
  };
  const bare = (json: string, name: string) => run(["cfssljson", "-bare", name], json);
  writeFileSync(join(dir, "ca-csr.json"), JSON.stringify({ CN: "cfssl bench CA", key: { algo: "ecdsa", size: 256 }, names: [{ O: "bench" }] }));
  bare(run(["cfssl", "gencert", "-initca", "ca-csr.json"]), "ca");
  writeFileSync(join(dir, "srv.json"), JSON.stringify({ CN: "localhost", hosts: ["localhost", "127.0.0.1"], key: { algo: "ecdsa", size: 256 } }));
  bare(run(["cfssl", "gencert", "-ca", "ca.pem", "-ca-key", "ca-key.pem", "srv.json"]), "srv");
  const csrDir = join(dir, "csr");
  mkdirSync(csrDir);
  for (let i = 0; i < 64; i++) {
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "/dev/null", "-subj", `/CN=bot-${i}/O=bench`, "-out", join(csrDir, `csr-${i}.pem`)]);
  }
  return { ca: join(dir, "ca.pem"), caKey: join(dir, "ca-key.pem"), cert: join(dir, "srv.pem"), key: join(dir, "srv-key.pem"), csrDir };
}

export interface IssuanceOptions {
  bin: string;
  dir: string;
  runs: number;
  seconds: number;
  clients: number[];
  log: (line: string) => void;
}

export interface IssuanceCell {
  clients: number;
  mode: "cfssl sign" | "renew" | "renew (new conn.)" | "certs" | "bkp join";
  rps: number;
  p50: number;
  p99: number;
  serviceCpu: number;
  generatorCpu: number;
  /** Connections opened per request while measured (0: all kept alive), median over the runs. */
  connectionsPerRequest: number;
  errors: number;
  ratio: number;
}

/** Runs the whole comparison; returns one cell per (clients, mode) with medians over the runs. */
export async function issuance(o: IssuanceOptions): Promise<IssuanceCell[]> {
  const cfssl = await startCfssl(join(o.dir, "cfssl"));
  const { material: m, port: cfPort } = cfssl;
  const auth = await startAuth(o.bin, join(o.dir, "auth"), { cpu: 0 });
  const admin = join(o.dir, "auth", "admin-identity");
  const cells: IssuanceCell[] = [];
  try {
    // JavaScriptCore needs a few thousand requests to compile the hot paths to its top tier:
    // warm every path up first, or the first cells measure the compiler, not the service
    await warmUp(auth.addr, admin);
    for (const clients of o.clients) {
      const results: Record<IssuanceCell["mode"], LoadResult[]> = { "cfssl sign": [], renew: [], "renew (new conn.)": [], certs: [], "bkp join": [] };
      for (let run = 0; run < o.runs; run++) {
        const common = ["--clients", String(clients), "--seconds", String(o.seconds), "--warmup", "1"];
        const ours = (mode: string) => [...common, "--mode", mode, "--addr", auth.addr, "--admin-identity", admin, "--service-pid", String(auth.service.pid), "--tag", `${mode}-${clients}-${run}`];
        results["cfssl sign"].push(await runLoad([...common, "--mode", "sign", "--url", `127.0.0.1:${cfPort}`, "--csr-dir", m.csrDir, "--ca", m.ca, "--service-pid", String(cfssl.service.pid)]));
        results.renew.push(await runLoad(ours("renew")));
        results["renew (new conn.)"].push(await runLoad(ours("renew-new")));
        results.certs.push(await runLoad(ours("certs")));
        results["bkp join"].push(await runLoad(ours("bkp")));
        o.log(`  clients ${clients}, run ${run + 1}/${o.runs}: ` + Object.entries(results).map(([k, v]) => `${k} ${fmt(v[run]!.rps)}/s`).join(", "));
      }
      const peer = median(results["cfssl sign"].map((r) => r.rps));
      for (const [mode, rs] of Object.entries(results) as [IssuanceCell["mode"], LoadResult[]][]) {
        const rps = median(rs.map((r) => r.rps));
        cells.push({
          clients,
          mode,
          rps,
          p50: median(rs.map((r) => r.p50_ms)),
          p99: median(rs.map((r) => r.p99_ms)),
          serviceCpu: median(rs.map((r) => r.service_cpu ?? NaN)),
          generatorCpu: median(rs.map((r) => r.generator_cpu)),
          connectionsPerRequest: median(rs.map((r) => r.connections_opened / Math.max(1, r.requests))),
          errors: rs.reduce((a, r) => a + r.errors, 0),
          ratio: rps / peer,
        });
        for (const r of rs) if (r.first_error) o.log(`  ${mode} error: ${r.first_error}`);
      }
    }
  } finally {
    await auth.service.stop();
    await cfssl.service.stop();
  }
  return cells;
}

/** Runs every one of our operations for a few seconds, discarding the figures. */
export async function warmUp(addr: string, adminIdentity: string, seconds = 4): Promise<void> {
  for (const mode of ["renew", "renew-new", "certs", "bkp"]) {
    await runLoad(["--mode", mode, "--clients", "16", "--seconds", String(seconds), "--warmup", "0", "--addr", addr, "--admin-identity", adminIdentity, "--tag", `warm-${mode}-${Date.now()}`]);
  }
}

/** The markdown table of the cells. */
export function issuanceTable(cells: IssuanceCell[]): string {
  return table(
    ["clients", "operation", "req/s (median)", "p50 ms", "p99 ms", "ours / cfssl", "server CPU (cores)", "generator CPU", "new connections per request", "errors"],
    cells.map((c) => [c.clients, c.mode, fmt(c.rps), fmt(c.p50, 1), fmt(c.p99, 1), c.mode === "cfssl sign" ? "1.00 (peer)" : fmt(c.ratio, 2), fmt(c.serviceCpu, 2), fmt(c.generatorCpu, 2), fmt(c.connectionsPerRequest, 2), c.errors]),
  );
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "3" }, seconds: { type: "string", default: "5" }, clients: { type: "string", default: "1,16,64" } } });
  const { privateBinary, tempDir } = await import("./_lib.ts");
  using dir = tempDir("bench-issuance-");
  const cells = await issuance({
    bin: privateBinary(dir.path),
    dir: dir.path,
    runs: Number(values.runs),
    seconds: Number(values.seconds),
    clients: values.clients.split(",").map(Number),
    log: (l) => console.error(l),
  });
  console.log(issuanceTable(cells));
}
