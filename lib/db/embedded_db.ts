/**
 * @module The embedded database: PGlite (WASM PostgreSQL) persisted under `DATA_DIR`, served on a
 * loopback socket so that every actor uses the same postgres.js code as against a real server.
 *
 * PGlite is a single-session database; {@linkcode PgliteServer} multiplexes connections onto it
 * whole protocol units at a time and keeps a transaction's statements together (other connections
 * wait until it commits or rolls back). So: never hold a transaction open across network I/O.
 */
import { PGlite } from "@electric-sql/pglite";
import { join } from "node:path";
import { createLogger, type Logger } from "../log.ts";
import { PgliteServer } from "./pglite_server.ts";
import { extractTemplate, TEMPLATE_URL } from "./pglite_template.ts";

/**
 * Where clients connect. The password is made fresh for each run: the socket listens on loopback
 * only, and the password keeps other local processes (other users) out of the database.
 */
export interface EmbeddedEndpoint {
  host: string;
  port: number;
  database: string;
  username: string;
  password: string;
}

/** A running embedded database. */
export interface EmbeddedDatabase {
  readonly endpoint: EmbeddedEndpoint;
  /** Where the files live, or `null` for an in-memory database. */
  readonly dataDir: string | null;
  /**
   * Disconnects the clients that named themselves `applicationName`, rolling back what they left
   * open; resolves with how many there were ({@linkcode PgliteServer.disconnectApplication}).
   */
  endSessions(applicationName: string): Promise<number>;
  /** Stops the socket server, closes PGlite cleanly and releases the `DATA_DIR` lock. */
  close(): Promise<void>;
}

/** Thrown when another process already holds the `DATA_DIR` lock. */
export class DataDirLockedError extends Error {
  constructor(dataDir: string) {
    super(
      `DATA_DIR ${dataDir} is in use by another upbot process (lock file ${
        join(dataDir, "upbot.lock")
      }); stop that process or choose another DATA_DIR (the embedded PGlite serves one upbot: a hot standby needs PostgreSQL, set DATABASE_URL)`,
    );
    this.name = "DataDirLockedError";
  }
}

/** Options of {@linkcode startEmbeddedDatabase}. */
export interface EmbeddedDatabaseOptions {
  /** Directory for the database files; `null` keeps everything in memory (tests). */
  dataDir: string | null;
  /** Loopback address to serve on. @default {"127.0.0.1"} */
  host?: string;
  /** Port; 0 picks a free one. @default {0} */
  port?: number;
  /**
   * Authenticated client connections the socket server accepts at once (connections still
   * authenticating are held apart: `PgliteServerOptions`). @default {64}
   */
  maxConnections?: number;
  /**
   * PostgreSQL's `shared_buffers`: PGlite keeps all of it resident. The 128 MB of `initdb`'s
   * `postgresql.conf` cost about 100 MB more than 16 MB did and the feed wrote no faster with it
   * (docs/benchmarks.md). @default {"16MB"}
   */
  sharedBuffers?: string;
  /** Where the permission changes of `dataDir` are logged. @default {createLogger("database")} */
  log?: Logger;
}

/**
 * PGlite's own start parameters plus `shared_buffers`. Passed on the command line rather than as
 * PGlite's `postgresqlconf` option, which would replace `initdb`'s whole `postgresql.conf`
 * (time zone, date style, ...) with the one line.
 */
export function pgliteStartParams(sharedBuffers: string): string[] {
  if (!/^\d+(kB|MB|GB)$/.test(sharedBuffers)) {
    throw new TypeError(
      `Cannot start the embedded database as 'sharedBuffers' must be like 16MB: current value is ${
        JSON.stringify(sharedBuffers)
      }`,
    );
  }
  return [...PGlite.defaultStartParams, "-c", `shared_buffers=${sharedBuffers}`];
}

