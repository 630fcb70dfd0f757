import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import type { Sql } from "../lib/db/connect.ts";
import { createLogger } from "../lib/log.ts";
import {
  type PrunedTable,
  pruneOnce,
  retentionPolicy,
  startRetention,
} from "../lib/store/retention.ts";
import { dbTest } from "./_db.ts";

const DAY = 86_400_000;
const NOW = new Date("2026-11-30T12:00:00Z");

/** `n` timestamps one second apart, starting `daysAgo` days before NOW. */
function times(daysAgo: number, n: number): Date[] {
  return Array.from({ length: n }, (_, i) => new Date(NOW.getTime() - daysAgo * DAY + i * 1000));
}

async function bars(sql: Sql, symbol: string, ts: Date[]): Promise<void> {
  const rows = ts.map((t) => ({
    symbol,
    ts: t,
    open: "1",
    high: "1",
    low: "1",
    close: "1",
    volume: "1",
    quote_volume: "1",
    trade_count: 1,
    buy_volume: "1",
    sell_volume: "0",
    is_final: true,
  }));
  await sql`insert into market_1s ${sql(rows)}`;
}

async function labelsAndPredictions(sql: Sql, symbol: string, ts: Date[]): Promise<void> {
  await sql`insert into barrier_labels ${
    sql(ts.map((t) => ({ symbol, ts: t, tp_pct: 1, sl_pct: 1, horizon_sec: 60, label: 0 })))
  }`;
  await sql`insert into predictions ${
    sql(ts.map((t) => ({
      symbol,
      ts: t,
      p_up: 0.3,
      p_down: 0.3,
      p_flat: 0.4,
      ev: 0,
      profile: "test",
    })))
  }`;
}

async function orderSnapshots(sql: Sql, uuid: string, ts: Date[]): Promise<void> {
  await sql`insert into upbit_order_snapshots ${
    sql(ts.map((t) => ({ ts: t, symbol: "KRW-BTC", uuid, state: "wait", raw_json: {} })))
  }`;
}

async function accountSnapshots(sql: Sql, currency: string, ts: Date[]): Promise<void> {
  await sql`insert into upbit_account_snapshots ${
    sql(ts.map((t) => ({
      ts: t,
      currency,
      balance: "1",
      locked: "0",
      avg_buy_price: "0",
      unit_currency: "KRW",
    })))
  }`;
}

