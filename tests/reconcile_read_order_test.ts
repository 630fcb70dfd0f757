/**
 * @module Reconciliation compares balances with the ledger reading unsettled sells first, then the
 * ledger, then the balances (as the closer does): a sell whose fill the order-poller records
 * during the run is then either deferred or counted on both sides, never a false shortfall that
 * halts its market. The interleaving is forced by holding the unsettled-sells read back (a
 * wrapper of the database client, `holdingBack`) while the poller records the fill.
 */
import assert from "node:assert/strict";
import { entryHaltReason } from "../lib/control/trading_state.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { reconcile } from "../lib/execution/reconcile.ts";
import { transitionAttempt } from "../lib/store/order_attempts.ts";
import type { OrderRequest } from "../lib/upbit/rest.ts";
import { dbTest } from "./_db.ts";
import { holdingBack, pendingAttempt, placeLive, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";

dbTest("reconciliation: a sell settling during the run is no shortfall", async (db) => {
  const h = await startSim({ markets: [BTC] });
  try {
    const { rest, log } = h;
    const buy = await placeLive(db.sql, rest, { market: BTC, side: "bid", krw: 10_000 });
    // A sell filled at Upbit whose fill the poller has not recorded yet (the attempt is open).
    const sell = await pendingAttempt(db.sql, {
      market: BTC,
      side: "ask",
      volume: buy.executed_volume!,
    });
    await transitionAttempt(db.sql, sell.id, "pending", "sent");
    const placed = await rest.postOrder(sell.request_json as unknown as OrderRequest);
    assert.equal(placed.kind, "accepted");
    if (placed.kind !== "accepted") return;
    await transitionAttempt(db.sql, sell.id, "sent", "open", { uuid: placed.order.uuid });

    const poller = new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log });
    // The run's client: the read of unsettled sells runs the poller's pass first.
    const held = holdingBack(db.sql, "join live_orders_unsettled u on u.id = a.id");
    held.arm(() => poller.pollOnce().then(() => {}));
    const report = await reconcile(held.client, rest, log);
    assert.ok(held.fired, "the run read the unsettled sells");
    assert.deepEqual(report.balanceShortfalls, []);
    assert.equal(await entryHaltReason(db.sql, BTC), null);
  } finally {
    await h.close();
  }
});
