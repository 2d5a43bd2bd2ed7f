/**
 * The auth service's request core, in process: resources, bots and tokens,
 * token joins, renewals with the generation counter, output certificates,
 * locks and the audit trail.
 */

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { formatSshPublicKey, generateKeyPair, issueCertificate, parseSshCertificate } from "../../src/crypto/index.ts";
import { pemDecodeOne } from "../../src/lib/pem.ts";
import { identityOf, keyRequest, startHarness, type Harness } from "./harness.ts";

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const role = {
  kind: "role",
  version: "v7",
  metadata: { name: "deployer" },
  spec: { allow: { logins: ["deploy", "{{internal.logins}}"] }, deny: { logins: ["root"] } },
};
const bot = { kind: "bot", version: "v1", metadata: { name: "ci" }, spec: { roles: ["deployer"] } };

async function setupBot(h: Harness, extra: Record<string, unknown> = {}) {
  const r = await h.call(h.admin, "POST", "/v1/resources", { resources: [role] });
  expect(r.status).toBe(200);
  const add = await h.call(h.admin, "POST", "/v1/bots", { name: "ci", roles: ["deployer"], logins: ["app", "root"], ...extra });
  expect(add.status).toBe(200);
  return add.json as { token: string; ca_pins: string[]; expires: string };
}

async function join(h: Harness, token: string, ttl?: number) {
  const { key, body } = keyRequest(ttl);
  const r = await h.call(h.anon, "POST", "/v1/join", { ...body, join_method: "token", token_name: token });
  return { r, key };
}

async function events(h: Harness, type: string) {
  return (await h.call(h.admin, "GET", `/v1/events?type=${type}`)).json as { type: string; fields: Record<string, unknown> }[];
}

