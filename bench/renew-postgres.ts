/**
 * Renewals against a real PostgreSQL (started here, as the storage tests start it):
 * the auth service's request handler called in process, no sockets, so the figure is
 * the handler and its storage round trips. µs per renewal one at a time and 16 at once.
 *
 *   bun bench/renew-postgres.ts
 */
import { join } from "node:path";
import { Admin } from "../src/auth/admin.ts";
import { startAuthService } from "../src/auth/service.ts";
import { silentLogger } from "../src/lib/log.ts";
import { pemDecodeOne } from "../src/lib/pem.ts";
import { JSON_HEADERS, prepareKeys } from "./_bot.ts";
import { tempDir } from "./_lib.ts";
import { startPostgres } from "../tests/storage/postgres_server.ts";
await using pg = await startPostgres();
using dir = tempDir("prof-");
const a = await startAuthService({ dataDir: join(dir.path, "d"), listenAddr: "127.0.0.1:0", log: silentLogger, storage: { type: "postgres", connString: pg.url() } });
const h = a.handler;
await new Admin(a.ctx).addBot({ name: "b", roles: [] }, { user: "admin" });
const keys = prepareKeys(4);
async function client(): Promise<() => Promise<void>> {
  const { token } = await new Admin(a.ctx).addToken({ bot_name: "b", join_method: "token" }, { user: "admin" });
  const conn: any = { remoteAddr: "127.0.0.1", session: {} };
  const post = (p: string, body: unknown) => h(new Request(`https://bench${p}`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) }), conn);
  const joined = (await (await post("/v1/join", { ...keys[0]!.body, join_method: "token", token_name: token })).json()) as any;
  conn.peerCertDer = pemDecodeOne(joined.certs.tls_cert, ["CERTIFICATE"]).der;
  let n = 0;
  return async () => { const r = await post("/v1/bot/renew", keys[n++ % 4]!.body); if (r.status !== 200) throw new Error(await r.text()); await r.arrayBuffer(); };
}
for (const c of [1, 16]) {
  const cs = await Promise.all(Array.from({ length: c }, client));
  let done = 0; const t0 = performance.now();
  await Promise.all(cs.map(async (f) => { while (performance.now() - t0 < 4000) { await f(); done++; } }));
  const ms = performance.now() - t0;
  console.log(`postgres, ${c} at once: ${(ms * 1000 / done).toFixed(0)} µs per renewal (${(done / ms * 1000).toFixed(0)}/s)`);
}
await a.close();
