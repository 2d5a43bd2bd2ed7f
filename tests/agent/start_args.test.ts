// The entry point parses a plain `start` line itself (no commander): it must hand the
// action exactly what commander would, and leave everything else to commander.

import { describe, expect, test } from "bun:test";
import { startCommand } from "../../src/agent/commands.ts";
import { parseStartArgs } from "../../src/agent/start_args.ts";

/** The options object commander's `start` action receives for `args`. */
async function viaCommander(args: string[]): Promise<Record<string, unknown>> {
  let got: Record<string, unknown> | undefined;
  const cmd = startCommand().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  cmd.action((opts: Record<string, unknown>) => {
    got = { ...opts };
  });
  await cmd.parseAsync(args, { from: "user" });
  return got!;
}

describe("parseStartArgs", () => {
  test.each([
    [[]],
    [["-c", "/etc/tbot.yaml", "--oneshot"]],
    [["--config=/etc/tbot.yaml", "--ca-pin", "sha256:aa", "--ca-pin=sha256:bb", "-d"]],
    [["--auth-server", "a:3025", "--token", "t", "--join-method", "bound_keypair", "--storage", "memory://", "--destination-dir", "/out"]],
    [["--proxy-server", "p:443", "--certificate-ttl", "1h", "--renewal-interval", "20m", "--diag-addr", "127.0.0.1:0", "--log-format", "json", "--insecure", "--allow-no-outputs"]],
    [["--token", ""]],
  ])("reads %j as commander does", async (args) => {
    expect(parseStartArgs(args)).toEqual(await viaCommander(args));
  });

  test.each([
    [["--help"]],
    [["-h"]],
    [["--unknown"]],
    [["extra"]],
    [["--"]],
    [["-c"]],
    [["-c", "--oneshot"]],
    [["-dc", "x"]],
    [["--oneshot=yes"]],
    [["--oneshot", "--oneshot"]],
    [["-c", "a", "-c", "b"]],
    [["--log-format", "xml"]],
  ])("leaves %j to commander", (args) => {
    expect(parseStartArgs(args)).toBeUndefined();
  });
});
