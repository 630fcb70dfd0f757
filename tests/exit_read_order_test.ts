/**
 * @module A live exit reads the market's unsettled sells before the ledger, never beside it: a
 * close that fills between the two reads is then seen unsettled (the exit waits) or in the ledger
 * (nothing left to sell). Read at once, the ledger could be the older answer and the close missed,
 * and the exit sold the same volume again, from the owner's coins. Found by a review; the
 * interleaving is forced by holding the exit's unsettled-sells read back (a wrapper of the
 * database client that delays one query) while the order-poller records the close's fill.
 */
import assert from "node:assert/strict";
import { requestFlatten } from "../lib/control/trading_state.ts";
import type { Client } from "../lib/db/connect.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { dbTest } from "./_db.ts";
import { executorConfig, liveExecutor, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";
const PRICE = 140_500_000;

dbTest(
  "a live exit reads unsettled sells before the ledger: a close filling meanwhile is not sold again",
  async (db) => {
    const h = await startSim({ markets: [BTC], seed: 7 });
    try {
      const { sim, rest, log } = h;
      const btc = async () => {
        const { data } = await rest.getAccounts();
        return formatDec(dec(data.find((a) => a.currency === "BTC")?.balance ?? "0"));
      };
      // The owner's own coins, bought by hand.
      const own = await rest.postOrder({
        market: BTC,
        side: "bid",
        ord_type: "price",
        price: "50000",
        identifier: "owner-by-hand-3",
      });
      assert.equal(own.kind, "accepted");
      const ownerBtc = await btc();
      const poller = new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log });
      // The executor's client: the one query that reads a market's unsettled sells runs `before`
      // first, when set.
      let before: (() => Promise<void>) | null = null;
      const held = new Proxy(db.sql, {
        apply(target, thisArg, args) {
          const text = Array.isArray(args[0]) ? (args[0] as string[]).join("?") : "";
          if (before && text.includes("join live_orders_unsettled u on u.id = a.id")) {
            const run = before;
            before = null;
            return (async () => {
              await run();
              return await Reflect.apply(target, thisArg, args);
            })();
          }
          return Reflect.apply(target, thisArg, args);
        },
      }) as Client;
      const ex = liveExecutor(held, rest, executorConfig(sim, "live"), log, {
        settings: { maxOrdersPerMin: 600 },
        unknownSettleMs: 0,
      });
      await ex.start();
      const rows = () => db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
      const pass = async () => {
        await ex.runOnce();
        await poller.pollOnce();
      };

      await insertPaperEvent(db.sql, {
        action: "ENTER_LONG",
        market: BTC,
        ts: Date.now(),
        price: PRICE,
        qty: 0.0001,
        fee: 1,
        ev: 0.1,
      }, "default");
      const settled = (a?: AttemptRow) => a?.state === "filled" || a?.state === "cancelled";
      for (let i = 0; i < 60 && !settled((await rows())[0]); i++) await pass();
      const bought = (await rows())[0]!.executed_volume!;
      assert.ok(dec(bought) > 0n, "the entry bought");

      // A flatten: the closer sells the position (filled at Upbit; the poller has not seen it).
      await requestFlatten(db.sql, { reason: "test", by: "test" });
      await ex.runOnce();
      assert.deepEqual((await rows()).map((a) => a.action), ["ENTER_LONG", "CLOSE"]);
      // The paper exit comes; while the exit reads, the poller records the close's fill.
      await insertPaperEvent(db.sql, {
        action: "EXIT_LONG",
        market: BTC,
        ts: Date.now(),
        price: PRICE,
        qty: 0.0001,
        fee: 1,
        pnl: 0,
        holdSec: 5,
        reason: "EV_BAD",
        entryTs: Date.now() - 5000,
        entryPrice: PRICE,
        ev: -0.3,
      }, "default");
      before = async () => {
        await new Promise((r) => setTimeout(r, 100));
        await poller.pollOnce();
      };
      await ex.runOnce();
      assert.equal(before, null, "the exit read its unsettled sells");
      for (let i = 0; i < 5; i++) await pass();

      const attempts = await rows();
      assert.deepEqual(
        attempts.map((a) => [a.action, a.state === "skipped" ? a.reason : "sent"]),
        [["ENTER_LONG", "sent"], ["CLOSE", "sent"], ["EXIT_LONG", "position_closed"]],
      );
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0");
      assert.equal(await btc(), ownerBtc, "the owner's coins are untouched");
    } finally {
      await h.close();
    }
  },
);