async function count(sql: Sql, table: string, where = sql`true`): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from ${
    sql(table)
  } where ${where}`;
  return row!.n;
}

/** Fills every pruned table with rows past their age and recent ones, plus kept tables. */
async function seed(sql: Sql): Promise<void> {
  await bars(sql, "KRW-BTC", [...times(40, 23), ...times(0.001, 3)]);
  await bars(sql, "KRW-OLD", times(45, 4)); // a market no longer fed: its newest bar stays
  await labelsAndPredictions(sql, "KRW-BTC", [...times(40, 23), ...times(1, 3)]);
  await orderSnapshots(sql, "order-a", [...times(100, 11), ...times(1, 1)]);
  await orderSnapshots(sql, "order-b", times(120, 4)); // an old order: its last state stays
  await accountSnapshots(sql, "KRW", [...times(40, 12), ...times(0.01, 2)]);
  await accountSnapshots(sql, "BTC", times(60, 3)); // sold out long ago: last balance stays
  const old = new Date(NOW.getTime() - 400 * DAY);
  const [paper] = await sql`
    insert into paper_trades (ts, symbol, action, policy_profile, entry_ts, entry_price, qty, fee)
    values (${old}, 'KRW-BTC', 'ENTER_LONG', 'test', ${old}, '100', '1', '0.05') returning id`;
  await sql`
    insert into upbit_order_attempts (ts, symbol, action, mode, side, ord_type, paper_trade_id,
      status, identifier)
    values (${old}, 'KRW-BTC', 'ENTER_LONG', 'shadow', 'bid', 'price', ${paper!.id}, 'logged',
      ${`paper-${paper!.id}-ENTER_LONG`})`;
}

const POLICY = {
  days: {
    market_1s: 30,
    barrier_labels: 30,
    predictions: 30,
    upbit_order_snapshots: 90,
    upbit_account_snapshots: 30,
  },
  batchRows: 5,
};

dbTest("retention deletes rows past their age in bounded batches, keeps the rest", async (db) => {
  const sql = db.sql;
  await seed(sql);
  const batches: { table: PrunedTable; deleted: number }[] = [];
  const result = await pruneOnce(sql, POLICY, {
    now: NOW,
    pauseMs: 0,
    onBatch: (table, deleted) => batches.push({ table, deleted }),
  });
  assert.deepEqual(result, {
    market_1s: 23 + 3,
    barrier_labels: 23,
    predictions: 23,
    upbit_order_snapshots: 11 + 3,
    upbit_account_snapshots: 12 + 2,
  });
  // No statement deleted more than the batch; 23 rows of one market took at least 5 statements.
  assert.ok(batches.every((b) => b.deleted <= POLICY.batchRows), JSON.stringify(batches));
  assert.ok(batches.filter((b) => b.table === "market_1s").length >= 5 + 1);

  const cutoff = (days: number) => new Date(NOW.getTime() - days * DAY);
  assert.equal(await count(sql, "market_1s", sql`symbol = 'KRW-BTC'`), 3);
  assert.equal(await count(sql, "market_1s", sql`ts < ${cutoff(30)} and symbol = 'KRW-BTC'`), 0);
  // KRW-OLD keeps exactly its newest bar.
  const [kept] = await sql`select ts from market_1s where symbol = 'KRW-OLD'`.then((r) =>
    r.map((x) => x.ts as Date)
  ) as Date[];
  assert.equal(kept?.getTime(), times(45, 4)[3]!.getTime());
  assert.equal(await count(sql, "market_1s", sql`symbol = 'KRW-OLD'`), 1);
  assert.equal(await count(sql, "barrier_labels"), 3);
  assert.equal(await count(sql, "predictions"), 3);
  assert.equal(await count(sql, "upbit_order_snapshots", sql`uuid = 'order-a'`), 1);
  assert.equal(
    await count(sql, "upbit_order_snapshots", sql`uuid = 'order-a' and ts > ${cutoff(90)}`),
    1,
  );
  const [lastB] = await sql`select ts from upbit_order_snapshots where uuid = 'order-b'`;
  assert.equal((lastB!.ts as Date).getTime(), times(120, 4)[3]!.getTime());
  assert.equal(await count(sql, "upbit_order_snapshots", sql`uuid = 'order-b'`), 1);
  assert.equal(await count(sql, "upbit_account_snapshots", sql`currency = 'KRW'`), 2);
  assert.equal(await count(sql, "upbit_account_snapshots", sql`currency = 'BTC'`), 1);
  // The trading record is never pruned, however old.
  assert.equal(await count(sql, "paper_trades"), 1);
  assert.equal(await count(sql, "upbit_order_attempts"), 1);

  // A second run finds nothing left to delete.
  const again = await pruneOnce(sql, POLICY, { now: NOW, pauseMs: 0 });
  assert.deepEqual(Object.values(again), [0, 0, 0, 0, 0]);
});

dbTest("retention: 0 days keeps a table forever; settings map onto the policy", async (db) => {
  const sql = db.sql;
  await seed(sql);
  const config = parseConfig({
    RETENTION_PREDICTIONS_DAYS: "0",
    RETENTION_MARKET_BARS_DAYS: "50",
    RETENTION_BATCH_ROWS: "100",
  });
  const policy = retentionPolicy(config);
  assert.deepEqual(policy, {
    days: {
      market_1s: 50,
      barrier_labels: 30,
      predictions: 0,
      upbit_order_snapshots: 90,
      upbit_account_snapshots: 30,
    },
    batchRows: 100,
  });
  const result = await pruneOnce(sql, policy, { now: NOW, pauseMs: 0 });
  assert.equal(result.predictions, 0);
  assert.equal(await count(sql, "predictions"), 26);
  // 50 days: the 40-day-old bars stay, the 45-day-old market too.
  assert.equal(result.market_1s, 0);
  assert.equal(await count(sql, "market_1s"), 30);
  assert.equal(result.barrier_labels, 23);
});

dbTest("retention loop prunes in the background and stops between statements", async (db) => {
  const sql = db.sql;
  // Rows old relative to the real clock (the loop measures from now).
  const old = Array.from({ length: 12 }, (_, i) => new Date(Date.now() - 40 * DAY + i * 1000));
  await bars(sql, "KRW-BTC", [...old, new Date()]);
  const stop = startRetention(sql, { ...POLICY, batchRows: 5 }, createLogger("retention"), {
    intervalMs: 3_600_000,
    firstDelayMs: 0,
    pauseMs: 0,
  });
  try {
    for (let i = 0; i < 200 && await count(sql, "market_1s") > 1; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await count(sql, "market_1s"), 1);
  } finally {
    await stop();
  }
});
