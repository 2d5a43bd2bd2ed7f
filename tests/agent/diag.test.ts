/**
 * Diagnostics: /livez, /readyz (200 only when every service is healthy) and
 * /metrics in Prometheus text, in process and over a real socket.
 */

import { describe, expect, test } from "bun:test";
import { AgentMetrics, diagHandler, HealthRegistry, startDiagServer } from "../../src/agent/index.ts";
import { parseListenAddr } from "../../src/agent/diag/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { metricValue } from "./wait.ts";

function setup(expiry?: { bot: string; expires: Date }) {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const health = new HealthRegistry();
  const metrics = new AgentMetrics({ clock, identityExpiry: () => expiry });
  return { clock, health, metrics, handle: diagHandler({ health, metrics }) };
}
const get = (h: (r: Request) => Promise<Response>, path: string, method = "GET") => h(new Request(`http://diag${path}`, { method }));

describe("diagnostics", () => {
  test("/livez answers 200 OK", async () => {
    const res = await get(setup().handle, "/livez");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("OK");
  });

  test("/readyz is 503 until every service is healthy, with each service's status and reason", async () => {
    const { health, handle } = setup();
    let res = await get(handle, "/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "initializing", services: {} });

    health.set("identity", "healthy");
    health.set("identity:/out", "initializing");
    expect((await get(handle, "/readyz")).status).toBe(503);
    health.set("identity:/out", "healthy");
    res = await get(handle, "/readyz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "healthy", services: { identity: { status: "healthy" }, "identity:/out": { status: "healthy" } } });

    health.set("identity", "unhealthy", 'Cannot reach auth service at "a:1": connection refused');
    res = await get(handle, "/readyz");
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      status: "unhealthy",
      services: {
        identity: { status: "unhealthy", reason: 'Cannot reach auth service at "a:1": connection refused' },
        "identity:/out": { status: "healthy" },
      },
    });
  });

  test("/metrics exposes iterations, failures, durations and seconds until the identity expires", async () => {
    const expiry = { bot: "ci", expires: new Date(Date.UTC(2026, 0, 1, 1)) }; // one hour after the clock's now
    const { metrics, handle } = setup(expiry);
    metrics.record("identity", true, 0.2);
    metrics.record("identity", false, 0.1);
    metrics.record("identity:/out", true, 0.05);
    const res = await get(handle, "/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const text = await res.text();
    expect(text).toContain("# TYPE machine_id_task_iterations_total counter");
    expect(metricValue(text, 'machine_id_task_iterations_total{task="identity"}')).toBe(2);
    expect(metricValue(text, 'machine_id_task_iterations_failed_total{task="identity"}')).toBe(1);
    expect(metricValue(text, 'machine_id_task_iterations_total{task="identity:/out"}')).toBe(1);
    expect(metricValue(text, 'machine_id_task_iteration_duration_seconds_count{task="identity"}')).toBe(2);
    expect(metricValue(text, 'machine_id_task_iteration_duration_seconds_bucket{le="0.25",task="identity"}')).toBe(2);
    expect(metricValue(text, 'machine_id_identity_expires_in_seconds{bot="ci"}')).toBe(3600);
  });

  test("the expiry gauge is absent before the first join", async () => {
    const text = await (await get(setup(undefined).handle, "/metrics")).text();
    expect(text).toContain("# TYPE machine_id_identity_expires_in_seconds gauge");
    expect(text).not.toMatch(/^machine_id_identity_expires_in_seconds[{ ]/m);
  });

  test("unknown paths are 404 and other methods 405", async () => {
    const { handle } = setup();
    expect((await get(handle, "/nope")).status).toBe(404);
    expect((await get(handle, "/livez", "POST")).status).toBe(405);
  });

  test("serves over HTTP on an ephemeral loopback port", async () => {
    const { health, metrics } = setup();
    health.set("identity", "healthy");
    const server = await startDiagServer({ addr: "127.0.0.1:0", health, metrics, log: silentLogger });
    try {
      expect(server.port).toBeGreaterThan(0);
      expect(server.addr).toBe(`127.0.0.1:${server.port}`);
      expect(await (await fetch(`http://${server.addr}/livez`)).text()).toBe("OK");
      expect((await fetch(`http://${server.addr}/readyz`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  test("parseListenAddr() accepts host:port and [v6]:port and names the field on errors", () => {
    expect(parseListenAddr("127.0.0.1:3001")).toEqual({ hostname: "127.0.0.1", port: 3001 });
    expect(parseListenAddr("[::1]:0")).toEqual({ hostname: "::1", port: 0 });
    expect(parseListenAddr(":9000")).toEqual({ hostname: "127.0.0.1", port: 9000 });
    for (const bad of ["localhost", "1.2.3.4:99999", "http://x:1"]) {
      expect(() => parseListenAddr(bad)).toThrow(`Invalid diag_addr "${bad}": expected "host:port", such as "127.0.0.1:3001"`);
    }
  });
});
