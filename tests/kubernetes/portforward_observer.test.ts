// The port-forward observer of the Kubernetes proxy: the ports a client opens SPDY
// streams for, read passively from its bytes over legacy SPDY/3.1 and WebSocket-
// tunnelled SPDY, whatever the chunking; and the bounds it keeps against a hostile
// client (malformed frames, a zlib bomb, more ports than the cap), where it stops and
// says why instead of throwing.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { constants as zlibConstants, createDeflate, deflateSync } from "node:zlib";
import { BLOCK_OVERHEAD, DEFAULT_OBSERVER_LIMITS, PortForwardObserver, SPDY3_DICTIONARY, portNumber, urlPorts, type PortForwardFraming, type UnparsedReason } from "../_support/portforward.ts";
import { waitFor } from "../_support/wait.ts";
import { SpdyClient, nameValueBlock, spdyControl, spdyData, wsClientFrame } from "./_spdy_client.ts";

/** The fields of a SYN_STREAM before its header block: stream `id`, no associated stream, priority and slot 0. */
function synFields(id: number): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt32BE(id);
  return b;
}

/** A control frame's body of 32-bit words. */
function words(...w: number[]): Buffer {
  const b = Buffer.alloc(4 * w.length);
  w.forEach((x, i) => b.writeUInt32BE(x >>> 0, 4 * i));
  return b;
}

/** Feeds `bytes` to a new observer in chunks cut at `cuts` (offsets), and returns what it saw and every onPort call. */
async function observe(framing: PortForwardFraming, bytes: Buffer, cuts: number[] = [], limits = DEFAULT_OBSERVER_LIMITS) {
  const calls: number[] = [];
  const o = new PortForwardObserver(framing, (p) => calls.push(p), limits);
  const copy = Buffer.from(bytes);
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    o.feed(bytes.subarray(at, cut));
    at = cut;
  }
  const seen = await o.finish();
  // it only looks: not a byte it was shown changed (the proxy hands the same buffers on)
  expect(bytes.equals(copy)).toBe(true);
  return { seen, calls };
}

/** Splits `bytes` into client WebSocket messages at `cuts`, fragmenting every other one in two. */
function tunnel(bytes: Buffer, cuts: number[] = []): Buffer {
  const frames: Buffer[] = [];
  let at = 0;
  let i = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    const msg = bytes.subarray(at, cut);
    at = cut;
    if (i++ % 2 === 1 && msg.length > 1) {
      const half = msg.length >> 1;
      frames.push(wsClientFrame(msg.subarray(0, half), { fin: false }));
      frames.push(wsClientFrame(Buffer.from("keepalive"), { opcode: 9 })); // a ping between fragments
      frames.push(wsClientFrame(msg.subarray(half), { opcode: 0 }));
    } else frames.push(wsClientFrame(msg));
  }
  return Buffer.concat(frames);
}

/**
 * What kubectl sends forwarding two connections to 5432 and one to 8080: each
 * connection's error and data streams, data both ways (1 MiB on the first), a PING,
 * WINDOW_UPDATE and GOAWAY.
 */
async function twoPorts(): Promise<Buffer> {
  const c = new SpdyClient();
  try {
    return Buffer.concat([
      await c.forward(1, 5432, 0),
      spdyData(3, Buffer.alloc(1 << 20, 0x61)),
      spdyControl(6, Buffer.from([0, 0, 0, 1])),
      await c.forward(5, 5432, 1),
      spdyData(7, Buffer.from("select 1")),
      spdyControl(9, Buffer.from([0, 0, 0, 7, 0, 1, 0, 0])),
      await c.forward(9, 8080, 2),
      spdyData(11, Buffer.from("GET / HTTP/1.1\r\n\r\n"), true),
      spdyControl(7, Buffer.alloc(8)),
    ]);
  } finally {
    c.close();
  }
}

