/**
 * `connect()`'s session settings on PostgreSQL: a session left idle inside a transaction (a hung or
 * dead worker's) is ended by the server after {@linkcode IDLE_IN_TRANSACTION_MS}, so its locks go.
 * (The embedded server enforces the same limit itself: `tests/pglite_server_test.ts`.) And
 * `Database.endSessions`, which ends a terminated worker's sessions at once, on both back ends.
 */
import assert from "node:assert/strict";
import { connect, openDatabase } from "../lib/db/connect.ts";
import { IDLE_IN_TRANSACTION_MS } from "../lib/db/pglite_server.ts";
import { openTestDatabase, testBackends } from "./_db.ts";

if (testBackends().includes("postgres")) {
  Deno.test("connect: PostgreSQL sessions end when idle inside a transaction", async () => {
    const db = await openTestDatabase("postgres");
    const sql = connect(db.connection, { max: 1 });
    try {
      const [row] = await sql`
        select setting::int as ms from pg_settings
        where name = 'idle_in_transaction_session_timeout'`;
      assert.equal(row?.ms, IDLE_IN_TRANSACTION_MS);
    } finally {
      await sql.end({ timeout: 2 });
      await db.close();
    }
  });
}

for (const backend of testBackends()) {
  Deno.test(`Database.endSessions: the named sessions end, an open transaction is rolled back, others stay [${backend}]`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "upbot_end_sessions_" });
    const server = backend === "postgres" ? await openTestDatabase("postgres") : undefined;
    const db = await openDatabase({
      DATA_DIR: dir,
      DATABASE_URL: server?.connection.kind === "url" ? server.connection.url : undefined,
    });
    const hung = connect(db.connection, { max: 2, applicationName: "upbot-probe/1/abcd1234" });
    const next = connect(db.connection, { max: 1, applicationName: "upbot-probe/2/abcd1234" });
    try {
      await db.sql`create table end_probe (v int primary key)`;
      await db.sql`insert into end_probe values (0)`;
      await next`select 1`;
      // Two sessions of the same incarnation (the second opens while the first is busy): one
      // stays idle, the other enters the transaction below.
      await Promise.all([hung`select pg_sleep(0.1)`, hung`select pg_sleep(0.1)`]);
      // A transaction that never ends by itself: it holds the row's lock (on the embedded
      // database, the whole database) as a hung worker's would.
      const entered = Promise.withResolvers<void>();
      const held = hung.begin(async (tx) => {
        await tx`update end_probe set v = 1 where v = 0`;
        entered.resolve();
        await new Promise(() => {});
      }).then(() => "committed", () => "ended");
      await entered.promise;
      assert.equal(await db.endSessions("upbot-probe/1/abcd1234"), 2);
      assert.equal(await held, "ended");
      // Rolled back, the lock gone: the next incarnation's session updates the row at once.
      const [row] = await next`update end_probe set v = 2 where v = 0 returning v`;
      assert.equal(row?.v, 2);
      assert.equal(await db.endSessions("upbot-probe/9/abcd1234"), 0);
    } finally {
      await hung.end({ timeout: 1 }).catch(() => {});
      await next.end({ timeout: 1 });
      await db.close();
      await server?.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
