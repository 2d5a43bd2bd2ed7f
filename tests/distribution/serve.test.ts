/**
 * The auth service's distribution handlers, in process: the rendered install script
 * (validation, quoting that no input can break out of) and the binary downloads.
 */

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { caPinOf, loadBuildChecksums, renderInstallScript, serveDownload, serveInstallScript, shellQuote } from "../../src/auth/install/index.ts";
import { makeTestCa, run, tempDir, type TestCa } from "./_helpers.ts";

let dir: { path: string } & AsyncDisposable;
let ca: TestCa;
let pin: string;

beforeAll(async () => {
  dir = await tempDir();
  ca = await makeTestCa(dir.path);
  pin = caPinOf(ca.caPem);
}, 30_000);
afterAll(() => dir?.[Symbol.asyncDispose]());

const get = (path: string, method = "GET") => new Request(`https://auth.example.com:3025${path}`, { method });

describe("renderInstallScript()", () => {
  test("fills in address, pin, CA and units, and bash reads them back verbatim", async () => {
    const script = renderInstallScript({ publicAddr: "auth.example.com:3025", caPin: pin, caCertPem: ca.caPem, version: "1.2.3", defaultJoinMethod: "token" });
    const block = script.slice(script.indexOf("# BEGIN SERVED VALUES"), script.indexOf("# END SERVED VALUES"));
    const path = join(dir.path, "values.sh");
    await writeFile(path, `${block}\nprintf '%s\\0' "$AUTH_SERVER" "$CA_PIN" "$CA_PEM" "$SERVER_VERSION" "$DEFAULT_JOIN_METHOD" "$DOWNLOAD_TRUST" "$AGENT_UNIT"\n`);
    const r = await run(["bash", path]);
    const [addr, gotPin, pem, version, method, trust, unit] = r.stdout.split("\0");
    expect([addr, gotPin, version, method, trust]).toEqual(["auth.example.com:3025", pin, "1.2.3", "token", "embedded-ca"]);
    expect(pem).toBe(ca.caPem.trimEnd());
    expect(unit).toBe(await Bun.file(join(import.meta.dir, "../../systemd/machine-id.service")).text());
  });

  const base = () => ({ publicAddr: "auth.example.com:3025", caPin: pin, caCertPem: ca.caPem, version: "0.1.0" });
  // messages are thunks: the CA (and so its pin) only exists once beforeAll ran
  const bad: [string, () => Parameters<typeof renderInstallScript>[0], () => string][] = [
    ["an address with shell syntax", () => ({ ...base(), publicAddr: "a.com';reboot;'" }), () => `Invalid public address "a.com';reboot;'"`],
    ["a port out of range", () => ({ ...base(), publicAddr: "a.com:70000" }), () => 'Invalid public address "a.com:70000"'],
    ["a pin that is not sha256 hex", () => ({ ...base(), caPin: "sha256:XYZ" }), () => 'Invalid CA pin "sha256:XYZ"'],
    ["a pin of another CA", () => ({ ...base(), caPin: `sha256:${"a".repeat(64)}` }), () => `the CA certificate's pin is "${pin}"`],
    ["no certificate", () => ({ ...base(), caCertPem: "nope" }), () => "expected one PEM certificate, found 0"],
    ["two certificates", () => ({ ...base(), caCertPem: ca.caPem + ca.certPem }), () => "expected one PEM certificate, found 2"],
    ["a version with a quote", () => ({ ...base(), version: "1'" }), () => `Invalid version "1'"`],
    ["an unknown download trust", () => ({ ...base(), downloadTrust: "none" as never }), () => 'Invalid download trust "none"'],
    ["a checksum that is not SHA-256 hex", () => ({ ...base(), checksums: { x64: "abc';reboot;'" } }), () => `Invalid SHA-256 of machine-id-linux-x64 "abc';reboot;'"`],
  ];
  for (const [name, options, message] of bad) {
    test(`rejects ${name}`, () => {
      expect(() => renderInstallScript(options())).toThrow(message());
    });
  }

  test("shellQuote() round-trips any string through bash", async () => {
    const samples = fc.sample(fc.string({ unit: "binary", maxLength: 40 }).map((s) => s.replace(/\0/g, "")), { numRuns: 200, seed: 5 });
    samples.push("'", "''", "'\\''", "$(reboot)", "`id`", "\n", "a'b\"c$d");
    const path = join(dir.path, "quote.sh");
    await writeFile(path, samples.map((s) => `printf '%s\\0' ${shellQuote(s)}`).join("\n") + "\n");
    const r = await run(["bash", path]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(samples);
  });
});

describe("serveInstallScript()", () => {
  test("serves the script for GET, headers only for HEAD, 405 for POST, and ignores other paths", async () => {
    const options = { publicAddr: "auth.example.com:3025", caPin: pin, caCertPem: ca.caPem, version: "0.1.0" };
    const res = serveInstallScript(get("/scripts/install.sh"), options)!;
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/x-shellscript; charset=utf-8");
    const body = await res.text();
    expect(body).toContain(`CA_PIN='${pin}'`);
    const head = serveInstallScript(get("/scripts/install.sh", "HEAD"), options)!;
    expect(head.headers.get("content-length")).toBe(String(Buffer.byteLength(body)));
    expect(await head.text()).toBe("");
    const post = serveInstallScript(get("/scripts/install.sh", "POST"), options)!;
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect(serveInstallScript(get("/scripts/other.sh"), options)).toBeUndefined();
  });
});

describe("serveDownload()", () => {
  test("serves a binary and the build's checksum under the served name", async () => {
    await using d = await tempDir();
    await writeFile(join(d.path, "machine-id-linux-x64"), "binary bytes");
    const sum = "b".repeat(64);
    await writeFile(join(d.path, "machine-id-linux-x64.sha256"), `${sum}  machine-id\n`);
    const checksums = await loadBuildChecksums({ distDir: d.path, serveSelf: false });
    expect(checksums).toEqual({ x64: sum });
    const bin = (await serveDownload(get("/downloads/machine-id-linux-x64"), { distDir: d.path, serveSelf: false, checksums }))!;
    expect(bin.status).toBe(200);
    expect(bin.headers.get("content-type")).toBe("application/octet-stream");
    expect(bin.headers.get("content-length")).toBe("12");
    expect(await bin.text()).toBe("binary bytes");
    const s = (await serveDownload(get("/downloads/machine-id-linux-x64.sha256"), { distDir: d.path, serveSelf: false, checksums }))!;
    expect(await s.text()).toBe(`${sum}  machine-id-linux-x64\n`);
    // what the dist dir holds later changes neither the served checksum nor the script's
    await writeFile(join(d.path, "machine-id-linux-x64"), "swapped bytes");
    await writeFile(join(d.path, "machine-id-linux-x64.sha256"), `${"c".repeat(64)}  machine-id-linux-x64\n`);
    const again = (await serveDownload(get("/downloads/machine-id-linux-x64.sha256"), { distDir: d.path, serveSelf: false, checksums }))!;
    expect(await again.text()).toBe(`${sum}  machine-id-linux-x64\n`);
    const script = renderInstallScript({ publicAddr: "auth.example.com:3025", caPin: pin, caCertPem: ca.caPem, version: "0.1.0", checksums });
    expect(script).toContain(`\nSHA256_X64='${sum}'\nSHA256_ARM64=''\n`);
  });

  test("no checksum when the build left none: never computed from the file served", async () => {
    await using d = await tempDir();
    await writeFile(join(d.path, "machine-id-linux-arm64"), "arm bytes");
    const missing: string[] = [];
    const checksums = await loadBuildChecksums({ distDir: d.path, serveSelf: false }, (b) => missing.push(b));
    expect(checksums).toEqual({});
    expect(missing).toEqual([join(d.path, "machine-id-linux-arm64")]);
    const s = (await serveDownload(get("/downloads/machine-id-linux-arm64.sha256"), { distDir: d.path, serveSelf: false, checksums }))!;
    expect(s.status).toBe(404);
    expect(await s.text()).toBe("No build checksum for machine-id-linux-arm64 was found when the auth service started\n");
  });

  test("404 for an arch with no binary, undefined for any other path (no traversal)", async () => {
    await using d = await tempDir();
    const missing = (await serveDownload(get("/downloads/machine-id-linux-arm64"), { distDir: d.path, serveSelf: false }))!;
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe("No machine-id binary for linux-arm64 on this server\n");
    for (const p of ["/downloads/machine-id-linux-riscv64", "/downloads/machine-id-linux-x64/../../etc/passwd", "/downloads/%2e%2e/etc/passwd", "/downloads/"]) {
      expect(await serveDownload(get(p), { distDir: d.path })).toBeUndefined();
    }
  });

  test("serves the compressed forms the build left beside the binary, as they are; 404 for the others", async () => {
    await using d = await tempDir();
    await writeFile(join(d.path, "machine-id-linux-x64"), "binary bytes");
    await writeFile(join(d.path, "machine-id-linux-x64.gz"), "gzip bytes");
    await writeFile(join(d.path, "machine-id-linux-x64.zst"), "zstd bytes!");
    const gz = (await serveDownload(get("/downloads/machine-id-linux-x64.gz"), { distDir: d.path, serveSelf: false }))!;
    expect(gz.status).toBe(200);
    expect(gz.headers.get("content-type")).toBe("application/gzip");
    expect(gz.headers.get("content-length")).toBe("10");
    expect(gz.headers.get("content-disposition")).toBe('attachment; filename="machine-id-linux-x64.gz"');
    expect(await gz.text()).toBe("gzip bytes");
    const zst = (await serveDownload(get("/downloads/machine-id-linux-x64.zst", "HEAD"), { distDir: d.path, serveSelf: false }))!;
    expect(zst.headers.get("content-type")).toBe("application/zstd");
    expect(zst.headers.get("content-length")).toBe("11");
    expect(await zst.text()).toBe("");
    const xz = (await serveDownload(get("/downloads/machine-id-linux-x64.xz"), { distDir: d.path, serveSelf: false }))!;
    expect(xz.status).toBe(404);
    expect(await xz.text()).toBe("No .xz form of machine-id-linux-x64 on this server; the uncompressed binary is at /downloads/machine-id-linux-x64\n");
    // no compressed form without the binary itself, nor of any other suffix
    await using e = await tempDir();
    await writeFile(join(e.path, "machine-id-linux-arm64.gz"), "orphan");
    expect((await serveDownload(get("/downloads/machine-id-linux-arm64.gz"), { distDir: e.path, serveSelf: false }))!.status).toBe(404);
    expect(await serveDownload(get("/downloads/machine-id-linux-x64.bz2"), { distDir: d.path })).toBeUndefined();
    expect(await serveDownload(get("/downloads/machine-id-linux-x64.gz.sha256"), { distDir: d.path })).toBeUndefined();
  });

  test("HEAD answers with the length and no body; POST is refused", async () => {
    await using d = await tempDir();
    await writeFile(join(d.path, "machine-id-linux-x64"), "12345");
    const head = (await serveDownload(get("/downloads/machine-id-linux-x64", "HEAD"), { distDir: d.path }))!;
    expect(head.headers.get("content-length")).toBe("5");
    expect(await head.text()).toBe("");
    const post = (await serveDownload(get("/downloads/machine-id-linux-x64", "POST"), { distDir: d.path }))!;
    expect(post.status).toBe(405);
  });
});
