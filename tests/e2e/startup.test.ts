/**
 * The entry point's fast paths (src/main.ts): `version` and `--help` answered without
 * loading commander or any role, yet saying what commander would; each command still
 * loads its role's definitions for its own help and usage errors.
 */

import { beforeAll, expect, test } from "bun:test";
import { ensureBinary, run } from "./_harness.ts";

beforeAll(() => ensureBinary(), 120_000);

test("--help prints commander's own list of commands, byte for byte", async () => {
  const fast = await run(["--help"]);
  expect(fast.code).toBe(0);
  // with no command at all commander prints the same list (from the same table) as a usage error
  const commander = await run([]);
  expect(commander.code).toBe(2);
  expect(fast.stdout).toBe(commander.stderr);
  expect((await run(["-h"])).stdout).toBe(fast.stdout);
  for (const name of ["version", "start", "init", "keypair", "auth", "ctl", "install", "help [command]"]) expect(fast.stdout).toMatch(new RegExp(`^  ${name.replace(/[[\]]/g, "\\$&")} +\\S`, "m"));
});

test("--help names every command the full tree has", async () => {
  // `help` loads every role: its list is the real one
  const full = await run(["help"]);
  const names = (text: string) => [...text.split("Commands:")[1]!.matchAll(/^  (\S+)/gm)].map((m) => m[1]);
  expect(names((await run(["--help"])).stdout)).toEqual(names(full.stdout));
});

test("version and --version print the version line; a command's help and usage errors still work", async () => {
  const v = await run(["version"]);
  expect(v.code).toBe(0);
  expect(v.stdout).toMatch(/^machine-id v\d+\.\d+\.\d+ git:\S+ bun:\S+\n$/);
  expect((await run(["--version"])).stdout).toBe(v.stdout);
  const startHelp = await run(["start", "--help"]);
  expect(startHelp.code).toBe(0);
  expect(startHelp.stdout).toContain("--oneshot");
  const bad = await run(["start", "--no-such-flag"]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain("unknown option '--no-such-flag'");
  const unknown = await run(["no-such-command"]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain("unknown command 'no-such-command'");
});
