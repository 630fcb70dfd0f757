/**
 * @module Database connection: postgres.js against either a PostgreSQL server (`DATABASE_URL`)
 * or the embedded PGlite socket. Callers get the same `Sql` either way.
 *
 * Money and quantities are `NUMERIC` columns and come back as decimal strings (postgres.js does
 * not convert them), so no price or volume is ever rounded through a float on its way in or out.
 */
import postgres from "postgres";
import type { Config } from "./config.ts";
import { describeDatabaseUrl } from "./config.ts";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "./embedded_db.ts";

/** The postgres.js client. */
export type Client = postgres.Sql;

/** Anything queries run on: the client or a transaction (`sql.begin(async (tx) => …)`). */
export type Sql = postgres.Sql | postgres.TransactionSql;

/**
 * How to reach the database, as passed to workers in their start message (workers cannot read
 * the environment). `url` may hold a password: treat the whole object as a secret.
 */
export type DbConnection =
  | { kind: "url"; url: string }
  | {
    kind: "embedded";
    host: string;
    port: number;
    database: string;
    username: string;
    password: string;
  };

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Pool size. @default {4} */
  max?: number;
  /** Shown in `pg_stat_activity`. */
  applicationName?: string;
}

/**
 * Opens a postgres.js client for `connection`.
 *
 * @example
 * ```ts ignore
 * const sql = connect({ kind: "url", url: "postgres://127.0.0.1:5432/test" });
 * await sql`select 1`;
 * await sql.end();
 * ```
 */
export function connect(connection: DbConnection, options: ConnectOptions = {}): Client {
  const common = {
    max: options.max ?? 4,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? "upbot" },
  };
  if (connection.kind === "url") return postgres(connection.url, common);
  // Every field explicit, so postgres.js fills nothing in from PG* variables. No named prepared
  // statements: PGlite is one session shared by every client, and statements prepared by
  // clients that come and go (actor restarts) would pile up in it for good.
  return postgres({
    ...common,
    host: connection.host,
    port: connection.port,
    database: connection.database,
    username: connection.username,
    password: connection.password,
    prepare: false,
  });
}

/** Session advisory lock key held by the upbot process that owns a database ("upbot-run"). */
const PROCESS_LOCK_KEY = 0x7570626f7472;

/**
 * How often the process lock is verified. The lock lives in one database session: a PostgreSQL
 * restart or a terminated backend ends it silently, and a second upbot could then start on the
 * same database and trade the same signals (tests/db_faults_test.ts found this).
 */
export const LOCK_CHECK_INTERVAL_MS = 1000;

/** Thrown when another upbot process already uses the database of `DATABASE_URL`. */
export class DatabaseInUseError extends Error {
  constructor(description: string) {
    super(
      `the database ${description} is in use by another upbot process; stop it or use another database`,
    );
    this.name = "DatabaseInUseError";
  }
}

