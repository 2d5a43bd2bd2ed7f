/**
 * sd_notify against a real AF_UNIX datagram socket (a python3 receiver, since neither
 * Node nor Bun can open one), by path and in the abstract namespace, from `bun test` and
 * from inside the compiled executable.
 */

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createNotifier, runWatchdog, type NotifyTransport } from "../../src/agent/systemd/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { Logger } from "../../src/lib/log.ts";
import { compiledBinary, ROOT, runOk, tempDir } from "./_helpers.ts";
import { receiver } from "../_support/notify.ts";


describe("createNotifier()", () => {
  for (const [kind, article] of [["path", "a"], ["abstract", "an"]] as const) {
    test(`delivers READY, STATUS, RELOADING, WATCHDOG and STOPPING to ${article} ${kind} socket`, async () => {
      await using d = await tempDir();
      const address = kind === "path" ? join(d.path, "notify.sock") : `@machine-id-test-${process.pid}-${Date.now()}`;
      await using r = await receiver(address, 5);
      const n = createNotifier({ NOTIFY_SOCKET: address, WATCHDOG_USEC: "10000000", WATCHDOG_PID: String(process.pid) });
      try {
        expect(n.enabled).toBe(true);
        expect(n.watchdogIntervalMs).toBe(5000);
        expect(n.ready("joined as bot ci\nrenewing")).toBe(true);
        expect(await r.next()).toBe("READY=1\nSTATUS=joined as bot ci renewing");
        expect(n.status("renewed")).toBe(true);
        expect(await r.next()).toBe("STATUS=renewed");
        expect(n.reloading()).toBe(true);
        expect(await r.next()).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
        expect(n.watchdog()).toBe(true);
        expect(await r.next()).toBe("WATCHDOG=1");
        expect(n.stopping("bye")).toBe(true);
        expect(await r.next()).toBe("STOPPING=1\nSTATUS=bye");
      } finally {
        n.close();
      }
    }, 20_000);
  }

  test("works inside the compiled executable (bun:ffi is part of it)", async () => {
    const bin = await compiledBinary();
    await using d = await tempDir();
    const address = join(d.path, "notify.sock");
    await using r = await receiver(address, 1);
    const script = join(d.path, "notify-from-binary.ts");
    await Bun.write(script, `import { createNotifier } from ${JSON.stringify(join(ROOT, "src/lib/sd_notify.ts"))};\ncreateNotifier().ready("from the binary");\n`);
    // BUN_BE_BUN makes the compiled executable act as the bun CLI, on the same embedded runtime.
    await runOk([bin, script], { env: { BUN_BE_BUN: "1", NOTIFY_SOCKET: address, PATH: "/nonexistent" } });
    expect(await r.next()).toBe("READY=1\nSTATUS=from the binary");
  }, 30_000);

  test("is a no-op without NOTIFY_SOCKET", () => {
    const n = createNotifier({});
    expect(n.enabled).toBe(false);
    expect([n.ready(), n.status("x"), n.watchdog(), n.stopping(), n.reloading()]).toEqual([false, false, false, false, false]);
    n.close();
  });

  test("ignores a watchdog meant for another process and WATCHDOG without WatchdogSec", () => {
    const sent: string[] = [];
    const transport: NotifyTransport = { send: (m) => void sent.push(m), close() {} };
    const other = createNotifier({ NOTIFY_SOCKET: "/run/x", WATCHDOG_USEC: "1000000", WATCHDOG_PID: "1" }, { transport, pid: 42 });
    expect(other.watchdogIntervalMs).toBeUndefined();
    expect(other.watchdog()).toBe(false);
    const none = createNotifier({ NOTIFY_SOCKET: "/run/x" }, { transport });
    expect(none.watchdog()).toBe(false);
    expect(sent).toEqual([]);
  });

  test("rejects a notify socket that is neither a path nor abstract, and a bad WATCHDOG_USEC", () => {
    expect(() => createNotifier({ NOTIFY_SOCKET: "vsock:2:1234" })).toThrow('Cannot use notify socket "vsock:2:1234": it must be an absolute path or start with "@"');
    expect(() => createNotifier({ NOTIFY_SOCKET: "/" + "x".repeat(200) })).toThrow("the address must be 1 to 107 bytes long");
    expect(() => createNotifier({ NOTIFY_SOCKET: "@x", WATCHDOG_USEC: "soon" })).toThrow('Invalid WATCHDOG_USEC "soon"');
  });

  test("a send to a socket nobody listens on returns false and logs, never throws", async () => {
    await using d = await tempDir();
    const lines: string[] = [];
    const logger = new Logger({ sink: { write: (l) => void lines.push(l) } });
    const n = createNotifier({ NOTIFY_SOCKET: join(d.path, "absent.sock") }, { logger });
    expect(n.ready()).toBe(false);
    n.close();
    expect(lines.join("")).toMatch(/Cannot notify systemd .*ENOENT/);
  });
});

describe("runWatchdog()", () => {
  test("pings every half WATCHDOG_USEC until stopped", async () => {
    const sent: string[] = [];
    const n = createNotifier({ NOTIFY_SOCKET: "@x", WATCHDOG_USEC: "2000000" }, { transport: { send: (m) => void sent.push(m), close() {} } });
    const clock = new FakeClock();
    const stop = new AbortController();
    const done = runWatchdog(n, stop.signal, clock);
    const waitForSleeper = async () => {
      while (clock.waiting === 0) await Promise.resolve();
    };
    await waitForSleeper();
    expect(sent).toEqual(["WATCHDOG=1"]);
    clock.advance(999);
    await Promise.resolve();
    expect(sent.length).toBe(1);
    clock.advance(1);
    await waitForSleeper();
    expect(sent.length).toBe(2);
    stop.abort();
    await done;
  });

  test("returns at once when the watchdog is off", async () => {
    await runWatchdog(createNotifier({}), new AbortController().signal, new FakeClock());
  });
});
