import assert from "node:assert/strict";
import { connect } from "../lib/db/connect.ts";
import { migrate, migrationStatus, readMigrations } from "../lib/db/migrate.ts";
import { dbTest } from "./_db.ts";

const TABLES = [
  "actor_state",
  "barrier_labels",
  "live_positions",
  "market_1s",
  "paper_trades",
  "predictions",
  "schema_migrations",
  "upbit_account_snapshots",
  "upbit_market_status",
  "upbit_order_attempts",
  "upbit_order_snapshots",
];

Deno.test("readMigrations() finds the files in order", async () => {
  const files = await readMigrations();
  assert.ok(files.length >= 1);
  assert.equal(files[0]!.name, "001_initial.sql");
  assert.deepEqual(
    files.map((f) => f.version),
    [...files.map((f) => f.version)].sort((a, b) => a - b),
  );
});

dbTest("migrate() on a fresh database creates the schema and records it", async ({ sql }) => {
  const result = await migrate(sql);
  assert.deepEqual(result.applied, (await readMigrations()).map((f) => f.name));
  const tables = await sql`
    select table_name from information_schema.tables
    where table_schema = 'public' order by table_name`;
  for (const t of TABLES) assert.ok(tables.some((r) => r.table_name === t), `table ${t}`);
  const cols = await sql`
    select column_name, data_type from information_schema.columns
    where table_name = 'upbit_order_attempts'`;
  const types = Object.fromEntries(cols.map((c) => [c.column_name, c.data_type]));
  for (
    const c of [
      "id",
      "ts",
      "symbol",
      "action",
      "mode",
      "side",
      "ord_type",
      "price",
      "volume",
      "paper_trade_id",
      "response_json",
      "status",
      "error_msg",
      "uuid",
      "identifier",
      "request_json",
      "http_status",
      "latency_ms",
      "remaining_req",
      "retry_count",
      "final_state",
      "executed_volume",
      "paid_fee",
      "avg_price",
    ]
  ) assert.ok(c in types, `upbit_order_attempts.${c}`);
  assert.equal(types.price, "numeric");
  assert.equal(types.response_json, "jsonb");
}, { migrated: false });

dbTest("migrate() run again applies nothing and changes nothing", async ({ sql }) => {
  await migrate(sql);
  await sql`insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume,
    trade_count, buy_volume, sell_volume) values ('KRW-BTC', now(), 1, 1, 1, 1, 1, 1, 1, 1, 0)`;
  const again = await migrate(sql);
  assert.deepEqual(again.applied, []);
  assert.equal(again.skipped.length, (await readMigrations()).length);
  const [row] = await sql`select count(*)::int as n from market_1s`;
  assert.equal(row?.n, 1);
  const [m] = await sql`select count(*)::int as n from schema_migrations`;
  assert.equal(m?.n, again.skipped.length);
}, { migrated: false });

dbTest("migrate() from two clients at once applies each file exactly once", async (db) => {
  const other = connect(db.connection);
  try {
    const [a, b] = await Promise.all([migrate(db.sql), migrate(other)]);
    const files = (await readMigrations()).map((f) => f.name);
    assert.deepEqual([...a.applied, ...b.applied].sort(), files.sort());
    assert.deepEqual([...a.skipped, ...b.skipped].sort(), files.sort());
  } finally {
    await other.end();
  }
}, { migrated: false });

dbTest("migrate() rolls back a failing file and names it", async ({ sql }) => {
  const bad = [
    { version: 1, name: "001_ok.sql", sql: "create table ok_table (id int);" },
    {
      version: 2,
      name: "002_bad.sql",
      sql: "create table half (id int); select nope from nowhere;",
    },
  ];
  await assert.rejects(() => migrate(sql, bad), /migration 002_bad.sql failed/);
  const tables = await sql`select table_name from information_schema.tables
    where table_schema = 'public'`;
  const names = tables.map((r) => r.table_name);
  assert.ok(names.includes("ok_table"));
  assert.ok(!names.includes("half"), "the failing file left nothing behind");
  const versions = await sql`select version from schema_migrations`;
  assert.deepEqual(versions.map((r) => r.version), [1]);
}, { migrated: false });

dbTest("schema: identifiers are unique and one exit per entry", async ({ sql }) => {
  await migrate(sql);
  const [enter] = await sql`insert into paper_trades (symbol, action, policy_profile, entry_ts,
    entry_price, qty, fee) values ('KRW-BTC', 'ENTER_LONG', 'test', now(), '99203155', '0.00200866',
    '99.63') returning id`;
  const row = {
    symbol: "KRW-BTC",
    action: "ENTER_LONG",
    mode: "shadow",
    side: "bid",
    ord_type: "price",
    status: "logged",
    identifier: `paper-${enter!.id}-ENTER_LONG`,
    paper_trade_id: enter!.id,
  };
  await sql`insert into upbit_order_attempts ${sql(row)}`;
  await assert.rejects(() => sql`insert into upbit_order_attempts ${sql(row)}`, /unique/i);
  const exit = {
    symbol: "KRW-BTC",
    action: "EXIT_LONG",
    policy_profile: "test",
    entry_id: enter!.id,
    entry_ts: new Date(),
    entry_price: "99203155",
    exit_ts: new Date(),
    exit_price: "99000000",
    qty: "0.00200866",
    fee: "99.43",
    pnl: "-431.79",
    hold_sec: 81,
    exit_reason: "EV_BAD",
  };
  await sql`insert into paper_trades ${sql(exit)}`;
  await assert.rejects(() => sql`insert into paper_trades ${sql(exit)}`, /unique/i);
  const [p] = await sql`select entry_price, pnl from paper_trades where action = 'EXIT_LONG'`;
  assert.equal(p?.entry_price, "99203155");
  assert.equal(p?.pnl, "-431.79");
}, { migrated: false });

dbTest(
  "migrate() refuses a database a newer upbot migrated, and applies nothing",
  async ({ sql }) => {
    const files = await readMigrations();
    const newest = files[files.length - 1]!.version;
    // A newer upbot applied a migration this version has no file of.
    await sql`insert into schema_migrations (version, name)
      values (${newest + 1}, ${"999_from_the_future.sql"})`;
    assert.deepEqual(await migrationStatus(sql), { pending: [], unknown: [newest + 1] });
    await assert.rejects(
      () => migrate(sql),
      new RegExp(`migrated by a newer upbot \\(migration version\\(s\\) ${newest + 1} unknown`),
    );
    // Nor does an older version's start apply its own pending files on top of it.
    await sql`delete from schema_migrations where version = ${newest}`;
    await assert.rejects(() => migrate(sql), /migrated by a newer upbot/);
    const [row] = await sql`select count(*)::int as n from schema_migrations
      where version = ${newest}`;
    assert.equal(row!.n, 0, "nothing applied");
  },
);
