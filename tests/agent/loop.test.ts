/**
 * The agent loop on a FakeClock against a real auth service: renewals each interval,
 * outputs rewritten after each, backoff while the service is unreachable with the
 * last good files left alone, recovery, reloads that re-render without renewing,
 * and a clean stop.
 */

import { describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, IDENTITY_TASK } from "../../src/agent/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { AuthClient } from "../../src/protocol/index.ts";
import { agentConfig, startTestAuth, tempDir } from "./harness.ts";
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
    const idle = () => clock.waiting === 1;
    const stop = new AbortController();
    const running = agent.run(stop.signal);

    await waitFor("the first iteration", async () => idle() && (await renewals()) === 1);
    expect(agent.health.snapshot().status).toBe("healthy");
    expect(agent.bot.identity!.generation).toBe(1);
    const cert1 = await readFile(join(out, "tlscert"), "utf8");

    clock.advance(INTERVAL);
    await waitFor("a renewal", async () => idle() && (await renewals()) === 2);
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
    await waitFor("recovery", async () => idle() && agent.health.snapshot().status === "healthy");
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
    await waitFor("the first iteration", () => clock.waiting === 1 && agent.health.snapshot().status === "unhealthy");
    expect(await Bun.file(join(good, "tlscert")).exists()).toBe(true);
    const snap = agent.health.snapshot();
    expect(snap.services[`identity:${blocked}`]).toEqual({ status: "unhealthy", reason: `Cannot use directory "${blocked}": it is not a directory` });
    expect(snap.services[`identity:${good}`]!.status).toBe("healthy");

    // the retry after 1s writes only the broken output again and does not renew
    const goodCert = await readFile(join(good, "tlscert"), "utf8");
    clock.advance(1000);
    await waitFor("the retry", async () => clock.waiting === 1 && metricValue(await agent.metrics.text(), `machine_id_task_iterations_total{task="identity:${blocked}"}`) === 2);
    expect(agent.bot.identity!.generation).toBe(1);
    expect(await readFile(join(good, "tlscert"), "utf8")).toBe(goodCert);
    stop.abort();
    await running;
  });
});
