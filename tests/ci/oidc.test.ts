/**
 * The OIDC verifier's parts in process: CI rule globs, Cache-Control lifetimes, the
 * issuer key cache (discovery, caching, one refetch a minute for an unknown kid), and
 * the bounds on fetches, against the HTTPS issuer double.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { jwtVerify } from "jose";
import { cacheLifetimeMs, ciGlobMatch, IssuerKeys } from "../../src/auth/oidc/index.ts";
import { tempDir } from "../e2e/_harness.ts";
import { signIdToken, signingKey, startIssuer, type FakeIssuer } from "../_support/oidc_issuer.ts";

describe("ciGlobMatch()", () => {
  const cases: [string, string, boolean][] = [
    ["my-group/*", "my-group/my-project", true],
    ["my-group/*", "my-group/sub/project", true],
    ["my-group/*", "other/my-project", false],
    ["main", "main", true],
    ["main", "main2", false],
    ["release-?", "release-1", true],
    ["release-?", "release-10", false],
    ["*", "", true],
    ["a*b*c", "abbbc", true],
    ["a*b*c", "acb", false],
    ["^main$", "main", false], // no regular expressions: literal characters
    ["a.c", "abc", false],
  ];
  for (const [pattern, value, want] of cases) {
    test(`"${pattern}" ${want ? "matches" : "does not match"} "${value}"`, () => expect(ciGlobMatch(pattern, value)).toBe(want));
  }
  test("a pathological pattern stays fast", () => {
    const start = performance.now();
    expect(ciGlobMatch("*a*a*a*a*a*a*a*a*b", "a".repeat(5000))).toBe(false);
    expect(performance.now() - start).toBeLessThan(5000);
  });
});

describe("cacheLifetimeMs()", () => {
  test("max-age is honoured within a minute and a day; no header is an hour; no-store is the minimum", () => {
    expect(cacheLifetimeMs("public, max-age=300")).toBe(300_000);
    expect(cacheLifetimeMs("max-age=5")).toBe(60_000);
    expect(cacheLifetimeMs("max-age=999999")).toBe(86_400_000);
    expect(cacheLifetimeMs(null)).toBe(3_600_000);
    expect(cacheLifetimeMs("no-store")).toBe(60_000);
  });
});

describe("IssuerKeys", () => {
  let issuer: FakeIssuer;
  let dir: ReturnType<typeof tempDir>;
  beforeAll(async () => {
    issuer = await startIssuer("/_services/token");
    dir = tempDir("mid-oidc-");
    writeFileSync(join(dir.path, "ca.pem"), issuer.caPem);
  });
  afterAll(async () => {
    await issuer?.close();
    dir?.[Symbol.dispose]();
  });

  test("fetches discovery and JWKS once, serves from cache, refetches once a minute for an unknown kid", async () => {
    // Bun reads $NODE_EXTRA_CA_CERTS when it starts, so the checks run in a child process
    // started with it (as the auth service is), on a clock the script moves.
    const script = `
      import { IssuerKeys } from "${join(import.meta.dir, "../../src/auth/oidc/index.ts")}";
      import { jwtVerify } from "jose";
      const [issuer, good, unknown] = process.argv.slice(2);
      let now = Date.now();
      const keys = new IssuerKeys(10_000);
      const r = keys.resolver(issuer, () => now);
      const out = [];
      out.push((await jwtVerify(good, r, { issuer })).payload.sub);
      out.push((await jwtVerify(good, r, { issuer })).payload.sub);
      for (let i = 0; i < 2; i++) out.push(await jwtVerify(unknown, r, { issuer }).then(() => "accepted", (e) => e.code));
      now += 61_000;
      out.push(await jwtVerify(unknown, r, { issuer }).then(() => "accepted", (e) => e.code));
      console.log(JSON.stringify(out));
    `;
    const key = issuer.keys[0]!;
    const good = await signIdToken(key, { iss: issuer.issuer, sub: "ok" });
    const unknown = await signIdToken(await signingKey("unknown"), { iss: issuer.issuer, sub: "x" });
    const scriptFile = join(dir.path, "probe.ts");
    writeFileSync(scriptFile, script);
    const p = Bun.spawn([process.execPath, scriptFile, issuer.issuer, good, unknown], { env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir.path, "ca.pem") }, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual(["ok", "ok", "ERR_JWKS_NO_MATCHING_KEY", "ERR_JWKS_NO_MATCHING_KEY", "ERR_JWKS_NO_MATCHING_KEY"]);
    // one fetch to fill the cache, one refetch for the first unknown kid, one more after the minute
    expect(issuer.jwksRequests).toBe(3);
    expect(issuer.discoveryRequests).toBe(3);
  }, 60_000);

  test("an issuer whose certificate is not trusted is a CONNECTION_PROBLEM naming the URL", async () => {
    const keys = new IssuerKeys(10_000);
    const token = await signIdToken(issuer.keys[0]!, { iss: issuer.issuer });
    const e = (await jwtVerify(token, keys.resolver(issuer.issuer, Date.now), { issuer: issuer.issuer }).catch((x) => x)) as { code: string; message: string };
    expect(e.code).toBe("CONNECTION_PROBLEM");
    expect(e.message).toContain(`Cannot fetch the OIDC discovery document of issuer "${issuer.issuer}" from "${issuer.issuer}/.well-known/openid-configuration"`);
  });

  test("a plain-http issuer is refused before any request", async () => {
    const keys = new IssuerKeys(10_000);
    const token = await signIdToken(issuer.keys[0]!, { iss: "http://127.0.0.1:1" });
    const e = (await jwtVerify(token, keys.resolver("http://127.0.0.1:1", Date.now)).catch((x) => x)) as { message: string };
    expect(e.message).toContain(`is not an https:// URL`);
  });
});
