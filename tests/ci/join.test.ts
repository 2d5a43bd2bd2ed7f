/**
 * CI joins end to end with the compiled executable: the auth service verifies ID
 * tokens from issuer doubles over HTTPS (trusted through $NODE_EXTRA_CA_CERTS), and the
 * agent joins as a job would, `start --oneshot` with memory storage: GitHub Actions
 * through the runner's token endpoint double, GitLab from $TBOT_GITLAB_JWT, CircleCI from
 * $CIRCLE_OIDC_TOKEN_V2. Then the attacks: wrong audience, expired, wrong issuer, other
 * repository, ref not allowed, unknown kid (one refetch), alg none and HS256 with the
 * public key, a JWKS that hangs or answers 1 GiB, and a replayed ID token.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createPublicKey } from "node:crypto";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { ensureBinary, run, sh, startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";
import {
  circleciClaims,
  githubClaims,
  gitlabClaims,
  hmacToken,
  jwksText,
  signIdToken,
  signingKey,
  startIssuer,
  startRunner,
  unsignedToken,
  type FakeIssuer,
  type FakeRunner,
} from "../_support/oidc_issuer.ts";

const CLUSTER = "ci.example.com";
const ORG = "9c1f3a2e-7b4d-4e6a-8f0b-2d3c4e5f6a7b";

let work: ReturnType<typeof tempDir>;
let auth: AuthProcess;
let pin = "";
let ghes: FakeIssuer;
let gitlabIssuer: FakeIssuer;
let hanging: FakeIssuer;
let huge: FakeIssuer;
let runner: FakeRunner;
/** What the runner double mints next (claims for an audience). */
let nextGithubToken: (audience: string) => Promise<string>;

async function events(type: string): Promise<{ type: string; fields: Record<string, any> }[]> {
  return JSON.parse(await auth.ctlOk("events", "ls", "--type", type, "--format", "json"));
}

async function create(yaml: string): Promise<void> {
  const f = join(work.path, `r-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(f, yaml);
  await auth.ctlOk("create", "-f", f, "--force");
}

/** A job's agent config: memory storage, one identity output in `out`. */
async function jobConfig(method: string, token: string, out: string, extra = ""): Promise<string> {
  const f = join(work.path, `tbot-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(
    f,
    `version: v2\nauth_server: ${auth.addr}\nonboarding:\n  join_method: ${method}\n  token: ${token}\n  ca_pins: ["${pin}"]\n${extra}storage:\n  type: memory\noutputs:\n  - type: identity\n    destination:\n      type: directory\n      path: ${out}\n`,
  );
  return f;
}

/** Runs the agent once as a CI job with `env`; returns the result. */
async function job(method: string, token: string, env: Record<string, string>, extra = "") {
  const out = join(work.path, `out-${Math.random().toString(36).slice(2)}`);
  const cfg = await jobConfig(method, token, out, extra);
  const r = await run(["start", "-c", cfg, "--oneshot"], { env: { ACTIONS_ID_TOKEN_REQUEST_URL: "", ACTIONS_ID_TOKEN_REQUEST_TOKEN: "", TBOT_GITLAB_JWT: "", CIRCLE_OIDC_TOKEN_V2: "", CIRCLE_OIDC_TOKEN: "", ...env } });
  return { ...r, out };
}

beforeAll(async () => {
  ensureBinary();
  work = tempDir("mid-ci-e2e-");
  [ghes, gitlabIssuer, hanging, huge] = await Promise.all([startIssuer("/_services/token"), startIssuer(""), startIssuer("/_services/token", "hang"), startIssuer("/_services/token", "huge")]);
  const caFile = join(work.path, "issuer-ca.pem");
  await writeFile(caFile, ghes.caPem);
  // these tests make more refused joins from 127.0.0.1 than the default failed-join burst
  // (10); they test the join methods, not the limiter, so the service allows more
  await writeFile(join(work.path, "auth.yaml"), `version: v1\ncluster_name: ${CLUSTER}\nlimits:\n  failed_join_burst: 1000\n`);
  auth = await startAuth(join(work.path, "auth"), {
    args: ["-c", join(work.path, "auth.yaml")],
    env: { NODE_EXTRA_CA_CERTS: caFile, MACHINE_ID_OIDC_FETCH_TIMEOUT_MS: "3000" },
  });
  pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
  await create(`kind: bot\nversion: v1\nmetadata:\n  name: deployer\nspec:\n  roles: []\n`);
  nextGithubToken = (aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud));
  runner = await startRunner((aud) => nextGithubToken(aud));
  const ghToken = (name: string, host: string, allow: string) =>
    `kind: token\nversion: v2\nmetadata:\n  name: ${name}\nspec:\n  roles: [Bot]\n  join_method: github\n  bot_name: deployer\n  github:\n    enterprise_server_host: "${host}"\n    allow:\n${allow}`;
  await create(ghToken("github-deployer", ghes.host, `      - repository: octo-org/octo-repo\n        ref: refs/heads/main\n      - repository: octo-org/octo-repo\n        environment: production\n`));
  await create(ghToken("github-hang", hanging.host, `      - repository: octo-org/octo-repo\n`));
  await create(ghToken("github-huge", huge.host, `      - repository: octo-org/octo-repo\n`));
  await create(
    `kind: token\nversion: v2\nmetadata:\n  name: gitlab-deployer\nspec:\n  roles: [Bot]\n  join_method: gitlab\n  bot_name: deployer\n  gitlab:\n    domain: "${gitlabIssuer.host}"\n    allow:\n      - project_path: my-group/*\n        ref: main\n        ref_protected: true\n`,
  );
}, 180_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  await Promise.all([ghes, gitlabIssuer, hanging, huge].map((i) => i?.close()));
  await runner?.close();
  work?.[Symbol.dispose]();
});

