/**
 * @module Database connection: postgres.js against either a PostgreSQL server (`DATABASE_URL`)
 * or the embedded PGlite socket. Callers get the same `Sql` either way.
 *
 * Money and quantities are `NUMERIC` columns and come back as decimal strings (postgres.js does
 * not convert them), so no price or volume is ever rounded through a float on its way in or out.
 */
import { IDLE_IN_TRANSACTION_MS } from "./pglite_server.ts";
import postgres from "postgres";
import type { Config } from "../config.ts";
import { describeDatabaseUrl } from "../config.ts";
import type { EmbeddedDatabase } from "./embedded_db.ts";
import { type LeaseFence, setLeaseFence } from "./lease.ts";

/** The postgres.js client. */
export type Client = postgres.Sql;

/** Anything queries run on: the client or a transaction (`sql.begin(async (tx) => …)`). */
export type Sql = postgres.Sql | postgres.TransactionSql;

/**
 * Runs `fn` in a transaction of its own, or in a savepoint when `sql` is already a transaction
 * (so that it commits or rolls back with the caller's).
 */
export function atomically<T>(sql: Sql, fn: (tx: Sql) => Promise<T>): Promise<T> {
  if ("savepoint" in sql) return sql.savepoint((tx) => fn(tx)) as Promise<T>;
  return sql.begin((tx) => fn(tx)) as Promise<T>;
}

/**
 * How to reach the database, as passed to workers in their start message (workers cannot read
 * the environment). `url` may hold a password: treat the whole object as a secret.
 */
export type DbConnection =
  | {
    kind: "url";
    url: string;
    /**
     * The lease the clients of this connection write under (the leader's actors): their fenced
     * attempt writes fail once another upbot took the lease (see `lease.ts`).
     */
    lease?: LeaseFence;
  }
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
  if (connection.kind === "url") {
    const sql = postgres(connection.url, {
      ...common,
      connection: {
        ...common.connection,
        // upbot's transactions never wait on anything but the database. A session idle inside one
        // belongs to a worker that hung or died without closing its socket: end it so its locks
        // go (the embedded server applies the same limit).
        idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
      },
    });
    if (connection.lease) setLeaseFence(sql, connection.lease);
    return sql;
  }
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

/**
 * Eight random hex digits. Not from `crypto.randomUUID`: the embedded database's password is the
 * one UUID a start draws (tests/secrets_test.ts finds it by that).
 */
function randomTag(): string {
  return [...crypto.getRandomValues(new Uint8Array(4))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The database of one upbot process: the client plus whatever must be closed with it. */
export interface Database {
  readonly sql: Client;
  readonly connection: DbConnection;
  /** `postgres (postgres://user:***@host/db)` or `embedded PGlite (./data)`: safe to log. */
  readonly description: string;
  /**
   * Eight characters made for this process: its main sessions are named `upbot/<processTag>`,
   * and its actors' sessions end with it (`lib/pipeline/actor_sessions.ts`).
   */
  readonly processTag: string;
  /**
   * Whether the upbot process whose tag is `processTag` is connected to this database: on
   * PostgreSQL, a session named `upbot/<processTag>` exists; the embedded database has only this
   * process.
   */
  processConnected(processTag: string): Promise<boolean>;
  /**
   * Ends every session whose `application_name` is `applicationName` (an open transaction is
   * rolled back, its locks released); resolves with how many there were. For the sessions of a
   * worker that was terminated but whose sockets outlive it.
   */
  endSessions(applicationName: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Opens the database chosen by the configuration: `DATABASE_URL` when set, else the embedded
 * PGlite under `DATA_DIR`.
 *
 * Several upbots may open one `DATABASE_URL` database: the lease (`lease.ts`) decides which one
 * trades.
 *
 * @throws {DataDirLockedError} when another upbot uses the same `DATA_DIR`.
 */
export async function openDatabase(
  config: Pick<Config, "DATABASE_URL" | "DATA_DIR">,
): Promise<Database> {
  const processTag = randomTag();
  const applicationName = `upbot/${processTag}`;
  if (config.DATABASE_URL) {
    const connection: DbConnection = { kind: "url", url: config.DATABASE_URL };
    const description = `postgres (${describeDatabaseUrl(config.DATABASE_URL)})`;
    const sql = connect(connection, { applicationName });
    // Which of several upbots on this database trades is the lease's business (lease.ts).
    return {
      sql,
      connection,
      description,
      processTag,
      async processConnected(tag) {
        const rows = await sql`
          select 1 from pg_stat_activity
          where datname = current_database() and application_name = ${`upbot/${tag}`}`;
        return rows.length > 0;
      },
      async endSessions(applicationName) {
        // Only sessions of this database: another database on the server may have its own upbot.
        const rows = await sql`
          select pg_terminate_backend(pid) as ended from pg_stat_activity
          where datname = current_database() and application_name = ${applicationName}
            and pid <> pg_backend_pid()`;
        return rows.filter((r) => r.ended === true).length;
      },
      async close() {
        await sql.end({ timeout: 5 });
      },
    };
  }
  // Loaded here, not at the top: every actor imports this module for `connect`, and PGlite's
  // JavaScript is a large part of a module graph each actor's isolate would load for nothing.
  const { startEmbeddedDatabase } = await import("./embedded_db.ts");
  const embedded: EmbeddedDatabase = await startEmbeddedDatabase({ dataDir: config.DATA_DIR });
  const connection: DbConnection = { kind: "embedded", ...embedded.endpoint };
  const sql = connect(connection, { applicationName });
  return {
    sql,
    connection,
    description: `embedded PGlite (${config.DATA_DIR})`,
    processTag,
    // The DATA_DIR lock keeps every other process out.
    processConnected: (tag) => Promise.resolve(tag === processTag),
    endSessions: (applicationName) => embedded.endSessions(applicationName),
    async close() {
      await sql.end({ timeout: 5 });
      await embedded.close();
    },
  };
}
