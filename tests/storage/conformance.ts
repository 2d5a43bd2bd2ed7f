/**
 * The behaviour every storage backend must share, as one suite each backend's test
 * file runs against its own `open`: every method, every error code, revisions, prefix
 * semantics, ordering and paging, expiry on a fake clock, all-or-nothing atomic
 * writes, the event log, and writers racing in one process.
 */

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import type { Backend, ConditionalOp, OpenOptions, StoredEvent } from "../../src/auth/storage/index.ts";
import { FakeClock } from "../../src/lib/clock.ts";
import { AppError, isAppError } from "../../src/lib/errors.ts";
import { waitFor } from "../_support/wait.ts";
import { captureLogger, incrementByCas, rejectsWith } from "./helpers.ts";

/** Opens an empty backend; the suite always passes a clock and turns the sweeper off unless it tests it. */
export type OpenBackend = (opts: OpenOptions) => Promise<Backend>;

const T0 = Date.UTC(2026, 0, 1);
const ev = (type: string, at: number, fields: Record<string, unknown> = {}): Omit<StoredEvent, "id"> => ({
  type,
  time: new Date(at),
  fields,
});

/**
 * Registers the conformance tests for one backend. `open` must return a fresh, empty
 * backend on every call; `cleanup` runs once after all tests (the suite closes every
 * backend it opened after each test).
 */