describe("GitHub Actions", () => {
  test("a workflow job joins with the runner's ID token for the cluster's audience; openssl verifies the identity", async () => {
    const before = ghes.jwksRequests;
    const r = await job("github", "github-deployer", runner.env);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(runner.audiences.at(-1)).toBe(CLUSTER);
    expect(sh(["openssl", "verify", "-CAfile", join(r.out, "tlscacerts"), join(r.out, "tlscert")]).stdout).toContain(": OK");
    expect(sh(["openssl", "x509", "-noout", "-subject", "-in", join(r.out, "tlscert")]).stdout).toBe(`subject=O = ${CLUSTER}, CN = bot-deployer\n`);
    expect(ghes.jwksRequests - before).toBe(1);
    const joined = (await events("bot.join")).filter((e) => e.fields.join_method === "github");
    expect(joined.at(-1)!.fields).toMatchObject({ bot: "deployer", token: tokenFingerprint("github-deployer"), repository: "octo-org/octo-repo", workflow: "deploy", ref: "refs/heads/main", run_id: "8123456789", allow_rule: 0 });
    // a second job uses the cached JWKS
    expect((await job("github", "github-deployer", runner.env)).code).toBe(0);
    expect(ghes.jwksRequests - before).toBe(1);
  }, 120_000);

  test("without the runner's variables the agent says to add `permissions: id-token: write`", async () => {
    const r = await job("github", "github-deployer", {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`give the job "permissions: id-token: write" in the workflow`);
    const refused = await job("github", "github-deployer", { ...runner.env, ACTIONS_ID_TOKEN_REQUEST_TOKEN: "stale" });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`the runner answered HTTP 403; give the job "permissions: id-token: write"`);
  }, 60_000);

  test("refused and audited: wrong audience, expired, wrong issuer, other repository, ref not allowed, alg none, HS256 with the public key", async () => {
    const key = ghes.keys[0]!;
    const pub = createPublicKey({ key: key.publicJwk as any, format: "jwk" }).export({ type: "spki", format: "pem" }) as string;
    const claims = (o: Partial<Record<string, string>> = {}) => githubClaims(ghes.issuer, CLUSTER, o);
    const cases: [string, () => Promise<string>, string, string][] = [
      ["wrong audience", () => signIdToken(key, githubClaims(ghes.issuer, "sts.amazonaws.com")), `is for audience "sts.amazonaws.com", not "${CLUSTER}"`, `audience "sts.amazonaws.com" is not "${CLUSTER}"`],
      ["expired", () => signIdToken(key, claims(), { now: new Date(Date.now() - 3_600_000) }), "The GitHub Actions ID token expired at", "ID token expired"],
      ["wrong issuer", () => signIdToken(key, { ...claims(), iss: "https://token.actions.githubusercontent.com" }), `was issued by "https://token.actions.githubusercontent.com", not by "${ghes.issuer}"`, `issuer "https://token.actions.githubusercontent.com" is not "${ghes.issuer}"`],
      ["other repository", () => signIdToken(key, claims({ repository: "mallory/octo-repo" })), `matches none of the 2 allow rules of join token "github-deployer"`, "claims match no allow rule"],
      ["ref not allowed", () => signIdToken(key, claims({ ref: "refs/heads/feature" })), `ref="refs/heads/feature"`, "claims match no allow rule"],
      ["alg none", async () => unsignedToken(claims()), `signed with algorithm "none", which the auth service does not accept`, `signature algorithm "none" not accepted`],
      ["HS256 keyed with the issuer's public key", () => hmacToken(new TextEncoder().encode(pub), claims(), key.kid), `signed with algorithm "HS256"`, `signature algorithm "HS256" not accepted`],
    ];
    const before = (await events("join.failed")).length;
    for (const [name, mint, message] of cases) {
      nextGithubToken = () => mint();
      const r = await job("github", "github-deployer", runner.env);
      expect(`${name}: ${r.code}`).toBe(`${name}: 1`);
      expect(r.stderr).toContain(message);
    }
    const failed = (await events("join.failed")).slice(before);
    expect(failed.map((e) => (e.fields.reason as string).slice(0, cases[failed.indexOf(e)]![3].length))).toEqual(cases.map((c) => c[3]));
    for (const e of failed) expect(e.fields).toMatchObject({ join_method: "github", token: tokenFingerprint("github-deployer"), bot: "deployer", remote_addr: "127.0.0.1" });
    nextGithubToken = (aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud));
  }, 240_000);

  test("a rotated key is picked up with one refetch", async () => {
    const fresh = await signingKey("rotated-key");
    ghes.keys = [fresh, ...ghes.keys];
    const before = ghes.jwksRequests;
    nextGithubToken = (aud) => signIdToken(fresh, githubClaims(ghes.issuer, aud));
    const r = await job("github", "github-deployer", runner.env);
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(ghes.jwksRequests - before).toBe(1);
    nextGithubToken = (aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud));
  }, 60_000);

  test("the same ID token joins once: presented again it is refused (replay)", async () => {
    const idToken = await signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, CLUSTER));
    nextGithubToken = async () => idToken;
    expect((await job("github", "github-deployer", runner.env)).code).toBe(0);
    const again = await job("github", "github-deployer", runner.env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("This GitHub Actions ID token has already been used to join");
    expect((await events("join.failed")).at(-1)!.fields.reason).toBe("ID token replayed");
    nextGithubToken = (aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud));
  }, 60_000);

  test("a JWKS endpoint that never answers fails the join after the time limit with a clear error, not a 500", async () => {
    nextGithubToken = (aud) => signIdToken(hanging.keys[0]!, githubClaims(hanging.issuer, aud));
    const r = await job("github", "github-hang", runner.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot check the GitHub Actions ID token: Cannot fetch the JWKS of issuer "${hanging.issuer}"`);
    expect(r.stderr).toContain("no complete answer within 3000 ms");
    expect(r.stderr).not.toContain("Internal error");
    expect(auth.logs()).not.toContain("Unhandled error");
  }, 60_000);

  test("a JWKS endpoint answering 1 GiB is cut off at 1 MiB with a clear error", async () => {
    nextGithubToken = (aud) => signIdToken(huge.keys[0]!, githubClaims(huge.issuer, aud));
    const r = await job("github", "github-huge", runner.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot fetch the JWKS of issuer "${huge.issuer}"`);
    expect(r.stderr).toContain("over the limit of 1048576 bytes");
    expect(auth.logs()).not.toContain("Unhandled error");
    nextGithubToken = (aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud));
  }, 60_000);
});