/** The database of one upbot process: the client plus whatever must be closed with it. */
export interface Database {
  readonly sql: Client;
  readonly connection: DbConnection;
  /** `postgres (postgres://user:***@host/db)` or `embedded PGlite (./data)`: safe to log. */
  readonly description: string;
  /**
   * Resolves with a sentence when this process lost the database to another upbot process: its
   * lock session ended (a PostgreSQL restart, a terminated backend) and another process took the
   * lock before this one could take it again. The process must stop at once. Never resolves for
   * the embedded PGlite (its data directory lock cannot be lost).
   */
  readonly lost: Promise<string>;
  /**
   * Verifies the process lock now (a timer does it every {@linkcode LOCK_CHECK_INTERVAL_MS}): when
   * its session ended, takes it again on a new session, or resolves `lost` when another process
   * holds it; does nothing while the database is unreachable (the next check tries again).
   */
  checkLock(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the database chosen by the configuration: `DATABASE_URL` when set, else the embedded
 * PGlite under `DATA_DIR`.
 *
 * @throws {DataDirLockedError} when another upbot uses the same `DATA_DIR`.
 * @throws {DatabaseInUseError} when another upbot uses the same `DATABASE_URL` database.
 * @param options.lockCheckIntervalMs how often the process lock is verified (tests lengthen it).
 */
export async function openDatabase(
  config: Pick<Config, "DATABASE_URL" | "DATA_DIR">,
  options: { lockCheckIntervalMs?: number } = {},
): Promise<Database> {
  if (config.DATABASE_URL) {
    const connection: DbConnection = { kind: "url", url: config.DATABASE_URL };
    const description = `postgres (${describeDatabaseUrl(config.DATABASE_URL)})`;
    const sql = connect(connection);
    // Two upbots on one database would each trade the same signals: hold a session lock on a
    // connection of our own for as long as this process runs (it dies with the process).
    let session;
    try {
      session = await takeProcessLock(connection);
    } catch (err) {
      await sql.end({ timeout: 5 });
      throw err;
    }
    if (!session) {
      await sql.end({ timeout: 5 });
      throw new DatabaseInUseError(description);
    }
    let held: LockSession = session;
    const { promise: lost, resolve: loseDatabase } = Promise.withResolvers<string>();
    let closed = false;
    let checking: Promise<void> | null = null;
    const verify = async () => {
      try {
        const holder = await processLockHolder(sql);
        if (holder === held.pid) return;
        held.alive = false;
        if (holder === null) {
          const fresh = await takeProcessLock(connection);
          if (fresh && closed) await releaseProcessLock(fresh);
          if (closed) return;
          if (fresh) {
            // The old session is gone; its client is dropped without end(): postgres.js throws
            // outside any promise when it writes on a closed socket.
            held = fresh;
            return;
          }
        }
        loseDatabase(
          `the database ${description} was taken by another upbot process after this process's ` +
            "lock session ended (database restart or terminated connection); stopping",
        );
      } catch {
        // Unreachable: nobody else can take the lock either; the next check tries again.
      }
    };
    const checkLock = () => {
      if (closed) return Promise.resolve();
      checking ??= verify().finally(() => checking = null);
      return checking;
    };
    const timer = setInterval(
      () => void checkLock(),
      options.lockCheckIntervalMs ?? LOCK_CHECK_INTERVAL_MS,
    );
    return {
      sql,
      connection,
      description,
      lost,
      checkLock,
      async close() {
        closed = true;
        clearInterval(timer);
        // Unlock only on a session known alive (ending the session releases the lock anyway).
        const alive = held.alive &&
          await processLockHolder(sql).then((pid) => pid === held.pid, () => false);
        if (alive) await releaseProcessLock(held);
        await sql.end({ timeout: 5 });
      },
    };
  }
  const embedded: EmbeddedDatabase = await startEmbeddedDatabase({ dataDir: config.DATA_DIR });
  const connection: DbConnection = { kind: "embedded", ...embedded.endpoint };
  const sql = connect(connection);
  return {
    sql,
    connection,
    description: `embedded PGlite (${config.DATA_DIR})`,
    lost: new Promise<string>(() => {}),
    checkLock: () => Promise.resolve(),
    async close() {
      await sql.end({ timeout: 5 });
      await embedded.close();
    },
  };
}

/** The dedicated session that holds the process lock. */
interface LockSession {
  client: Client;
  /** Its backend pid. */
  pid: number;
  /** False once it was seen gone. */
  alive: boolean;
}

/** Takes the process lock on a new session of its own; null when another process holds it. */
async function takeProcessLock(connection: DbConnection): Promise<LockSession | null> {
  const client = connect(connection, { max: 1 });
  let row;
  try {
    [row] = await client<{ locked: boolean; pid: number }[]>`
      select pg_try_advisory_lock(${PROCESS_LOCK_KEY}) as locked, pg_backend_pid() as pid`;
  } catch (err) {
    await client.end({ timeout: 1 }).catch(() => {});
    throw err;
  }
  if (row?.locked) return { client, pid: row.pid, alive: true };
  await client.end({ timeout: 5 });
  return null;
}

/** Unlocks and closes a live lock session. */
async function releaseProcessLock(session: LockSession): Promise<void> {
  await session.client`select pg_advisory_unlock(${PROCESS_LOCK_KEY})`.catch(() => {});
  await session.client.end({ timeout: 5 });
}

/**
 * The backend pid holding the process lock, or null; asked on the pool, never on the lock
 * session itself (a query there would reconnect it silently, without the lock).
 */
async function processLockHolder(sql: Client): Promise<number | null> {
  // An advisory lock on a bigint key shows in pg_locks as classid = high 32 bits, objid = low;
  // pg_locks lists every database of the server, and each has its own advisory locks.
  const [row] = await sql<{ pid: number }[]>`
    select pid from pg_locks
    where locktype = 'advisory' and granted
      and database = (select oid from pg_database where datname = current_database())
      and classid = ${Math.floor(PROCESS_LOCK_KEY / 2 ** 32)}::oid
      and objid = ${PROCESS_LOCK_KEY % 2 ** 32}::oid and objsubid = 1`;
  return row?.pid ?? null;
}
