/**
 * `keypair create`: static keys for the environment or a file, the keypair in the
 * bot's storage, reuse and --overwrite, file modes, the printed token and config,
 * JSON, --proxy-server; the keys checked with OpenSSL and ssh-keygen.
 */

import { describe, expect, test } from "bun:test";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { BOUND_KEY_FILE, BOUND_PUBLIC_KEY_FILE, BoundKeyStore, STATIC_KEY_ENV, decodeStaticKeyEnv } from "../../src/agent/bound_keypair/index.ts";
import { createKeypair, renderJson, renderText, type KeypairCreateOptions } from "../../src/agent/keypair/index.ts";
import { BotStore, DirectoryDestination } from "../../src/agent/index.ts";
import { formatSshPublicKey, keyId, parsePrivateKey, publicKeyToPem } from "../../src/crypto/index.ts";
import { AppError, isAppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { parseResources, type TokenResource } from "../../src/resources/index.ts";
import { startTestAuth, tempDir } from "./harness.ts";

const opts = (o: Partial<KeypairCreateOptions>): KeypairCreateOptions => ({ static: false, overwrite: false, algorithm: "ed25519", ...o });
const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a rejection"); }, (e: unknown) => e as AppError);
const mode = async (p: string) => (await stat(p)).mode & 0o777;
const sh = (args: string[]) => {
  const r = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
};

/** The token example in the text output, parsed and checked by the resources layer. */
function printedToken(text: string): TokenResource {
  const m = /^kind: token\n[\s\S]*?^version: v2$/m.exec(text);
  expect(m).not.toBeNull();
  return parseResources(m![0], "keypair create output")[0] as TokenResource;
}

describe("keypair create --static", () => {
  test("without a path: prints the public key, the token and the base64 of the PEM for the environment", async () => {
    const r = await createKeypair(opts({ static: true }), silentLogger);
    expect(r.location).toEqual({ kind: "environment" });
    expect(r.key.algorithm).toBe("ed25519");
    const pub = formatSshPublicKey(r.key.publicKey);
    const text = renderText(r, true);
    expect(text).toContain(`\n${pub}\n`);
    const token = printedToken(text);
    expect(token.spec.bound_keypair).toMatchObject({ onboarding: { initial_public_key: pub }, recovery: { limit: 0, mode: "insecure" } });
    expect(token.spec.join_method).toBe("bound_keypair");
    const value = new RegExp(`^export ${STATIC_KEY_ENV}="([A-Za-z0-9+/=]+)"$`, "m").exec(text)![1]!;
    expect(keyId(decodeStaticKeyEnv(value).publicKey)).toBe(keyId(r.key.publicKey));
    expect(text).toContain("do not support keypair rotation");

    const json = JSON.parse(renderJson(r, true));
    expect(Object.keys(json).sort()).toEqual(["private_key", "public_key"]);
    expect(json.public_key).toBe(pub);
    expect(json.private_key).toStartWith("-----BEGIN PRIVATE KEY-----\n");
    expect(keyId(parsePrivateKey(json.private_key).publicKey)).toBe(keyId(r.key.publicKey));
  });

  test("with --static-key-path: writes the key 0600 (new directories 0700), reuses it, --overwrite replaces it", async () => {
    await using t = await tempDir();
    const path = join(t.path, "path", "to", "key");
    const r = await createKeypair(opts({ static: true, staticKeyPath: path }), silentLogger);
    expect(r).toMatchObject({ reused: false, location: { kind: "file", path } });
    expect(await mode(path)).toBe(0o600);
    expect(await mode(join(t.path, "path", "to"))).toBe(0o700);
    // OpenSSL reads the PKCS#8 PEM and derives the same public key
    const spki = sh(["openssl", "pkey", "-in", path, "-pubout"]);
    expect(spki.code).toBe(0);
    expect(spki.out).toBe(publicKeyToPem(r.key.publicKey));
    const text = renderText(r, true);
    expect(parse(text.slice(text.indexOf("\nonboarding:") + 1, text.indexOf("\n\nNote")))).toEqual({
      onboarding: { join_method: "bound_keypair", token: "example-token", bound_keypair: { static_private_key_path: path } },
    });
    expect(text).not.toContain(STATIC_KEY_ENV);

    const again = await createKeypair(opts({ static: true, staticKeyPath: path }), silentLogger);
    expect(again.reused).toBe(true);
    expect(keyId(again.key.publicKey)).toBe(keyId(r.key.publicKey));
    expect(renderText(again, true)).toContain(`Reusing the existing key in "${path}" (pass --overwrite to replace it).`);

    const replaced = await createKeypair(opts({ static: true, staticKeyPath: path, overwrite: true }), silentLogger);
    expect(replaced.reused).toBe(false);
    expect(keyId(replaced.key.publicKey)).not.toBe(keyId(r.key.publicKey));
    expect(keyId(parsePrivateKey(await readFile(path, "utf8")).publicKey)).toBe(keyId(replaced.key.publicKey));
    expect(await mode(path)).toBe(0o600);
  });

  test("an existing key file others can read is refused, not reused", async () => {
    await using t = await tempDir();
    const path = join(t.path, "key");
    await createKeypair(opts({ static: true, staticKeyPath: path }), silentLogger);
    await chmod(path, 0o644);
    expect((await rejection(createKeypair(opts({ static: true, staticKeyPath: path }), silentLogger))).message).toBe(
      `Cannot read static key "${path}": mode 0644 lets others read it; run chmod 600 "${path}"`,
    );
  });

  test("an existing directory keeps its mode", async () => {
    await using t = await tempDir();
    const d = join(t.path, "shared");
    await mkdir(d, { mode: 0o755 });
    await chmod(d, 0o755);
    await createKeypair(opts({ static: true, staticKeyPath: join(d, "key") }), silentLogger);
    expect(await mode(d)).toBe(0o755);
    expect(await mode(join(d, "key"))).toBe(0o600);
  });

  test("--algorithm ecdsa-p256 makes a P-256 key", async () => {
    const r = await createKeypair(opts({ static: true, algorithm: "ecdsa-p256" }), silentLogger);
    expect(formatSshPublicKey(r.key.publicKey)).toStartWith("ecdsa-sha2-nistp256 ");
  });
});

describe("keypair create (keypair in storage)", () => {
  test("writes id_bkp and id_bkp.pub 0600 in a 0700 directory; reuses them; --overwrite records the old key", async () => {
    await using t = await tempDir();
    const storage = join(t.path, "bot");
    const r = await createKeypair(opts({ storage }), silentLogger);
    expect(r.location).toMatchObject({ kind: "storage", path: storage });
    expect(await mode(storage)).toBe(0o700);
    for (const f of [BOUND_KEY_FILE, BOUND_PUBLIC_KEY_FILE]) expect(await mode(join(storage, f))).toBe(0o600);
    const pub = formatSshPublicKey(r.key.publicKey);
    expect((await readFile(join(storage, BOUND_PUBLIC_KEY_FILE), "utf8")).trim()).toBe(pub);
    const listed = sh(["ssh-keygen", "-l", "-f", join(storage, BOUND_PUBLIC_KEY_FILE)]);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain("(ED25519)");

    const text = renderText(r, false);
    expect(printedToken(text).spec.bound_keypair!.recovery).toEqual({ limit: 1, mode: "standard" });
    expect(text).toContain(`The keypair is in directory "${storage}"`);
    expect(text).not.toContain("PRIVATE KEY");
    expect(JSON.parse(renderJson(r, false))).toEqual({ public_key: pub });

    const again = await createKeypair(opts({ storage: `file://${storage}` }), silentLogger);
    expect(again.reused).toBe(true);
    expect(keyId(again.key.publicKey)).toBe(keyId(r.key.publicKey));

    const replaced = await createKeypair(opts({ storage, overwrite: true }), silentLogger, new Date("2026-01-02T03:04:05Z"));
    expect(keyId(replaced.key.publicKey)).not.toBe(keyId(r.key.publicKey));
    const state = await new BoundKeyStore(new BotStore(new DirectoryDestination({ path: storage, acls: "off", log: silentLogger }))).loadState();
    expect(state.history).toEqual([{ public_key: pub, key_id: keyId(r.key.publicKey), retired_at: "2026-01-02T03:04:05.000Z", reason: "replaced" }]);
  });

  test("refuses memory storage, --storage with --static, and --static-key-path without --static", async () => {
    expect((await rejection(createKeypair(opts({ storage: "memory://" }), silentLogger))).message).toBe(
      `Cannot keep the bound keypair in "memory://" storage: it would be lost when this command exits; pass a directory, or use --static`,
    );
    expect((await rejection(createKeypair(opts({ static: true, storage: "/tmp/x" }), silentLogger))).message).toStartWith("Cannot use --storage with --static");
    expect((await rejection(createKeypair(opts({ staticKeyPath: "/tmp/x" }), silentLogger))).message).toBe("Cannot use --static-key-path without --static");
  });
});

describe("keypair create --proxy-server", () => {
  test("shows the cluster's name", async () => {
    await using auth = await startTestAuth();
    const r = await createKeypair(opts({ static: true, proxyServer: auth.addr }), silentLogger);
    expect(r.cluster?.cluster_name).toBe("agent.test");
    expect(renderText(r, true)).toStartWith(`Cluster "agent.test" answered (machine-id `);
  });

  test("an unreachable address stops it before any key is written", async () => {
    await using t = await tempDir();
    const auth = await startTestAuth();
    const addr = auth.addr;
    await auth[Symbol.asyncDispose]();
    const path = join(t.path, "key");
    const e = await rejection(createKeypair(opts({ static: true, staticKeyPath: path, proxyServer: addr }), silentLogger));
    expect(isAppError(e, "CONNECTION_PROBLEM")).toBe(true);
    expect(e.message).toStartWith(`Cannot reach "${addr}" (--proxy-server): `);
    expect(await Bun.file(path).exists()).toBe(false);
  });

  test("something that is not an auth service is reported as such", async () => {
    await using t = await tempDir();
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      tls: await selfSigned(t.path),
      fetch: () => new Response("<html>hello</html>", { headers: { "content-type": "text/html" } }),
    });
    try {
      const e = await rejection(createKeypair(opts({ static: true, proxyServer: `127.0.0.1:${server.port}` }), silentLogger));
      expect(e.message).toBe(`Cannot ping "127.0.0.1:${server.port}" (--proxy-server): the answer is not JSON; is it a machine-id auth service?`);
    } finally {
      await server.stop(true);
    }
  });
});

/** A throwaway self-signed certificate made with OpenSSL. */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, "tls.key");
  const cert = join(dir, "tls.crt");
  const r = sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"]);
  expect(r.code).toBe(0);
  return { cert: await readFile(cert, "utf8"), key: await readFile(key, "utf8") };
}

