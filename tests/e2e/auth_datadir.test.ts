/**
 * One auth service per data directory, with the compiled binary: a second `auth start`
 * on a data dir in use is refused naming the PID that holds it and changes nothing;
 * the lock goes with the process however it ends; and a first start that fails (its
 * port is taken) leaves nothing that fixes the data dir's cluster name.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { ensureBinary, run, startAuth, tempDir } from "./_harness.ts";

let dir: ReturnType<typeof tempDir>;

beforeAll(() => {
  ensureBinary();
  dir = tempDir();
}, 120_000);

afterAll(() => dir?.[Symbol.dispose]());

const start = (dataDir: string, listen = "127.0.0.1:0", ...args: string[]) =>
  run(["auth", "start", "--data-dir", dataDir, "--listen-addr", listen, ...args], { timeoutMs: 60_000 });

describe("the data directory lock", () => {
  test("a second auth start on a data dir in use is refused, naming the PID, and changes nothing", async () => {
    const data = join(dir.path, "shared");
    await using first = await startAuth(data, { args: ["--cluster-name", "lock.example"] });
    const identity = readFileSync(join(data, "admin-identity"));
    const second = await start(data);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `ERROR: Cannot start the auth service: data directory "${data}" is in use by another auth service (PID ${first.proc.pid}); stop it first, or give this one another --data-dir`,
    );
    // ctl still reaches the first: its admin identity was not rewritten
    expect(readFileSync(join(data, "admin-identity")).equals(identity)).toBe(true);
    expect(await first.ctlOk("status")).toContain("Cluster  lock.example");
  }, 120_000);

  test("the lock goes with the process, also when it is killed", async () => {
    const data = join(dir.path, "killed");
    const first = await startAuth(data);
    await first[Symbol.asyncDispose](); // SIGKILL: no clean-up ran
    await using again = await startAuth(data);
    expect(await again.ctlOk("status")).toContain("Cluster ");
  }, 120_000);
});

describe("a first start that fails", () => {
  let taken: Server;
  let port: number;
  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    port = (taken.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => taken.close(() => r())));

  test("leaves no cluster name behind: the next start may choose another", async () => {
    const data = join(dir.path, "fresh");
    const failed = await start(data, `127.0.0.1:${port}`, "--cluster-name", "typo.example");
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("ERROR:");
    await using ok = await startAuth(data, { args: ["--cluster-name", "right.example"] });
    expect(await ok.ctlOk("status")).toContain("Cluster  right.example");
  }, 120_000);
});
