// The kubernetes join method on the auth side: static JWKS (seed 000's token verbatim
// but for the JWKS) and in-cluster TokenReview against a fake API server; refusals
// are audited with their reason and the caller's address.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { keyRequest } from "../auth/harness.ts";
import { ADMIN, CLUSTER, scenario, startKubeAuth, type KubeAuth } from "./_auth.ts";
import { clusterKey, serviceAccountToken, tokenYaml, type ClusterKey } from "../_support/kube_jwt.ts";
import { startFakeApiServer, type FakeApiServer } from "./fake_apiserver.ts";
import { tokenFingerprint } from "../../src/resources/index.ts";

let auth: KubeAuth;
let key: ClusterKey;

beforeEach(async () => {
  auth = await startKubeAuth();
  key = await clusterKey();
  await auth.create(scenario("bot.yaml"));
  await auth.create(tokenYaml(key.jwks));
});
afterEach(async () => {
  await auth.close();
});

async function join(idToken: string | undefined, tokenName = "example-bot", remoteAddr = "10.0.0.42") {
  const { body } = keyRequest();
  const r = await auth.call("POST", "/v1/join", {
    who: { remoteAddr },
    body: { ...body, join_method: "kubernetes", token_name: tokenName, ...(idToken !== undefined ? { id_token: idToken } : {}) },
  });
  return { status: r.status, json: (await r.json()) as any };
}

