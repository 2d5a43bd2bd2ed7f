// Reads from an auth service before its CA pin is checked: a hostile server sending an
// endless body must make the agent fail at once with a clear error and a bounded read,
// and see its connection closed (not the agent buffering the body until memory runs out).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { resolveTrust } from "../../src/agent/bot/index.ts";
import { createKeypair } from "../../src/agent/keypair/index.ts";
import { AppError } from "../../src/lib/errors.ts";
import { silentLogger } from "../../src/lib/log.ts";
import { MAX_UNVERIFIED_BYTES } from "../../src/protocol/index.ts";
import { testServerTls } from "../_tls.ts";

/** One connection as the hostile server saw it. */
interface Seen {
  path: string;
  written: number;
  closed: Promise<void>;
}

let server: https.Server;
let addr: string;
const seen: Seen[] = [];
const HUGE = 256 << 20;

beforeAll(async () => {
  const { certPem, keyPem } = await testServerTls("hostile");
  // Every answer is 200 with a huge body: 64 KiB chunks as fast as the client takes
  // them. It ends after HUGE bytes only so that code without the cap (which would read
  // it all) fails this test instead of exhausting the test machine's memory.
  server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
    let closed!: () => void;
    const one: Seen = { path: req.url ?? "", written: 0, closed: new Promise((r) => (closed = r)) };
    seen.push(one);
    req.socket.on("close", () => closed());
    res.writeHead(200, { "content-type": "application/json" });
    const chunk = Buffer.alloc(64 << 10, 0x41);
    const pump = () => {
      while (!res.destroyed && !res.writableEnded) {
        if (one.written >= HUGE) return void res.end();
        one.written += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
    };
    res.on("error", () => {});
    pump();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    return e as AppError;
  }
  throw new Error("expected a failure");
}

describe("reads before the CA pin holds are capped", () => {
  test("fetching the CA to check against ca_pins: an endless body fails with TRUST_FAILURE and the connection is closed", async () => {
    const before = seen.length;
    const e = await failure(resolveTrust(addr, { caPins: ["sha256:" + "0".repeat(64)], insecure: false }, silentLogger));
    expect(e).toBeInstanceOf(AppError);
    expect(e.code).toBe("TRUST_FAILURE");
    expect(e.details).toEqual({ reason: "unverified_answer_too_large", limit: MAX_UNVERIFIED_BYTES });
    expect(e.message).toBe(
      `Cannot read the cluster CA from "${addr}": the answer is larger than ${MAX_UNVERIFIED_BYTES} bytes, more than any machine-id auth service sends before it is verified; the connection was closed`,
    );
    expect(seen.length).toBe(before + 1);
    expect(seen[before]!.path).toStartWith("/webapi/auth/export");
    await seen[before]!.closed; // the agent hung up: the server sees the close
  });

  test("insecure: true takes the same bounded read", async () => {
    const before = seen.length;
    const e = await failure(resolveTrust(addr, { caPins: [], insecure: true }, silentLogger));
    expect(e.details?.reason).toBe("unverified_answer_too_large");
    await seen[before]!.closed;
  });

  test("keypair create --proxy-server: the unverified ping is capped too", async () => {
    const before = seen.length;
    const e = await failure(createKeypair({ static: true, overwrite: false, proxyServer: addr, algorithm: "ed25519" }, silentLogger));
    expect(e.code).toBe("TRUST_FAILURE");
    expect(e.message).toStartWith(`Cannot read the ping answer of "${addr}" (--proxy-server): the answer is larger than ${MAX_UNVERIFIED_BYTES} bytes`);
    await seen[before]!.closed;
  });
});