describe("public endpoints", () => {
  test("ping reports cluster, version, pin and join methods", async () => {
    const r = await h.call(h.anon, "GET", "/webapi/ping");
    expect(r.status).toBe(200);
    expect(r.json.cluster_name).toBe("test.example");
    expect(r.json.ca_pins).toEqual([h.ctx.authorities.caPin]);
    expect(r.json.ca_pins[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.json.join_methods).toContain("token");
  });

  test("export serves each CA and refuses an unknown type with the allowed values", async () => {
    expect((await h.call(h.anon, "GET", "/webapi/auth/export?type=tls-host")).text).toBe(h.ctx.authorities.host.tlsCertPem);
    expect((await h.call(h.anon, "GET", "/webapi/auth/export?type=ssh-user")).text).toStartWith("ssh-ed25519 ");
    expect((await h.call(h.anon, "GET", "/webapi/auth/export?type=ssh-host")).text).toStartWith("@cert-authority * ssh-ed25519 ");
    const bad = await h.call(h.anon, "GET", "/webapi/auth/export?type=tls");
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('"tls-host", "tls-user", "ssh-host", "ssh-user"');
  });
});

describe("admin authentication", () => {
  test("admin endpoints refuse a caller without a certificate", async () => {
    const r = await h.call(h.anon, "GET", "/v1/status");
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe("ACCESS_DENIED");
  });

  test("admin endpoints refuse a bot identity", async () => {
    const { token } = await setupBot(h);
    const { r, key } = await join(h, token);
    const r2 = await h.call(h.as(r.json.certs, key), "GET", "/v1/resources/bot");
    expect(r2.status).toBe(403);
    expect(r2.json.error.message).toContain("not an admin");
  });

  test("a certificate from another cluster's CA is refused", async () => {
    const other = await startHarness();
    try {
      const r = await h.call(other.admin, "GET", "/v1/status");
      expect(r.status).toBe(403);
    } finally {
      await other.close();
    }
  });

  test("a certificate from the user CA without clientAuth usage is refused by the API, admin and bot routes alike", async () => {
    // Signed by the right CA and carrying an admin identity, but issued for serverAuth:
    // a certificate minted for another purpose must not log in (the Kubernetes proxy
    // already refused it; the API did not).
    const key = generateKeyPair("ecdsa-p256");
    const now = h.clock.now();
    const pem = await issueCertificate({
      caCertPem: h.ctx.authorities.user.tlsCertPem,
      caKey: h.ctx.authorities.user.tlsKey,
      publicKey: key.publicKey,
      commonName: "admin",
      notBefore: now,
      notAfter: new Date(now.getTime() + 3_600_000),
      usage: "server",
      identity: { cluster: "test.example", username: "admin", kind: "admin", renewable: true, roles: [], logins: [] },
    });
    const caller = { conn: { remoteAddr: "10.0.0.8", peerCertDer: pemDecodeOne(pem, ["CERTIFICATE"]).der } };
    const status = await h.call(caller, "GET", "/v1/status");
    expect(status.status).toBe(403);
    expect(status.json.error.message).toContain("clientAuth");
    const renew = await h.call(caller, "POST", "/v1/bot/renew", keyRequest().body);
    expect(renew.status).toBe(403);
  });
});

describe("resources", () => {
  test("create, get, list and delete; a second create without force is refused", async () => {
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [role, bot] })).status).toBe(200);
    const got = await h.call(h.admin, "GET", "/v1/resources/bot/ci");
    expect(got.json.spec.roles).toEqual(["deployer"]);
    expect(got.json.metadata.revision).toBeString();
    const again = await h.call(h.admin, "POST", "/v1/resources", { resources: [bot] });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toContain("--force");
    expect((await h.call(h.admin, "POST", "/v1/resources", { resources: [bot], force: true })).status).toBe(200);
    expect((await h.call(h.admin, "DELETE", "/v1/resources/bot/ci")).status).toBe(200);
    expect((await h.call(h.admin, "GET", "/v1/resources/bot/ci")).status).toBe(404);
  });

  test("listing is paged in name order", async () => {
    const bots = Array.from({ length: 2500 }, (_, i) => ({ kind: "bot", version: "v1", metadata: { name: `b${String(i).padStart(4, "0")}` }, spec: { roles: [] } }));
    for (let i = 0; i < bots.length; i += 1000) expect((await h.call(h.admin, "POST", "/v1/resources", { resources: bots.slice(i, i + 1000) })).status).toBe(200);
    const first = await h.call(h.admin, "GET", "/v1/resources/bot");
    expect(first.json.items).toHaveLength(1000);
    expect(first.json.next).toBe("b0999");
    const small = await h.call(h.admin, "GET", "/v1/resources/bot?limit=2&start_after=b0999");
    expect(small.json.items.map((b: any) => b.metadata.name)).toEqual(["b1000", "b1001"]);
    const last = await h.call(h.admin, "GET", "/v1/resources/bot?start_after=b1999");
    expect(last.json.items).toHaveLength(500);
    expect(last.json.next).toBeUndefined();
    expect((await h.call(h.admin, "GET", "/v1/resources/bot?limit=x")).status).toBe(400);
  });

  test("an invalid resource in a batch stores nothing", async () => {
    const badToken = { kind: "token", version: "v2", metadata: { name: "t1" }, spec: { roles: ["Bot"], bot_name: "ci", join_method: "tokn" } };
    const r = await h.call(h.admin, "POST", "/v1/resources", { resources: [role, bot, badToken] });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain("tokn");
    expect((await h.call(h.admin, "GET", "/v1/resources/role")).json).toEqual({ items: [] });
    expect((await h.call(h.admin, "GET", "/v1/resources/bot")).json).toEqual({ items: [] });
  });

  test("a bot naming a missing role is refused", async () => {
    const r = await h.call(h.admin, "POST", "/v1/resources", { resources: [bot] });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain('role "deployer", which does not exist');
  });

  test("a role still used by a bot cannot be deleted", async () => {
    await h.call(h.admin, "POST", "/v1/resources", { resources: [role, bot] });
    const r = await h.call(h.admin, "DELETE", "/v1/resources/role/deployer");
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain('"ci"');
  });
});

