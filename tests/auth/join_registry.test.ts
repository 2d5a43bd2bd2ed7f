/**
 * The join method registry (src/auth/join/index.ts) against the protocol: every join
 * method the protocol names is served, `/webapi/ping` reports exactly the registered
 * ones, and `/v1/join` and every route a method serves are behind the failed-join limiter.
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { JOIN_REGISTRY } from "../../src/auth/join/index.ts";
import { FailureLimiter } from "../../src/auth/ratelimit.ts";
import { ROUTES } from "../../src/protocol/index.ts";
import { JOIN_METHODS } from "../../src/resources/index.ts";
import { keyRequest, startHarness, type Harness } from "./harness.ts";

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

describe("join method registry", () => {
  test("registers exactly the protocol's JOIN_METHODS, in its order", () => {
    expect([...JOIN_REGISTRY.keys()]).toEqual([...JOIN_METHODS]);
    for (const [name, method] of JOIN_REGISTRY) expect(method.name).toBe(name);
  });

  test("/webapi/ping's join_methods are the registered methods", async () => {
    const r = await h.call(h.anon, "GET", "/webapi/ping");
    expect(r.status).toBe(200);
    expect(r.json.join_methods).toEqual([...JOIN_REGISTRY.keys()]);
  });

  test("every method joins in one request or serves routes of its own", () => {
    for (const method of JOIN_REGISTRY.values()) {
      expect(method.verify !== undefined || (method.routes ?? []).length > 0).toBe(true);
    }
  });

  // Asked of the app, not of JOIN_PATHS: the limiter must answer on each route for real.
  test("/v1/join and every route a method serves refuse an address with 429 once its failed joins reach the burst", async () => {
    const paths = [ROUTES.join, ...[...JOIN_REGISTRY.values()].flatMap((m) => (m.routes ?? []).map((r) => r.path))];
    expect(paths).toContain(ROUTES.boundKeypairBegin);
    const handler = h.withJoinLimiter(new FailureLimiter({ clock: h.clock, burst: 2 }));
    for (const [i, path] of paths.entries()) {
      const conn = { remoteAddr: `192.0.2.${i + 1}` };
      const junk = async () => (await handler(new Request(`https://auth.test${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }), conn)).status;
      expect([path, await junk(), await junk()]).toEqual([path, 400, 400]);
      expect([path, await junk()]).toEqual([path, 429]);
    }
  });

  test("a method with routes of its own (bound_keypair) is refused at /v1/join with BAD_PARAMETER on join_method", async () => {
    const r = await h.call(h.anon, "POST", ROUTES.join, { ...keyRequest().body, token_name: "x", join_method: "bound_keypair" });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe("BAD_PARAMETER");
    expect(r.json.error.message).toContain('"join_method"');
  });
});