export function runBackendConformance(name: string, open: OpenBackend, cleanup: () => Promise<void>): void {
  describe(`${name} backend conformance`, () => {
    const opened: Backend[] = [];
    const fresh = async (extra: OpenOptions = {}) => {
      const clock = (extra.clock as FakeClock | undefined) ?? new FakeClock(T0);
      const b = await open({ sweepIntervalMs: 0, ...extra, clock });
      opened.push(b);
      return { b, clock };
    };
    afterEach(async () => {
      for (const b of opened.splice(0)) await b.close();
    });
    afterAll(cleanup);

    describe("get and put", () => {
      test("get() returns undefined for a key never written", async () => {
        const { b } = await fresh();
        expect(await b.get("/tokens/nope")).toBeUndefined();
      });

      test("put() stores JSON values that get() reads back equal", async () => {
        const { b } = await fresh();
        const values: unknown[] = [
          { spec: { roles: ["a", "b"], ttl: 3600, nested: { ok: true, none: null } } },
          "a plain string with ünïcødé and 💡",
          42,
          -0.5,
          true,
          null,
          [1, "two", { three: 3 }],
          "",
        ];
        for (const [i, v] of values.entries()) {
          const put = await b.put(`/v/${i}`, v);
          expect(put.key).toBe(`/v/${i}`);
          expect(put.value).toEqual(v);
          expect(put.expires).toBeUndefined();
          const got = await b.get(`/v/${i}`);
          expect(got).toEqual({ key: `/v/${i}`, value: v, revision: put.revision });
        }
      });

      test("put() overwrites and gives a new revision each time", async () => {
        const { b } = await fresh();
        const a = await b.put("/k", { n: 1 });
        const c = await b.put("/k", { n: 2 });
        expect(c.revision).not.toBe(a.revision);
        expect(await b.get("/k")).toEqual({ key: "/k", value: { n: 2 }, revision: c.revision });
        expect(typeof a.revision).toBe("string");
      });

      test("put() with an expiry returns and stores it", async () => {
        const { b } = await fresh();
        const expires = new Date(T0 + 60_000);
        const put = await b.put("/k", "v", { expires });
        expect(put.expires?.getTime()).toBe(expires.getTime());
        expect((await b.get("/k"))?.expires?.getTime()).toBe(expires.getTime());
      });

      test("getMany() answers each key in the order given, undefined where nothing lives, a repeated key twice", async () => {
        const { b, clock } = await fresh();
        const a = await b.put("/locks/bot/a", { n: 1 });
        const c = await b.put("/bots/c", "c", { expires: new Date(T0 + 1000) });
        await b.put("/bots/gone", "g", { expires: new Date(T0 + 10) });
        clock.advance(10);
        const got = await b.getMany(["/bots/c", "/nope", "/locks/bot/a", "/bots/gone", "/bots/c"]);
        expect(got).toEqual([
          { key: "/bots/c", value: "c", revision: c.revision, expires: new Date(T0 + 1000) },
          undefined,
          { key: "/locks/bot/a", value: { n: 1 }, revision: a.revision },
          undefined,
          { key: "/bots/c", value: "c", revision: c.revision, expires: new Date(T0 + 1000) },
        ]);
        expect(await b.getMany([])).toEqual([]);
        // the same answers get() gives, key by key
        for (const k of ["/bots/c", "/nope", "/locks/bot/a", "/bots/gone"]) expect((await b.getMany([k]))[0]).toEqual(await b.get(k));
      });

      test("getMany() reads 2,000 keys in one call, and refuses a malformed key among them", async () => {
        const { b } = await fresh();
        const keys = Array.from({ length: 2000 }, (_, i) => `/many/${i}`);
        await b.atomicWrite(keys.filter((_, i) => i % 3 === 0).map((key) => ({ key, condition: { kind: "notExists" as const }, action: { kind: "put" as const, value: key } })));
        const got = await b.getMany(keys);
        expect(got.map((it) => it?.value)).toEqual(keys.map((k, i) => (i % 3 === 0 ? k : undefined)));
        await rejectsWith(b.getMany(["/ok", "no-slash"]), "BAD_PARAMETER");
      });

      test("put() without an expiry removes an earlier one", async () => {
        const { b, clock } = await fresh();
        await b.put("/k", 1, { expires: new Date(T0 + 1000) });
        await b.put("/k", 2);
        clock.advance(5000);
        expect((await b.get("/k"))?.value).toBe(2);
      });
    });

    describe("create", () => {
      test("create() writes a new key", async () => {
        const { b } = await fresh();
        const item = await b.create("/bots/a", { name: "a" });
        expect(await b.get("/bots/a")).toEqual(item);
      });

      test("create() with durable: false writes and refuses as any create, and keeps its expiry", async () => {
        const { b } = await fresh();
        const item = await b.create("/challenges/a", { n: 1 }, { expires: new Date(T0 + 60_000), durable: false });
        expect(await b.get("/challenges/a")).toEqual(item);
        expect(item.expires).toEqual(new Date(T0 + 60_000));
        await rejectsWith(b.create("/challenges/a", 2, { durable: false }), "ALREADY_EXISTS", 'Cannot create "/challenges/a": it already exists');
      });

      test("create() rejects an existing key with ALREADY_EXISTS and leaves it alone", async () => {
        const { b } = await fresh();
        const first = await b.create("/bots/a", 1);
        const err = await rejectsWith(b.create("/bots/a", 2), "ALREADY_EXISTS", 'Cannot create "/bots/a": it already exists');
        expect(err.details).toEqual({ key: "/bots/a" });
        expect(await b.get("/bots/a")).toEqual(first);
      });

      test("create() succeeds over an expired item", async () => {
        const { b, clock } = await fresh();
        await b.put("/k", "old", { expires: new Date(T0 + 1000) });
        clock.advance(1000);
        const item = await b.create("/k", "new");
        expect((await b.get("/k"))?.value).toBe("new");
        expect(item.expires).toBeUndefined();
      });
    });

    describe("update", () => {
      test("update() rejects a missing key with NOT_FOUND", async () => {
        const { b } = await fresh();
        await rejectsWith(b.update("/k", 1), "NOT_FOUND", 'Cannot update "/k": it does not exist');
        expect(await b.get("/k")).toBeUndefined();
      });

      test("update() replaces value, revision and expiry of an existing key", async () => {
        const { b, clock } = await fresh();
        const a = await b.put("/k", 1, { expires: new Date(T0 + 1000) });
        const u = await b.update("/k", 2);
        expect(u.revision).not.toBe(a.revision);
        clock.advance(2000); // the old expiry no longer applies
        expect(await b.get("/k")).toEqual({ key: "/k", value: 2, revision: u.revision });
      });

      test("update() of an expired item is NOT_FOUND", async () => {
        const { b, clock } = await fresh();
        await b.put("/k", 1, { expires: new Date(T0 + 1000) });
        clock.advance(1000);
        await rejectsWith(b.update("/k", 2), "NOT_FOUND");
      });
    });

    describe("compareAndSwap", () => {
      test("compareAndSwap() writes when the revision is current", async () => {
        const { b } = await fresh();
        const a = await b.put("/k", 1);
        const c = await b.compareAndSwap("/k", a.revision, 2, { expires: new Date(T0 + 5000) });
        expect(c.revision).not.toBe(a.revision);
        expect(await b.get("/k")).toEqual({ key: "/k", value: 2, revision: c.revision, expires: new Date(T0 + 5000) });
      });

      test("compareAndSwap() with a stale revision is COMPARE_FAILED and writes nothing", async () => {
        const { b } = await fresh();
        const a = await b.put("/k", 1);
        const c = await b.put("/k", 2);
        const err = await rejectsWith(
          b.compareAndSwap("/k", a.revision, 3),
          "COMPARE_FAILED",
          `Cannot update "/k": it changed after revision "${a.revision}"`,
        );
        expect(err.details?.key).toBe("/k");
        expect(await b.get("/k")).toEqual({ key: "/k", value: 2, revision: c.revision });
      });

      test("compareAndSwap() never matches a revision that is merely numerically equal", async () => {
        const { b } = await fresh();
        const a = await b.put("/k", 1);
        for (const fake of [`0${a.revision}`, ` ${a.revision}`, `${a.revision}.0`, "", "abc", "-1", "99999999999999999999"]) {
          await rejectsWith(b.compareAndSwap("/k", fake, 2), "COMPARE_FAILED");
        }
        expect((await b.get("/k"))?.revision).toBe(a.revision);
      });

      test("compareAndSwap() of a missing or expired key is NOT_FOUND", async () => {
        const { b, clock } = await fresh();
        await rejectsWith(b.compareAndSwap("/k", "1", 2), "NOT_FOUND", 'Cannot update "/k": it does not exist');
        const a = await b.put("/k", 1, { expires: new Date(T0 + 10) });
        clock.advance(10);
        await rejectsWith(b.compareAndSwap("/k", a.revision, 2), "NOT_FOUND");
      });

      test("compareAndSwap() rejects a revision that is not a string", async () => {
        const { b } = await fresh();
        await b.put("/k", 1);
        await rejectsWith(b.compareAndSwap("/k", 1 as unknown as string, 2), "BAD_PARAMETER");
      });
    });

    describe("delete", () => {
      test("delete() removes a key; deleting it again is NOT_FOUND", async () => {
        const { b } = await fresh();
        await b.put("/k", 1);
        await b.delete("/k");
        expect(await b.get("/k")).toBeUndefined();
        await rejectsWith(b.delete("/k"), "NOT_FOUND", 'Cannot delete "/k": it does not exist');
      });

      test("delete() with a stale revision is COMPARE_FAILED and keeps the item", async () => {
        const { b } = await fresh();
        const a = await b.put("/k", 1);
        const c = await b.put("/k", 2);
        await rejectsWith(b.delete("/k", a.revision), "COMPARE_FAILED", `Cannot delete "/k": it changed after revision "${a.revision}"`);
        expect((await b.get("/k"))?.revision).toBe(c.revision);
        await b.delete("/k", c.revision);
        expect(await b.get("/k")).toBeUndefined();
      });

      test("delete() of an expired item is NOT_FOUND", async () => {
        const { b, clock } = await fresh();
        await b.put("/k", 1, { expires: new Date(T0 + 10) });
        clock.advance(11);
        await rejectsWith(b.delete("/k"), "NOT_FOUND");
      });
    });

    describe("revisions", () => {
      test("revisions are never reused, across keys, overwrites, deletes and re-creates", async () => {
        const { b } = await fresh();
        const seen: string[] = [];
        for (let round = 0; round < 5; round++) {
          for (const key of ["/a", "/b", "/c/d"]) {
            seen.push((await b.put(key, round)).revision);
            seen.push((await b.update(key, round + 0.5)).revision);
          }
          const r = await b.atomicWrite([{ key: "/e", condition: { kind: "whatever" }, action: { kind: "put", value: round } }]);
          seen.push(r["/e"]!);
          await b.delete("/a");
          await b.delete("/e");
          seen.push((await b.create("/a", "again")).revision);
          await b.delete("/a");
        }
        expect(new Set(seen).size).toBe(seen.length);
      });

      test("a re-created key does not get back its old revision", async () => {
        const { b } = await fresh();
        const a = await b.create("/k", 1);
        await b.delete("/k");
        const c = await b.create("/k", 1);
        expect(c.revision).not.toBe(a.revision);
        await rejectsWith(b.compareAndSwap("/k", a.revision, 2), "COMPARE_FAILED");
      });
    });

    describe("keys and values", () => {
      const bad: [string, unknown][] = [
        ["empty", ""],
        ["relative", "tokens/a"],
        ["root", "/"],
        ["trailing slash", "/tokens/"],
        ["empty segment", "/tokens//a"],
        ["dot segment", "/tokens/./a"],
        ["dot-dot segment", "/tokens/../a"],
        ["NUL", "/a\u0000b"],
        ["newline", "/a\nb"],
        ["lone surrogate", "/a\ud800"],
        ["over 1024 bytes", "/" + "é".repeat(512)],
        ["not a string", 42],
      ];
      for (const [what, key] of bad) {
        test(`every keyed method rejects a key that is ${what} with BAD_PARAMETER`, async () => {
          const { b } = await fresh();
          const k = key as string;
          await rejectsWith(b.get(k), "BAD_PARAMETER");
          await rejectsWith(b.getMany([k]), "BAD_PARAMETER");
          await rejectsWith(b.put(k, 1), "BAD_PARAMETER");
          await rejectsWith(b.create(k, 1), "BAD_PARAMETER");
          await rejectsWith(b.update(k, 1), "BAD_PARAMETER");
          await rejectsWith(b.compareAndSwap(k, "1", 1), "BAD_PARAMETER");
          await rejectsWith(b.delete(k), "BAD_PARAMETER");
          await rejectsWith(b.atomicWrite([{ key: k, condition: { kind: "whatever" }, action: { kind: "delete" } }]), "BAD_PARAMETER");
          expect(await b.count("/")).toBe(0);
        });
      }

      test("the key error message names the key and the rule", async () => {
        const { b } = await fresh();
        await rejectsWith(b.put("/tokens//a", 1), "BAD_PARAMETER", 'Cannot use "/tokens//a" as a storage key: it has an empty segment');
        await rejectsWith(b.put("/a\nb", 1), "BAD_PARAMETER", 'Cannot use "/a\\u000ab" as a storage key: it contains a control character');
      });

      test("keys may hold any other characters, dots inside segments and 1024 bytes", async () => {
        const { b } = await fresh();
        const keys = ["/a", "/a b/ü/💡", "/a.b/..c/.d", "/x:y@z+w=v", "/" + "k".repeat(1023)];
        for (const k of keys) await b.put(k, k);
        for (const k of keys) expect((await b.get(k))?.value).toBe(k);
      });

      test("values JSON cannot hold are rejected with BAD_PARAMETER", async () => {
        const { b } = await fresh();
        const circular: Record<string, unknown> = {};
        circular.self = circular;
        for (const v of [undefined, () => 1, Symbol("s"), 10n, circular]) {
          await rejectsWith(b.put("/k", v), "BAD_PARAMETER");
        }
        await rejectsWith(b.create("/k", undefined), "BAD_PARAMETER", 'Cannot create "/k": its value is undefined, which JSON cannot hold');
        await rejectsWith(b.put("/k", 10n), "BAD_PARAMETER", /^Cannot store "\/k": its value cannot be written as JSON/);
        expect(await b.get("/k")).toBeUndefined();
      });

      test("an invalid expiry is rejected with BAD_PARAMETER", async () => {
        const { b } = await fresh();
        await rejectsWith(b.put("/k", 1, { expires: new Date(NaN) }), "BAD_PARAMETER");
        await rejectsWith(b.put("/k", 1, { expires: T0 as unknown as Date }), "BAD_PARAMETER");
        expect(await b.get("/k")).toBeUndefined();
      });
    });

    describe("list and count", () => {
      const keys = ["/tokens", "/tokens/a", "/tokens/b/c", "/tokens/b", "/tokens2/x", "/tokens0", "/tokens.x/y", "/tokensA", "/tok", "/other/z"];

      test("a prefix is a directory: /tokens and /tokens/ match only keys under /tokens/", async () => {
        const { b } = await fresh();
        for (const k of keys) await b.put(k, k);
        const want = ["/tokens/a", "/tokens/b", "/tokens/b/c"];
        expect((await b.list("/tokens/")).map((i) => i.key)).toEqual(want);
        expect((await b.list("/tokens")).map((i) => i.key)).toEqual(want);
        expect(await b.count("/tokens")).toBe(3);
        expect(await b.count("/tokens/")).toBe(3);
        expect((await b.list("/tokens/b")).map((i) => i.key)).toEqual(["/tokens/b/c"]);
        expect(await b.list("/tok/")).toEqual([]);
        expect(await b.count("/nothing")).toBe(0);
      });

      test('"" and "/" list every key', async () => {
        const { b } = await fresh();
        for (const k of keys) await b.put(k, k);
        const all = [...keys].sort();
        expect((await b.list("")).map((i) => i.key)).toEqual(all);
        expect((await b.list("/")).map((i) => i.key)).toEqual(all);
        expect(await b.count("")).toBe(keys.length);
      });

      test("list() returns full items ordered by the keys' UTF-8 bytes", async () => {
        const { b } = await fresh();
        const ks = ["/p/b", "/p/a", "/p/B", "/p/ä", "/p/z", "/p/\uffee", "/p/💡", "/p/a-b", "/p/a/b", "/p/a.b", "/p/10", "/p/9"];
        const revs = new Map<string, string>();
        for (const k of ks) revs.set(k, (await b.put(k, { k })).revision);
        const byBytes = [...ks].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        const listed = await b.list<{ k: string }>("/p");
        expect(listed.map((i) => i.key)).toEqual(byBytes);
        for (const i of listed) expect(i).toEqual({ key: i.key, value: { k: i.key }, revision: revs.get(i.key)! });
      });

      test("limit and startAfter page through a prefix without gaps or repeats", async () => {
        const { b } = await fresh();
        const ks = Array.from({ length: 23 }, (_, i) => `/page/${String(i).padStart(3, "0")}`);
        for (const k of [...ks].reverse()) await b.put(k, k);
        await b.put("/pagez", "outside");
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await b.list("/page", { limit: 5, ...(after === undefined ? {} : { startAfter: after }) });
          seen.push(...page.map((i) => i.key));
          if (page.length < 5) break;
          after = page[page.length - 1]!.key;
        }
        expect(seen).toEqual(ks);
        expect((await b.list("/page", { startAfter: "/page/0105" })).map((i) => i.key)).toEqual(ks.slice(11));
        expect(await b.list("/page", { limit: 0 })).toEqual([]);
        expect((await b.list("/page", { startAfter: "/page/999" })).length).toBe(0);
      });

      test("list() rejects a bad prefix, limit or startAfter with BAD_PARAMETER", async () => {
        const { b } = await fresh();
        await rejectsWith(b.list("tokens"), "BAD_PARAMETER");
        await rejectsWith(b.list("/a//"), "BAD_PARAMETER");
        await rejectsWith(b.count("/a/../b"), "BAD_PARAMETER");
        for (const limit of [-1, 1.5, NaN, "3"]) await rejectsWith(b.list("/", { limit: limit as number }), "BAD_PARAMETER");
        await rejectsWith(b.list("/", { startAfter: 3 as unknown as string }), "BAD_PARAMETER");
      });

      test("list() and count() skip expired items", async () => {
        const { b, clock } = await fresh();
        await b.put("/e/a", 1, { expires: new Date(T0 + 100) });
        await b.put("/e/b", 2);
        await b.put("/e/c", 3, { expires: new Date(T0 + 200) });
        expect(await b.count("/e")).toBe(3);
        clock.advance(100);
        expect((await b.list("/e")).map((i) => i.key)).toEqual(["/e/b", "/e/c"]);
        expect(await b.count("/e")).toBe(2);
        clock.advance(100);
        expect((await b.list("/e")).map((i) => i.key)).toEqual(["/e/b"]);
        expect(await b.count("/e")).toBe(1);
      });
    });

    describe("expiry", () => {
      test("an item is visible until its expiry and invisible from that instant on", async () => {
        const { b, clock } = await fresh();
        await b.put("/k", "v", { expires: new Date(T0 + 1000) });
        clock.advance(999);
        expect((await b.get("/k"))?.value).toBe("v");
        clock.advance(1);
        expect(await b.get("/k")).toBeUndefined();
      });

      test("an item written with a past expiry is invisible at once", async () => {
        const { b } = await fresh();
        await b.put("/k", "v", { expires: new Date(T0 - 1) });
        expect(await b.get("/k")).toBeUndefined();
        expect(await b.count("/")).toBe(0);
      });

      test("deleteExpired() removes expired items, counts them, and leaves the rest", async () => {
        const { b, clock } = await fresh();
        await b.put("/x/1", 1, { expires: new Date(T0 + 10) });
        await b.put("/x/2", 2, { expires: new Date(T0 + 20) });
        await b.put("/x/3", 3, { expires: new Date(T0 + 30) });
        await b.put("/x/4", 4);
        expect(await b.deleteExpired()).toBe(0);
        clock.advance(20);
        expect(await b.deleteExpired()).toBe(2);
        expect(await b.deleteExpired()).toBe(0);
        expect(await b.deleteExpired(new Date(T0 + 30))).toBe(1);
        expect((await b.list("/x")).map((i) => i.value)).toEqual([4]);
        await rejectsWith(b.deleteExpired(new Date(NaN)), "BAD_PARAMETER");
      });

      test("deleteExpired() does not reach into the future of the clock by itself", async () => {
        const { b, clock } = await fresh();
        await b.put("/x", 1, { expires: new Date(T0 + 10) });
        expect(await b.deleteExpired()).toBe(0);
        clock.advance(10);
        expect(await b.deleteExpired()).toBe(1);
      });

      test("the sweeper removes expired items every sweepIntervalMs of the clock", async () => {
        const { logger, lines } = captureLogger();
        const clock = new FakeClock(T0);
        const { b } = await fresh({ clock, sweepIntervalMs: 1000, logger });
        await b.put("/s/a", 1, { expires: new Date(T0 + 500) });
        await b.put("/s/b", 2);
        await waitFor("the sweeper to wait", () => clock.waiting > 0);
        clock.advance(1000);
        await waitFor("a sweep", () => lines.some((l) => l.includes("Removed expired items") && l.includes("count=1")));
        expect(await b.deleteExpired(new Date(T0 + 10_000))).toBe(0);
        expect((await b.list("/s")).map((i) => i.key)).toEqual(["/s/b"]);
      });
    });

    describe("atomicWrite", () => {
      test("atomicWrite() applies puts and deletes together and returns the new revisions", async () => {
        const { b } = await fresh();
        const token = await b.put("/tokens/t", { uses: 1 });
        const r = await b.atomicWrite(
          [
            { key: "/tokens/t", condition: { kind: "revision", revision: token.revision }, action: { kind: "delete" } },
            { key: "/bot_instances/bot/1", condition: { kind: "notExists" }, action: { kind: "put", value: { gen: 1 } } },
            { key: "/bots/bot", condition: { kind: "whatever" }, action: { kind: "put", value: "b", expires: new Date(T0 + 99) } },
          ],
          [ev("join", T0, { bot: "bot" })],
        );
        expect(Object.keys(r).sort()).toEqual(["/bot_instances/bot/1", "/bots/bot"]);
        expect(await b.get("/tokens/t")).toBeUndefined();
        expect(await b.get("/bot_instances/bot/1")).toEqual({ key: "/bot_instances/bot/1", value: { gen: 1 }, revision: r["/bot_instances/bot/1"]! });
        expect(await b.get("/bots/bot")).toEqual({ key: "/bots/bot", value: "b", revision: r["/bots/bot"]!, expires: new Date(T0 + 99) });
        const events = await b.listEvents();
        expect(events.map((e) => [e.type, e.fields])).toEqual([["join", { bot: "bot" }]]);
      });

      test("every condition kind passes when it holds", async () => {
        const { b } = await fresh();
        const a = await b.put("/a", 1);
        await b.put("/b", 2);
        const r = await b.atomicWrite([
          { key: "/a", condition: { kind: "revision", revision: a.revision }, action: { kind: "put", value: 10 } },
          { key: "/b", condition: { kind: "exists" }, action: { kind: "put", value: 20 } },
          { key: "/c", condition: { kind: "notExists" }, action: { kind: "put", value: 30 } },
          { key: "/d", condition: { kind: "whatever" }, action: { kind: "put", value: 40 } },
          { key: "/e", condition: { kind: "whatever" }, action: { kind: "delete" } },
          { key: "/f", condition: { kind: "notExists" }, action: { kind: "nop" } },
        ]);
        expect(Object.keys(r).sort()).toEqual(["/a", "/b", "/c", "/d"]);
        expect((await b.list("/")).map((i) => [i.key, i.value])).toEqual([["/a", 10], ["/b", 20], ["/c", 30], ["/d", 40]]);
      });

      // Each case: a write that would touch /new, /p and /stale, spoilt by one condition.
      const failing: [string, (stale: string) => ConditionalOp, string][] = [
        ["exists on a missing key", () => ({ key: "/m", condition: { kind: "exists" }, action: { kind: "nop" } }), '"/m" does not exist'],
        ["notExists on a present key", () => ({ key: "/p", condition: { kind: "notExists" }, action: { kind: "put", value: "p1" } }), '"/p" already exists'],
        [
          "revision on a missing key",
          () => ({ key: "/m", condition: { kind: "revision", revision: "1" }, action: { kind: "delete" } }),
          '"/m" does not exist',
        ],
        [
          "a stale revision",
          (stale) => ({ key: "/stale", condition: { kind: "revision", revision: stale }, action: { kind: "delete" } }),
          '"/stale" is no longer at revision "STALE"',
        ],
      ];
      for (const [what, spoiler, reason] of failing) {
        test(`a failing condition (${what}) is COMPARE_FAILED and writes nothing, events included`, async () => {
          const { b } = await fresh();
          const p0 = await b.put("/p", "p0");
          const stale = (await b.put("/stale", 0)).revision;
          const current = await b.put("/stale", 1);
          await b.appendEvent(ev("before", T0));
          const bad = spoiler(stale);
          const ops: ConditionalOp[] = [
            { key: "/new", condition: { kind: "notExists" }, action: { kind: "put", value: "n" } },
            { key: "/p", condition: { kind: "whatever" }, action: { kind: "put", value: "p1" } },
            { key: "/stale", condition: { kind: "whatever" }, action: { kind: "delete" } },
          ].filter((op) => op.key !== bad.key) as ConditionalOp[];
          ops.splice(1, 0, bad);
          const err = await rejectsWith(
            b.atomicWrite(ops, [ev("after", T0)]),
            "COMPARE_FAILED",
            `Cannot apply the atomic write: ${reason.replace("STALE", stale)}`,
          );
          expect(err.details?.key).toBe(bad.key);
          expect(await b.get("/new")).toBeUndefined();
          expect(await b.get("/p")).toEqual(p0);
          expect(await b.get("/stale")).toEqual(current);
          expect((await b.listEvents()).map((e) => e.type)).toEqual(["before"]);
        });
      }

      test("COMPARE_FAILED names the first failing key in the order of the ops", async () => {
        const { b } = await fresh();
        await b.put("/present", 1);
        const ops: ConditionalOp[] = [
          { key: "/ok", condition: { kind: "notExists" }, action: { kind: "put", value: 1 } },
          { key: "/missing", condition: { kind: "exists" }, action: { kind: "put", value: 1 } },
          { key: "/present", condition: { kind: "notExists" }, action: { kind: "put", value: 1 } },
        ];
        expect((await rejectsWith(b.atomicWrite(ops), "COMPARE_FAILED")).details?.key).toBe("/missing");
        expect((await rejectsWith(b.atomicWrite([ops[0]!, ops[2]!, ops[1]!]), "COMPARE_FAILED")).details?.key).toBe("/present");
        expect(await b.get("/ok")).toBeUndefined();
      });

      test("expired items count as absent for conditions", async () => {
        const { b, clock } = await fresh();
        const e = await b.put("/e", 1, { expires: new Date(T0 + 5) });
        clock.advance(5);
        await rejectsWith(b.atomicWrite([{ key: "/e", condition: { kind: "exists" }, action: { kind: "nop" } }]), "COMPARE_FAILED");
        await rejectsWith(
          b.atomicWrite([{ key: "/e", condition: { kind: "revision", revision: e.revision }, action: { kind: "nop" } }]),
          "COMPARE_FAILED",
        );
        const r = await b.atomicWrite([{ key: "/e", condition: { kind: "notExists" }, action: { kind: "put", value: 2 } }]);
        expect(await b.get("/e")).toEqual({ key: "/e", value: 2, revision: r["/e"]! });
      });

      test("a nop with a revision condition checks a key without writing it", async () => {
        const { b } = await fresh();
        const a = await b.put("/a", 1);
        const r = await b.atomicWrite([
          { key: "/a", condition: { kind: "revision", revision: a.revision }, action: { kind: "nop" } },
          { key: "/b", condition: { kind: "notExists" }, action: { kind: "put", value: 2 } },
        ]);
        expect(Object.keys(r)).toEqual(["/b"]);
        expect((await b.get("/a"))?.revision).toBe(a.revision);
      });

      test("deleting an absent key with condition whatever is a no-op", async () => {
        const { b } = await fresh();
        expect(await b.atomicWrite([{ key: "/none", condition: { kind: "whatever" }, action: { kind: "delete" } }])).toEqual({});
      });

      test("an atomic write with only events appends them", async () => {
        const { b } = await fresh();
        expect(await b.atomicWrite([], [ev("a", T0), ev("b", T0 + 1)])).toEqual({});
        expect((await b.listEvents()).map((e) => e.type)).toEqual(["a", "b"]);
        expect(await b.atomicWrite([])).toEqual({});
      });

      test("malformed ops are BAD_PARAMETER and write nothing", async () => {
        const { b } = await fresh();
        const put = (key: string): ConditionalOp => ({ key, condition: { kind: "whatever" }, action: { kind: "put", value: 1 } });
        await rejectsWith(b.atomicWrite([put("/a"), put("/a")]), "BAD_PARAMETER", 'Cannot apply the atomic write: "/a" appears twice');
        await rejectsWith(b.atomicWrite([put("/a"), { key: "/b", condition: { kind: "maybe" } as never, action: { kind: "nop" } }]), "BAD_PARAMETER");
        await rejectsWith(b.atomicWrite([put("/a"), { key: "/b", condition: { kind: "exists" }, action: { kind: "upsert" } as never }]), "BAD_PARAMETER");
        await rejectsWith(b.atomicWrite([put("/a"), { key: "/b", condition: { kind: "revision", revision: 7 } as never, action: { kind: "nop" } }]), "BAD_PARAMETER");
        await rejectsWith(b.atomicWrite([put("/a"), { key: "/b", condition: { kind: "whatever" }, action: { kind: "put", value: undefined } }]), "BAD_PARAMETER");
        await rejectsWith(b.atomicWrite([put("/a")], [{ type: "", time: new Date(T0), fields: {} }]), "BAD_PARAMETER");
        await rejectsWith(b.atomicWrite("nope" as never), "BAD_PARAMETER");
        expect(await b.count("/")).toBe(0);
        expect(await b.listEvents()).toEqual([]);
      });
    });

    describe("events", () => {
      test("appendEvent() returns the event with a strictly increasing id", async () => {
        const { b } = await fresh();
        const a = await b.appendEvent(ev("cert.issued", T0, { bot: "a", serial: "01", nested: { list: [1, 2] } }));
        const c = await b.appendEvent(ev("cert.issued", T0 - 5000, { bot: "b" }));
        expect(a).toEqual({ id: a.id, type: "cert.issued", time: new Date(T0), fields: { bot: "a", serial: "01", nested: { list: [1, 2] } } });
        expect(c.id).toBeGreaterThan(a.id);
        expect(await b.listEvents()).toEqual([a, c]);
      });

      test("event ids keep increasing across atomic writes and appends", async () => {
        const { b } = await fresh();
        const ids: number[] = [];
        for (let i = 0; i < 5; i++) {
          ids.push((await b.appendEvent(ev("x", T0))).id);
          await b.atomicWrite([], [ev("y", T0), ev("z", T0)]);
        }
        const all = (await b.listEvents()).map((e) => e.id);
        expect(all.length).toBe(15);
        expect([...all].sort((x, y) => x - y)).toEqual(all);
        expect(new Set(all).size).toBe(15);
        for (const id of ids) expect(all).toContain(id);
      });

      test("listEvents() filters by types, since (inclusive) and until (exclusive)", async () => {
        const { b } = await fresh();
        for (let i = 0; i < 10; i++) await b.appendEvent(ev(i % 2 ? "odd" : "even", T0 + i * 1000, { i }));
        const is = async (q: Parameters<Backend["listEvents"]>[0]) => (await b.listEvents(q)).map((e) => e.fields.i);
        expect(await is({ types: ["odd"] })).toEqual([1, 3, 5, 7, 9]);
        expect(await is({ types: ["odd", "even"] })).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        expect(await is({ types: ["none"] })).toEqual([]);
        expect(await is({ types: [] })).toEqual([]);
        expect(await is({ since: new Date(T0 + 3000) })).toEqual([3, 4, 5, 6, 7, 8, 9]);
        expect(await is({ until: new Date(T0 + 3000) })).toEqual([0, 1, 2]);
        expect(await is({ since: new Date(T0 + 2000), until: new Date(T0 + 6000), types: ["even"] })).toEqual([2, 4]);
        expect(await is({ limit: 3 })).toEqual([0, 1, 2]);
        expect(await is({ limit: 0 })).toEqual([]);
      });

      test("listEvents() orders by id, newest first with order desc", async () => {
        const { b } = await fresh();
        // times deliberately out of order: the order is the id's, not the time's
        for (const [i, t] of [5, 1, 9, 3].entries()) await b.appendEvent(ev("t", T0 + t, { i }));
        expect((await b.listEvents()).map((e) => e.fields.i)).toEqual([0, 1, 2, 3]);
        expect((await b.listEvents({ order: "asc" })).map((e) => e.fields.i)).toEqual([0, 1, 2, 3]);
        expect((await b.listEvents({ order: "desc" })).map((e) => e.fields.i)).toEqual([3, 2, 1, 0]);
        expect((await b.listEvents({ order: "desc", limit: 2 })).map((e) => e.fields.i)).toEqual([3, 2]);
      });

      test("afterId pages through the log in either order", async () => {
        const { b } = await fresh();
        const all: StoredEvent[] = [];
        for (let i = 0; i < 11; i++) all.push(await b.appendEvent(ev(i % 3 ? "a" : "b", T0 + i, { i })));
        for (const order of ["asc", "desc"] as const) {
          const seen: number[] = [];
          let after: number | undefined;
          for (;;) {
            const page = await b.listEvents({ order, limit: 4, ...(after === undefined ? {} : { afterId: after }) });
            seen.push(...page.map((e) => e.id));
            if (page.length < 4) break;
            after = page[page.length - 1]!.id;
          }
          const ids = all.map((e) => e.id);
          expect(seen).toEqual(order === "asc" ? ids : [...ids].reverse());
        }
        const mid = all[5]!.id;
        expect((await b.listEvents({ afterId: mid, types: ["b"] })).map((e) => e.fields.i)).toEqual([6, 9]);
        expect((await b.listEvents({ afterId: mid, order: "desc", types: ["b"] })).map((e) => e.fields.i)).toEqual([3, 0]);
      });

      test("a reader tailing by afterId while writers append concurrently sees every event once", async () => {
        const { b } = await fresh();
        let writing = true;
        const writers = (async () => {
          const jobs = [];
          for (let i = 0; i < 60; i++) {
            jobs.push(i % 2 ? b.appendEvent(ev("w", T0, { i })) : b.atomicWrite([], [ev("w", T0, { i })]));
          }
          await Promise.all(jobs);
          writing = false;
        })();
        const seen: number[] = [];
        let last = 0;
        for (;;) {
          const done = !writing; // read the flag before the page: a last page after the writers finished
          const page = await b.listEvents({ afterId: last });
          for (const e of page) seen.push(e.fields.i as number);
          if (page.length) last = page[page.length - 1]!.id;
          if (done && page.length === 0) break;
        }
        await writers;
        expect([...seen].sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i));
      });

      test("malformed events and queries are BAD_PARAMETER", async () => {
        const { b } = await fresh();
        await rejectsWith(b.appendEvent(ev("", T0)), "BAD_PARAMETER");
        await rejectsWith(b.appendEvent(ev("x".repeat(257), T0)), "BAD_PARAMETER");
        await rejectsWith(b.appendEvent({ type: "t", time: new Date(NaN), fields: {} }), "BAD_PARAMETER");
        await rejectsWith(b.appendEvent({ type: "t", time: new Date(T0), fields: [] as never }), "BAD_PARAMETER");
        await rejectsWith(b.appendEvent({ type: "t", time: new Date(T0), fields: { n: 1n } }), "BAD_PARAMETER");
        await rejectsWith(b.listEvents({ limit: -1 }), "BAD_PARAMETER");
        await rejectsWith(b.listEvents({ order: "up" as never }), "BAD_PARAMETER");
        await rejectsWith(b.listEvents({ since: new Date(NaN) }), "BAD_PARAMETER");
        await rejectsWith(b.listEvents({ types: "a" as never }), "BAD_PARAMETER");
        await rejectsWith(b.listEvents({ afterId: 1.5 }), "BAD_PARAMETER");
        expect(await b.listEvents()).toEqual([]);
      });
    });

    describe("pruning events", () => {
      const times = async (b: Backend) => (await b.listEvents()).map((e) => e.time.getTime() - T0);

      test("pruneEvents() deletes the events before the cutoff and keeps one at exactly the cutoff", async () => {
        const { b } = await fresh();
        for (const t of [0, 1000, 1999, 2000, 2001, 5000]) await b.appendEvent(ev("e", T0 + t));
        expect(await b.pruneEvents(T0 + 2000)).toBe(3);
        expect(await times(b)).toEqual([2000, 2001, 5000]);
        expect(await b.pruneEvents(T0 + 2000)).toBe(0);
        expect(await times(b)).toEqual([2000, 2001, 5000]);
      });

      test("pruneEvents() with a limit deletes at most that many, oldest time first (not id order)", async () => {
        const { b } = await fresh();
        // times out of id order, two equal: the oldest times go first, ties by id
        for (const [i, t] of [5, 1, 9, 3, 7, 1].entries()) await b.appendEvent(ev("e", T0 + t, { i }));
        const left = async () => (await b.listEvents()).map((e) => e.fields.i);
        expect(await b.pruneEvents(T0 + 8, 2)).toBe(2);
        expect(await left()).toEqual([0, 2, 3, 4]);
        expect(await b.pruneEvents(T0 + 8, 2)).toBe(2);
        expect(await left()).toEqual([2, 4]);
        expect(await b.pruneEvents(T0 + 8, 2)).toBe(1);
        expect(await left()).toEqual([2]);
        expect(await b.pruneEvents(T0 + 8, 2)).toBe(0);
      });

      test("pruneEvents() with limit 0 deletes nothing", async () => {
        const { b } = await fresh();
        await b.appendEvent(ev("e", T0));
        expect(await b.pruneEvents(T0 + 1, 0)).toBe(0);
        expect(await times(b)).toEqual([0]);
      });

      test("event ids are not reused after a prune, also of the newest event", async () => {
        const { b } = await fresh();
        for (let i = 0; i < 4; i++) await b.appendEvent(ev("e", T0 + i));
        await b.atomicWrite([], [ev("e", T0 + 4)]);
        const highest = Math.max(...(await b.listEvents()).map((e) => e.id));
        expect(await b.pruneEvents(T0 + 1_000_000)).toBe(5);
        expect(await b.listEvents()).toEqual([]);
        const next = await b.appendEvent(ev("e", T0));
        expect(next.id).toBeGreaterThan(highest);
        await b.atomicWrite([], [ev("f", T0)]);
        const [f] = await b.listEvents({ types: ["f"] });
        expect(f!.id).toBeGreaterThan(next.id);
      });

      test("listEvents() after a prune filters and pages over what remains", async () => {
        const { b } = await fresh();
        const all: StoredEvent[] = [];
        for (let i = 0; i < 12; i++) all.push(await b.appendEvent(ev(i % 2 ? "odd" : "even", T0 + i * 1000, { i })));
        expect(await b.pruneEvents(T0 + 5000)).toBe(5);
        const is = async (q: Parameters<Backend["listEvents"]>[0]) => (await b.listEvents(q)).map((e) => e.fields.i);
        expect(await is({})).toEqual([5, 6, 7, 8, 9, 10, 11]);
        expect(await is({ types: ["odd"] })).toEqual([5, 7, 9, 11]);
        expect(await is({ since: new Date(T0) })).toEqual([5, 6, 7, 8, 9, 10, 11]);
        expect(await is({ until: new Date(T0 + 7000) })).toEqual([5, 6]);
        expect(await is({ order: "desc", limit: 2 })).toEqual([11, 10]);
        // a cursor at a pruned id still pages on from there, in both orders
        expect(await is({ afterId: all[2]!.id, limit: 3 })).toEqual([5, 6, 7]);
        expect(await is({ afterId: all[7]!.id, order: "desc" })).toEqual([6, 5]);
      });

      test("parallel pruneEvents() calls delete each event once", async () => {
        const { b } = await fresh();
        await b.atomicWrite([], Array.from({ length: 25 }, (_, i) => ev("old", T0 + i)));
        await b.appendEvent(ev("new", T0 + 100));
        const counts = await Promise.all(Array.from({ length: 4 }, () => b.pruneEvents(T0 + 50, 10)));
        for (const n of counts) expect(n).toBeLessThanOrEqual(10);
        const rest = counts.reduce((a, n) => a + n, 0);
        // a call that found its rows claimed by another may have deleted fewer: finish the job
        let more = 0;
        for (let n = -1; n !== 0; more += n = await b.pruneEvents(T0 + 50, 10));
        expect(rest + more).toBe(25);
        expect((await b.listEvents()).map((e) => e.type)).toEqual(["new"]);
      });

      test("malformed prune arguments are BAD_PARAMETER and delete nothing", async () => {
        const { b } = await fresh();
        await b.appendEvent(ev("e", T0));
        await rejectsWith(b.pruneEvents(Number.NaN), "BAD_PARAMETER", /^Cannot prune events before NaN/);
        await rejectsWith(b.pruneEvents(Infinity), "BAD_PARAMETER");
        await rejectsWith(b.pruneEvents(8.64e15 + 1), "BAD_PARAMETER");
        await rejectsWith(b.pruneEvents("2026-01-01" as never), "BAD_PARAMETER");
        await rejectsWith(b.pruneEvents(new Date(T0 + 1) as never), "BAD_PARAMETER");
        await rejectsWith(b.pruneEvents(T0 + 1, -1), "BAD_PARAMETER");
        await rejectsWith(b.pruneEvents(T0 + 1, 1.5), "BAD_PARAMETER");
        expect(await times(b)).toEqual([0]);
      });
    });

    describe("racing writers in one process", () => {
      test("two compareAndSwap() on one revision: exactly one wins, the other is COMPARE_FAILED", async () => {
        const { b } = await fresh();
        const a = await b.put("/race", 0);
        const results = await Promise.allSettled([b.compareAndSwap("/race", a.revision, 1), b.compareAndSwap("/race", a.revision, 2)]);
        const won = results.filter((r) => r.status === "fulfilled");
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        expect(won.length).toBe(1);
        expect(lost.length).toBe(1);
        expect(isAppError(lost[0]!.reason, "COMPARE_FAILED")).toBe(true);
        const winner = (won[0] as PromiseFulfilledResult<{ value: number; revision: string }>).value;
        expect(await b.get("/race")).toEqual({ key: "/race", value: winner.value, revision: winner.revision });
      });

      test("many parallel read-modify-CAS increments: successes equal the final counter", async () => {
        const { b } = await fresh();
        await b.put("/counter", 0);
        const results = await Promise.all(Array.from({ length: 8 }, () => incrementByCas(b, "/counter", 25)));
        const wins = results.reduce((n, r) => n + r.wins, 0);
        const conflicts = results.reduce((n, r) => n + r.conflicts, 0);
        expect((await b.get<number>("/counter"))!.value).toBe(wins);
        expect(conflicts).toBeGreaterThan(0); // the race really happened
        expect(wins + conflicts).toBe(200);
      });

      test("parallel create() of one key: exactly one succeeds, the rest are ALREADY_EXISTS", async () => {
        const { b } = await fresh();
        const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => b.create("/once", i)));
        expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
        for (const r of results) if (r.status === "rejected") expect((r.reason as AppError).code).toBe("ALREADY_EXISTS");
      });

      test("parallel atomic writes guarded by notExists on one key: exactly one commits its event", async () => {
        const { b } = await fresh();
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) =>
            b.atomicWrite([{ key: "/claim", condition: { kind: "notExists" }, action: { kind: "put", value: i } }], [ev("claimed", T0, { i })]),
          ),
        );
        const won = results.filter((r) => r.status === "fulfilled");
        expect(won.length).toBe(1);
        for (const r of results) if (r.status === "rejected") expect((r.reason as AppError).code).toBe("COMPARE_FAILED");
        const events = await b.listEvents();
        expect(events.length).toBe(1);
        expect((await b.get("/claim"))?.value).toBe(events[0]!.fields.i);
      });
    });

    describe("lifecycle", () => {
      test("close() is idempotent and later calls are CONNECTION_PROBLEM", async () => {
        const { b } = await fresh();
        await b.put("/k", 1);
        await b.close();
        await b.close();
        await rejectsWith(b.get("/k"), "CONNECTION_PROBLEM", `Cannot use the ${b.kind} storage: it is closed`);
        await rejectsWith(b.put("/k", 2), "CONNECTION_PROBLEM");
        await rejectsWith(b.listEvents(), "CONNECTION_PROBLEM");
        await rejectsWith(b.deleteExpired(), "CONNECTION_PROBLEM");
        await rejectsWith(b.pruneEvents(T0), "CONNECTION_PROBLEM");
      });
    });
  });
}
