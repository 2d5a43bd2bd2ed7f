/**
 * The OIDC join in process (no network: tokens carry a static_jwks), for what the
 * end-to-end tests cannot time or enumerate: the same ID token presented by many
 * concurrent joins creates exactly one bot instance, and hostile join bodies never
 * earn a 500.
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { keyRequest, startHarness, type Harness } from "../auth/harness.ts";
import { githubClaims, jwksText, signIdToken, signingKey, type SigningKey } from "../_support/oidc_issuer.ts";

const ISSUER = "https://token.actions.githubusercontent.com";
let h: Harness;
let key: SigningKey;

beforeEach(async () => {
  h = await startHarness();
  key = await signingKey("k1");
  const token = {
    kind: "token",
    version: "v2",
    metadata: { name: "gh" },
    spec: { roles: ["Bot"], join_method: "github", bot_name: "deployer", github: { static_jwks: jwksText(key), allow: [{ repository: "octo-org/octo-repo" }] } },
  };
  const bot = { kind: "bot", version: "v1", metadata: { name: "deployer" }, spec: { roles: [] } };
  const r = await h.call(h.admin, "POST", "/v1/resources", { resources: [bot, token] });
  expect(r.status).toBe(200);
});
afterEach(async () => {
  await h.close();
});

function join(idToken: unknown, remoteAddr = "10.0.0.9") {
  const { body } = keyRequest();
  return h.call({ conn: { remoteAddr } }, "POST", "/v1/join", { ...body, join_method: "github", token_name: "gh", id_token: idToken });
}

describe("OIDC join replay", () => {
  test("twenty concurrent joins with one ID token create exactly one bot instance", async () => {
    const idToken = await signIdToken(key, githubClaims(ISSUER, "test.example"), { now: h.clock.now() });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => join(idToken, `10.0.1.${i}`)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    for (const r of results.filter((r) => r.status !== 200)) {
      expect(r.status).toBe(403);
      expect(r.json.error.message).toContain("has already been used to join");
    }
    const instances = await h.call(h.admin, "GET", "/v1/bot-instances?bot=deployer");
    expect(instances.json).toHaveLength(1);
  });

  test("the record expires with the ID token: after it, the token is refused as expired, not joined", async () => {
    const idToken = await signIdToken(key, githubClaims(ISSUER, "test.example"), { now: h.clock.now(), ttlSeconds: 300 });
    expect((await join(idToken)).status).toBe(200);
    h.clock.advance(400_000);
    const again = await join(idToken);
    expect(again.status).toBe(401);
    expect(again.json.error.message).toContain("The GitHub Actions ID token expired at");
  });
});

describe("hostile ID tokens", () => {
  test("junk, truncated and re-encoded tokens are refused with 400/401/403, never a 500", async () => {
    const good = await signIdToken(key, githubClaims(ISSUER, "test.example"), { now: h.clock.now() });
    const [hdr, payload, sig] = good.split(".");
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `${hdr}.${Buffer.from(s).toString("base64url")}.${sig}`),
          fc.string().map((s) => `${Buffer.from(s).toString("base64url")}.${payload}.${sig}`),
          // strictly shorter: the whole token is a valid ID token, and would (rightly) join
          fc.integer({ min: 0, max: good.length - 1 }).map((n) => good.slice(0, n)),
          fc.jsonValue().map((v) => `${Buffer.from(JSON.stringify({ alg: "RS256", kid: "k1", crit: v })).toString("base64url")}.${payload}.${sig}`),
        ),
        async (idToken) => {
          const r = await join(idToken);
          expect([400, 401, 403, 429]).toContain(r.status);
        },
      ),
      { numRuns: 150 },
    );
  }, 60_000);
});

describe("a github token scoped to an enterprise (enterprise_slug)", () => {
  test("only ID tokens from the enterprise's issuer join: github.com's own issuer, with the same repository, is refused", async () => {
    const token = {
      kind: "token",
      version: "v2",
      metadata: { name: "gh-enterprise" },
      spec: { roles: ["Bot"], join_method: "github", bot_name: "deployer", github: { enterprise_slug: "octo-enterprise", static_jwks: jwksText(key), allow: [{ repository: "octo-org/octo-repo" }] } },
    };
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [token] })).status).toBe(200);
    const joinWith = async (idToken: string) => {
      const { body } = keyRequest();
      return h.call({ conn: { remoteAddr: "10.0.2.1" } }, "POST", "/v1/join", { ...body, join_method: "github", token_name: "gh-enterprise", id_token: idToken });
    };
    // a job of any other enterprise or public repository gets a token from the shared issuer
    const outsider = await joinWith(await signIdToken(key, githubClaims(ISSUER, "test.example"), { now: h.clock.now() }));
    expect(outsider.status).toBe(403);
    expect(outsider.json.error.message).toContain(`not by "${ISSUER}/octo-enterprise"`);
    const member = await joinWith(await signIdToken(key, githubClaims(`${ISSUER}/octo-enterprise`, "test.example"), { now: h.clock.now() }));
    expect(member.status).toBe(200);
  });
});
