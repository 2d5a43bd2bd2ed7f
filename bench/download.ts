/**
 * The download an install pays: the executable raw and in each compressed form build.ts
 * makes (scripts/compress.ts, release levels), bytes on the wire and the wall time of
 * `curl … install.sh | DESTDIR=… bash` on loopback per form, alternated run by run, the
 * auth service pinned to core 0 and the install to core 1.
 *
 *   bun bench/download.ts [--runs 5]
 */

import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { FORMATS, compress, have } from "../scripts/compress.ts";
import { fmt, median, pinned, startAuth, table } from "./_lib.ts";

export interface DownloadFigures {
  rawBytes: number;
  /** per form: bytes served, seconds to make it at build time, install wall times (ms) */
  forms: { form: string; bytes: number; compressSeconds: number; installMs: number[] }[];
}

export async function downloadBench(o: { bin: string; dir: string; runs: number; log: (l: string) => void }): Promise<DownloadFigures> {
  const arch = process.arch === "arm64" ? "arm64" : "x64";
  const name = `machine-id-linux-${arch}`;
  const dist = join(o.dir, "dist");
  mkdirSync(dist);
  const bin = join(dist, name);
  copyFileSync(o.bin, bin);
  const sum = createHash("sha256").update(readFileSync(bin)).digest("hex");
  writeFileSync(`${bin}.sha256`, `${sum}  ${name}\n`);
  const seconds: Record<string, number> = { raw: 0 };
  for (const f of FORMATS.filter((g) => have(g.tool))) {
    const t0 = performance.now();
    compress(bin, f);
    seconds[f.ext] = (performance.now() - t0) / 1000;
    o.log(`  ${f.argv.join(" ")}: ${fmt(seconds[f.ext]!, 1)} s`);
  }
  const auth = await startAuth(bin, join(o.dir, "auth"), { cpu: 0 });
  try {
    const ca = join(o.dir, "ca.pem");
    const exported = Bun.spawnSync([bin, "ctl", "--data-dir", join(o.dir, "auth"), "auth", "export", "--type", "tls-host"], { stdout: "pipe", stderr: "pipe" });
    if (exported.exitCode !== 0) throw new Error(`ctl auth export failed: ${exported.stderr.toString()}`);
    writeFileSync(ca, exported.stdout);
    const forms = ["raw", ...FORMATS.map((f) => f.ext)].filter((f) => f === "raw" || statSync(`${bin}.${f}`, { throwIfNoEntry: false }));
    const installMs: Record<string, number[]> = Object.fromEntries(forms.map((f) => [f, []]));
    for (let i = 0; i < o.runs; i++) {
      for (const form of forms) {
        const root = join(o.dir, `root-${form}-${i}`);
        mkdirSync(root);
        const t0 = performance.now();
        const r = Bun.spawnSync(pinned(1, ["bash", "-c", `set -o pipefail; curl -fsSL --cacert "$CA" "https://$ADDR/scripts/install.sh" | bash -s`]), {
          env: { PATH: "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", DESTDIR: root, CA: ca, ADDR: auth.addr, HOME: o.dir, MACHINE_ID_DOWNLOAD_FORMAT: form },
          stdout: "pipe",
          stderr: "pipe",
        });
        const ms = performance.now() - t0;
        if (r.exitCode !== 0) throw new Error(`install (${form}) failed: ${r.stderr.toString()}`);
        installMs[form]!.push(ms);
        Bun.spawnSync(["rm", "-rf", root]);
      }
    }
    const rawBytes = statSync(bin).size;
    return { rawBytes, forms: forms.map((form) => ({ form, bytes: form === "raw" ? rawBytes : statSync(`${bin}.${form}`).size, compressSeconds: seconds[form]!, installMs: installMs[form]! })) };
  } finally {
    await auth.service.stop();
  }
}

export function downloadTable(f: DownloadFigures): string {
  const cmd = (form: string) => (form === "raw" ? "–" : `\`${FORMATS.find((x) => x.ext === form)!.argv.slice(0, -1).join(" ")}\``);
  return table(
    ["form", "made with", "bytes on the wire", "of the executable", "made in (build time)", "install wall, median (min–max)", "target"],
    f.forms.map((x) => [
      x.form,
      cmd(x.form),
      fmt(x.bytes),
      `${fmt((100 * x.bytes) / f.rawBytes, 1)} %`,
      x.form === "raw" ? "–" : `${fmt(x.compressSeconds, 1)} s`,
      `${fmt(median(x.installMs))} ms (${fmt(Math.min(...x.installMs))}–${fmt(Math.max(...x.installMs))})`,
      x.form === "raw" ? "–" : "≤ 45 %",
    ]),
  );
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
  const { privateBinary, tempDir } = await import("./_lib.ts");
  using dir = tempDir("bench-download-");
  const f = await downloadBench({ bin: privateBinary(dir.path), dir: dir.path, runs: Number(values.runs), log: (l) => console.error(l) });
  console.log(downloadTable(f));
}
