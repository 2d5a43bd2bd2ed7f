/**
 * Test helpers for the agent: a real auth service in process (memory storage, TLS on
 * a loopback port, a FakeClock starting at the real time so TLS validity holds), a bot
 * with a role, temp directories, and a quiet logger that keeps what it logged.
 */

import { startAuthService, type RunningAuth } from "../../src/auth/service.ts";
import type { Actor } from "../../src/auth/audit.ts";
import { adminOf } from "../_support/admin.ts";
import type { AgentConfig } from "../../src/config/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { Logger, silentLogger } from "../../src/lib/log.ts";
import { TempDir } from "../_support/tmp.ts";

/** A temp directory removed by `await using` (tests/_support/tmp.ts). */
export function tempDir(prefix = "agent-test-"): TempDir {
  return new TempDir(prefix);
}

/** A logger whose lines tests can read. */
export function memoryLogger(level: "debug" | "info" = "debug"): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { lines, log: new Logger({ level, format: "json", sink: { write: (l) => lines.push(l) } }) };
}

export const ADMIN: Actor = { user: "admin", remoteAddr: "127.0.0.1" };

export interface TestAuth {
  auth: RunningAuth;
  clock: FakeClock;
  addr: string;
  pin: string;
  dataDir: string;
  /** Creates role `deployer` (logins deploy, root) and bot `ci` with it; returns a fresh token. */
  addBot(name?: string): Promise<string>;
  events(type: string): Promise<{ type: string; fields: Record<string, unknown> }[]>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts an auth service on 127.0.0.1:0 for one test. */
export async function startTestAuth(): Promise<TestAuth> {
  const dir = await tempDir("agent-auth-");
  const clock = new FakeClock(Date.now());
  const auth = await startAuthService({ dataDir: dir.path, listenAddr: "127.0.0.1:0", storage: { type: "memory" }, log: silentLogger, clock, clusterName: "agent.test" });
  const admin = adminOf(auth.ctx);
  let roleMade = false;
  return {
    auth,
    clock,
    addr: auth.addr,
    pin: auth.ctx.authorities.caPin,
    dataDir: dir.path,
    async addBot(name = "ci") {
      if (!roleMade) {
        await admin.createResources(
          [{ kind: "role", version: "v7", metadata: { name: "deployer" }, spec: { allow: { logins: ["deploy", "root"] } } }],
          true,
          ADMIN,
        );
        roleMade = true;
      }
      const r = await admin.addBot({ name, roles: ["deployer"] }, ADMIN).catch(async (e) => {
        if ((e as { code?: string }).code !== "ALREADY_EXISTS") throw e;
        return admin.addToken({ bot_name: name, join_method: "token" }, ADMIN);
      });
      return r.token;
    },
    async events(type) {
      return (await admin.listEvents({ type })) as { type: string; fields: Record<string, unknown> }[];
    },
    async [Symbol.asyncDispose]() {
      await auth.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/** A checked agent config for the test auth service, with one identity output per directory given. */
export function agentConfig(t: TestAuth, token: string, storageDir: string | undefined, outputDirs: string[], extra: Partial<AgentConfig> = {}): AgentConfig {
  return {
    authServer: t.addr,
    onboarding: { joinMethod: "token", token, caPins: [t.pin], boundKeypair: {} },
    storage: storageDir ? { type: "directory", path: storageDir, symlinks: "try-secure", acls: "off" } : { type: "memory" },
    outputs: outputDirs.map((p) => ({
      type: "identity" as const,
      destination: { type: "directory" as const, path: p, symlinks: "try-secure" as const, acls: "off" as const },
      roles: [],
      sshConfig: true,
    })),
    services: [],
    credentialTtlMs: 3_600_000,
    renewalIntervalMs: 1_200_000,
    oneshot: false,
    debug: false,
    insecure: false,
    logFormat: "json",
    warnings: [],
    ...extra,
  };
}
