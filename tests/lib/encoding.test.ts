/**
 * Durations, PEM and base64 helpers, and error rendering.
 */

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { formatDuration, parseDuration } from "../../src/lib/duration.ts";
import { AppError, formatError, isAppError } from "../../src/lib/errors.ts";
import { base64DecodeStrict, pemDecodeAll, pemDecodeOne, pemEncode } from "../../src/lib/pem.ts";

describe("parseDuration()", () => {
  const cases: [string | number, number][] = [
    ["1h", 3_600_000],
    ["20m", 1_200_000],
    ["1h30m", 5_400_000],
    ["500ms", 500],
    ["1.5s", 1500],
    ["7d", 604_800_000],
    ["0", 0],
  ];
  for (const [input, ms] of cases) test(`"${input}" is ${ms} ms`, () => expect(parseDuration(input)).toBe(ms));

  const refusal = (input: string | number, what: string): AppError => {
    try {
      parseDuration(input, what);
    } catch (e) {
      if (isAppError(e, "BAD_PARAMETER")) return e;
      throw e;
    }
    throw new Error(`${JSON.stringify(input)} was accepted`);
  };
  for (const bad of ["", "h", "1 hour", "1x", "-1h", "1h 30m", "abc"]) {
    test(`"${bad}" is refused with the accepted forms`, () => {
      expect(refusal(bad, "renewal_interval").message).toContain("renewal_interval");
    });
  }

  // one rule for flags and YAML, Go's: a number needs a unit ("0" alone is fine)
  for (const bare of ["10", "90", "1.5", 30]) {
    test(`${JSON.stringify(bare)} is refused with "add a unit", not read as seconds`, () => {
      const err = refusal(bare, "--ttl");
      expect(err.details?.reason).toBe("missing_unit");
      expect(err.message).toBe(`Invalid --ttl "${bare}": a number needs a unit: write "${bare}s" for seconds or "${bare}m" for minutes`);
    });
  }

  test("formatDuration round-trips through parseDuration", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10 * 86_400_000 }), (ms) => parseDuration(formatDuration(ms)) === ms));
    expect(formatDuration(5_400_000)).toBe("1h30m");
  });
});

describe("PEM", () => {
  test("encode wraps at 64 columns and decodes back", () => {
    const der = new Uint8Array(200).map((_, i) => i);
    const pem = pemEncode("CERTIFICATE", der);
    expect(pem.split("\n").every((l) => l.length <= 64)).toBe(true);
    expect(pemDecodeOne(pem, ["CERTIFICATE"]).der).toEqual(der);
    expect(pemDecodeAll(pem + pemEncode("PRIVATE KEY", der)).map((b) => b.label)).toEqual(["CERTIFICATE", "PRIVATE KEY"]);
  });

  test("encode takes only a view's bytes, in full 64-column lines but the last, for every length", () => {
    const backing = new Uint8Array(400).map((_, i) => (i * 7) & 0xff);
    for (let n = 0; n <= 130; n++) {
      const view = backing.subarray(5, 5 + n);
      const pem = pemEncode("X", view);
      const b64 = Buffer.from(view).toString("base64");
      const lines = pem.split("\n").slice(1, -2);
      expect(lines.join("")).toBe(b64);
      expect(lines.slice(0, -1).every((l) => l.length === 64)).toBe(true);
      if (n > 0) expect(pemDecodeOne(pem, ["X"]).der).toEqual(new Uint8Array(view));
    }
  });

  test("a missing block names what was looked for", () => {
    expect(() => pemDecodeOne("nothing here", ["PRIVATE KEY"], "static key")).toThrow('Cannot read static key: no PEM block of type "PRIVATE KEY"');
  });

  test("strict base64 refuses what is not base64", () => {
    expect(Buffer.from(base64DecodeStrict("aGVsbG8=")).toString()).toBe("hello");
    expect(() => base64DecodeStrict("not base64!", "TBOT_BOUND_KEYPAIR_STATIC_KEY")).toThrow("TBOT_BOUND_KEYPAIR_STATIC_KEY");
    expect(() => base64DecodeStrict("")).toThrow();
  });
});

describe("formatError()", () => {
  test("prefixes file:line:col when the error has a position", () => {
    const e = new AppError("BAD_PARAMETER", "Unknown field", { position: { file: "role.yaml", line: 7, column: 5 } });
    expect(formatError(e)).toBe("role.yaml:7:5: Unknown field");
    expect(formatError(new Error("plain"))).toBe("plain");
    expect(formatError("str")).toBe("str");
  });
});