describe("GitLab CI", () => {
  test("a pipeline job joins with the ID token in $TBOT_GITLAB_JWT, and with a variable named in the config", async () => {
    const jwt = await signIdToken(gitlabIssuer.keys[0]!, gitlabClaims(gitlabIssuer.issuer, CLUSTER));
    const r = await job("gitlab", "gitlab-deployer", { TBOT_GITLAB_JWT: jwt });
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(sh(["openssl", "verify", "-CAfile", join(r.out, "tlscacerts"), join(r.out, "tlscert")]).stdout).toContain(": OK");
    const joined = (await events("bot.join")).filter((e) => e.fields.join_method === "gitlab");
    expect(joined.at(-1)!.fields).toMatchObject({ bot: "deployer", project_path: "my-group/my-project", ref: "main", pipeline_source: "push" });
    const jwt2 = await signIdToken(gitlabIssuer.keys[0]!, gitlabClaims(gitlabIssuer.issuer, CLUSTER));
    const custom = await job("gitlab", "gitlab-deployer", { MY_ID_TOKEN: jwt2 }, "  gitlab:\n    token_env_var_name: MY_ID_TOKEN\n");
    expect(custom.code).toBe(0);
  }, 120_000);

  test("without the variable the agent says to add id_tokens with the cluster as audience", async () => {
    const r = await job("gitlab", "gitlab-deployer", {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`$TBOT_GITLAB_JWT is not set; add to the job "id_tokens: {TBOT_GITLAB_JWT: {aud: ${CLUSTER}}}"`);
  }, 60_000);

  test("refused: unprotected ref, project outside the glob, wrong audience", async () => {
    const k = gitlabIssuer.keys[0]!;
    const cases: [Record<string, string>, string, string][] = [
      [{ ref_protected: "false" }, CLUSTER, `matches none of the 1 allow rules`],
      [{ project_path: "other-group/my-project" }, CLUSTER, `project_path="other-group/my-project"`],
      [{}, "https://gitlab.com", `set "aud: ${CLUSTER}" (the cluster name) under the job's id_tokens`],
    ];
    for (const [o, aud, message] of cases) {
      const r = await job("gitlab", "gitlab-deployer", { TBOT_GITLAB_JWT: await signIdToken(k, gitlabClaims(gitlabIssuer.issuer, aud, o)) });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    }
  }, 120_000);

  test("an unknown kid makes exactly one refetch, and a second one within a minute none; both refused", async () => {
    const stranger = await signingKey("not-published");
    const before = gitlabIssuer.jwksRequests;
    for (let i = 0; i < 2; i++) {
      const r = await job("gitlab", "gitlab-deployer", { TBOT_GITLAB_JWT: await signIdToken(stranger, gitlabClaims(gitlabIssuer.issuer, CLUSTER)) });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`The GitLab CI ID token is not signed by a key of issuer "${gitlabIssuer.issuer}"`);
      expect(gitlabIssuer.jwksRequests - before).toBe(1);
    }
  }, 120_000);
});