describe("token join", () => {
  test("a token joins once, creating an instance with generation 1", async () => {
    const { token } = await setupBot(h);
    const { r } = await join(h, token);
    expect(r.status).toBe(200);
    const id = identityOf(r.json.certs);
    expect(id).toMatchObject({ kind: "bot", botName: "ci", generation: 1, renewable: true, cluster: "test.example" });
    expect(id.botInstanceId).toBe(r.json.bot_instance_id);
    const inst = (await h.call(h.admin, "GET", "/v1/bot-instances?bot=ci")).json;
    expect(inst).toHaveLength(1);
    expect(inst[0].generation).toBe(1);
    expect((await events(h, "bot.join"))[0]!.fields.token).not.toContain(token);

    const second = await join(h, token);
    expect(second.r.status).toBe(403);
    expect(second.r.json.error.message).toContain("not valid");
    expect((await h.call(h.admin, "GET", "/v1/bot-instances?bot=ci")).json).toHaveLength(1);
    const failed = await events(h, "join.failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]!.fields.remote_addr).toBe("10.0.0.9");
  });

  test("an expired token is refused with the expiry time and changes nothing", async () => {
    const { token, expires } = await setupBot(h);
    h.clock.advance(3_600_001);
    const { r } = await join(h, token);
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("EXPIRED");
    expect(r.json.error.message).toContain(expires);
    expect((await h.call(h.admin, "GET", "/v1/bot-instances")).json).toHaveLength(0);
    expect((await events(h, "join.failed"))[0]!.fields.reason).toContain("expired");
  });

  test("concurrent joins with one token: exactly one wins", async () => {
    const { token } = await setupBot(h);
    const results = await Promise.all(Array.from({ length: 8 }, () => join(h, token)));
    expect(results.filter((x) => x.r.status === 200)).toHaveLength(1);
    expect((await h.call(h.admin, "GET", "/v1/bot-instances")).json).toHaveLength(1);
  });

  test("a malformed public key is a 400 naming the field, and the token survives", async () => {
    const { token } = await setupBot(h);
    const r = await h.call(h.anon, "POST", "/v1/join", { join_method: "token", token_name: token, public_tls_key: "nope", public_ssh_key: "nope" });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain("public_tls_key");
    expect((await join(h, token)).r.status).toBe(200);
  });

  test("TTLs are capped at the bot's maximum", async () => {
    const { token } = await setupBot(h);
    const { r } = await join(h, token, 30 * 86400);
    const c = r.json.certs;
    expect(new Date(c.valid_before).getTime() - h.clock.now().getTime()).toBe(12 * 3_600_000);
  });
});

describe("renewal and generations", () => {
  test("each renewal advances the generation; a stale copy is refused and locks the instance", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token);
    const original = h.as(j.r.json.certs, j.key);
    const k2 = keyRequest();
    const r2 = await h.call(original, "POST", "/v1/bot/renew", k2.body);
    expect(r2.status).toBe(200);
    expect(identityOf(r2.json.certs).generation).toBe(2);
    const k3 = keyRequest();
    const r3 = await h.call(h.as(r2.json.certs, k2.key), "POST", "/v1/bot/renew", k3.body);
    expect(identityOf(r3.json.certs).generation).toBe(3);

    // the copy taken at generation 1 comes back
    const stolen = await h.call(original, "POST", "/v1/bot/renew", keyRequest().body);
    expect(stolen.status).toBe(423);
    expect(stolen.json.error.message).toContain("generation 1");
    const mism = await events(h, "cert.generation_mismatch");
    expect(mism).toHaveLength(1);
    expect(mism[0]!.fields).toMatchObject({ presented: 1, expected: 3 });
    // now even the legitimate newest identity is locked out
    const legit = await h.call(h.as(r3.json.certs, k3.key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(legit.status).toBe(423);
    const inst = (await h.call(h.admin, "GET", "/v1/bot-instances?bot=ci")).json;
    expect(inst[0].locked).toBe(true);
    // unlocking lets the newest identity renew again
    expect((await h.call(h.admin, "DELETE", `/v1/locks/bot_instance/${inst[0].instance_id}`)).status).toBe(200);
    expect((await h.call(h.as(r3.json.certs, k3.key), "POST", "/v1/bot/renew", keyRequest().body)).status).toBe(200);
  });

  test("a renewal whose answer was lost can be retried for the same new key", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token);
    const k2 = keyRequest();
    expect((await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/renew", k2.body)).status).toBe(200);
    const retry = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/renew", k2.body);
    expect(retry.status).toBe(200);
    expect(identityOf(retry.json.certs).generation).toBe(2);
  });

  test("a database rolled back to an older generation catches up instead of locking", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token);
    const inst = (await h.call(h.admin, "GET", "/v1/bot-instances")).json[0];
    const k2 = keyRequest();
    const r2 = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/renew", k2.body);
    // restore the instance record as it was before the renewal
    const key = `/bot_instances/ci/${inst.instance_id}`;
    const item = (await h.ctx.backend.get<any>(key))!;
    await h.ctx.backend.put(key, { ...item.value, generation: 1 });
    const r3 = await h.call(h.as(r2.json.certs, k2.key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(r3.status).toBe(200);
    expect(identityOf(r3.json.certs).generation).toBe(3);
    expect(await events(h, "cert.generation_rollback")).toHaveLength(1);
  });

  test("an expired renewable certificate cannot renew", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token, 600);
    h.clock.advance(601_000 + 60_000);
    const r = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("EXPIRED");
  });

  test("a certificate verified once is still refused once it expires (the verification cache re-checks time)", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token, 600);
    const me = h.as(j.r.json.certs, j.key);
    expect((await h.call(me, "POST", "/v1/bot/certs", keyRequest(60).body)).status).toBe(200);
    h.clock.advance(601_000 + 60_000);
    const r = await h.call(me, "POST", "/v1/bot/certs", keyRequest(60).body);
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("EXPIRED");
  });

  test("output certificates carry the roles' logins, expanded from traits, minus denied ones", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token);
    const o = keyRequest(600);
    const r = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/certs", o.body);
    expect(r.status).toBe(200);
    const ssh = parseSshCertificate(r.json.certs.ssh_cert);
    expect([...ssh.principals].sort()).toEqual(["app", "deploy"]);
    expect(identityOf(r.json.certs)).toMatchObject({ renewable: false, logins: ["app", "deploy"] });
    // an output certificate cannot be used to renew
    const bad = await h.call(h.as(r.json.certs, o.key), "POST", "/v1/bot/renew", keyRequest().body);
    expect(bad.status).toBe(403);
    // nor ask for a role the bot does not hold
    const extra = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/certs", { ...keyRequest().body, roles: ["admin"] });
    expect(extra.status).toBe(403);
  });

  test("output certificates never outlive the renewable identity", async () => {
    const { token } = await setupBot(h);
    const j = await join(h, token, 1800);
    const r = await h.call(h.as(j.r.json.certs, j.key), "POST", "/v1/bot/certs", keyRequest(7200).body);
    expect(r.json.certs.valid_before).toBe(j.r.json.certs.valid_before);
  });
});

