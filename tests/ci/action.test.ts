/**
 * The GitHub Action and the GitLab CI template in simulated runners, against the
 * compiled auth service (serving install.sh and the binary), the HTTPS issuer doubles
 * and the GitHub runner's token endpoint double: `ctl bots add --join-method github`
 * makes the bot and token; the action installs machine-id through the pinned CA, joins
 * and exports the paths (step outputs, GITHUB_ENV, GITHUB_PATH); the template does the
 * same from $TBOT_GITLAB_JWT. PATH holds neither node nor bun: only what a runner has.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, symlinkSync, copyFileSync, mkdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { has, requirePrereqs } from "../_prereq.ts";
import { SCENARIOS } from "../_scenarios.ts";
import { ROOT, ensureBinary, sh, startAuth, tempDir, type AuthProcess } from "../e2e/_harness.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake_apiserver.ts";
import { githubClaims, gitlabClaims, signIdToken, startIssuer, startRunner, type FakeIssuer, type FakeRunner } from "../_support/oidc_issuer.ts";
import { runComposite, runGitlabJob } from "./_runner.ts";

const CLUSTER = "ci.example.com";
const ARCH = process.arch === "arm64" ? "arm64" : "x64";
const NAME = `machine-id-linux-${ARCH}`;
const ACTION = join(ROOT, ".github/actions/machine-id/action.yml");
const TEMPLATE = join(ROOT, "ci/gitlab/machine-id.gitlab-ci.yml");
const RUNNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

let work: ReturnType<typeof tempDir>;
let auth: AuthProcess;
let api: FakeApiServer;
let ghes: FakeIssuer;
let gitlab: FakeIssuer;
let runner: FakeRunner;
let pin = "";
let authCa = "";

beforeAll(async () => {
  requirePrereqs({ openssl: [has("openssl"), "apt-get install openssl"], curl: [has("curl"), "apt-get install curl"], sha256sum: [has("sha256sum"), "apt-get install coreutils"] });
  ensureBinary();
  work = tempDir("mid-ci-action-");
  const dist = join(work.path, "dist");
  mkdirSync(dist);
  symlinkSync(join(ROOT, "dist", NAME), join(dist, NAME));
  copyFileSync(join(ROOT, "dist", `${NAME}.sha256`), join(dist, `${NAME}.sha256`));
  [ghes, gitlab, api] = await Promise.all([startIssuer("/_services/token"), startIssuer(""), startFakeApiServer({ token: "cluster-sa-token" })]);
  await writeFile(join(work.path, "issuer-ca.pem"), ghes.caPem);
  await writeFile(join(work.path, "k8s-ca.crt"), api.caPem);
  await writeFile(join(work.path, "k8s-token"), "cluster-sa-token\n");
  await writeFile(
    join(work.path, "auth.yaml"),
    [
      "version: v1",
      `cluster_name: ${CLUSTER}`,
      "kubernetes_clusters:",
      "  - name: example-k8s-cluster",
      `    server: ${api.url}`,
      `    ca_path: ${join(work.path, "k8s-ca.crt")}`,
      `    token_path: ${join(work.path, "k8s-token")}`,
      "    labels: {env: prod}",
      "",
    ].join("\n"),
  );
  auth = await startAuth(join(work.path, "auth"), { args: ["-c", join(work.path, "auth.yaml"), "--dist-dir", dist], env: { NODE_EXTRA_CA_CERTS: join(work.path, "issuer-ca.pem") } });
  pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
  authCa = join(work.path, "auth-ca.pem");
  await writeFile(authCa, await auth.ctlOk("auth", "export", "--type", "tls-host"));
  await auth.ctlOk("create", "-f", join(SCENARIOS, "role-kube.yaml"));
  runner = await startRunner((aud) => signIdToken(ghes.keys[0]!, githubClaims(ghes.issuer, aud)));
}, 180_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  await Promise.all([ghes?.close(), gitlab?.close(), api?.close(), runner?.close()]);
  work?.[Symbol.dispose]();
});

describe("ctl bots add with a CI join method", () => {
  test("creates the bot and a github token, and prints the token resource and the workflow to paste", async () => {
    const out = await auth.ctlOk("bots", "add", "deployer", "--roles", "machine-id-kube-role", "--join-method", "github", "--repository", "octo-org/octo-repo", "--ref", "refs/heads/main", "--enterprise-server-host", ghes.host);
    expect(out).toContain(`Bot "deployer" created with github join token "deployer-github":`);
    expect(out).toContain(`  join_method: github\n  github:\n    enterprise_server_host: ${ghes.host}\n    allow:\n      - repository: octo-org/octo-repo\n        ref: refs/heads/main\n`);
    expect(out).toContain("Add this to .github/workflows/deploy.yml (docs/ci.md explains each line):\n\n");
    const snippet = parseYaml(out.split("explains each line):\n\n")[1]!);
    expect(snippet.jobs.deploy.permissions).toEqual({ "id-token": "write", contents: "read" });
    expect(snippet.jobs.deploy.steps[1]).toEqual({ id: "machine-id", uses: "./.github/actions/machine-id", with: { "auth-server": auth.addr, token: "deployer-github", "ca-pin": pin } });
    const token = parseYaml(await auth.ctlOk("get", "token/deployer-github", "--format", "yaml"));
    expect(token.spec.bot_name).toBe("deployer");
  }, 60_000);

  test("--enterprise-slug scopes the github token to one enterprise's issuer; with --enterprise-server-host it is refused", async () => {
    const out = await auth.ctlOk("bots", "add", "ent-deployer", "--join-method", "github", "--repository-owner", "octo-org", "--enterprise-slug", "octo-enterprise");
    expect(out).toContain(`  github:\n    enterprise_slug: octo-enterprise\n    allow:\n      - repository_owner: octo-org\n`);
    const both = await auth.ctl("bots", "add", "ent-deployer-2", "--join-method", "github", "--repository-owner", "octo-org", "--enterprise-slug", "octo-enterprise", "--enterprise-server-host", "ghes.example.com");
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain("cannot be combined with enterprise_server_host");
  }, 60_000);

  test("--join-method circleci makes an organization-scoped token and prints a CircleCI job that uses a context", async () => {
    const out = await auth.ctlOk("bots", "add", "cc-deployer", "--join-method", "circleci", "--organization-id", "9c1f3a2e-7b4d", "--project-id", "a3e1f0c2", "--context-id", "6c5b4a39");
    expect(out).toContain(`  circleci:\n    organization_id: 9c1f3a2e-7b4d\n    allow:\n      - project_id: a3e1f0c2\n        context_id: 6c5b4a39\n`);
    const snippet = parseYaml(out.split("explains each line):\n\n")[1]!);
    expect(snippet.workflows.deploy.jobs[0].deploy.context).toHaveLength(1);
    expect(snippet.jobs.deploy.steps[1].run.command).toContain(`--join-method circleci --token cc-deployer-circleci --auth-server ${auth.addr} --ca-pin ${pin} --storage memory://`);
    const missing = await auth.ctl("bots", "add", "cc2", "--join-method", "circleci", "--project-id", "a3e1f0c2");
    expect(missing.stderr).toContain("--join-method circleci needs --organization-id");
  }, 60_000);

  test("without --repository or --repository-owner it refuses: any repository could join", async () => {
    const r = await auth.ctl("bots", "add", "loose", "--join-method", "github", "--ref", "refs/heads/main");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--join-method github needs --repository or --repository-owner: without one, any repository on the service could join");
  }, 60_000);
});

describe("the GitHub Action in a simulated runner", () => {
  test("installs through the pinned CA, joins with github, and exports the identity and KUBECONFIG", async () => {
    const job = join(work.path, "job-1");
    mkdirSync(job);
    const r = await runComposite(ACTION, { "auth-server": auth.addr, token: "deployer-github", "ca-pin": pin, "kubernetes-cluster": "example-k8s-cluster", roles: "machine-id-kube-role," }, { PATH: RUNNER_PATH, HOME: job, ...runner.env }, job);
    if (r.code !== 0) console.error(r.log);
    expect(r.code).toBe(0);
    expect(runner.audiences.at(-1)).toBe(CLUSTER);
    const dir = r.outputs["identity-dir"]!;
    expect(dir).toBe(join(job, "runner-temp/machine-id/identity"));
    expect(sh(["openssl", "verify", "-CAfile", join(dir, "tlscacerts"), join(dir, "tlscert")]).stdout).toContain(": OK");
    expect(readFileSync(r.outputs["ssh-config"]!, "utf8")).toContain("CertificateFile");
    expect(existsSync(r.outputs["identity-file"]!)).toBe(true);
    expect(r.githubEnv).toEqual({ MACHINE_ID_IDENTITY_DIR: dir, KUBECONFIG: r.outputs.kubeconfig! });
    const kubeconfig = parseYaml(readFileSync(r.githubEnv.KUBECONFIG!, "utf8"));
    expect(kubeconfig["current-context"]).toBe("example-k8s-cluster");
    expect(existsSync(join(r.githubPath[0]!, "machine-id"))).toBe(true);
    expect(readFileSync(join(job, "runner-temp/machine-id/machine-id.yaml"), "utf8")).toContain(`    roles: ["machine-id-kube-role"]\n`);
  }, 180_000);

  test("a CA that does not match ca-pin stops the install before anything is downloaded", async () => {
    const job = join(work.path, "job-2");
    mkdirSync(job);
    const wrong = `sha256:${"0".repeat(64)}`;
    const r = await runComposite(ACTION, { "auth-server": auth.addr, token: "deployer-github", "ca-pin": wrong }, { PATH: RUNNER_PATH, HOME: job, ...runner.env }, job);
    expect(r.code).toBe(1);
    expect(r.log).toContain(`::error::The auth service at ${auth.addr} presents CA ${pin}, not ca-pin ${wrong}`);
    expect(r.githubPath).toEqual([]);
  }, 60_000);

  test("download-url with its checksum installs that file; a wrong checksum installs nothing", async () => {
    const url = `https://${auth.addr}/downloads/${NAME}`;
    const sum = readFileSync(join(ROOT, "dist", `${NAME}.sha256`), "utf8").split(/\s/)[0]!;
    const job = join(work.path, "job-3");
    mkdirSync(job);
    // the runner trusts a download host through its system roots; here the auth service's CA plays that part
    const env = { PATH: RUNNER_PATH, HOME: job, CURL_CA_BUNDLE: authCa, ...runner.env };
    const bad = await runComposite(ACTION, { "auth-server": auth.addr, token: "deployer-github", "ca-pin": pin, "download-url": url, "download-sha256": "f".repeat(64) }, env, job);
    expect(bad.code).toBe(1);
    expect(bad.log).toContain(`::error::${url} has SHA-256 ${sum}, not ${"f".repeat(64)}: not installed`);
    expect(existsSync(join(job, "runner-temp/machine-id/bin/machine-id"))).toBe(false);
    const good = await runComposite(ACTION, { "auth-server": auth.addr, token: "deployer-github", "ca-pin": pin, "download-url": url, "download-sha256": sum }, env, job);
    if (good.code !== 0) console.error(good.log);
    expect(good.code).toBe(0);
    expect(good.githubPath).toEqual([join(job, "runner-temp/machine-id/bin")]);
    expect(existsSync(join(good.outputs["identity-dir"]!, "tlscert"))).toBe(true);
  }, 180_000);

  test("a newline in an input is refused before anything is written, not turned into another output", async () => {
    const job = join(work.path, "job-4");
    mkdirSync(job);
    const cluster = `k8s"\n  - type: identity\n    destination: {type: directory, path: "${join(job, "evil")}"}\n  - type: identity\n    x: "y`;
    const r = await runComposite(ACTION, { "auth-server": auth.addr, token: "deployer-github", "ca-pin": pin, "kubernetes-cluster": cluster }, { PATH: RUNNER_PATH, HOME: job, ...runner.env }, job);
    expect(r.code).toBe(1);
    expect(r.log).toContain("::error::kubernetes-cluster must not contain a newline or other control character");
    expect(existsSync(join(job, "runner-temp/machine-id/machine-id.yaml"))).toBe(false);
    expect(existsSync(join(job, "evil"))).toBe(false);
  }, 180_000);
});

describe("the GitLab CI template in a simulated runner", () => {
  test("a job extending .machine-id joins with $TBOT_GITLAB_JWT and finds its identity and KUBECONFIG", async () => {
    const made = await auth.ctlOk("bots", "add", "gl-deployer", "--roles", "machine-id-kube-role", "--join-method", "gitlab", "--project-path", "my-group/*", "--gitlab-domain", gitlab.host);
    const snippet = parseYaml(made.split("explains each line):\n\n")[1]!);
    expect(snippet.deploy.id_tokens).toEqual({ TBOT_GITLAB_JWT: { aud: CLUSTER } });
    expect(snippet.deploy.variables).toEqual({ MACHINE_ID_AUTH_SERVER: auth.addr, MACHINE_ID_TOKEN: "gl-deployer-gitlab", MACHINE_ID_CA_PIN: pin });
    const job = join(work.path, "gl-job");
    mkdirSync(job);
    const jwt = await signIdToken(gitlab.keys[0]!, gitlabClaims(gitlab.issuer, CLUSTER));
    const r = await runGitlabJob(
      TEMPLATE,
      ".machine-id",
      { ...snippet.deploy.variables, MACHINE_ID_CLUSTER_NAME: CLUSTER, MACHINE_ID_KUBERNETES_CLUSTER: "example-k8s-cluster" },
      { PATH: RUNNER_PATH, HOME: job, CI_BUILDS_DIR: job, CI_JOB_ID: "4242", TBOT_GITLAB_JWT: jwt },
      ['openssl verify -CAfile "$MACHINE_ID_IDENTITY_DIR/tlscacerts" "$MACHINE_ID_IDENTITY_DIR/tlscert"', 'echo "KUBECONFIG=$KUBECONFIG"', "command -v machine-id"],
    );
    if (r.code !== 0) console.error(r.stdout, r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${join(job, "machine-id-4242/identity/tlscert")}: OK`);
    expect(r.stdout).toContain(`KUBECONFIG=${join(job, "machine-id-4242/kubernetes/kubeconfig.yaml")}`);
    expect(r.stdout).toContain(join(job, "machine-id-4242/install/usr/bin/machine-id"));
  }, 180_000);

  // pipeline variables are data: quotes, "]" and flow syntax stay inside the values they
  // are written into; a newline (which could start a new output) is refused
  const hostileJob = async (id: string, variables: Record<string, string>) => {
    const job = join(work.path, `gl-job-${id}`);
    mkdirSync(job);
    const jwt = await signIdToken(gitlab.keys[0]!, gitlabClaims(gitlab.issuer, CLUSTER));
    const base = { MACHINE_ID_AUTH_SERVER: auth.addr, MACHINE_ID_TOKEN: "gl-deployer-gitlab", MACHINE_ID_CA_PIN: pin, MACHINE_ID_CLUSTER_NAME: CLUSTER };
    const r = await runGitlabJob(TEMPLATE, ".machine-id", { ...base, ...variables }, { PATH: RUNNER_PATH, HOME: job, CI_BUILDS_DIR: job, CI_JOB_ID: id, TBOT_GITLAB_JWT: jwt }, []);
    const config = join(job, `machine-id-${id}/machine-id.yaml`);
    return { r, job, config: existsSync(config) ? parseYaml(readFileSync(config, "utf8")) : undefined };
  };

  test("quotes, ] and flow syntax in MACHINE_ID_ROLES and MACHINE_ID_KUBERNETES_CLUSTER stay in their values", async () => {
    const cluster = `k8s", roles: ["editor"], x: "\\`;
    const { config } = await hostileJob("4243", { MACHINE_ID_ROLES: `machine-id-kube-role, x"], {y: z}`, MACHINE_ID_KUBERNETES_CLUSTER: cluster });
    const roles = ["machine-id-kube-role", `x"]`, "{y: z}"];
    expect(config.outputs).toHaveLength(2);
    expect(config.outputs[0].roles).toEqual(roles);
    expect(config.outputs[1]).toEqual({ type: "kubernetes", kubernetes_cluster: cluster, destination: config.outputs[1].destination, roles });
  }, 180_000);

  test("a newline in MACHINE_ID_KUBERNETES_CLUSTER is refused, not turned into another output", async () => {
    const { r, job, config } = await hostileJob("4244", { MACHINE_ID_KUBERNETES_CLUSTER: `k8s"\n  - type: identity\n    destination: {type: directory, path: "${join(work.path, "gl-job-4244/evil")}"}\n  - type: identity\n    x: "y` });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("MACHINE_ID_KUBERNETES_CLUSTER must not contain a newline or other control character");
    expect(config?.outputs?.length ?? 0).toBeLessThanOrEqual(2);
    expect(existsSync(join(job, "evil"))).toBe(false);
  }, 180_000);
});
