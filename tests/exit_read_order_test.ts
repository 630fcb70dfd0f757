/**
 * @module A live exit reads the market's unsettled sells before the ledger, never beside it: a
 * close that fills between the two reads is then seen unsettled (the exit waits) or in the ledger
 * (nothing left to sell). Read at once, the ledger could be the older answer and the close missed,
 * and the exit sold the same volume again, from the owner's coins. Found by a review; the
 * interleaving is forced by holding the exit's unsettled-sells read back (`holdingBack`) while the
 * order-poller records the close's fill.
 */
import assert from "node:assert/strict";
import { requestFlatten } from "../lib/control/trading_state.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { dbTest } from "./_db.ts";
import {
  balanceOf,
  holdingBack,
  liveRig,
  ownerBuysByHand,
  paperExit,
  startSim,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";
const PRICE = 140_500_000;

dbTest(
  "a live exit reads unsettled sells before the ledger: a close filling meanwhile is not sold again",
  async (db) => {
    const h = await startSim({ markets: [BTC], seed: 7 });
    try {
      const { rest } = h;
      const ownerBtc = await ownerBuysByHand(rest, BTC, "owner-by-hand-3");
      const held = holdingBack(db.sql, "join live_orders_unsettled u on u.id = a.id");
      const { executor: ex, poller, rows, pass, enter } = await liveRig(db, h, {
        sql: held.client,
      });
      await enter(BTC, PRICE);

      // A flatten: the closer sells the position (filled at Upbit; the poller has not seen it).
      await requestFlatten(db.sql, { reason: "test", by: "test" });
      await ex.runOnce();
      assert.deepEqual((await rows()).map((a) => a.action), ["ENTER_LONG", "CLOSE"]);
      // The paper exit comes; while the exit reads, the poller records the close's fill.
      await paperExit(db.sql, BTC, PRICE);
      held.arm(async () => {
        await new Promise((r) => setTimeout(r, 100));
        await poller.pollOnce();
      });
      await ex.runOnce();
      assert.ok(held.fired, "the exit read its unsettled sells");
      for (let i = 0; i < 5; i++) await pass();

      const attempts = await rows();
      assert.deepEqual(
        attempts.map((a) => [a.action, a.state === "skipped" ? a.reason : "sent"]),
        [["ENTER_LONG", "sent"], ["CLOSE", "sent"], ["EXIT_LONG", "position_closed"]],
      );
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0");
      assert.equal(await balanceOf(rest, "BTC"), ownerBtc, "the owner's coins are untouched");
    } finally {
      await h.close();
    }
  },
);