/** Whether `pgDir` already holds a database (what PGlite itself checks before running initdb). */
async function holdsDatabase(pgDir: string): Promise<boolean> {
  try {
    await Deno.stat(join(pgDir, "PG_VERSION"));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Creates the new data directory `pgDir` from the template (`pglite_template.ts`) instead of
 * PGlite's `initdb`: written beside it first and renamed into place, so a start-up killed
 * half-way leaves no half-made `pgDir` that would pass for a database next time.
 */
async function createFromTemplate(pgDir: string): Promise<void> {
  const staging = `${pgDir}.new`;
  // What is left of an earlier attempt that was cut short (nothing else makes this directory).
  await Deno.remove(staging, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  try {
    await extractTemplate(await Deno.readFile(TEMPLATE_URL), staging);
    // An empty pgDir (made by earlier versions before initdb) goes; one holding files does not.
    await Deno.remove(pgDir).catch((err) => {
      if (err instanceof Deno.errors.NotFound) return;
      throw new Error(
        `it holds files but no PG_VERSION, so it is no PostgreSQL data directory: move it away or choose another DATA_DIR (${
          (err as Error).message
        })`,
      );
    });
    await Deno.rename(staging, pgDir);
  } catch (err) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw new Error(`Cannot create the embedded database in ${pgDir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Group's and others' permission bits. */
const GROUP_OTHER = 0o077;

/**
 * Makes `path` owner-only (`mode`: 0700 for a directory, 0600 for a file) when its group or others
 * have any access to it; returns whether it changed it. Nothing is done where the platform
 * reports no mode (Windows).
 *
 * @throws {Error} naming the path when it cannot be changed (it belongs to another user).
 */
function makeOwnerOnly(path: string, info: Deno.FileInfo, mode: number): boolean {
  if (info.mode === null || (info.mode & GROUP_OTHER) === 0) return false;
  try {
    Deno.chmodSync(path, mode);
  } catch (err) {
    throw new Error(
      `Cannot start the embedded database as ${path} is open to other users (mode 0${
        (info.mode & 0o777).toString(8)
      }, owner uid ${info.uid}) and cannot be made owner-only (${
        (err as Error).message
      }): make it owned by the user running upbot and not accessible to others, or choose another DATA_DIR`,
      { cause: err },
    );
  }
  return true;
}

/** What {@linkcode makeTreeOwnerOnly} changed. */
interface OwnerOnlyChanges {
  dirs: number;
  files: number;
  /** Of those, how many group or others could write to. */
  writable: number;
}

/**
 * Makes every directory and file under `dir` owner-only (directories 0700, files 0600) where group
 * or others have access. Symbolic links are left alone (a chmod would follow them). Synchronous:
 * ~1,000 entries of a pgdata take 5-12 ms this way, 20-40 ms as async calls (2 cores, measured).
 *
 * @throws {Error} naming the first entry it cannot change ({@linkcode makeOwnerOnly}).
 */
function makeTreeOwnerOnly(dir: string): OwnerOnlyChanges {
  const changed: OwnerOnlyChanges = { dirs: 0, files: 0, writable: 0 };
  const visit = (path: string, info: Deno.FileInfo): void => {
    if (info.isSymlink) return;
    if (makeOwnerOnly(path, info, info.isDirectory ? 0o700 : 0o600)) {
      changed[info.isDirectory ? "dirs" : "files"]++;
      if ((info.mode! & 0o022) !== 0) changed.writable++;
    }
    if (!info.isDirectory) return;
    for (const entry of Deno.readDirSync(path)) {
      const child = join(path, entry.name);
      visit(child, Deno.lstatSync(child));
    }
  };
  visit(dir, Deno.statSync(dir)); // pgdata itself may be a link to another disk
  return changed;
}

/** What upbot keeps in `DATA_DIR` (the database, its lock, the control directory, recordings). */
const UPBOT_ENTRIES = new Set([
  "pgdata",
  "pgdata.new",
  "upbot.lock",
  "control",
  "trades",
  "backtests",
]);

/**
 * Creates `dataDir` owner-only (0700), or makes an existing one owner-only, and logs what it
 * changed. Owner only: whoever can write to it can rewrite the database's configuration or take
 * its lock, and whoever can read it reads the database. An existing directory holding anything
 * but upbot's own entries is not upbot's alone (`/tmp`, a home directory): it is left as it is,
 * with a warning, as the database directory, the lock and the control directory inside are
 * owner-only themselves.
 */
async function ensureOwnerOnlyDataDir(dataDir: string, log: Logger): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const info = await Deno.stat(dataDir);
  if (info.mode === null || (info.mode & GROUP_OTHER) === 0) return;
  const mode = `0${(info.mode & 0o777).toString(8)}`;
  for await (const entry of Deno.readDir(dataDir)) {
    if (!UPBOT_ENTRIES.has(entry.name)) {
      log.warn(
        `DATA_DIR ${dataDir} is open to other users (mode ${mode}) and holds more than upbot's files (${entry.name}): left as it is; the database, its lock and the control directory in it are owner-only`,
        { path: dataDir },
      );
      return;
    }
  }
  try {
    makeOwnerOnly(dataDir, info, 0o700);
  } catch (err) {
    // Another user's directory (a volume mounted so): not needed, as above.
    log.warn(
      `DATA_DIR ${dataDir} is open to other users (mode ${mode}) and cannot be made owner-only (${
        (err as Error).message
      }): left as it is; the database, its lock and the control directory in it are owner-only`,
      { path: dataDir },
    );
    return;
  }
  log.warn(`DATA_DIR ${dataDir} was open to other users (mode ${mode}): made owner-only (0700)`, {
    path: dataDir,
  });
}

/**
 * Opens (or creates) the embedded database and serves it on a loopback socket.
 *
 * @throws {DataDirLockedError} when another process uses the same `dataDir`.
 */
export async function startEmbeddedDatabase(
  options: EmbeddedDatabaseOptions,
): Promise<EmbeddedDatabase> {
  const host = options.host ?? "127.0.0.1";
  const params = pgliteStartParams(options.sharedBuffers ?? "16MB");
  let lock: Deno.FsFile | null = null;
  let pgDir: string | undefined;
  const log = options.log ?? createLogger("database");
  if (options.dataDir !== null) {
    await ensureOwnerOnlyDataDir(options.dataDir, log);
    // An OS file lock dies with its process, so a crash never leaves a stale lock behind.
    const lockPath = join(options.dataDir, "upbot.lock");
    lock = await Deno.open(lockPath, { create: true, write: true, mode: 0o600 });
    try {
      // One made by an earlier version is 0644: another user could open it and take the lock.
      if (makeOwnerOnly(lockPath, await lock.stat(), 0o600)) {
        log.warn(`${lockPath} was open to other users: made owner-only (0600)`, {
          path: lockPath,
        });
      }
    } catch (err) {
      lock.close();
      throw err;
    }
    if (!(await lock.tryLock(true))) {
      lock.close();
      throw new DataDirLockedError(options.dataDir);
    }
    pgDir = join(options.dataDir, "pgdata");
  }
  let db: PGlite;
  try {
    if (pgDir && !(await holdsDatabase(pgDir))) await createFromTemplate(pgDir);
    else if (pgDir) {
      // Files an earlier version wrote from the template are 0666: make them owner-only before
      // PGlite reads a line of them (postgresql.auto.conf, the catalogs). Each file's mode
      // counts, not only DATA_DIR's: a hard link made while a file was 0666 still reaches it.
      // About 1,000 entries: 5-12 ms ({@linkcode makeTreeOwnerOnly}).
      const changed = makeTreeOwnerOnly(pgDir);
      if (changed.dirs + changed.files > 0) {
        log.warn(
          `the embedded database's files in ${pgDir} were open to other users (${changed.writable} writable by them): made ${changed.files} file(s) owner-only (0600) and ${changed.dirs} directory(ies) (0700)`,
          { path: pgDir, ...changed },
        );
      }
    }
    db = await PGlite.create({ ...(pgDir ? { dataDir: pgDir } : {}), startParams: params });
  } catch (err) {
    lock?.close();
    throw err;
  }
  if (pgDir) {
    // PGlite writes its relation cache files (pg_internal.init) at each start as 0644, whatever
    // the process umask (PostgreSQL relies on the postmaster's umask 0077, which PGlite has
    // not): made owner-only once it has started, without a word (pgdata, 0700, keeps others out).
    try {
      makeTreeOwnerOnly(pgDir);
    } catch (err) {
      await db.close();
      lock?.close();
      throw err;
    }
  }
  const password = crypto.randomUUID();
  const server = new PgliteServer({
    db,
    password,
    hostname: host,
    port: options.port ?? 0,
    maxConnections: options.maxConnections ?? 64,
  });
  const { port } = server.start();
  let closed = false;
  return {
    endpoint: { host, port, database: "postgres", username: "postgres", password },
    dataDir: options.dataDir,
    endSessions: (applicationName) => server.disconnectApplication(applicationName),
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      await db.close();
      if (lock) {
        await lock.unlock();
        lock.close();
      }
    },
  };
}
