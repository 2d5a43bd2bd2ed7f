/**
 * A throwaway PostgreSQL server for the tests: initdb into a temp dir, start on a
 * random 127.0.0.1 port with its unix socket in that dir, stop with `-m immediate` and
 * remove everything. PostgreSQL refuses to run as root, so under root the server runs
 * as the `postgres` system user (or `nobody`) through runuser.
 */

import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

const INSTALL_HINT =
  "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in PATH, /usr/local/bin or /usr/lib/postgresql/*/bin: " +
  "install them with `apt-get install postgresql` (Debian 12: PostgreSQL 15)";

/** Where the server binaries may be: PATH, /usr/local/bin, then Debian's versioned dirs, newest first. */
function defaultSearchDirs(): string[] {
  const versions = existsSync("/usr/lib/postgresql")
    ? readdirSync("/usr/lib/postgresql")
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  return [...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/local/bin", ...versions.map((v) => `/usr/lib/postgresql/${v}/bin`)];
}

/** Finds the directory holding initdb, pg_ctl and postgres, or throws saying how to install them. */
export function findPostgresBin(candidates: string[] = defaultSearchDirs()): string {
  for (const dir of candidates) {
    if (["initdb", "pg_ctl", "postgres"].every((b) => existsSync(join(dir, b)))) return dir;
  }
  throw new Error(INSTALL_HINT);
}

function run(cmd: string[], asUser: string | undefined): { ok: boolean; output: string } {
  const argv = asUser ? ["runuser", "-u", asUser, "--", ...cmd] : cmd;
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C.UTF-8" } });
  return { ok: r.exitCode === 0, output: r.stdout.toString() + r.stderr.toString() };
}

/** A port nobody listens on right now (the kernel's pick for port 0). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** A running test server. */
export interface PostgresServer extends AsyncDisposable {
  port: number;
  /** The connection string of database `name` as the superuser `postgres`, over TCP. */
  url(name?: string): string;
  /** The same database through the unix socket in the temp dir. */
  socketUrl(name?: string): string;
  stop(): Promise<void>;
}

/** Initialises and starts a server; always `stop()` it (or `await using`). */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = findPostgresBin();
  const isRoot = process.getuid?.() === 0;
  const user = isRoot ? (run(["id", "-u", "postgres"], undefined).ok ? "postgres" : "nobody") : undefined;
  const dir = mkdtempSync(join(tmpdir(), "storage-pg-"));
  const data = join(dir, "data");
  const owner = user ?? userInfo().username;
  let started = false;
  const stopNow = () => {
    process.off("exit", stopNow);
    if (started) {
      run([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], user);
      started = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Also when the test runner exits without running afterAll (a crash, a bail-out).
  process.on("exit", stopNow);
  // The data directory holds a copy of template1 per database a test created (~90 in
  // postgres.test.ts): removing it synchronously blocked the event loop for 15-18 s on a
  // loaded machine, long enough for the afterAll hook to time out. Off the event loop,
  // and only the hook's own generous limit applies.
  const stop = async () => {
    process.off("exit", stopNow);
    if (started) {
      const argv = [join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"];
      await Bun.spawn(user ? ["runuser", "-u", user, "--", ...argv] : argv, { stdout: "ignore", stderr: "ignore" }).exited;
      started = false;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (user) {
      const uid = Number(run(["id", "-u", user], undefined).output.trim());
      const gid = Number(run(["id", "-g", user], undefined).output.trim());
      chownSync(dir, uid, gid);
    }
    const init = run([join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], user);
    if (!init.ok) throw new Error(`initdb failed as ${owner}: ${init.output}`);
    let port = 0;
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      port = await freePort();
      // fsync off: a test server's durability is not under test, and it keeps runs fast
      const opts = `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c max_connections=200`;
      const r = run([join(bin, "pg_ctl"), "-D", data, "-l", join(dir, "server.log"), "-o", opts, "-w", "-t", "30", "start"], user);
      if (r.ok) started = true;
    }
    if (!started) {
      const log = existsSync(join(dir, "server.log")) ? readFileSync(join(dir, "server.log"), "utf8") : "";
      throw new Error(`PostgreSQL did not start: ${log}`);
    }
    return {
      port,
      url: (name = "postgres") => `postgres://postgres@127.0.0.1:${port}/${name}`,
      socketUrl: (name = "postgres") => `postgres://postgres@localhost/${name}?path=${encodeURIComponent(dir)}&port=${port}`,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
