/**
 * Built-in join methods, destinations and outputs are registered explicitly, not by
 * importing a module for its side effects: a program that imports only agent.ts (in a
 * fresh process, so no other test's imports help) builds an Agent with every built-in.
 */

import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");

test("importing agent.ts alone gives an Agent every built-in join method, destination and output", async () => {
  const script = `
    import { Agent } from "./src/agent/agent.ts";
    import { joinMethod } from "./src/agent/bot/join.ts";
    import { silentLogger } from "./src/lib/log.ts";
    const dest = (type) => type === "directory" ? { type, path: "/nonexistent/out", symlinks: "secure", acls: "off" } : { type, name: "out" };
    const config = {
      authServer: "127.0.0.1:1",
      onboarding: { joinMethod: "kubernetes", token: "t", caPins: [], boundKeypair: {} },
      storage: { type: "memory" },
      outputs: [
        { type: "identity", destination: dest("directory"), roles: [], sshConfig: false },
        { type: "kubernetes", kubernetesCluster: "k", destination: dest("kubernetes_secret"), roles: [] },
      ],
      services: [], credentialTtlMs: 3600000, renewalIntervalMs: 1200000, oneshot: false, debug: false,
      insecure: false, logFormat: "json", warnings: [],
    };
    const agent = new Agent({ config, log: silentLogger });
    console.log(JSON.stringify({ outputs: agent.outputNames, joins: ["token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"].map((n) => joinMethod(n).name) }));
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  expect(JSON.parse(out)).toEqual({
    outputs: ["identity:/nonexistent/out", 'kubernetes:kubernetes_secret "out"#1'],
    joins: ["token", "bound_keypair", "kubernetes", "github", "gitlab", "circleci"],
  });
}, 30_000);