describe("static_jwks", () => {
  test("a projected token for default:tbot with the cluster as audience joins bot example", async () => {
    const r = await join(await serviceAccountToken(key));
    expect(r.status).toBe(200);
    expect(r.json.bot_name).toBe("example");
    const [ev] = await auth.events("bot.join");
    expect(ev!.fields).toMatchObject({ bot: "example", join_method: "kubernetes", token: tokenFingerprint("example-bot"), service_account: "default:tbot", remote_addr: "10.0.0.42" });
  });

  test("every join creates a new bot instance: the token is never consumed", async () => {
    const a = await join(await serviceAccountToken(key));
    const b = await join(await serviceAccountToken(key));
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(a.json.bot_instance_id).not.toBe(b.json.bot_instance_id);
    const instances = await auth.admin.listBotInstances("example");
    expect(instances.map((i: { join_method: string }) => i.join_method)).toEqual(["kubernetes", "kubernetes"]);
  });

  const refusals: { name: string; token: (k: ClusterKey) => Promise<string | undefined>; status: number; message: string; reason: string }[] = [
    {
      name: "a token for another service account",
      token: (k) => serviceAccountToken(k, { serviceAccount: "intruder" }),
      status: 403,
      message: `Service account "default:intruder" may not join with token "example-bot": its allow rules name "default:tbot"`,
      reason: "service account default:intruder matches no allow rule",
    },
    {
      name: "a token from another namespace",
      token: (k) => serviceAccountToken(k, { namespace: "kube-system" }),
      status: 403,
      message: `Service account "kube-system:tbot" may not join with token "example-bot": its allow rules name "default:tbot"`,
      reason: "service account kube-system:tbot matches no allow rule",
    },
    {
      name: "a wrong audience",
      token: (k) => serviceAccountToken(k, { audience: "https://kubernetes.default.svc" }),
      status: 403,
      message: `The service account token is for audience "https://kubernetes.default.svc", not this cluster: project it with audience "${CLUSTER}"`,
      reason: `audience "https://kubernetes.default.svc" is not "${CLUSTER}"`,
    },
    {
      name: "an expired token",
      token: (k) => serviceAccountToken(k, { now: new Date(Date.now() - 3_600_000), ttlSeconds: 600 }),
      status: 401,
      message: "The service account token expired at",
      reason: "service account token expired",
    },
    {
      name: "a token signed by another key with the same kid",
      token: async () => serviceAccountToken(await clusterKey("test-key-1")),
      status: 403,
      message: `The service account token is not signed by a key in the JWKS of join token "example-bot"`,
      reason: "signature does not verify with the static JWKS",
    },
    {
      name: "a token signed by a key the JWKS does not have",
      token: async () => serviceAccountToken(await clusterKey("other-kid")),
      status: 403,
      message: `The service account token is not signed by a key in the JWKS of join token "example-bot"`,
      reason: "signature does not verify with the static JWKS",
    },
    {
      name: "a legacy token that never expires",
      token: (k) => serviceAccountToken(k, { noExpiry: true }),
      status: 403,
      message: "The service account token never expires: only projected service account tokens may join",
      reason: "service account token has no expiry",
    },
    {
      name: "a subject that is not a service account",
      token: (k) => serviceAccountToken(k, { subject: "alice" }),
      status: 403,
      message: `The service account token's subject is not a service account's: expected "system:serviceaccount:<namespace>:<name>", got "alice"`,
      reason: "subject is not a service account",
    },
    {
      name: "a kubernetes.io claim that contradicts the subject",
      token: (k) => serviceAccountToken(k, { claimServiceAccount: "other" }),
      status: 403,
      message: "The service account token's kubernetes.io claim does not match its subject",
      reason: "kubernetes.io claim contradicts the subject",
    },
    {
      name: "garbage instead of a JWT",
      token: async () => "not.a.jwt",
      status: 403,
      message: "The service account token is not a valid JWT",
      reason: "malformed service account token",
    },
    {
      name: "no service account token at all",
      token: async () => undefined,
      status: 403,
      message: "A kubernetes join needs the pod's service account token (id_token)",
      reason: "no service account token",
    },
  ];
  for (const c of refusals) {
    test(`refuses ${c.name}, audited with the reason and address`, async () => {
      const r = await join(await c.token(key), "example-bot", "192.0.2.7");
      expect(r.status).toBe(c.status);
      expect(r.json.error.message).toStartWith(c.message);
      const failed = await auth.events("join.failed");
      expect(failed).toHaveLength(1);
      expect(failed[0]!.fields).toMatchObject({ join_method: "kubernetes", token: tokenFingerprint("example-bot"), bot: "example", remote_addr: "192.0.2.7" });
      expect(failed[0]!.fields.reason).toStartWith(c.reason);
      expect(await auth.admin.listBotInstances("example")).toEqual([]);
    });
  }

  test("the scenario's placeholder JWKS loads, and a join with it is refused naming the token", async () => {
    await auth.create(scenario("token-kubernetes.yaml"));
    const r = await join(await serviceAccountToken(key));
    expect(r.status).toBe(403);
    expect(r.json.error.message).toBe(
      `Cannot check the service account token: the JWKS of join token "example-bot" is not valid JSON; paste the output of "kubectl get --raw /openid/v1/jwks" into spec.kubernetes.static_jwks.jwks of join token "example-bot"`,
    );
    expect((await auth.events("join.failed"))[0]!.fields.reason).toBe("static JWKS is not JSON");
  });

  test("a JWKS whose keys are not keys is refused at join time", async () => {
    await auth.create(tokenYaml(`{"keys":[{"kty":"nope"}]}`));
    const r = await join(await serviceAccountToken(key));
    expect(r.status).toBe(403);
    expect(r.json.error.message).toStartWith(`Cannot check the service account token: the JWKS of join token "example-bot" is not a JSON Web Key Set of public keys`);
  });

  test("an unknown token and a token-method token are refused alike, and a secret name is never shown", async () => {
    const secret = await auth.addBot("other", []);
    for (const name of ["no-such-token", secret]) {
      const r = await join(await serviceAccountToken(key), name);
      expect(r.status).toBe(403);
      expect(r.json.error.message).toBe("There is no kubernetes join token by this name");
    }
    const failed = await auth.events("join.failed");
    expect(failed.map((e) => e.fields.reason)).toEqual(["token not found", "token is for join method token"]);
    expect(JSON.stringify(failed)).not.toContain(secret);
    expect(failed[1]!.fields.token).toMatch(/^sha256:[0-9a-f]{16}$/);
  });

  test("a lock on the token refuses the join", async () => {
    await auth.admin.lock({ token: "example-bot", message: "cluster compromised" }, ADMIN);
    const r = await join(await serviceAccountToken(key));
    expect(r.status).toBe(423);
    expect(r.json.error.message).toContain("cluster compromised");
    expect((await auth.events("join.failed"))[0]!.fields.reason).toBe("locked");
  });

  test("an expired join token is refused", async () => {
    const text = tokenYaml(key.jwks).replace("  name: example-bot\n", `  name: example-bot\n  expires: "${new Date(Date.now() - 60_000).toISOString()}"\n`);
    await auth.create(text);
    const r = await join(await serviceAccountToken(key));
    expect(r.status).toBe(401);
    expect(r.json.error.message).toStartWith(`The join token "example-bot" expired at `);
  });
});

