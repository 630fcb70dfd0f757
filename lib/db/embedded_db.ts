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
  /** Concurrent client connections accepted by the socket server. @default {64} */
  maxConnections?: number;
  /**
   * PostgreSQL's `shared_buffers`: PGlite keeps all of it resident. The 128 MB of `initdb`'s
   * `postgresql.conf` cost about 100 MB more than 16 MB did and the feed wrote no faster with it
   * (docs/benchmarks.md). @default {"16MB"}
   */
  sharedBuffers?: string;
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
  if (options.dataDir !== null) {
    await Deno.mkdir(options.dataDir, { recursive: true });
    // An OS file lock dies with its process, so a crash never leaves a stale lock behind.
    lock = await Deno.open(join(options.dataDir, "upbot.lock"), {
      create: true,
      write: true,
    });
    if (!(await lock.tryLock(true))) {
      lock.close();
      throw new DataDirLockedError(options.dataDir);
    }
    pgDir = join(options.dataDir, "pgdata");
  }
  let db: PGlite;
  try {
    if (pgDir && !(await holdsDatabase(pgDir))) await createFromTemplate(pgDir);
    db = await PGlite.create({ ...(pgDir ? { dataDir: pgDir } : {}), startParams: params });
  } catch (err) {
    lock?.close();
    throw err;
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
