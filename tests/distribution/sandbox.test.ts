/**
 * Evidence for the units' sandboxing choices, from the compiled executable itself:
 * MemoryDenyWriteExecute= would switch Bun's JIT off (so it stays off), every syscall a
 * typical run makes is inside the unit's SystemCallFilter=, and the executable runs
 * under an emulation of the rest (ProcSubset=pid, a read-only root, no capabilities,
 * NoNewPrivileges, an unprivileged user). systemd itself cannot run in this sandbox.
 */

import { beforeAll, describe, expect, test } from "bun:test";
import { chown } from "node:fs/promises";
import { join } from "node:path";
import { compiledBinary, ROOT, run, runOk, tempDir } from "./_helpers.ts";

/** A representative run: TLS-free HTTP round trip, key generation, atomic writes, sd_notify, timers. */
const WORKLOAD = (dir: string) => `
import { generateKeyPairSync } from "node:crypto";
import { lookup } from "node:dns/promises";
import { writeFileAtomic } from ${JSON.stringify(join(ROOT, "src/lib/fs.ts"))};
import { createNotifier } from ${JSON.stringify(join(ROOT, "src/lib/sd_notify.ts"))};
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
const body = await (await fetch(server.url)).text();
server.stop(true);
await lookup("localhost");
generateKeyPairSync("ec", { namedCurve: "P-256" });
generateKeyPairSync("ed25519");
await writeFileAtomic(${JSON.stringify(dir)} + "/identity", body);
createNotifier({ NOTIFY_SOCKET: ${JSON.stringify(dir)} + "/absent.sock" }).ready();
await new Promise((ok) => setTimeout(ok, 1));
console.log("workload " + body);
`;

// PR_SET_MDWE (Linux ≥ 6.3) is the kernel's W^X switch that systemd uses for
// MemoryDenyWriteExecute=; it survives execve, so python can set it and exec the binary.
const MDWE_EXEC = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(99)
os.execv(sys.argv[1], sys.argv[1:])
`;

const RWX_PROBE = `
const rwx = require("fs").readFileSync("/proc/self/maps", "utf8").split("\\n").filter((l) => /^\\S+ rwx/.test(l));
console.log(rwx.length);
`;

let bin: string;
let mdweSupported = false;

beforeAll(async () => {
  bin = await compiledBinary();
  mdweSupported = (await run(["python3", "-c", "import ctypes,sys; sys.exit(0 if ctypes.CDLL(None).prctl(66,0,0,0,0) >= 0 else 1)"])).code === 0;
}, 120_000);

describe("sandbox evidence", () => {
  test("MemoryDenyWriteExecute would cost the JIT: Bun maps RWX code memory, and under W^X it has none", async () => {
    if (!mdweSupported) {
      console.warn("PR_SET_MDWE is not available on this kernel; W^X cannot be checked here");
      return;
    }
    await using d = await tempDir();
    const probe = join(d.path, "rwx.js");
    await Bun.write(probe, RWX_PROBE);
    const env = { BUN_BE_BUN: "1", PATH: process.env.PATH! };
    const normal = await runOk([bin, probe], { env });
    expect(Number(normal.stdout.trim())).toBeGreaterThan(0);
    const wx = await runOk(["python3", "-c", MDWE_EXEC, bin, probe], { env });
    expect(Number(wx.stdout.trim())).toBe(0);
    // It still runs (in the interpreter), so W^X is a speed decision, not a crash.
    const version = await runOk(["python3", "-c", MDWE_EXEC, bin, "version"]);
    expect(version.stdout).toStartWith("machine-id v");
  }, 60_000);

  test("every syscall of a typical run is allowed by SystemCallFilter=@system-service ~@privileged @resources", async () => {
    const allowed = await syscallSet(["@system-service"]);
    const denied = await syscallSet(["@privileged", "@resources"]);
    await using d = await tempDir();
    const script = join(d.path, "workload.ts");
    await Bun.write(script, WORKLOAD(d.path));
    const used = new Set<string>();
    for (const argv of [[bin, "version"], [bin, script]]) {
      const out = join(d.path, "strace.txt");
      await runOk(["strace", "-f", "-qq", "-c", "-o", out, ...argv], { env: { BUN_BE_BUN: argv[1] === "version" ? "" : "1", PATH: process.env.PATH! } });
      for (const name of parseStraceSummary(await Bun.file(out).text())) used.add(name);
    }
    // the workload really ran: it opened sockets, connected and sent a datagram
    for (const s of ["socket", "connect", "sendto", "fsync"]) expect([s, used.has(s)]).toEqual([s, true]);
    expect([...used].some((s) => s.startsWith("rename"))).toBe(true);
    const outside = [...used].filter((s) => !allowed.has(s) || denied.has(s)).sort();
    expect(outside).toEqual([]);
  }, 60_000);

  test("runs with ProcSubset=pid, ProtectProc=invisible, a read-only root, no capabilities and NoNewPrivileges as nobody", async () => {
    await using d = await tempDir();
    const script = join(d.path, "workload.ts");
    await Bun.write(script, WORKLOAD(d.path));
    await chown(d.path, 65534, 65534);
    // A private mount and pid namespace: `remount,bind,ro` changes only this namespace's view
    // of /, the way ProtectSystem=strict does, and the dir stays writable like ReadWritePaths=.
    const inner = [
      "mount -t proc -o subset=pid,hidepid=invisible proc /proc",
      'mount --bind "$DIR" "$DIR"',
      "mount -o remount,bind,ro /",
      "test ! -e /proc/sys/kernel",
      '/usr/bin/setpriv --no-new-privs --reuid=65534 --regid=65534 --clear-groups --bounding-set=-all --inh-caps=-all "$BIN" version',
      'BUN_BE_BUN=1 HOME="$DIR" /usr/bin/setpriv --no-new-privs --reuid=65534 --regid=65534 --clear-groups --bounding-set=-all --inh-caps=-all "$BIN" "$SCRIPT"',
      'if touch /usr/machine-id-rw-check 2>/dev/null; then echo "root is writable"; exit 1; fi',
    ].join(" && ");
    const r = await run(["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", inner], {
      env: { PATH: process.env.PATH!, DIR: d.path, BIN: bin, SCRIPT: script },
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^machine-id v.*\nworkload ok\n$/);
    expect(await Bun.file(join(d.path, "identity")).text()).toBe("ok");
  }, 60_000);
});

/** The syscalls in the union of systemd's named groups, nested groups expanded. */
async function syscallSet(groups: string[]): Promise<Set<string>> {
  const text = (await runOk(["systemd-analyze", "syscall-filter", "--no-pager"])).stdout;
  const members = new Map<string, string[]>();
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (!raw.startsWith(" ") && line.startsWith("@")) members.set((current = line), []);
    else if (current) members.get(current)!.push(line);
  }
  const out = new Set<string>();
  const expand = (g: string, seen: Set<string>) => {
    for (const m of members.get(g) ?? []) {
      if (!m.startsWith("@")) out.add(m);
      else if (!seen.has(m)) expand(m, seen.add(m));
    }
  };
  for (const g of groups) expand(g, new Set([g]));
  return out;
}

/** Syscall names from `strace -c` output (the last column of each row). */
function parseStraceSummary(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim().split(/\s+/).at(-1) ?? "")
    .filter((s) => /^[a-z_][a-z0-9_]*$/.test(s) && s !== "total" && s !== "syscall");
}
