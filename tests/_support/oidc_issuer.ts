/**
 * Test doubles for CI platforms: an OIDC issuer over HTTPS (discovery document, JWKS
 * with rotation, request counts, and misbehaving modes: hang, huge body), ID tokens
 * with each platform's published claim set, and the GitHub runner's token endpoint.
 * The TLS certificate comes from a test CA; the auth service trusts it through
 * $NODE_EXTRA_CA_CERTS, as an operator would add a private CA.
 */

import https from "node:https";
import http from "node:http";
import type { Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair as joseKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { createCA, generateKeyPair, issueCertificate, privateKeyToPem } from "../../src/crypto/index.ts";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function signingKey(kid = `key-${randomUUID().slice(0, 8)}`, alg: "RS256" | "ES256" = "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await joseKeyPair(alg, { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, use: "sig", alg } };
}

export const jwksText = (...keys: SigningKey[]) => JSON.stringify({ keys: keys.map((k) => k.publicJwk) });

/** Signs `claims` (iat/nbf/exp filled from `now` unless given) with `key`. */
export async function signIdToken(key: SigningKey, claims: JWTPayload, o: { now?: Date; ttlSeconds?: number; kid?: string } = {}): Promise<string> {
  const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return new SignJWT({ iat: now, nbf: now, exp: now + (o.ttlSeconds ?? 300), ...claims })
    .setProtectedHeader({ alg: key.publicJwk.alg as string, typ: "JWT", kid: o.kid ?? key.kid })
    .sign(key.privateKey);
}

/** An unsigned (`alg: none`) token with `claims`. */
export function unsignedToken(claims: JWTPayload): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`;
}

/** An HS256 token keyed with `secret` (e.g. the issuer's public key bytes: the key-confusion attack). */
export async function hmacToken(secret: Uint8Array, claims: JWTPayload, kid: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, nbf: now, exp: now + 300, ...claims }).setProtectedHeader({ alg: "HS256", kid }).sign(secret);
}

/** GitHub's example ID token claims (docs: "About security hardening with OpenID Connect"), for our repository. */
export function githubClaims(issuer: string, audience: string, o: Partial<Record<string, string>> = {}): JWTPayload {
  const repository = o.repository ?? "octo-org/octo-repo";
  const ref = o.ref ?? "refs/heads/main";
  const environment = o.environment;
  return {
    jti: randomUUID(),
    sub: environment ? `repo:${repository}:environment:${environment}` : `repo:${repository}:ref:${ref}`,
    ...(environment ? { environment } : {}),
    aud: audience,
    ref,
    sha: "d6e3c9a5f1b2c4d8e7f6a5b4c3d2e1f0a9b8c7d6",
    repository,
    repository_owner: repository.split("/")[0],
    actor_id: "12",
    repository_visibility: "private",
    repository_id: "74",
    repository_owner_id: "65",
    run_id: "8123456789",
    run_number: "10",
    run_attempt: "1",
    runner_environment: "github-hosted",
    actor: o.actor ?? "octocat",
    workflow: o.workflow ?? "deploy",
    head_ref: "",
    base_ref: "",
    event_name: "push",
    ref_type: o.ref_type ?? "branch",
    workflow_ref: `${repository}/.github/workflows/deploy.yml@${ref}`,
    job_workflow_ref: `${repository}/.github/workflows/deploy.yml@${ref}`,
    iss: issuer,
  };
}

/** GitLab's ID token claims (docs: "OpenID Connect (OIDC) Authentication Using ID Tokens"). */
export function gitlabClaims(issuer: string, audience: string, o: Partial<Record<string, string>> = {}): JWTPayload {
  const project = o.project_path ?? "my-group/my-project";
  const ref = o.ref ?? "main";
  return {
    namespace_id: "72",
    namespace_path: project.split("/").slice(0, -1).join("/"),
    project_id: "20",
    project_path: project,
    user_id: "5",
    user_login: o.user_login ?? "alice",
    user_email: "alice@example.com",
    user_access_level: "developer",
    pipeline_id: "1212",
    pipeline_source: o.pipeline_source ?? "push",
    job_id: "4242",
    ref,
    ref_type: "branch",
    ref_path: `refs/heads/${ref}`,
    ref_protected: o.ref_protected ?? "true",
    runner_id: 1,
    runner_environment: "gitlab-hosted",
    sha: "714a629c0b401fdce83e847fc9589983fc6f46bc",
    project_visibility: "private",
    ci_config_ref_uri: `gitlab.example.com/${project}//.gitlab-ci.yml@refs/heads/${ref}`,
    ci_config_sha: "714a629c0b401fdce83e847fc9589983fc6f46bc",
    jti: randomUUID(),
    iss: issuer,
    sub: `project_path:${project}:ref_type:branch:ref:${ref}`,
    aud: audience,
  };
}