describe("hostile service-account tokens (fast-check)", () => {
  const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

  test("random and mutated tokens are refused with 400, 401 or 403, never accepted, never a 5xx", async () => {
    const valid = await serviceAccountToken(key);
    const parts = valid.split(".");
    const mutated = fc.tuple(fc.nat({ max: valid.length - 1 }), fc.constantFrom(..."ABCDEFabcdef0123456789-_.")).map(([i, ch]) => valid.slice(0, i) + ch + valid.slice(i + 1));
    const forged = fc
      .record({
        alg: fc.constantFrom("none", "HS256", "RS256", "ES256", "EdDSA", ""),
        kid: fc.constantFrom(key.kid, "x", ""),
        sub: fc.constantFrom("system:serviceaccount:default:tbot", "system:serviceaccount:default:tbot:x", "", "system:serviceaccount::tbot"),
        aud: fc.constantFrom(CLUSTER, [CLUSTER], "other", []),
        exp: fc.oneof(fc.integer(), fc.constant(Math.floor(Date.now() / 1000) + 600)),
        sig: fc.constantFrom(parts[2]!, "", "AAAA"),
      })
      .map((f) => `${b64({ alg: f.alg, kid: f.kid })}.${b64({ sub: f.sub, aud: f.aud, exp: f.exp, iat: 0, nbf: 0 })}.${f.sig}`);
    const junk = fc.oneof(fc.string({ maxLength: 200 }), fc.array(fc.base64String({ maxLength: 40 }), { maxLength: 5 }).map((xs) => xs.join(".")));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated, forged, junk), async (jwt) => {
        // a changed spare bit in a segment's last base64url character decodes to the same token
        const same = jwt.split(".").length === 3 && jwt.split(".").every((p, i) => Buffer.from(p, "base64url").equals(Buffer.from(parts[i]!, "base64url")));
        if (same) return;
        n++; // a new address each time: failed joins from one address are rate-limited
        const r = await join(jwt, "example-bot", `10.77.${n >> 8}.${n & 255}`);
        expect([400, 401, 403]).toContain(r.status);
      }),
      { numRuns: 300 },
    );
    expect(await auth.admin.listBotInstances("example")).toEqual([]);
  }, 60_000);
});

describe("in_cluster", () => {
  let api: FakeApiServer;
  let reviews: { token: string; audiences: string[] | undefined }[];

  const IN_CLUSTER_TOKEN = `kind: token
version: v2
metadata:
  name: in-cluster-bot
spec:
  roles: [Bot]
  bot_name: example
  join_method: kubernetes
  kubernetes:
    type: in_cluster
    allow:
    - service_account: "default:tbot"
`;

  beforeEach(async () => {
    reviews = [];
    api = await startFakeApiServer({
      token: "auth-service-sa-token",
      review: (token, audiences) => {
        reviews.push({ token, audiences });
        if (token.startsWith("eyJ")) return { authenticated: true, username: "system:serviceaccount:default:tbot", ...(audiences ? { audiences } : {}) };
        return { authenticated: false, error: "token has been invalidated" };
      },
    });
    const sa = await api.serviceAccountDir("machine-id", "auth-service-sa-token");
    await auth.close();
    auth = await startKubeAuth([], sa.env);
    await auth.create(scenario("bot.yaml"));
    await auth.create(IN_CLUSTER_TOKEN);
  });
  afterEach(async () => {
    await api.close();
  });

  test("the API server's TokenReview vouches for the service account; the auth service calls it with its own token", async () => {
    const jwt = await serviceAccountToken(key);
    const r = await join(jwt, "in-cluster-bot");
    expect(r.status).toBe(200);
    expect(reviews).toEqual([{ token: jwt, audiences: [CLUSTER] }]);
    const seen = api.requests.find((q) => q.path === "/apis/authentication.k8s.io/v1/tokenreviews")!;
    expect(api.header(seen, "authorization")).toEqual(["Bearer auth-service-sa-token"]);
  });

  test("a default service-account token (API server audience) is reviewed for the API server's own audience", async () => {
    const jwt = await serviceAccountToken(key, { audience: "https://kubernetes.default.svc" });
    const r = await join(jwt, "in-cluster-bot");
    expect(r.status).toBe(200);
    expect(reviews[0]!.audiences).toBeUndefined();
  });

  test("something that is not a JWT is refused before the API server is asked", async () => {
    const r = await join("a.b.c", "in-cluster-bot");
    expect(r.status).toBe(403);
    expect(r.json.error.message).toBe("The service account token is not a valid JWT");
    expect(reviews).toEqual([]);
  });

  test("an invalidated token is refused with the API server's reason", async () => {
    const jwt = await serviceAccountToken(key);
    const { body } = keyRequest();
    // the reviewer refuses tokens that do not start like a JWT: send one that decodes but is refused
    const refused = "e30." + jwt.split(".").slice(1).join(".");
    const r = await auth.call("POST", "/v1/join", { body: { ...body, join_method: "kubernetes", token_name: "in-cluster-bot", id_token: refused } });
    expect(r.status).toBe(403);
    expect(((await r.json()) as any).error.message).toBe("The Kubernetes API server did not accept the service account token: token has been invalidated");
  });

  test("outside a cluster an in_cluster token cannot be checked, and says why", async () => {
    await auth.close();
    auth = await startKubeAuth([], {});
    await auth.create(scenario("bot.yaml"));
    await auth.create(IN_CLUSTER_TOKEN);
    const r = await join(await serviceAccountToken(key), "in-cluster-bot");
    expect(r.status).toBe(502);
    expect(r.json.error.message).toBe(
      "Cannot check the service account token with this cluster's TokenReview API: The auth service is not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set",
    );
    expect((await auth.events("join.failed"))[0]!.fields.reason).toBe("TokenReview failed");
  });
});
