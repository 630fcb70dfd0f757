/**
 * @module Second orders: an attempt whose create Upbit answered with a uuid under its current
 * identifier, and an order of upbot's under an identifier it used before (a create that landed
 * after that identifier was given up). The order is never adopted as the attempt's, by the
 * lost-order check or by the executor's look-up; it is reported (`identifier_second_order`,
 * entries on its market halted once) and the look-up goes on to the attempt's own identifier.
 */
import assert from "node:assert/strict";
import { resumeEntries, tradingStates } from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import { recheckLostOrders } from "../lib/execution/lost_orders.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { attemptById, type AttemptRow, transitionAttempt } from "../lib/store/order_attempts.ts";
import type { OrderRequest } from "../lib/upbit/rest.ts";
import { dbTest } from "./_db.ts";
import {
  executorConfig,
  liveExecutor,
  pendingAttempt,
  placeLive,
  type SimHandle,
  startSim,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";

/**
 * A live sell of what a buy bought, whose first create (under its first identifier) landed at
 * Upbit late, after upbot had moved it to a second identifier; the second create was answered
 * with a uuid Upbit later stopped returning (`unknown` / `order_not_found`).
 */
async function sellWithLateFirstCreate(
  sql: Sql,
  h: SimHandle,
): Promise<{ sell: AttemptRow; late: string }> {
  const buy = await placeLive(sql, h.rest, { market: BTC, side: "bid", krw: 10_000 });
  const sell = await pendingAttempt(sql, {
    market: BTC,
    side: "ask",
    volume: buy.executed_volume!,
  });
  const placed = await h.rest.postOrder(sell.request_json as unknown as OrderRequest);
  assert.equal(placed.kind, "accepted");
  const second = `${sell.identifier}-r1`;
  await sql`insert into upbit_order_identifiers (identifier, attempt_id) values (${second}, ${sell.id})`;
  await sql`update upbit_order_attempts set identifier = ${second},
    request_json = jsonb_set(request_json, '{identifier}', to_jsonb(${second}::text))
    where id = ${sell.id}`;
  await transitionAttempt(sql, sell.id, "pending", "sent");
  await transitionAttempt(sql, sell.id, "sent", "open", { uuid: crypto.randomUUID() });
  await transitionAttempt(sql, sell.id, "open", "unknown", { reason: "order_not_found" });
  return {
    sell: (await attemptById(sql, sell.id))!,
    late: placed.kind === "accepted" ? placed.order.uuid : "",
  };
}

async function secondOrderReported(sql: Sql, late: string): Promise<void> {
  const alarm = (await activeAlarms(sql)).find((a) => a.code === "identifier_second_order");
  assert.equal(alarm?.market, BTC);
  assert.match(alarm!.message, new RegExp(`order ${late} under \\S+ is not the attempt's`));
  const halt = (await tradingStates(sql)).find((s) => s.scope === BTC);
  assert.equal(halt?.halted, true);
}

dbTest(
  "second order: the executor's look-up reports it and gives its own order up as lost",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const { sell, late } = await sellWithLateFirstCreate(db.sql, h);
      const ex = liveExecutor(db.sql, h.rest, executorConfig(h.sim, "live"), h.log, {
        unknownSettleMs: 0,
      });
      await ex.start();
      await ex.runOnce();
      await ex.runOnce();
      const row = await attemptById(db.sql, sell.id);
      // Not adopted: its own order (the second identifier's) is unknown to Upbit.
      assert.deepEqual([row?.state, row?.reason, row?.executed_volume], [
        "failed",
        "order_lost",
        null,
      ]);
      assert.notEqual(row?.uuid, late);
      await secondOrderReported(db.sql, late);
    } finally {
      await h.close();
    }
  },
);

dbTest("second order: the lost-order check reports it, halts once, adopts nothing", async (db) => {
  const h = await startSim({ markets: [BTC] });
  try {
    const { sell, late } = await sellWithLateFirstCreate(db.sql, h);
    await transitionAttempt(db.sql, sell.id, "unknown", "failed", { reason: "order_lost" });
    let now = Date.now();
    const check = () => recheckLostOrders(db.sql, h.rest, h.log, { nowMs: now += 120_000 });
    assert.deepEqual(await check(), { checked: 1, found: 0 });
    assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "not adopted");
    await secondOrderReported(db.sql, late);
    // A person resumed; the next check reports it again without halting again.
    await resumeEntries(db.sql, { scope: BTC, by: "cli" });
    assert.deepEqual(await check(), { checked: 1, found: 0 });
    assert.equal((await tradingStates(db.sql)).find((s) => s.scope === BTC)?.halted, false);
    const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "identifier_second_order");
    assert.equal(alarm?.count, 2);
  } finally {
    await h.close();
  }
});