describe("PortForwardObserver", () => {
  test("reads the ports of legacy SPDY streams, each port once for its error and data streams and connections", async () => {
    const { seen, calls } = await observe("spdy", await twoPorts());
    expect(seen).toEqual({ ports: [5432, 8080], observed: "complete" });
    expect(calls).toEqual([5432, 8080]);
  });

  test("reads the same through WebSocket-tunnelled SPDY (fragmented messages, pings between)", async () => {
    const spdy = await twoPorts();
    const { seen, calls } = await observe("websocket", tunnel(spdy, [5, 40, 100, 4000, 70000, spdy.length - 3]));
    expect(seen).toEqual({ ports: [5432, 8080], observed: "complete" });
    expect(calls).toEqual([5432, 8080]);
  });

  test("gives the same answer for every cut of the bytes into chunks and messages", async () => {
    const spdy = await twoPorts();
    const cuts = fc.array(fc.integer({ min: 1, max: spdy.length - 1 }), { maxLength: 40 });
    await fc.assert(
      fc.asyncProperty(cuts, cuts, async (messages, chunks) => {
        const raw = await observe("spdy", spdy, chunks);
        expect(raw.seen).toEqual({ ports: [5432, 8080], observed: "complete" });
        const ws = tunnel(spdy, messages);
        const tunnelled = await observe("websocket", ws, chunks.map((c) => Math.floor((c / spdy.length) * ws.length)));
        expect(tunnelled.seen).toEqual({ ports: [5432, 8080], observed: "complete" });
      }),
      { numRuns: 60 },
    );
  });

  test("one byte at a time", async () => {
    const spdy = await twoPorts();
    const small = spdy.subarray(0, 400); // the first connection's streams, and the start of its data
    const ws = tunnel(small, [3, 17, 50, 120]);
    const each = (n: number) => Array.from({ length: n }, (_, i) => i);
    expect((await observe("spdy", small, each(small.length))).seen.ports).toEqual([5432]);
    expect((await observe("websocket", ws, each(ws.length))).seen.ports).toEqual([5432]);
  });

  test("keeps the zlib context through SYN_REPLY and HEADERS blocks, reading ports only from SYN_STREAM", async () => {
    const c = new SpdyClient();
    const stream = (id: number) => Buffer.from([0, 0, 0, id]);
    const bytes = Buffer.concat([
      await c.synStream(1, [["streamtype", "error"], ["port", "22"]]),
      spdyControl(8, Buffer.concat([stream(1), await c.compress(nameValueBlock([["streamtype", "data"], ["port", "9999"]]))])),
      spdyControl(2, Buffer.concat([stream(2), await c.compress(nameValueBlock([["streamtype", "data"], ["port", "9998"]]))])),
      await c.synStream(3, [["streamtype", "data"], ["port", "443"]]),
    ]);
    c.close();
    expect((await observe("spdy", bytes)).seen).toEqual({ ports: [22, 443], observed: "complete" });
  });

  test("records only ports the API server would forward: decimal 1 to 65535 on data or error streams, the first value", async () => {
    const c = new SpdyClient();
    const bytes = Buffer.concat([
      await c.synStream(1, [["streamtype", "data"], ["port", "0"]]),
      await c.synStream(3, [["streamtype", "data"], ["port", "65536"]]),
      await c.synStream(5, [["streamtype", "data"], ["port", "+80"]]),
      await c.synStream(7, [["streamtype", "resize"], ["port", "81"]]),
      await c.synStream(9, [["streamtype", "data"]]),
      await c.synStream(11, [["streamtype", "data"], ["port", "0082"]]),
      await c.synStream(13, [["streamtype", "error"], ["port", "83\u000084"]]),
      await c.synStream(15, [["streamtype", "error"], ["port", "65535"], ["port", "85"]]),
      await c.synStream(17, [["streamtype", "data"], ["port", " 86"]]),
      await c.synStream(19, [["streamtype", "data"], ["port", "0".repeat(30) + "65536"]]),
      await c.synStream(21, [["streamtype", "data"], ["port", "0x57"]]),
    ]);
    c.close();
    expect((await observe("spdy", bytes)).seen).toEqual({ ports: [82, 83, 65535], observed: "complete" });
  });

  test("a name with a byte-order mark is another name to Go, never `port` or `streamtype`", async () => {
    // the third review's proof: a TextDecoder drops a leading U+FEFF, so "\uFEFFport": "80"
    // read as the stream's first `port` and hid the real one. Go keys the name by its bytes
    // (a non-token byte leaves it as it is) and forwards the `port` header's 22
    const cases: [string, [string, string][]][] = [
      ["decoy port", [["\uFEFFport", "x"]]],
      ["decoy port 80", [["\uFEFFport", "80"]]],
      ["decoy streamtype", [["\uFEFFstreamtype", "x"]]],
    ];
    for (const [label, decoy] of cases) {
      const c = new SpdyClient();
      const h = (t: string): [string, string][] => [...decoy, ["streamtype", t], ["port", "22"], ["requestid", "0"]];
      const bytes = Buffer.concat([await c.synStream(1, h("error")), await c.synStream(3, h("data"))]);
      c.close();
      for (const framing of ["spdy", "websocket"] as const) {
        const { seen } = await observe(framing, framing === "spdy" ? bytes : tunnel(bytes));
        expect({ label, framing, seen }).toEqual({ label, framing, seen: { ports: [22], observed: "complete" } });
      }
    }
  });

  test("a zlib header declaring a small window is read as Go reads it (a 32 KiB window), a header Go refuses stays refused", async () => {
    // the third review: zlib honours CINFO and fails on a reference far into the
    // dictionary, which Go's reader (always 32 KiB) decodes: a way to switch the observer off
    const block = nameValueBlock([["streamtype", "data"], ["port", "22"], ["requestid", "0"], ["accept-charset", "options head post"]]);
    const z = deflateSync(block, { dictionary: SPDY3_DICTIONARY, finishFlush: zlibConstants.Z_SYNC_FLUSH });
    const withHeader = (cinfo: number, validCheck: boolean) => {
      const b = Buffer.from(z);
      b[0] = (cinfo << 4) | 8;
      b[1] = b[1]! & 0xe0;
      b[1] = b[1]! + ((31 - (((b[0]! << 8) | b[1]!) % 31)) % 31);
      if (!validCheck) b[1] = b[1]! ^ 1;
      return spdyControl(1, Buffer.concat([synFields(1), b]));
    };
    for (const cinfo of [7, 1, 0]) {
      const frame = withHeader(cinfo, true);
      // whole, and fed a byte at a time
      expect((await observe("spdy", frame)).seen).toEqual({ ports: [22], observed: "complete" });
      expect((await observe("spdy", frame, Array.from({ length: frame.length }, (_, i) => i))).seen).toEqual({ ports: [22], observed: "complete" });
    }
    for (const [cinfo, check] of [[1, false], [8, true]] as const) {
      expect((await observe("spdy", withHeader(cinfo, check))).seen).toEqual({ ports: [], observed: "unparsed", reason: "bad_header_compression" });
    }
  });

  test("a port with leading zeros is the port, as Go's ParseUint(s, 10, 16) reads it", async () => {
    // the review's proof of concept: the kubelet forwards 22, the observer used to see no port
    const c = new SpdyClient();
    const h = (t: string): [string, string][] => [["streamtype", t], ["port", "00000000000000000022"], ["requestid", "0"]];
    const bytes = Buffer.concat([await c.synStream(1, h("error")), await c.synStream(3, h("data"))]);
    c.close();
    expect((await observe("spdy", bytes)).seen).toEqual({ ports: [22], observed: "complete" });
    expect(["1", "01", "000065535", "0".repeat(100) + "443"].map(portNumber)).toEqual([1, 1, 65535, 443]);
    expect(["", "0", "000", "65536", "99999999999999999999", "+1", "-1", " 1", "1 ", "1_0", "0x1", "1e3", "١"].map(portNumber)).toEqual(Array(13).fill(undefined));
  });

  test("the URL's ports are read as the API server converts them: comma lists, leading zeros", () => {
    // a WebSocket portforward.k8s.io client's ?ports=80,22 forwards both
    expect(urlPorts(["80,22"])).toEqual([80, 22]);
    expect(urlPorts(["0080", "443,00022", "80"])).toEqual([80, 443, 22]);
    expect(urlPorts(["x,81", "", "0,65536", " 82"])).toEqual([81]);
  });

  test("reads a control frame of any version, as Go's framer does (it ignores the version)", async () => {
    const c = new SpdyClient();
    const syn = await c.synStream(1, [["streamtype", "data"], ["port", "2222"]]);
    c.close();
    syn.writeUInt16BE(0x8000 | 2, 0);
    expect((await observe("spdy", syn)).seen).toEqual({ ports: [2222], observed: "complete" });
  });

  test("reads SETTINGS, PING, RST_STREAM, WINDOW_UPDATE and GOAWAY of the sizes Go reads, and the streams after them", async () => {
    const c = new SpdyClient();
    const bytes = Buffer.concat([
      spdyControl(4, words(2, 0x01000007, 1000, 4, 1 << 20)), // SETTINGS of two entries
      spdyControl(4, words(0)),
      spdyControl(6, words(1)),
      await c.forward(1, 5432, 0),
      spdyControl(3, words(1, 5)),
      spdyControl(9, words(3, 65536)),
      await c.forward(5, 8080, 1),
      spdyControl(7, words(5, 0)),
    ]);
    c.close();
    expect((await observe("spdy", bytes)).seen).toEqual({ ports: [5432, 8080], observed: "complete" });
  });

  describe("hidden streams: a control frame whose length is not what Go reads stops it (Go would read on into the frames it wraps)", () => {
    // Go's framer reads a PING's 4 bytes, RST_STREAM's 8, SETTINGS's 4 + 8n and ignores the
    // length: what a longer frame wraps is new frames to it, streams the observer used to skip
    const wrapped: [string, (hidden: Buffer) => Buffer][] = [
      ["PING", (hidden) => spdyControl(6, Buffer.concat([words(1), hidden]))],
      ["RST_STREAM", (hidden) => spdyControl(3, Buffer.concat([words(99, 5), hidden]))],
      ["SETTINGS of no entries", (hidden) => spdyControl(4, Buffer.concat([words(0), hidden]))],
      ["SETTINGS of one entry", (hidden) => spdyControl(4, Buffer.concat([words(1, 7, 100), hidden]))],
      ["WINDOW_UPDATE", (hidden) => spdyControl(9, Buffer.concat([words(1, 100), hidden]))],
      ["GOAWAY", (hidden) => spdyControl(7, Buffer.concat([words(1, 0), hidden]))],
    ];
    for (const [label, wrap] of wrapped) {
      test(`${label} wrapping kubectl's two SYN_STREAMs for port 22`, async () => {
        const c = new SpdyClient();
        const bytes = Buffer.concat([await c.forward(1, 5432, 0), wrap(await c.forward(5, 22, 1))]);
        c.close();
        const { seen, calls } = await observe("spdy", bytes);
        expect(seen).toEqual({ ports: [5432], observed: "unparsed", reason: "bad_spdy_frame" });
        expect(calls).toEqual([5432]);
      });
    }

    test("a SETTINGS whose length promises more than its entries, with the session ending before that length came", async () => {
      // the second review's proof: SETTINGS of length 16384 and no entries, then kubectl's
      // streams for port 22 and data to it, under 16 KiB in all. Go reads the count, then the
      // streams; an observer that waited for the whole length never looked at the count
      const c = new SpdyClient();
      const visible = await c.forward(1, 8080, 0);
      const hidden = Buffer.concat([await c.forward(5, 22, 1), spdyData(7, Buffer.alloc(12_000, 0x41))]);
      c.close();
      const head = Buffer.from([0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x40, 0x00]);
      const bytes = Buffer.concat([visible, head, words(0), hidden]);
      expect(bytes.length - visible.length - head.length).toBeLessThan(0x4000);
      for (const framing of ["spdy", "websocket"] as const) {
        const { seen, calls } = await observe(framing, framing === "spdy" ? bytes : tunnel(bytes));
        expect(seen).toEqual({ ports: [8080], observed: "unparsed", reason: "bad_spdy_frame" });
        expect(calls).toEqual([8080]);
      }
    });

    test("a stream id with the reserved bit set is no stream 0 to Go: the streams after it are read", async () => {
      const c = new SpdyClient();
      const bytes = Buffer.concat([spdyControl(3, words(0x80000000, 5)), await c.forward(1, 22, 0)]);
      c.close();
      expect((await observe("spdy", bytes)).seen).toEqual({ ports: [22], observed: "complete" });
    });

    test("each header block flushed whole (none refers back to a hidden one): visible 8080, hidden 22, visible 8081", async () => {
      // the review's second proof of concept: one zlib stream, every block Z_FULL_FLUSHed,
      // so the blocks after the hidden ones inflate without them
      const d = createDeflate({ dictionary: SPDY3_DICTIONARY });
      const out: Buffer[] = [];
      d.on("data", (chunk: Buffer) => out.push(chunk));
      const syn = async (id: number, port: number, type: string) => {
        d.write(nameValueBlock([["streamtype", type], ["port", String(port)], ["requestid", String(id)]]));
        await new Promise<void>((resolve) => d.flush(zlibConstants.Z_FULL_FLUSH, () => resolve()));
        return spdyControl(1, Buffer.concat([synFields(id), ...out.splice(0)]));
      };
      const decoy = Buffer.concat([await syn(1, 8080, "error"), await syn(3, 8080, "data")]);
      const hidden = Buffer.concat([await syn(5, 22, "error"), await syn(7, 22, "data")]);
      const after = Buffer.concat([await syn(9, 8081, "error"), await syn(11, 8081, "data")]);
      d.destroy();
      const { seen } = await observe("spdy", Buffer.concat([decoy, spdyControl(6, Buffer.concat([words(1), hidden])), after]));
      expect(seen).toEqual({ ports: [8080], observed: "unparsed", reason: "bad_spdy_frame" });
    });
  });

  test("a SYN_STREAM's port is recorded only if Go opens the stream: stream 0 or a name not in lower case ends the connection there", async () => {
    const cases: [string, (c: SpdyClient) => Promise<Buffer>, UnparsedReason][] = [
      ["stream 0", async (c) => spdyControl(1, Buffer.concat([synFields(0), await c.compress(nameValueBlock([["streamtype", "data"], ["port", "22"]]))])), "bad_spdy_frame"],
      ["upper-case names", (c) => c.synStream(5, [["StreamType", "data"], ["Port", "22"]]), "bad_header_block"],
      ["an upper-case name among lower-case ones", (c) => c.synStream(5, [["streamtype", "data"], ["port", "22"], ["X-Extra", "1"]]), "bad_header_block"],
      ["a non-ASCII upper-case name", (c) => c.synStream(5, [["streamtype", "data"], ["port", "22"], ["\u00c4rger", "1"]]), "bad_header_block"],
    ];
    for (const [label, bad, reason] of cases) {
      const c = new SpdyClient();
      const bytes = Buffer.concat([await c.forward(1, 5432, 0), await bad(c), await c.forward(9, 6000, 2)]);
      c.close();
      expect({ label, ...(await observe("spdy", bytes)).seen }).toEqual({ label, ports: [5432], observed: "unparsed", reason });
    }
  });

  test("stops at more distinct ports than the cap: the first ones, and says capped", async () => {
    const c = new SpdyClient();
    const parts: Buffer[] = [];
    for (let p = 1; p <= 70; p++) parts.push(await c.forward(4 * p + 1, 1000 + p, p));
    c.close();
    const { seen, calls } = await observe("spdy", Buffer.concat(parts));
    expect(seen.observed).toBe("capped");
    expect(seen.ports).toEqual(Array.from({ length: 64 }, (_, i) => 1001 + i));
    expect(calls).toHaveLength(64);
  });

  describe("stops observing and says unparsed, keeping the ports seen before", () => {
    const cases: [string, (c: SpdyClient) => Promise<{ framing: PortForwardFraming; bytes: Buffer }>, UnparsedReason][] = [
      ["a SYN_STREAM too short for its fields", async () => ({ framing: "spdy", bytes: spdyControl(1, Buffer.alloc(6)) }), "bad_spdy_frame"],
      ["a control frame of a type Go's framer does not know (NOOP)", async () => ({ framing: "spdy", bytes: spdyControl(5, Buffer.alloc(0)) }), "bad_spdy_frame"],
      ["a control frame of an unknown type", async () => ({ framing: "spdy", bytes: spdyControl(0x1234, words(1)) }), "bad_spdy_frame"],
      ["an RST_STREAM shorter than Go reads (Go would read into the next frame)", async () => ({ framing: "spdy", bytes: spdyControl(3, words(1)) }), "bad_spdy_frame"],
      ["an RST_STREAM of status 0", async () => ({ framing: "spdy", bytes: spdyControl(3, words(1, 0)) }), "bad_spdy_frame"],
      ["a PING of id 0", async () => ({ framing: "spdy", bytes: spdyControl(6, words(0)) }), "bad_spdy_frame"],
      ["a PING with flags", async () => ({ framing: "spdy", bytes: spdyControl(6, words(1), 1) }), "bad_spdy_frame"],
      ["a WINDOW_UPDATE with flags", async () => ({ framing: "spdy", bytes: spdyControl(9, words(1, 1), 1) }), "bad_spdy_frame"],
      ["a SETTINGS shorter than its entries", async () => ({ framing: "spdy", bytes: spdyControl(4, words(2, 1, 1)) }), "bad_spdy_frame"],
      ["a data frame of stream 0", async () => ({ framing: "spdy", bytes: spdyData(0, Buffer.from("x")) }), "bad_spdy_frame"],
      ["a header block that is not zlib", async () => ({ framing: "spdy", bytes: spdyControl(1, Buffer.concat([synFields(5), Buffer.from("not zlib at all")])) }), "bad_header_compression"],
      ["a control frame larger than the cap (never buffered)", async () => ({ framing: "spdy", bytes: spdyControl(1, Buffer.alloc(DEFAULT_OBSERVER_LIMITS.maxControlFrame + 1)) }), "control_frame_too_large"],
      [
        "a header block cut short (no end of its zlib data)",
        async (c) => {
          const whole = await c.synStream(1, [["streamtype", "data"], ["port", "7000"], ["padding", "x".repeat(300)]]);
          const body = whole.subarray(8, whole.length - 20);
          return { framing: "spdy", bytes: spdyControl(1, body) };
        },
        // the next block continues the stream where the cut one should have ended: it cannot inflate
        "bad_header_compression",
      ],
      [
        "a header block claiming more than the block cap",
        async (c) => {
          const raw = Buffer.alloc(12);
          raw.writeUInt32BE(1, 0);
          raw.writeUInt32BE(0x7fffffff, 4); // a name of 2 GiB
          return { framing: "spdy", bytes: spdyControl(1, Buffer.concat([synFields(5), await c.compress(raw)])) };
        },
        "header_block_too_large",
      ],
      ["an unmasked WebSocket frame", async () => ({ framing: "websocket", bytes: Buffer.concat([Buffer.from([0x82, 3]), Buffer.from("abc")]) }), "bad_websocket_frame"],
      ["a WebSocket frame with an extension's RSV bit", async () => ({ framing: "websocket", bytes: Buffer.from(wsClientFrame(Buffer.from("abc")).map((b, i) => (i === 0 ? b | 0x40 : b))) }), "bad_websocket_frame"],
      ["a WebSocket text message", async () => ({ framing: "websocket", bytes: wsClientFrame(Buffer.from("hello"), { opcode: 1 }) }), "websocket_text_message"],
      ["a continuation with no message open", async () => ({ framing: "websocket", bytes: wsClientFrame(Buffer.from("x"), { opcode: 0 }) }), "bad_websocket_frame"],
    ];
    for (const [label, bad, reason] of cases) {
      test(label, async () => {
        const c = new SpdyClient();
        const before = await c.forward(101, 5432, 0);
        const { framing, bytes } = await bad(c);
        // what comes after the bad part is not read any more
        const after = Buffer.concat([spdyData(103, Buffer.from("hi")), await c.forward(105, 6543, 1)]);
        c.close();
        const spdyPart = Buffer.concat([before, ...(framing === "spdy" ? [bytes] : [])]);
        const all =
          framing === "spdy" ? Buffer.concat([spdyPart, after]) : Buffer.concat([wsClientFrame(spdyPart), bytes, wsClientFrame(after)]);
        const { seen, calls } = await observe(framing, all, [7, 30, all.length - 5]);
        expect(seen).toEqual({ ports: [5432], observed: "unparsed", reason });
        expect(calls).toEqual([5432]);
      });
    }
  });

  test("a header block left without its end when the session ends is reported, not waited for", async () => {
    const c = new SpdyClient();
    const first = await c.forward(1, 5432, 0);
    const whole = await c.synStream(5, [["streamtype", "data"], ["port", "7000"], ["padding", "x".repeat(300)]]);
    c.close();
    const { seen } = await observe("spdy", Buffer.concat([first, spdyControl(1, whole.subarray(8, whole.length - 20))]));
    expect(seen).toEqual({ ports: [5432], observed: "unparsed", reason: "incomplete_header_block" });
  });

  test("a zlib bomb in a header block stops at the block cap, not at its size", async () => {
    // 15 MiB of one header value in under 16 KiB of zlib: within the control frame cap
    const c = new SpdyClient();
    const first = await c.forward(1, 8443, 0);
    const raw = nameValueBlock([["streamtype", "data"], ["port", "80"], ["x", ""]]);
    raw.writeUInt32BE(15 << 20, raw.length - 4); // the last value's length: 15 MiB, which follow
    const bomb = await c.compress(Buffer.concat([raw, Buffer.alloc(15 << 20, 0x61)]));
    expect(bomb.length).toBeLessThan(DEFAULT_OBSERVER_LIMITS.maxControlFrame);
    const bytes = Buffer.concat([first, spdyControl(1, Buffer.concat([synFields(5), bomb]))]);
    c.close();
    const { seen } = await observe("spdy", bytes);
    expect(seen).toEqual({ ports: [8443], observed: "unparsed", reason: "header_block_too_large" });
  });

  test("a zlib bomb of many small header pairs is stopped too", async () => {
    const c = new SpdyClient();
    const pairs: [string, string][] = Array.from({ length: 2000 }, () => ["x", "y".repeat(64)]);
    const block = await c.compress(nameValueBlock(pairs));
    c.close();
    const { seen } = await observe("spdy", spdyControl(1, Buffer.concat([synFields(1), block])));
    expect(seen).toEqual({ ports: [], observed: "unparsed", reason: "header_block_too_large" });
  });

  test("header blocks arriving faster than they inflate stop it past the backlog cap", async () => {
    const c = new SpdyClient();
    const parts: Buffer[] = [];
    for (let p = 1; p <= 40; p++) parts.push(await c.forward(4 * p + 1, 2000 + p, p));
    c.close();
    const bytes = Buffer.concat(parts);
    // all in one chunk: every block is handed to the inflater before it runs once
    const { seen } = await observe("spdy", bytes, [], { ...DEFAULT_OBSERVER_LIMITS, maxBacklog: bytes.length / 4 });
    expect(seen).toMatchObject({ observed: "unparsed", reason: "header_backlog_too_large" });
  });

  describe("many tiny header blocks are bounded by their count, not only their bytes", () => {
    // The review's proof of concept: HEADERS frames of 13 bytes, each carrying one byte of a
    // zlib stream that inflates to nothing (empty stored blocks cut in 1-byte pieces). Each
    // was a pending inflater write of ~1 KiB charged 1 byte: 256 KiB of backlog let a
    // client queue ~262,000 of them (hundreds of MiB). Go rejects such frames, so nothing
    // the API server forwards is missed by stopping.
    function tinyBlocks(n: number): Buffer {
      const zhead = Buffer.from([0x78, 0xbb, 0, 0, 0, 0]);
      // the dictionary's Adler-32 (RFC 1950), which a zlib header with a dictionary names
      let a = 1;
      let b = 0;
      for (const x of SPDY3_DICTIONARY) [a, b] = [(a + x) % 65521, (b + ((a + x) % 65521)) % 65521];
      zhead.writeUInt32BE(((b << 16) | a) >>> 0, 2);
      const empty = [0x00, 0x00, 0x00, 0xff, 0xff];
      const frames = [spdyControl(8, Buffer.concat([words(1), zhead]))];
      for (let i = 0; i < n; i++) frames.push(spdyControl(8, Buffer.concat([words(1), Buffer.from([empty[i % 5]!])])));
      return Buffer.concat(frames);
    }
    const limits = DEFAULT_OBSERVER_LIMITS;

    test("in one chunk: up to the cap they wait as one inflater write; past it, it stops and lets go of them", async () => {
      const o = new PortForwardObserver("spdy", () => {});
      o.feed(tinyBlocks(1000));
      // the first block went to the inflater, the 1,000 after it wait to be joined into the next write
      const held = o.holding();
      expect(held).toMatchObject({ blocks: 1001, writes: 1 });
      expect(held.backlog).toBeLessThanOrEqual(limits.maxBacklog);
      o.feed(tinyBlocks(5040).subarray(tinyBlocks(0).length));
      expect(o.holding()).toEqual({ blocks: 0, backlog: 0, writes: 0 });
      expect(await o.finish()).toEqual({ ports: [], observed: "unparsed", reason: "header_backlog_too_large" });
    });

    test("chunks of 500 with the event loop turning between them: never more than the caps, whatever the inflater's pace", async () => {
      const o = new PortForwardObserver("spdy", () => {});
      o.feed(tinyBlocks(0));
      const chunk = tinyBlocks(500).subarray(tinyBlocks(0).length);
      for (let i = 0; i < 20; i++) {
        o.feed(chunk);
        const held = o.holding();
        expect(held.blocks).toBeLessThanOrEqual(limits.maxQueuedBlocks);
        expect(held.backlog).toBeLessThanOrEqual(limits.maxBacklog);
        // blocks that come while a write is in flight join the next one
        expect(held.writes).toBeLessThanOrEqual(2);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(await o.finish()).toEqual({ ports: [], observed: "unparsed", reason: "header_backlog_too_large" });
    });

    test("each block is charged its overhead in the backlog: tiny blocks reach the byte cap too", async () => {
      const o = new PortForwardObserver("spdy", () => {}, { ...limits, maxQueuedBlocks: 1 << 20 });
      const n = Math.ceil(limits.maxBacklog / BLOCK_OVERHEAD) + 10;
      o.feed(tinyBlocks(n));
      expect(o.holding().backlog).toBeLessThanOrEqual(limits.maxBacklog);
      expect(await o.finish()).toMatchObject({ observed: "unparsed", reason: "header_backlog_too_large" });
    });

    test("a session's header blocks are counted: past the cap it stops, bounding the CPU one session costs", async () => {
      // kubectl's streams for 30 connections, fed a connection at a time so no backlog builds
      const c = new SpdyClient();
      const o = new PortForwardObserver("spdy", () => {}, { ...DEFAULT_OBSERVER_LIMITS, maxSessionBlocks: 40 });
      for (let r = 0; r < 30; r++) {
        o.feed(await c.forward(4 * r + 1, 5000 + (r % 3), r));
        await waitFor("the blocks inflated", () => o.holding().blocks === 0);
      }
      c.close();
      expect(await o.finish()).toEqual({ ports: [5000, 5001, 5002], observed: "unparsed", reason: "too_many_header_blocks" });
      expect(DEFAULT_OBSERVER_LIMITS.maxSessionBlocks).toBeGreaterThanOrEqual(100_000);
    });

    test("kubectl opening 200 connections at once stays well within the caps", async () => {
      const c = new SpdyClient();
      const parts: Buffer[] = [];
      for (let r = 0; r < 200; r++) parts.push(await c.forward(4 * r + 1, 5000 + (r % 5), r));
      c.close();
      const { seen } = await observe("spdy", Buffer.concat(parts));
      expect(seen).toEqual({ ports: [5000, 5001, 5002, 5003, 5004], observed: "complete" });
    });
  });

  test("a name/value block whose inflated bytes come in many pieces is read across them, each byte once", async () => {
    // a block cut over a SYN_STREAM and 40 HEADERS frames, fed with the event loop turning
    // between frames, so the inflater hands it out in pieces. Go's framer would end the
    // connection at the SYN_STREAM (its block runs past the frame): the port is one it
    // over-reports, and the frames left without a block of their own are said.
    const d = createDeflate({ dictionary: SPDY3_DICTIONARY });
    const out: Buffer[] = [];
    d.on("data", (chunk: Buffer) => out.push(chunk));
    const piece = async (raw: Buffer) => {
      d.write(raw);
      await new Promise<void>((resolve) => d.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
      return Buffer.concat(out.splice(0));
    };
    const raw = nameValueBlock([["streamtype", "data"], ...Array.from({ length: 40 }, (_, i): [string, string] => [`x-${i}`, "v".repeat(i)]), ["port", "7070"]]);
    const step = Math.ceil(raw.length / 41);
    const frames = [spdyControl(1, Buffer.concat([synFields(1), await piece(raw.subarray(0, step))]))];
    for (let at = step; at < raw.length; at += step) frames.push(spdyControl(8, Buffer.concat([words(1), await piece(raw.subarray(at, at + step))])));
    d.destroy();
    const calls: number[] = [];
    const o = new PortForwardObserver("spdy", (p) => calls.push(p));
    for (const f of frames) {
      o.feed(f);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await o.finish()).toEqual({ ports: [7070], observed: "unparsed", reason: "incomplete_header_block" });
    expect(calls).toEqual([7070]);
  });

  test("hostile bytes never make it throw, and it always finishes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<PortForwardFraming>("spdy", "websocket"), fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(600)), async (framing, bytes, cuts) => {
        const { seen } = await observe(framing, Buffer.from(bytes), cuts);
        expect(["complete", "unparsed"]).toContain(seen.observed);
      }),
      { numRuns: 300 },
    );
  });

  test("stops at the close of a tunnelled session: nothing after a close frame is read", async () => {
    const c = new SpdyClient();
    const bytes = Buffer.concat([wsClientFrame(await c.forward(1, 5000, 0)), wsClientFrame(Buffer.from([3, 232]), { opcode: 8 }), wsClientFrame(await c.forward(5, 5001, 1))]);
    c.close();
    expect((await observe("websocket", bytes)).seen).toEqual({ ports: [5000], observed: "complete" });
  });

  test("a header block compressed alone (without the stream's earlier context) fails to inflate, like at the API server", async () => {
    const c = new SpdyClient();
    const first = await c.forward(1, 5000, 0);
    c.close();
    const alone = deflateSync(nameValueBlock([["streamtype", "data"], ["port", "5001"]]));
    const { seen } = await observe("spdy", Buffer.concat([first, spdyControl(1, Buffer.concat([synFields(5), alone]))]));
    expect(seen).toMatchObject({ ports: [5000], observed: "unparsed" });
  });
});