describe("CircleCI", () => {
  test("a job joins with $CIRCLE_OIDC_TOKEN_V2 (organization audience, static JWKS, no jti: sub and iat make it single-use)", async () => {
    const key = await signingKey("circleci-key");
    await create(
      `kind: token\nversion: v2\nmetadata:\n  name: circleci-deployer\nspec:\n  roles: [Bot]\n  join_method: circleci\n  bot_name: deployer\n  circleci:\n    organization_id: ${ORG}\n    static_jwks: '${jwksText(key)}'\n    allow:\n      - project_id: a3e1f0c2-5b7d-4e8f-9a0b-1c2d3e4f5a6b\n        context_id: 6c5b4a39-2817-4605-9f8e-7d6c5b4a3928\n`,
    );
    const jwt = await signIdToken(key, circleciClaims(ORG));
    const r = await job("circleci", "circleci-deployer", { CIRCLE_OIDC_TOKEN_V2: jwt });
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(await readFile(join(r.out, "tlscert"), "utf8")).toContain("BEGIN CERTIFICATE");
    const joined = (await events("bot.join")).filter((e) => e.fields.join_method === "circleci");
    expect(joined.at(-1)!.fields).toMatchObject({ project_id: "a3e1f0c2-5b7d-4e8f-9a0b-1c2d3e4f5a6b", vcs_origin: "github.com/octo-org/octo-repo" });
    const again = await job("circleci", "circleci-deployer", { CIRCLE_OIDC_TOKEN_V2: jwt });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already been used to join");
    const otherContext = await job("circleci", "circleci-deployer", { CIRCLE_OIDC_TOKEN_V2: await signIdToken(key, circleciClaims(ORG, { contextIds: ["11111111-2222-3333-4444-555555555555"] })) });
    expect(otherContext.code).toBe(1);
    expect(otherContext.stderr).toContain("matches none of the 1 allow rules");
    const none = await job("circleci", "circleci-deployer", {});
    expect(none.stderr).toContain(`$CIRCLE_OIDC_TOKEN_V2 is not set; CircleCI sets it only in jobs that use a context`);
  }, 120_000);
});
