/**
 * @module Test databases: every database test runs on a fresh embedded PGlite and, when
 * `TEST_DATABASE_URL` is set (CI sets it), also on a fresh database of that PostgreSQL server.
 */
import postgres from "postgres";
import { type Client, connect, type DbConnection } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { migrate } from "../lib/db/migrate.ts";

/** A fresh, empty database for one test. */
export interface TestDatabase {
  /** `pglite` or `postgres`. */
  readonly backend: string;
  readonly connection: DbConnection;
  /** A client opened for the test (closed by `close`). */
  readonly sql: Client;
  close(): Promise<void>;
}

/** The backends a database test runs on here. */
export function testBackends(): string[] {
  return Deno.env.get("TEST_DATABASE_URL") ? ["pglite", "postgres"] : ["pglite"];
}

/** Opens a fresh database on `backend`; with `migrated`, the schema is applied. */
export async function openTestDatabase(
  backend: string,
  options: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  let db: TestDatabase;
  if (backend === "pglite") {
    const embedded = await startEmbeddedDatabase({ dataDir: null });
    const connection: DbConnection = { kind: "embedded", ...embedded.endpoint };
    const sql = connect(connection);
    db = {
      backend,
      connection,
      sql,
      async close() {
        await sql.end({ timeout: 5 });
        await embedded.close();
      },
    };
  } else {
    const adminUrl = Deno.env.get("TEST_DATABASE_URL");
    if (!adminUrl) throw new Error("TEST_DATABASE_URL is not set");
    const name = `upbot_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database ${name}`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const connection: DbConnection = { kind: "url", url: url.toString() };
    const sql = connect(connection);
    db = {
      backend,
      connection,
      sql,
      async close() {
        await sql.end({ timeout: 5 });
        await admin.unsafe(`drop database if exists ${name} with (force)`);
        await admin.end({ timeout: 5 });
      },
    };
  }
  if (options.migrated) await migrate(db.sql);
  return db;
}

/**
 * Registers `Deno.test(name [backend])` once per backend, each with a fresh database (migrated
 * unless `migrated: false`).
 *
 * @example
 * ```ts ignore
 * dbTest("paper trades insert", async (db) => {
 *   await db.sql`select 1`;
 * });
 * ```
 */
export function dbTest(
  name: string,
  fn: (db: TestDatabase) => Promise<void>,
  options: { migrated?: boolean } = {},
): void {
  const migrated = options.migrated ?? true;
  for (const backend of testBackends()) {
    Deno.test(`${name} [${backend}]`, async () => {
      const db = await openTestDatabase(backend, { migrated });
      try {
        await fn(db);
      } finally {
        await db.close();
      }
    });
  }
}

/**
 * `promise`'s value, or a rejection naming `what` when it has not settled within `ms`: a query to
 * a stalled database must fail the test, not hang the suite.
 */
export function answerWithin<T>(promise: Promise<T>, ms: number, what = "query"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}
