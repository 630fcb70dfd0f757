/**
 * A wick (one 1-second bar far below the price) must not make a live position look like dust:
 * a position below Upbit's minimum total is written off for good, so the coins upbot bought would
 * stay on the exchange unsold. The price a sale is judged at is the highest close of the last
 * minute and, for a sell whose book was read, the best bid when higher. Run against the simulator,
 * whose order book stays at the real price.
 */
import assert from "node:assert/strict";
import { recentHighCloses } from "../lib/execution/closer_inputs.ts";
import { Executor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { riskLimits } from "../lib/execution/risk_gate.ts";
import type { Sql } from "../lib/db/connect.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { dbTest } from "./_db.ts";
import { executorConfig, startSim } from "./_live_orders.ts";

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

dbTest(
  "dust: an exit after a one-bar wick sells what the entry bought; nothing is written off",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const config = executorConfig(h.sim, "live");
      const executor = new Executor({
        sql: db.sql,
        rest: h.rest,
        decision: decideTradeMode(config),
        settings: {
          orderKrwAmount: config.ORDER_KRW_AMOUNT,
          maxOrdersPerMin: config.MAX_ORDERS_PER_MIN,
          maxRetries: config.EXECUTOR_MAX_RETRIES,
          shadowEnabled: config.SHADOW_ENABLED,
          maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
        },
        risk: { limits: riskLimits(config) },
        log: h.log,
        unknownSettleMs: 300,
        rotationWaitMs: 0,
      });
      await executor.start();
      const poller = new OrderPoller({ sql: db.sql, rest: h.rest, maxPolls: 3, log: h.log });
      const attempts = () =>
        db.sql<AttemptRow[]>`select * from upbit_order_attempts where mode = 'live' order by id`;
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
      for (let i = 0; i < 50 && (await attempts())[0]?.state !== "filled"; i++) {
        await executor.runOnce();
        await poller.pollOnce();
      }
      const bought = (await attempts())[0]?.executed_volume ?? "0";
      assert.ok(Number(bought) > 0, "the live entry filled");

      // The only bar of the last minute is a wick 55% below the price: at it, the 10,000 KRW
      // position is worth 4,500 KRW, under the minimum. The book still bids at the price.
      // The evaluator exits on that bar, at its close.
      const wick = Math.round(price * 0.45);
      await bar(db.sql, BTC, wick, 0);
      await insertPaperEvent(db.sql, {
        action: "EXIT_LONG",
        market: BTC,
        ts: Date.now(),
        price: wick,
        qty,
        fee: 5,
        pnl: 0,
        holdSec: 1,
        reason: "EV_BAD",
        entryTs,
        entryPrice: price,
        ev: -0.3,
      }, "default");
      for (let i = 0; i < 50; i++) {
        await executor.runOnce();
        await poller.pollOnce();
        const exit = (await attempts()).find((a) => a.action === "EXIT_LONG");
        if (exit && ["filled", "skipped", "rejected", "cancelled"].includes(exit.state)) break;
      }
      const exit = (await attempts()).find((a) => a.action === "EXIT_LONG");
      assert.deepEqual(
        [exit?.state, exit?.executed_volume],
        ["filled", bought],
        `the exit sold what was bought (${exit?.reason ?? ""} ${exit?.error_msg ?? ""})`,
      );
      const adjustments = await db.sql`select kind from position_adjustments`;
      assert.equal(adjustments.length, 0, "nothing written off");
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0");
      const { data } = await h.rest.getAccounts();
      assert.equal(Number(data.find((a) => a.currency === "BTC")?.balance ?? "0"), 0);
    } finally {
      await h.close();
    }
  },
);
