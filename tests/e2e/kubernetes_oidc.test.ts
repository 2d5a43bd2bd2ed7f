/**
 * The `kubernetes` join method's `oidc` type with the compiled executable: the auth
 * service finds the cluster's keys through its service-account issuer (discovery, then
 * the JWKS), as for a cluster whose issuer is public (EKS, GKE, AKS) while the auth
 * service runs elsewhere. The issuer is the HTTPS double of the CI tests, trusted
 * through $NODE_EXTRA_CA_CERTS; the pod is the agent with $KUBERNETES_TOKEN_PATH.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { tokenFingerprint } from "../../src/resources/index.ts";
import { signIdToken, signingKey, startIssuer, type FakeIssuer, type SigningKey } from "../_support/oidc_issuer.ts";
import { ensureBinary, run, sh, startAuth, tempDir, type AuthProcess } from "./_harness.ts";

const CLUSTER = "example.teleport.sh";

let work: ReturnType<typeof tempDir>;
let issuer: FakeIssuer;
let auth: AuthProcess;
let pin = "";
let unreachable = "";

/** A projected service-account token as the cluster's API server signs it, for default:tbot. */
function saToken(key: SigningKey, o: { iss?: string; serviceAccount?: string } = {}): Promise<string> {
  const sa = o.serviceAccount ?? "tbot";
  return signIdToken(key, {
    iss: o.iss ?? issuer.issuer,
    sub: `system:serviceaccount:default:${sa}`,
    aud: [CLUSTER],
    "kubernetes.io": { namespace: "default", pod: { name: "tbot-5d9c7b9f4-abcde", uid: "1" }, serviceaccount: { name: sa, uid: "2" } },
  }, { ttlSeconds: 600 });
}

/** `start --oneshot` in a pod that joins with `jwt` as its projected token through join token `tokenName`. */
async function podJoin(tokenName: string, jwt: string) {
  const dir = join(work.path, `pod-${Math.random().toString(36).slice(2)}`);
  const tokenFile = `${dir}-token`;
  await writeFile(tokenFile, jwt);
  const r = await run(
    ["start", "--oneshot", "--auth-server", auth.addr, "--ca-pin", pin, "--join-method", "kubernetes", "--token", tokenName, "--storage", "memory://", "--destination-dir", dir],
    { env: { KUBERNETES_TOKEN_PATH: tokenFile } },
  );
  return { ...r, dir };
}

const oidcToken = (name: string, issuerUrl: string) =>
  `kind: token\nversion: v2\nmetadata:\n  name: ${name}\nspec:\n  roles: [Bot]\n  bot_name: example\n  join_method: kubernetes\n  kubernetes:\n    type: oidc\n    oidc:\n      issuer: ${issuerUrl}\n    allow:\n      - service_account: "default:tbot"\n`;

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

beforeAll(async () => {
  ensureBinary();
  work = tempDir("mid-kube-oidc-");
  issuer = await startIssuer("/id/EXAMPLED539D4633E53DE1B71EXAMPLE");
  await writeFile(join(work.path, "issuer-ca.pem"), issuer.caPem);
  await writeFile(join(work.path, "auth.yaml"), `version: v1\ncluster_name: ${CLUSTER}\n`);
  auth = await startAuth(join(work.path, "auth"), {
    args: ["-c", join(work.path, "auth.yaml")],
    env: { NODE_EXTRA_CA_CERTS: join(work.path, "issuer-ca.pem"), MACHINE_ID_OIDC_FETCH_TIMEOUT_MS: "5000" },
  });
  pin = /CA pin\s+(sha256:[0-9a-f]{64})/.exec(await auth.ctlOk("status"))![1]!;
  unreachable = `https://127.0.0.1:${await closedPort()}`;
  const resources = join(work.path, "resources.yaml");
  await writeFile(resources, `kind: bot\nversion: v1\nmetadata:\n  name: example\nspec:\n  roles: []\n---\n${oidcToken("k8s-oidc", issuer.issuer)}---\n${oidcToken("k8s-unreachable", unreachable)}`);
  await auth.ctlOk("create", "-f", resources);
}, 120_000);

afterAll(async () => {
  await auth?.[Symbol.asyncDispose]();
  await issuer?.close();
  work?.[Symbol.dispose]();
});

describe("kubernetes join, type oidc", () => {
  test("a pod joins with a token signed by a key its cluster's issuer publishes; discovery and JWKS are fetched once and cached", async () => {
    const first = await podJoin("k8s-oidc", await saToken(issuer.keys[0]!));
    if (first.code !== 0) console.error(first.stderr);
    expect(first.code).toBe(0);
    expect(sh(["openssl", "verify", "-CAfile", join(first.dir, "tlscacerts"), join(first.dir, "tlscert")]).stdout).toContain(": OK");
    const second = await podJoin("k8s-oidc", await saToken(issuer.keys[0]!));
    expect(second.code).toBe(0);
    expect({ discovery: issuer.discoveryRequests, jwks: issuer.jwksRequests }).toEqual({ discovery: 1, jwks: 1 });
    const joined = JSON.parse(await auth.ctlOk("events", "ls", "--type", "bot.join", "--format", "json")) as { fields: Record<string, string> }[];
    expect(joined.at(-1)!.fields).toMatchObject({ bot: "example", join_method: "kubernetes", token: tokenFingerprint("k8s-oidc"), service_account: "default:tbot" });
  }, 60_000);

  test("after the cluster rotates its signing key, the unknown kid makes one refetch and the pod joins", async () => {
    issuer.keys.unshift(await signingKey("rotated-key"));
    const r = await podJoin("k8s-oidc", await saToken(issuer.keys[0]!));
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(issuer.jwksRequests).toBe(2);
  }, 60_000);

  test("a key the issuer does not publish is refused, without another fetch within the minute", async () => {
    const r = await podJoin("k8s-oidc", await saToken(await signingKey("stolen-key")));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`The service account token is not signed by a key published by issuer "${issuer.issuer}"`);
    expect(issuer.jwksRequests).toBe(2);
  }, 60_000);

  test("a token from another issuer is refused naming both, and so is another service account", async () => {
    const other = await podJoin("k8s-oidc", await saToken(issuer.keys[0]!, { iss: "https://kubernetes.default.svc.cluster.local" }));
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`The service account token names issuer "https://kubernetes.default.svc.cluster.local", not the join token's issuer "${issuer.issuer}"`);
    const intruder = await podJoin("k8s-oidc", await saToken(issuer.keys[0]!, { serviceAccount: "intruder" }));
    expect(intruder.code).toBe(1);
    expect(intruder.stderr).toContain(`Service account "default:intruder" may not join with token "k8s-oidc"`);
  }, 60_000);

  test("an auth service that cannot reach the issuer fails the join with an error saying so, and audits it", async () => {
    const r = await podJoin("k8s-unreachable", await saToken(issuer.keys[0]!, { iss: unreachable }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot check the service account token of join token "k8s-unreachable": Cannot fetch the OIDC discovery document of issuer "${unreachable}"`);
    expect(r.stderr).toContain("the auth service must reach the cluster's issuer, or the token can use static_jwks");
    const failed = JSON.parse(await auth.ctlOk("events", "ls", "--type", "join.failed", "--format", "json")) as { fields: Record<string, string> }[];
    expect(failed.at(-1)!.fields).toMatchObject({ join_method: "kubernetes", token: tokenFingerprint("k8s-unreachable"), error: "CONNECTION_PROBLEM" });
    expect(failed.at(-1)!.fields.reason).toStartWith("issuer keys unavailable");
  }, 60_000);
});
