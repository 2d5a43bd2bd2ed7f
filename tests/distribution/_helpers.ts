/**
 * Shared fixtures for the distribution tests: the compiled executable, temp dirs that
 * clean themselves up, a throwaway CA made with openssl, a local HTTPS server and a
 * process runner that always reaps its child.
 */

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { TempDir } from "../_support/tmp.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const HOST_ARCH = process.arch === "arm64" ? "arm64" : "x64";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with no stdin; the child is always reaped. */
export async function run(cmd: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: options.env ?? process.env,
    cwd: options.cwd ?? ROOT,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Fails with the command's output when it did not exit 0. */
export async function runOk(cmd: string[], options: Parameters<typeof run>[1] = {}): Promise<RunResult> {
  const r = await run(cmd, options);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** A temp directory removed (recursively) when the `await using` scope ends (tests/_support/tmp.ts). */
export function tempDir(prefix = "machine-id-dist-"): TempDir {
  return new TempDir(prefix);
}

let built: Promise<string> | undefined;

/**
 * The compiled executable for this host: dist/machine-id-linux-<arch> (or the older
 * dist/machine-id), built with `bun run build` when neither exists.
 */
export function compiledBinary(): Promise<string> {
  built ??= (async () => {
    const candidates = [join(ROOT, "dist", `machine-id-linux-${HOST_ARCH}`), join(ROOT, "dist", "machine-id")];
    if (!candidates.some((c) => existsSync(c))) await runOk([process.execPath, "run", "build"]);
    const found = candidates.find((c) => existsSync(c));
    if (!found) throw new Error(`bun run build produced none of ${candidates.join(", ")}`);
    return found;
  })();
  return built;
}

export async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

export interface TestCa {
  caPath: string;
  caPem: string;
  keyPem: string;
  certPem: string;
}

/** A self-signed P-256 CA and a server certificate for 127.0.0.1 and localhost it signed. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  const p = (n: string) => join(dir, n);
  const ossl = (...args: string[]) => runOk(["openssl", ...args]);
  await ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"), "-subj", "/O=test/CN=test host CA", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  await ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=127.0.0.1");
  await Bun.write(p("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await ossl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("server.ext"));
  return {
    caPath: p("ca.pem"),
    caPem: await readFile(p("ca.pem"), "utf8"),
    keyPem: await readFile(p("server.key"), "utf8"),
    certPem: await readFile(p("server.pem"), "utf8"),
  };
}

export interface TestServer extends AsyncDisposable {
  port: number;
  addr: string;
}

/**
 * An HTTPS server on 127.0.0.1:0 (HTTP/2 with HTTP/1.1 fallback, as the auth service
 * binds) that turns each request into a fetch Request for `handler`.
 */
export async function startServer(tls: { keyPem: string; certPem: string }, handler: (req: Request) => Promise<Response | undefined> | Response | undefined): Promise<TestServer> {
  const server = createSecureServer({ key: tls.keyPem, cert: tls.certPem, allowHTTP1: true }, (req, res) => {
    void respond(req, res, handler);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    addr: `127.0.0.1:${port}`,
    [Symbol.asyncDispose]: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

async function respond(req: Http2ServerRequest, res: Http2ServerResponse, handler: (req: Request) => Promise<Response | undefined> | Response | undefined): Promise<void> {
  try {
    const request = new Request(`https://${req.headers[":authority"] ?? req.headers.host}${req.url}`, { method: req.method });
    const response = (await handler(request)) ?? new Response("not found\n", { status: 404 });
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) {
      for await (const chunk of response.body) {
        if (!res.write(chunk)) await new Promise((ok) => res.once("drain", ok));
      }
    }
    res.end();
  } catch (e) {
    res.writeHead(500);
    res.end(String(e));
  }
}
