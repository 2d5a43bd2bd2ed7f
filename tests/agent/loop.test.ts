/**
 * The agent's services on a FakeClock against a real auth service: renewals each
 * interval, outputs rewritten after each, backoff while the service is unreachable with
 * the last good files left alone, recovery, reloads that re-render without renewing,
 * outputs that fail or hang without holding back the others or the renewal, oneshot
 * failures named, and a clean stop.
 */

import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, directoryDestination, IDENTITY_TASK, registerDestination, type Destination } from "../../src/agent/index.ts";
import { AppError, isAppError } from "../../src/lib/errors.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { AuthClient } from "../../src/protocol/index.ts";
import { agentConfig, memoryLogger, startTestAuth, tempDir } from "./harness.ts";
import { metricValue, waitFor } from "./wait.ts";

const INTERVAL = 20 * 60_000;

describe("agent loop", () => {
  test("renews every interval, backs off while auth is unreachable, keeps the outputs, and recovers", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    // The agent's own clock: only its loop sleeps on it (the auth service keeps real time).
    const clock = new FakeClock(Date.now());
    const out = join(t.path, "out");
    let down = false;
    const agent = new Agent({
      config: agentConfig(auth, await auth.addBot(), join(t.path, "state"), [out], { renewalIntervalMs: INTERVAL }),
      log: silentLogger,
      clock,
      random: () => 0.5, // no jitter: retries after exactly 1s, 2s, 4s…
      // "down" points the agent at a closed port: a real connection refusal
      client: (addr, tls) => new AuthClient({ addr: down ? "127.0.0.1:1" : addr, tls }),
    });
    const metrics = async (sample: string) => metricValue(await agent.metrics.text(), sample);
    const renewals = () => metrics(`machine_id_task_iterations_total{task="${IDENTITY_TASK}"}`);
    const failures = () => metrics(`machine_id_task_iterations_failed_total{task="${IDENTITY_TASK}"}`);
    // the output service writes after each renewal, on its own
    const writes = () => metrics(`machine_id_task_iterations_total{task="identity:${out}"}`);
    const idle = () => clock.waiting === 1;
    const stop = new AbortController();
    const running = agent.run(stop.signal);

    await waitFor("the first iteration", async () => idle() && (await renewals()) === 1 && (await writes()) === 1);
    expect(agent.health.snapshot().status).toBe("healthy");
    expect(agent.bot.identity!.generation).toBe(1);
    const cert1 = await readFile(join(out, "tlscert"), "utf8");

    clock.advance(INTERVAL);
    await waitFor("a renewal", async () => idle() && (await renewals()) === 2 && (await writes()) === 2);
    expect(agent.bot.identity!.generation).toBe(2);
    const cert2 = await readFile(join(out, "tlscert"), "utf8");
    expect(cert2).not.toBe(cert1);

    down = true;
    clock.advance(INTERVAL);
    await waitFor("a failed renewal", async () => idle() && (await failures()) === 1);
    const health = agent.health.snapshot();
    expect(health.status).toBe("unhealthy");
    expect(health.services[IDENTITY_TASK]!.reason).toContain('Cannot reach auth service at "127.0.0.1:1"');
    expect(await readFile(join(out, "tlscert"), "utf8")).toBe(cert2);
    // retries come after 1s, then 2s (advance() wakes a due sleeper at once, so a loop
    // still counted as sleeping right after it has not woken)
    clock.advance(999);
    expect(clock.waiting).toBe(1);
    clock.advance(1);
    expect(clock.waiting).toBe(0);
    await waitFor("the first retry", async () => idle() && (await failures()) === 2);
    clock.advance(1999);
    expect(clock.waiting).toBe(1);

    down = false;
    clock.advance(1);
    await waitFor("recovery", async () => idle() && agent.health.snapshot().status === "healthy" && (await writes()) === 3);
    expect(agent.bot.identity!.generation).toBe(3);
    expect(await readFile(join(out, "tlscert"), "utf8")).not.toBe(cert2);
    const expiresIn = await metrics('machine_id_identity_expires_in_seconds{bot="ci"}');
    expect(expiresIn).toBe((agent.bot.identity!.validBefore.getTime() - clock.now().getTime()) / 1000);

    stop.abort();
    await running;
  });

  test("a reload re-renders the outputs at once without renewing", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    // The agent's own clock: only its loop sleeps on it (the auth service keeps real time).
    const clock = new FakeClock(Date.now());
    const cfg = agentConfig(auth, await auth.addBot(), undefined, [join(t.path, "a")], { renewalIntervalMs: INTERVAL });
    const agent = new Agent({ config: cfg, log: silentLogger, clock });
    const stop = new AbortController();
    const running = agent.run(stop.signal);
    await waitFor("the first iteration", () => clock.waiting === 1 && agent.health.snapshot().status === "healthy");

    const next = agentConfig(auth, cfg.onboarding.token!, undefined, [join(t.path, "b")], { renewalIntervalMs: INTERVAL });
    agent.reload(next);
    await waitFor("the new output", () => Bun.file(join(t.path, "b", "tlscert")).exists());
    expect(agent.bot.identity!.generation).toBe(1);
    expect(Object.keys(agent.health.snapshot().services)).toEqual([IDENTITY_TASK, `identity:${join(t.path, "b")}`]);
    stop.abort();
    await running;
  });

  test("one broken output does not hold back the others, and it is retried alone", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    // The agent's own clock: only its loop sleeps on it (the auth service keeps real time).
    const clock = new FakeClock(Date.now());
    const blocked = join(t.path, "file-not-dir");
    await Bun.write(blocked, "x");
    const good = join(t.path, "good");
    const agent = new Agent({
      config: agentConfig(auth, await auth.addBot(), undefined, [blocked, good], { renewalIntervalMs: INTERVAL }),
      log: silentLogger,
      clock,
      random: () => 0.5,
    });
    const stop = new AbortController();
    const running = agent.run(stop.signal);
    // two sleepers: the identity service's interval and the broken output's backoff
    const blockedWrites = async () => metricValue(await agent.metrics.text(), `machine_id_task_iterations_total{task="identity:${blocked}"}`);
    await waitFor("the first iteration", async () => clock.waiting === 2 && agent.health.snapshot().services[`identity:${good}`]?.status === "healthy" && (await blockedWrites()) === 1);
    expect(agent.health.snapshot().status).toBe("unhealthy");
    expect(await Bun.file(join(good, "tlscert")).exists()).toBe(true);
    const snap = agent.health.snapshot();
    expect(snap.services[`identity:${blocked}`]).toEqual({ status: "unhealthy", reason: `Cannot use directory "${blocked}": it is not a directory` });
    expect(snap.services[`identity:${good}`]!.status).toBe("healthy");

    // the retry after 1s writes only the broken output again and does not renew
    const goodCert = await readFile(join(good, "tlscert"), "utf8");
    clock.advance(1000);
    await waitFor("the retry", async () => clock.waiting === 2 && (await blockedWrites()) === 2);
    expect(agent.bot.identity!.generation).toBe(1);
    expect(await readFile(join(good, "tlscert"), "utf8")).toBe(goodCert);
    stop.abort();
    await running;
  });

  test("a destination that hangs holds back neither the other outputs nor the next renewal, and is written once it answers", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const clock = new FakeClock(Date.now());
    const hung = join(t.path, "hung");
    const good = join(t.path, "good");
    // `hung` stands for a kubernetes_secret whose API server never answers: its writes
    // wait until the test lets them through
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const undo = registerDestination("directory", (config, deps) => {
      const d = directoryDestination(config, deps);
      if (config.type !== "directory" || config.path !== hung) return d;
      return { ...hangingWrites(d, released), description: d.description, isPersistent: true, path: hung };
    });
    try {
      const agent = new Agent({
        config: agentConfig(auth, await auth.addBot(), undefined, [hung, good], { renewalIntervalMs: INTERVAL }),
        log: silentLogger,
        clock,
        random: () => 0.5,
      });
      const count = async (task: string) => metricValue(await agent.metrics.text(), `machine_id_task_iterations_total{task="${task}"}`);
      const stop = new AbortController();
      const running = agent.run(stop.signal);

      await waitFor("the first renewal and the good output", async () => clock.waiting === 1 && (await count(`identity:${good}`)) === 1);
      expect(agent.health.snapshot().services[`identity:${good}`]).toEqual({ status: "healthy" });
      expect(agent.health.snapshot().services[`identity:${hung}`]).toEqual({ status: "initializing" });
      const cert1 = await readFile(join(good, "tlscert"), "utf8");

      clock.advance(INTERVAL);
      await waitFor("the next renewal and the good output again", async () => clock.waiting === 1 && (await count(IDENTITY_TASK)) === 2 && (await count(`identity:${good}`)) === 2);
      expect(agent.bot.identity!.generation).toBe(2);
      expect(await readFile(join(good, "tlscert"), "utf8")).not.toBe(cert1);
      expect(await count(`identity:${hung}`)).toBe(0); // still in its first write

      // once it answers, the hung output finishes and then writes for the newer identity
      release();
      await waitFor("the hung output", async () => (await count(`identity:${hung}`)) === 2 && agent.health.snapshot().status === "healthy");
      expect(await Bun.file(join(hung, "tlscert")).exists()).toBe(true);
      stop.abort();
      await running;
    } finally {
      undo();
      release();
    }
  });

  test("oneshot writes every output it can and fails naming the one it could not", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const blocked = join(t.path, "file-not-dir");
    await Bun.write(blocked, "x");
    const good = join(t.path, "good");
    const agent = new Agent({ config: agentConfig(auth, await auth.addBot(), undefined, [blocked, good]), log: silentLogger });
    const err = await agent.oneshot().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isAppError(err)).toBe(true);
    expect((err as Error).message).toBe(`Cannot write output "identity:${blocked}" (Cannot use directory "${blocked}": it is not a directory); the others were written`);
    expect((err as { details?: unknown }).details).toEqual({ outputs: [`identity:${blocked}`] });
    expect(await Bun.file(join(good, "tlscert")).exists()).toBe(true);
  });

  test("oneshot joins after the service asked it twice to come back (429 Retry-After), and not sooner", async () => {
    await using auth = await startTestAuth();
    await using t = await tempDir();
    const clock = new FakeClock(Date.now());
    const out = join(t.path, "out");
    let joins = 0;
    // the service's answer to a crowd, as the client decodes it: LIMIT_EXCEEDED with retry_after_seconds
    class Crowded extends AuthClient {
      override join(req: Parameters<AuthClient["join"]>[0]) {
        joins++;
        if (joins <= 2) return Promise.reject(new AppError("LIMIT_EXCEEDED", "Too many joins: try again in 3s", { details: { retry_after_seconds: 3 } }));
        return super.join(req);
      }
    }
    const { log, lines } = memoryLogger();
    const agent = new Agent({ config: agentConfig(auth, await auth.addBot(), undefined, [out]), log, clock, random: () => 0, client: (addr, tls) => new Crowded({ addr, tls }) });
    const done = agent.oneshot();
    await waitFor("the first refusal", async () => joins === 1 && clock.waiting === 1);
    clock.advance(2999);
    await Bun.sleep(0);
    expect(joins).toBe(1);
    clock.advance(1);
    await waitFor("the second refusal", async () => joins === 2 && clock.waiting === 1);
    clock.advance(3000);
    await done;
    expect(joins).toBe(3);
    expect(await Bun.file(join(out, "tlscert")).exists()).toBe(true);
    expect(lines.filter((l) => l.includes("The auth service is busy: trying again later"))).toHaveLength(2);
  });
});

/** `d` whose writes wait for `released` (its init and reads do not). */
function hangingWrites(d: Destination, released: Promise<void>): Omit<Destination, "description" | "isPersistent" | "path"> {
  return {
    init: () => d.init(),
    verify: () => d.verify(),
    read: (name) => d.read(name),
    write: async (name, data) => {
      await released;
      await d.write(name, data);
    },
    writeAll: async (files) => {
      await released;
      await d.writeAll(files);
    },
  };
}
