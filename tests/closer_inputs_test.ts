/**
 * `unsettledLiveOrders`: what holds the closer back on a market. A sell Upbit lost after giving it
 * a uuid (`failed` / `order_lost`) may have filled: its market is not closed again until the
 * lost-order check finds the order (else the closer could sell the owner's coins). So may a sell
 * judged a conflict.
 */
import assert from "node:assert/strict";
import { unsettledLiveOrders } from "../lib/execution/closer_inputs.ts";
import { ORDER_STATES, TERMINAL_STATES } from "../lib/execution/order_state.ts";
import { dbTest } from "./_db.ts";
import { pendingAttempt } from "./_live_orders.ts";

dbTest(
  "unsettled: a lost sell holds its market until the lost-order check finds it",
  async (db) => {
    const sell = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "ask", volume: "0.001" });
    // As the order-poller and executor leave it: created with a uuid, then unknown to Upbit.
    await db.sql`update upbit_order_attempts set state = 'failed', reason = 'order_lost',
    uuid = 'lost-uuid' where id = ${sell.id}`;
    assert.deepEqual((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), {
      buy: false,
      sell: true,
    });
    // Another final reason does not hold the market.
    await db
      .sql`update upbit_order_attempts set reason = 'retries_exhausted' where id = ${sell.id}`;
    assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined);
    // Found again by the lost-order check (its lost_order_found alarm names it): no longer held.
    await db.sql`update upbit_order_attempts set reason = 'order_lost' where id = ${sell.id}`;
    await db.sql`insert into lost_order_checks (attempt_id, checks, resolved_at)
    values (${sell.id}, 1, now())`;
    assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined);
  },
);

dbTest(
  "unsettled: a sell judged a conflict holds its market's sells; a conflict buy holds nothing",
  async (db) => {
    const sell = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "ask", volume: "0.001" });
    const buy = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 5000 });
    // As the executor leaves them: found under our identifier, not the order asked for.
    await db.sql`update upbit_order_attempts set state = 'conflict', reason = 'identifier_conflict'
      where id in (${sell.id}, ${buy.id})`;
    const unsettled = await unsettledLiveOrders(db.sql);
    // The sell may be ours (a check that erred) and have sold its coins: a person decides.
    assert.deepEqual(unsettled.get("KRW-BTC"), { buy: false, sell: true });
    // The buy's fills are not in the ledger: nothing sells them, nothing to hold.
    assert.equal(unsettled.get("KRW-ETH"), undefined);
  },
);

dbTest(
  "unsettled: live_orders_unsettled holds exactly the live attempts in a state that is not terminal",
  async (db) => {
    // One live buy in every state of the state machine (written directly: this checks the view's
    // state list against order_state.ts, not the transitions), and a test-mode one in each too.
    const markets = new Map<string, string>();
    for (const [i, state] of ORDER_STATES.entries()) {
      const market = `KRW-S${i}`;
      markets.set(market, state);
      const live = await pendingAttempt(db.sql, { market, side: "bid", krw: 5000 });
      const test = await pendingAttempt(db.sql, { market, side: "bid", krw: 5000 });
      await db
        .sql`update upbit_order_attempts set state = ${state} where id in (${live.id}, ${test.id})`;
      await db.sql`update upbit_order_attempts set mode = 'test' where id = ${test.id}`;
    }
    const rows = await db.sql<{ symbol: string; state: string }[]>`
      select symbol, state from live_orders_unsettled order by symbol`;
    const expected = ORDER_STATES.filter((s) => !TERMINAL_STATES.has(s)).sort();
    assert.deepEqual(rows.map((r) => r.state).sort(), expected);
    assert.ok(rows.every((r) => markets.get(r.symbol) === r.state));
    assert.deepEqual(
      [...(await unsettledLiveOrders(db.sql)).keys()].sort(),
      [
        ...rows.map((r) => r.symbol),
      ].sort(),
    );
  },
);
