/**
 * `connect()`'s session settings on PostgreSQL: a session left idle inside a transaction (a hung or
 * dead worker's) is ended by the server after {@linkcode IDLE_IN_TRANSACTION_MS}, so its locks go.
 * (The embedded server enforces the same limit itself: `tests/pglite_server_test.ts`.)
 */
import assert from "node:assert/strict";
import { connect } from "../lib/db/connect.ts";
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
