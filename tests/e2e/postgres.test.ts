/**
 * Scaling out: two compiled auth services started from `-c auth.yaml` share one real
 * PostgreSQL database — one set of CAs (the same pin), resources written through one
 * are seen by the other, and a token made on one is consumed by an agent joining the
 * other, exactly once.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startPostgres, type PostgresServer } from "../storage/postgres_server.ts";
import { ensureBinary, run, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

let pg: PostgresServer;
let dir: ReturnType<typeof tempDir>;
let a: AuthProcess;
let b: AuthProcess;

function authConfig(name: string, url: string): string {
  const path = join(dir.path, `${name}.yaml`);
  writeFileSync(
    path,
    ["version: v1", "cluster_name: shared.example", "storage:", "  type: postgres", `  conn_string: "${url}"`, "log:", "  level: info", ""].join("\n"),
    { mode: 0o600 },
  );
  return path;
}

beforeAll(async () => {
  ensureBinary();
  pg = await startPostgres();
  dir = tempDir("mid-pg-");
  const url = pg.url();
  a = await startAuth(join(dir.path, "a"), { args: ["-c", authConfig("a", url)] });
  b = await startAuth(join(dir.path, "b"), { args: ["-c", authConfig("b", url)] });
}, 120_000);

afterAll(async () => {
  await a?.[Symbol.asyncDispose]();
  await b?.[Symbol.asyncDispose]();
  await pg?.[Symbol.asyncDispose]();
  dir?.[Symbol.dispose]();
});

describe("two auth services on one PostgreSQL database", () => {
  test("they share the cluster's CAs: one pin", async () => {
    const pinOf = async (x: AuthProcess) => /CA pin\s+(\S+)/.exec(await x.ctlOk("status"))![1];
    expect(await pinOf(a)).toBe((await pinOf(b))!);
    expect(await a.ctlOk("auth", "export", "--type", "ssh-user")).toBe(await b.ctlOk("auth", "export", "--type", "ssh-user"));
  });

  test("a resource created through one is served by the other", async () => {
    const f = join(dir.path, "role.yaml");
    writeFileSync(f, "kind: role\nversion: v7\nmetadata:\n  name: pg-role\nspec:\n  allow:\n    logins: [svc]\n");
    await a.ctlOk("create", "-f", f);
    expect(await b.ctlOk("get", "role/pg-role", "--format", "json")).toContain('"svc"');
  });

  test("a token made on one is used once by an agent joining the other", async () => {
    const token = JSON.parse(await a.ctlOk("bots", "add", "pg-bot", "--roles=pg-role", "--format", "json"));
    const join1 = await run([
      "start",
      "--oneshot",
      "--auth-server",
      b.addr,
      "--token",
      token.token,
      "--join-method",
      "token",
      "--ca-pin",
      token.ca_pins[0],
      "--storage",
      "memory://",
      "--destination-dir",
      join(dir.path, "out"),
    ]);
    expect(join1.code).toBe(0);
    const instances = JSON.parse(await a.ctlOk("bots", "instances", "ls", "pg-bot", "--format", "json"));
    expect(instances).toHaveLength(1);
    const again = await run(["start", "--oneshot", "--allow-no-outputs", "--auth-server", a.addr, "--token", token.token, "--join-method", "token", "--ca-pin", token.ca_pins[0], "--storage", "memory://"]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("not valid");
    const events = JSON.parse(await b.ctlOk("events", "ls", "--type", "bot.join,join.failed", "--format", "json"));
    expect(events.map((e: { type: string }) => e.type)).toEqual(["bot.join", "join.failed"]);
  }, 60_000);
});
