/**
 * The PostgreSQL backend against a real server this file starts (see
 * postgres_server.ts): the conformance suite, one fresh database per backend, then
 * connection errors, schema versions, reopening, and writers on separate pools.
 * Without the PostgreSQL binaries the file fails with the package to install.
 */

import { SQL } from "bun";
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { openBackend, type Backend } from "../../src/auth/storage/index.ts";
import { isAppError } from "../../src/lib/errors.ts";
import { runBackendConformance } from "./conformance.ts";
import { incrementByCas, rejectsWith } from "./helpers.ts";
import { findPostgresBin, startPostgres, type PostgresServer } from "./postgres_server.ts";

// Every test creates a database on a real server: give it room on a busy machine.
setDefaultTimeout(20_000);

let pg: PostgresServer | undefined;
let startError: unknown;
try {
  pg = await startPostgres();
} catch (e) {
  startError = e;
}

test("without the PostgreSQL binaries the helper fails saying which package to install", () => {
  expect(() => findPostgresBin(["/nonexistent/bin"])).toThrow(/install them with `apt-get install postgresql`/);
});

if (!pg) {
  test("a PostgreSQL server can be started for the tests", () => {
    throw startError;
  });
} else {
  const server = pg;
  const admin = new SQL({ url: server.url(), max: 2 });
  // Stopping removes a data directory as large as the databases the tests created: the
  // limit is a hang guard, not a speed requirement.
  afterAll(async () => {
    await admin.close();
    await server.stop();
  }, 120_000);
  let n = 0;
  /** A new empty database; returns its connection string. */
  const freshDb = async () => {
    const name = `t${n++}`;
    await admin.unsafe(`CREATE DATABASE ${name}`);
    return server.url(name);
  };
  const open = (connString: string) => openBackend({ type: "postgres", connString }, { sweepIntervalMs: 0 });

  runBackendConformance("postgres", async (opts) => openBackend({ type: "postgres", connString: await freshDb() }, opts), async () => {});

  describe("postgres connection", () => {
    test("openBackend() connects through a unix socket as well as TCP", async () => {
      const url = await freshDb();
      const viaTcp = await open(url);
      const viaSocket = await open(server.socketUrl(new URL(url).pathname.slice(1)));
      try {
        await viaTcp.put("/k", "v");
        expect((await viaSocket.get("/k"))?.value).toBe("v");
        expect(viaSocket.kind).toBe("postgres");
      } finally {
        await viaTcp.close();
        await viaSocket.close();
      }
    });

    test("an unreachable server is CONNECTION_PROBLEM naming host, port and database, not the password", async () => {
      const closed = await new Promise<number>((resolve) => {
        const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
        const port = s.port;
        s.stop(true);
        resolve(port);
      });
      const err = await rejectsWith(
        open(`postgres://postgres:s3cret@127.0.0.1:${closed}/db`),
        "CONNECTION_PROBLEM",
        `Cannot use storage postgres "127.0.0.1:${closed}/db": connection refused`,
      );
      expect(err.message).not.toContain("s3cret");
    });

    test("a database that does not exist is CONNECTION_PROBLEM", async () => {
      await rejectsWith(open(server.url("nosuchdb")), "CONNECTION_PROBLEM", /database "nosuchdb" does not exist/);
    });

    test("a malformed connection string is BAD_PARAMETER and does not echo it", async () => {
      const err = await rejectsWith(open("postgres://user:s3cret@[::1"), "BAD_PARAMETER");
      expect(err.message).not.toContain("s3cret");
      await rejectsWith(open(""), "BAD_PARAMETER");
      await rejectsWith(openBackend({ type: "postgres", connString: server.url(), poolSize: 0 }), "BAD_PARAMETER");
    });
  });

  describe("postgres schema", () => {
    test("concurrent openers of a new database migrate it exactly once", async () => {
      const url = await freshDb();
      const backends = await Promise.all([0, 1, 2, 3].map(() => open(url)));
      try {
        const db = new SQL({ url, max: 1 });
        expect(await db`SELECT id, version FROM schema_version`).toEqual([{ id: 1, version: 1 }] as never);
        await db.close();
        await backends[0]!.put("/k", 1);
        expect((await backends[3]!.get("/k"))?.value).toBe(1);
      } finally {
        for (const b of backends) await b.close();
      }
    });

    test("openBackend() refuses a database whose schema a newer release wrote", async () => {
      const url = await freshDb();
      await (await open(url)).close();
      const db = new SQL({ url, max: 1 });
      await db`UPDATE schema_version SET version = 99`;
      await db.close();
      const where = `"127.0.0.1:${server.port}/${new URL(url).pathname.slice(1)}"`;
      await rejectsWith(
        open(url),
        "BAD_PARAMETER",
        `Cannot open storage ${where}: its schema version 99 is newer than this release supports (1); run a newer machine-id`,
      );
    });

    test("openBackend() refuses a database that another program's tables occupy, and leaves it as it was", async () => {
      const url = await freshDb();
      const db = new SQL({ url, max: 1 });
      await db`CREATE TABLE items (id integer PRIMARY KEY)`;
      const where = `"127.0.0.1:${server.port}/${new URL(url).pathname.slice(1)}"`;
      await rejectsWith(open(url), "BAD_PARAMETER", `Cannot open storage ${where}: applying schema version 1 failed: relation "items" already exists`);
      const tables = await db`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`;
      expect(tables.map((t: { tablename: string }) => t.tablename)).toEqual(["items"]);
      await db.close();
    });

    test("a role without CREATE rights can use a database the owner migrated", async () => {
      const url = await freshDb();
      await (await open(url)).close();
      const name = new URL(url).pathname.slice(1);
      const role = `app_${name}`;
      const db = new SQL({ url, max: 1 });
      await db.unsafe(`CREATE ROLE ${role} LOGIN`);
      await db.unsafe(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
      await db.unsafe(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
      await db.unsafe(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
      await db.close();
      const b = await open(`postgres://${role}@127.0.0.1:${server.port}/${name}`);
      try {
        await b.put("/k", 1);
        await b.atomicWrite([{ key: "/j", condition: { kind: "notExists" }, action: { kind: "put", value: 2 } }], [
          { type: "t", time: new Date(), fields: {} },
        ]);
        expect(await b.count("/")).toBe(2);
        expect((await b.listEvents()).length).toBe(1);
        expect(await b.pruneEvents(Date.now() + 60_000, 10)).toBe(1);
      } finally {
        await b.close();
      }
    });

    test("reopening keeps items, expiry, revisions and events, and revisions keep growing", async () => {
      const url = await freshDb();
      const expires = new Date(Date.now() + 3_600_000);
      const first = await open(url);
      const a = await first.put("/a", { x: 1 });
      const c = await first.put("/b/c", "two", { expires });
      await first.put("/gone", 0);
      await first.delete("/gone");
      const e = await first.appendEvent({ type: "t", time: new Date(), fields: { n: 1 } });
      await first.close();
      let again = await open(url);
      try {
        expect(await again.list("/")).toEqual([a, c]);
        expect(await again.listEvents()).toEqual([e]);
        const next = await again.put("/gone", 1);
        expect(Number(next.revision)).toBeGreaterThan(Number(c.revision));
        // the event sequence, too, survives a reopen after every event was pruned
        expect(await again.pruneEvents(Date.now() + 60_000)).toBe(1);
        await again.close();
        again = await open(url);
        expect((await again.appendEvent({ type: "t", time: new Date(), fields: {} })).id).toBeGreaterThan(e.id);
      } finally {
        await again.close();
      }
    });
  });

  describe("postgres writers on separate pools", () => {
    test("compareAndSwap() from two pools on one revision: exactly one wins", async () => {
      const url = await freshDb();
      const [a, b] = [await open(url), await open(url)];
      try {
        for (let round = 0; round < 20; round++) {
          const cur = await a.put("/race", round);
          const results = await Promise.allSettled([a.compareAndSwap("/race", cur.revision, 1), b.compareAndSwap("/race", cur.revision, 2)]);
          expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
          const lost = results.find((r): r is PromiseRejectedResult => r.status === "rejected")!;
          expect(isAppError(lost.reason, "COMPARE_FAILED")).toBe(true);
        }
      } finally {
        await a.close();
        await b.close();
      }
    });

    test("increments from three pools: successes equal the final counter", async () => {
      const url = await freshDb();
      const pools: Backend[] = [await open(url), await open(url), await open(url)];
      try {
        await pools[0]!.put("/counter", 0);
        const results = await Promise.all(pools.flatMap((b) => [incrementByCas(b, "/counter", 40), incrementByCas(b, "/counter", 40)]));
        const wins = results.reduce((n, r) => n + r.wins, 0);
        expect((await pools[1]!.get<number>("/counter"))?.value).toBe(wins);
      } finally {
        for (const b of pools) await b.close();
      }
    });

    test("atomic writes from two pools guarded by notExists: exactly one commits", async () => {
      const url = await freshDb();
      const [a, b] = [await open(url), await open(url)];
      try {
        for (let round = 0; round < 10; round++) {
          const key = `/claims/${round}`;
          const write = (x: Backend, who: string) =>
            x.atomicWrite(
              [
                { key, condition: { kind: "notExists" }, action: { kind: "put", value: who } },
                { key: `/by/${who}/${round}`, condition: { kind: "whatever" }, action: { kind: "put", value: true } },
              ],
              [{ type: "claim", time: new Date(), fields: { who, round } }],
            );
          const results = await Promise.allSettled([write(a, "a"), write(b, "b"), write(a, "a2"), write(b, "b2")]);
          expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
          for (const r of results) if (r.status === "rejected") expect(isAppError(r.reason, "COMPARE_FAILED")).toBe(true);
          const winner = (await a.get<string>(key))!.value;
          expect(await a.count("/by")).toBe(round + 1);
          expect((await a.get(`/by/${winner}/${round}`))?.value).toBe(true);
        }
        expect((await a.listEvents({ types: ["claim"] })).length).toBe(10);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