/** CircleCI's $CIRCLE_OIDC_TOKEN_V2 claims (docs: "Using OpenID Connect tokens in jobs"); no jti. */
export function circleciClaims(orgId: string, o: { projectId?: string; contextIds?: string[]; audience?: string } = {}): JWTPayload {
  const project = o.projectId ?? "a3e1f0c2-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
  return {
    iss: `https://oidc.circleci.com/org/${orgId}`,
    sub: `org/${orgId}/project/${project}/user/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/vcs-origin/github.com/octo-org/octo-repo/vcs-ref/refs/heads/main`,
    aud: o.audience ?? orgId,
    "oidc.circleci.com/org-id": orgId,
    "oidc.circleci.com/project-id": project,
    "oidc.circleci.com/context-ids": o.contextIds ?? ["6c5b4a39-2817-4605-9f8e-7d6c5b4a3928"],
    "oidc.circleci.com/vcs-origin": "github.com/octo-org/octo-repo",
    "oidc.circleci.com/vcs-ref": "refs/heads/main",
    "oidc.circleci.com/ssh-rerun": false,
  };
}

export type IssuerMode = "normal" | "hang" | "huge";

/** A running OIDC issuer double. */
export interface FakeIssuer {
  /** The issuer URL (`iss`): https://127.0.0.1:<port><path>. */
  issuer: string;
  /** host:port, for enterprise_server_host / domain. */
  host: string;
  caPem: string;
  /** Keys the JWKS publishes now; the first signs by default. */
  keys: SigningKey[];
  mode: IssuerMode;
  /** Requests for the JWKS and the discovery document so far. */
  jwksRequests: number;
  discoveryRequests: number;
  close(): Promise<void>;
}

let sharedCa: Promise<{ caPem: string; caKey: ReturnType<typeof generateKeyPair> }> | undefined;

/** One test CA for all the doubles of a run (so one $NODE_EXTRA_CA_CERTS file trusts them all). */
export function testCa() {
  sharedCa ??= (async () => {
    const now = new Date();
    const caKey = generateKeyPair("ecdsa-p256");
    const caPem = await createCA({ commonName: "CI issuer test CA", keyPair: caKey, notBefore: new Date(now.getTime() - 3_600_000), notAfter: new Date(now.getTime() + 86_400_000) });
    return { caPem, caKey };
  })();
  return sharedCa;
}

/** Starts an issuer double on 127.0.0.1:0 whose issuer URL ends in `path` ("" for the root, "/_services/token" for GHES). */
export async function startIssuer(path = "", mode: IssuerMode = "normal"): Promise<FakeIssuer> {
  const { caPem, caKey } = await testCa();
  const now = new Date();
  const serverKey = generateKeyPair("ecdsa-p256");
  const certPem = await issueCertificate({
    caCertPem: caPem,
    caKey: caKey.privateKey,
    publicKey: serverKey.publicKey,
    commonName: "issuer",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter: new Date(now.getTime() + 86_400_000),
    usage: "server",
  });
  const sockets = new Set<Socket>();
  const state: FakeIssuer = {
    issuer: "",
    host: "",
    caPem,
    keys: [await signingKey()],
    mode,
    jwksRequests: 0,
    discoveryRequests: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = https.createServer({ cert: certPem, key: privateKeyToPem(serverKey.privateKey) }, (req, res) => {
    const url = req.url ?? "/";
    if (url === `${path}/.well-known/openid-configuration`) {
      state.discoveryRequests++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ issuer: state.issuer, jwks_uri: `${state.issuer}/.well-known/jwks`, response_types_supported: ["id_token"], id_token_signing_alg_values_supported: ["RS256"] }));
      return;
    }
    if (url === `${path}/.well-known/jwks`) {
      state.jwksRequests++;
      if (state.mode === "hang") return; // never answers; the socket is destroyed on close()
      if (state.mode === "huge") {
        // a 1 GiB body, written as the client reads it; a client that stops reading stops it
        res.writeHead(200, { "content-type": "application/json" });
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        let left = 16 * 1024;
        const pump = () => {
          while (left > 0) {
            left--;
            if (!res.write(chunk)) return void res.once("drain", pump);
          }
          res.end();
        };
        res.on("close", () => (left = 0));
        pump();
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=3600" });
      res.end(JSON.stringify({ keys: state.keys.map((k) => k.publicJwk) }));
      return;
    }
    res.writeHead(404).end();
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  state.host = `127.0.0.1:${port}`;
  state.issuer = `https://${state.host}${path}`;
  return state;
}

/** The GitHub runner's ID-token endpoint: answers `{value}` for the bearer it was given, minting with `mint(audience)`. */
export interface FakeRunner {
  /** $ACTIONS_ID_TOKEN_REQUEST_URL and $ACTIONS_ID_TOKEN_REQUEST_TOKEN for a job. */
  env: { ACTIONS_ID_TOKEN_REQUEST_URL: string; ACTIONS_ID_TOKEN_REQUEST_TOKEN: string };
  /** The audiences asked for, in order. */
  audiences: string[];
  close(): Promise<void>;
}

export async function startRunner(mint: (audience: string) => Promise<string>): Promise<FakeRunner> {
  const bearer = `runner-${randomUUID()}`;
  const audiences: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://runner");
    if (req.headers.authorization !== `bearer ${bearer}` || url.pathname !== "/_apis/distributedtask/token" || url.searchParams.get("api-version") !== "2.0") {
      res.writeHead(403, { "content-type": "application/json" }).end(JSON.stringify({ message: "forbidden" }));
      return;
    }
    const audience = url.searchParams.get("audience") ?? "";
    audiences.push(audience);
    mint(audience).then(
      (value) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ count: 1, value })),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    env: { ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${port}/_apis/distributedtask/token?api-version=2.0`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: bearer },
    audiences,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
