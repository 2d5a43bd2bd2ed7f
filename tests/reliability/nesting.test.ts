/**
 * Request bodies nested deeper than any message needs are refused with 400 before they
 * reach the validators, whose recursion would otherwise overflow the stack and answer
 * 500 (found by the hostile-input suite on POST /v1/resources).
 */

import { afterAll, beforeAll, expect, test } from "bun:test";
import { MAX_JSON_DEPTH } from "../../src/auth/app.ts";
import { MAX_BODY_BYTES } from "../../src/protocol/index.ts";
import { startHarness, type Harness } from "../auth/harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

test.each([
  ["/v1/resources", (d: number) => `{"resources":${nested(d)},"force":true}`],
  ["/v1/bot/renew", (d: number) => `{"public_tls_key":${nested(d)}}`],
  ["/v1/join", (d: number) => nested(d)],
])("%s: a body nested as deep as the size cap allows is a 400, not a stack overflow", async (path, body) => {
  const depth = Math.floor((MAX_BODY_BYTES - 64) / 2);
  const r = await h.call(h.admin, "POST", path, body(depth));
  expect(r.status).toBe(400);
  expect(r.json.error.message).toBe(`Request body is nested too deeply: at most ${MAX_JSON_DEPTH} levels`);
});

test("nesting up to the limit, and brackets inside strings, are parsed as usual", async () => {
  // the outer object is one level: resources may nest MAX_JSON_DEPTH - 1 more
  const atLimit = await h.call(h.admin, "POST", "/v1/resources", `{"resources":${nested(MAX_JSON_DEPTH - 1)}}`);
  expect(atLimit.status).toBe(400);
  expect(atLimit.json.error.message).not.toContain("nested too deeply");
  const overLimit = await h.call(h.admin, "POST", "/v1/resources", `{"resources":${nested(MAX_JSON_DEPTH)}}`);
  expect(overLimit.json.error.message).toContain("nested too deeply");
  const inStrings = `{"resources":[{"kind":"role","version":"v7","metadata":{"name":"brackets","labels":{"a":"${"[{".repeat(500)}\\"]"}},"spec":{}}]}`;
  const r = await h.call(h.admin, "POST", "/v1/resources", inStrings);
  expect(r.status).toBe(200);
});
