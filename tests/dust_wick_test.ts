/**
 * A wick (one 1-second bar far below the price) must not make a live position look like dust:
 * a position below Upbit's minimum total is written off for good, so the coins upbot bought would
 * stay on the exchange unsold. The price a sale is judged at is the highest close of the last
 * minute and, for a sell whose book was read, the best bid when higher. Run against the simulator,
 * whose order book stays at the real price.
 */
import assert from "node:assert/strict";
import { requestFlatten } from "../lib/control/trading_state.ts";
import { recentHighCloses } from "../lib/execution/closer_inputs.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import type { Sql } from "../lib/db/connect.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor, type SimHandle, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";

/** A final 1-second bar of `market` closing at `close`, `ageSec` seconds before the database's now. */
async function bar(sql: Sql, market: string, close: number, ageSec: number): Promise<void> {
  const c = String(close);
  await sql`
    insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume, trade_count,
      buy_volume, sell_volume, is_final)
    values (${market}, date_trunc('second', now()) - make_interval(secs => ${ageSec}), ${c}, ${c},
      ${c}, ${c}, 1, ${c}, 1, 1, 0, true)`;
}

dbTest("dust: the highest close of the last minute prices a sale, not the newest", async (db) => {
  await bar(db.sql, BTC, 90_000_000, 120); // too old: not a price any more
  await bar(db.sql, BTC, 100_000_000, 30);
  await bar(db.sql, BTC, 101_000_000, 20);
  await bar(db.sql, BTC, 45_000_000, 0); // the wick
  await bar(db.sql, "KRW-ETH", 4_000_000, 90);
  const prices = await recentHighCloses(db.sql, [BTC, "KRW-ETH"]);
  assert.deepEqual([...prices], [[BTC, "101000000"]]);
});

/** A live executor and poller on `h`'s simulator that bought a 10,000 KRW BTC position. */
async function boughtPosition(db: TestDatabase, h: SimHandle) {
  const config = executorConfig(h.sim, "live");
  const executor = liveExecutor(db.sql, h.rest, config, h.log, {
    unknownSettleMs: 300,
    rotationWaitMs: 0,
  });
  await executor.start();
  const poller = new OrderPoller({ sql: db.sql, rest: h.rest, maxPolls: 3, log: h.log });
  const attempts = () =>
    db.sql<AttemptRow[]>`select * from upbit_order_attempts where mode = 'live' order by id`;
  const pass = async () => {
    await executor.runOnce();
    await poller.pollOnce();
  };
  const { data: [ticker] } = await h.rest.getTicker({ markets: [BTC] });
  const price = ticker!.trade_price;
  const qty = Math.floor((10_000 / price) * 1e8) / 1e8;
  const entryTs = Date.now();
  await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market: BTC,
    ts: entryTs,
    price,
    qty,
    fee: 5,
    ev: 0.1,
  }, "default");
  for (let i = 0; i < 50 && (await attempts())[0]?.state !== "filled"; i++) await pass();
  const bought = (await attempts())[0]?.executed_volume ?? "0";
  assert.ok(Number(bought) > 0, "the live entry filled");
  /** What upbot wrote off, and the coins left on the exchange. */
  const leftOver = async () => {
    const adjustments = await db.sql<{ kind: string }[]>`select kind from position_adjustments`;
    const { data } = await h.rest.getAccounts();
    return {
      writtenOff: adjustments.map((a) => a.kind),
      btc: Number(data.find((a) => a.currency === "BTC")?.balance ?? "0"),
      ledger: (await ledgerPosition(db.sql, BTC))?.openVolume,
    };
  };
  /** The evaluator's exit of that position at `exitPrice`. */
  const paperExit = (exitPrice: number) =>
    insertPaperEvent(db.sql, {
      action: "EXIT_LONG",
      market: BTC,
      ts: Date.now(),
      price: exitPrice,
      qty,
      fee: 5,
      pnl: 0,
      holdSec: 1,
      reason: "EV_BAD",
      entryTs,
      entryPrice: price,
      ev: -0.3,
    }, "default");
  return { attempts, pass, price, bought, leftOver, paperExit };
}

dbTest(
  "dust: an exit after a one-bar wick sells what the entry bought; nothing is written off",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const r = await boughtPosition(db, h);
      // The only bar of the last minute is a wick 55% below the price: at it, the 10,000 KRW
      // position is worth 4,500 KRW, under the minimum. The book still bids at the price.
      // The evaluator exits on that bar, at its close.
      const wick = Math.round(r.price * 0.45);
      await bar(db.sql, BTC, wick, 0);
      await r.paperExit(wick);
      const exitOf = async () => (await r.attempts()).find((a) => a.action === "EXIT_LONG");
      for (let i = 0; i < 50; i++) {
        await r.pass();
        const exit = await exitOf();
        if (exit && ["filled", "skipped", "rejected", "cancelled"].includes(exit.state)) break;
      }
      const exit = await exitOf();
      assert.deepEqual(
        [exit?.state, exit?.executed_volume],
        ["filled", r.bought],
        `the exit sold what was bought (${exit?.reason ?? ""} ${exit?.error_msg ?? ""})`,
      );
      assert.deepEqual(await r.leftOver(), { writtenOff: [], btc: 0, ledger: "0" });
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "dust: a flatten after a one-bar wick sells the position (the closer judges the best bid too); nothing is written off",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const r = await boughtPosition(db, h);
      await bar(db.sql, BTC, Math.round(r.price * 0.45), 0); // the only bar of the last minute
      await requestFlatten(db.sql, { reason: "test", by: "test" });
      for (let i = 0; i < 30 && (await r.leftOver()).ledger !== "0"; i++) await r.pass();
      const closes = (await r.attempts()).filter((a) => a.action === "CLOSE");
      assert.deepEqual(closes.map((a) => [a.state, a.executed_volume]), [["filled", r.bought]]);
      assert.deepEqual(await r.leftOver(), { writtenOff: [], btc: 0, ledger: "0" });
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "dust: a sale refused as under the minimum is written off only after the price stayed low for a minute",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const r = await boughtPosition(db, h);
      // The market really falls by 55%: the book follows, and so does the only bar.
      const low = Math.round(r.price * 0.45);
      h.sim.injectTrade({ market: BTC, price: low, volume: 0.001, side: "ASK" });
      await bar(db.sql, BTC, low, 0);
      await r.paperExit(low);
      for (let i = 0; i < 5; i++) await r.pass();
      const exit = (await r.attempts()).find((a) => a.action === "EXIT_LONG");
      assert.deepEqual([exit?.state, exit?.reason], ["skipped", "exit_below_min_total"]);
      /** The refusal is dated `sec` seconds earlier, and the bar with it (still the only one). */
      const age = async (sec: number) => {
        await db
          .sql`update upbit_order_attempts set updated_at = updated_at - make_interval(secs => ${sec})
          where action = 'EXIT_LONG'`;
      };
      // Past the close backoff of a first refusal (about 1 s), inside the minute: held.
      await age(10);
      for (let i = 0; i < 3; i++) await r.pass();
      assert.deepEqual((await r.leftOver()).writtenOff, [], "not dust within the minute");
      // A minute on, the price still low on every count: dust.
      await age(55);
      await bar(db.sql, BTC, low, 0).catch(() => {}); // a bar of this second (the last one may be gone)
      for (let i = 0; i < 3; i++) await r.pass();
      assert.deepEqual((await r.leftOver()).writtenOff, ["dust"]);
    } finally {
      await h.close();
    }
  },
);