describe("hostile requests", () => {
  test("bodies that are not JSON, too large, or of the wrong shape are 4xx", async () => {
    expect((await h.call(h.anon, "POST", "/v1/join", "{not json")).status).toBe(400);
    expect((await h.call(h.anon, "POST", "/v1/join", "")).status).toBe(400);
    expect((await h.call(h.anon, "POST", "/v1/join", { join_method: "token" })).status).toBe(400);
    const big = await h.call(h.anon, "POST", "/v1/join", "x".repeat(300 * 1024));
    expect(big.status).toBe(413);
    expect((await h.call(h.anon, "GET", "/nope")).status).toBe(404);
  });
});

describe("host certificates", () => {
  test("sign-host certifies a host key with the host CA; only admins may ask", async () => {
    const hostKey = keyRequest().body.public_ssh_key;
    const r = await h.call(h.admin, "POST", "/v1/auth/sign-host", { public_key: hostKey, principals: ["node1.example", "127.0.0.1"], ttl_seconds: 3600 });
    expect(r.status).toBe(200);
    const cert = parseSshCertificate(r.json.certificate);
    expect(cert.certType).toBe("host");
    expect(cert.principals).toEqual(["node1.example", "127.0.0.1"]);
    const hostCa = (await h.call(h.anon, "GET", "/webapi/auth/export?type=ssh-host")).text;
    expect(hostCa).toContain(formatSshPublicKey(cert.signatureKey).split(" ")[1]!);
    expect((await events(h, "cert.host_create"))[0]!.fields.principals).toEqual(["node1.example", "127.0.0.1"]);
    expect((await h.call(h.anon, "POST", "/v1/auth/sign-host", { public_key: hostKey, principals: ["x"] })).status).toBe(403);
    expect((await h.call(h.admin, "POST", "/v1/auth/sign-host", { public_key: hostKey, principals: [] })).status).toBe(400);
  });
});
