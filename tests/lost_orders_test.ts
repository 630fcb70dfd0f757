/**
 * `recheckLostOrders`: a live order given up as `failed` / `order_lost` that Upbit later shows is
 * adopted only when it is the order asked for and final; its fills then enter the position ledger,
 * so a lost sell that filled is not sold again and a lost buy that filled is closed. Run against
 * the simulator, which holds the real orders.
 */
import assert from "node:assert/strict";
import { entryHaltReason } from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import { unsettledLiveOrders } from "../lib/execution/closer_inputs.ts";
import { recheckLostOrders } from "../lib/execution/lost_orders.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import {
  attemptById,
  type AttemptRow,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
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

const MARKETS = ["KRW-BTC", "KRW-ETH"];

/** As the executor leaves an attempt whose order Upbit stopped returning: failed / order_lost. */
async function loseAttempt(sql: Sql, a: AttemptRow, uuid: string | null): Promise<void> {
  await transitionAttempt(sql, a.id, "pending", "sent");
  await transitionAttempt(sql, a.id, "sent", "unknown", uuid ? { uuid } : {});
  await transitionAttempt(sql, a.id, "unknown", "failed", { reason: "order_lost" });
}

/** Creates `body` at the simulator (the order the lost attempt did or did not place). */
async function createAtUpbit(h: SimHandle, body: Record<string, string>): Promise<string> {
  const result = await h.rest.postOrder(body as unknown as OrderRequest);
  assert.equal(result.kind, "accepted");
  return result.kind === "accepted" ? result.order.uuid : "";
}

async function lostCheck(sql: Sql, id: number) {
  const [row] = await sql<{ checks: number; resolved_at: Date | null }[]>`
    select checks, resolved_at from lost_order_checks where attempt_id = ${id}`;
  return row;
}

dbTest(
  "lost orders: a lost sell found filled enters the ledger and is not sold again",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const bought = buy.executed_volume!;
      const sell = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "ask", volume: bought });
      // The sell reached Upbit and filled, but upbot lost every answer about it.
      const uuid = await createAtUpbit(h, sell.request_json as Record<string, string>);
      await loseAttempt(db.sql, sell, uuid);
      assert.equal((await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume, bought);
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.sell, true, "held");

      const summary = await recheckLostOrders(db.sql, h.rest, h.log);
      assert.deepEqual(summary, { checked: 1, found: 1 });
      const adopted = await attemptById(db.sql, sell.id);
      assert.equal(adopted?.executed_volume, bought);
      assert.equal(adopted?.uuid, uuid);
      assert.equal(adopted?.state, "failed", "the attempt's own story stays as it was");
      // The ledger now knows the coins were sold: nothing left to close, so nothing is sold again.
      assert.equal((await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume, "0");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined);
      assert.ok((await lostCheck(db.sql, sell.id))?.resolved_at instanceof Date);
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_found");
      assert.match(alarm?.message ?? "", /now in the position ledger/);
      assert.equal(await entryHaltReason(db.sql, "KRW-BTC"), null, "no halt for our own order");
    } finally {
      await h.close();
    }
  },
);

dbTest("lost orders: a lost buy found filled becomes a position to close", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    const buy = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
    await createAtUpbit(h, buy.request_json as Record<string, string>);
    await loseAttempt(db.sql, buy, null); // no uuid: found by its identifier
    assert.equal(await ledgerPosition(db.sql, "KRW-ETH"), null);

    assert.deepEqual(await recheckLostOrders(db.sql, h.rest, h.log), { checked: 1, found: 1 });
    const executed = (await attemptById(db.sql, buy.id))?.executed_volume;
    assert.ok(Number(executed) > 0, `executed ${executed}`);
    assert.equal((await ledgerPosition(db.sql, "KRW-ETH"))?.openVolume, executed);
  } finally {
    await h.close();
  }
});

dbTest(
  "lost orders: an order under our identifier that is not the one asked for is never adopted",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const sell = await pendingAttempt(db.sql, {
        market: "KRW-BTC",
        side: "ask",
        volume: buy.executed_volume!,
      });
      // Someone else's order took the identifier: a buy, not our sell.
      await createAtUpbit(h, {
        market: "KRW-BTC",
        side: "bid",
        ord_type: "price",
        price: "6000",
        identifier: sell.identifier,
      });
      await loseAttempt(db.sql, sell, null);

      assert.deepEqual(await recheckLostOrders(db.sql, h.rest, h.log), { checked: 1, found: 0 });
      assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "not adopted");
      assert.equal((await lostCheck(db.sql, sell.id))?.resolved_at, null, "still unresolved");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.sell, true, "held");
      assert.equal(
        (await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume,
        buy.executed_volume,
        "the ledger is untouched",
      );
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "identifier_conflict");
      assert.match(alarm?.message ?? "", /side bid != ask/);
      assert.match(
        (await entryHaltReason(db.sql, "KRW-ETH")) ?? "",
        /identifier conflict/,
        "entries halted everywhere",
      );
    } finally {
      await h.close();
    }
  },
);

dbTest("lost orders: one found still open stays held until it is final", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    const inst = await installationId(db.sql);
    const identifier = `paper-${inst}-990001-ENTER_LONG`;
    const { data: [ticker] } = await h.rest.getTicker({ markets: ["KRW-BTC"] });
    // upbot's own orders are market orders that Upbit finishes at once, so one still open is the
    // defensive branch: exercised with a limit buy far below the market, which rests on the book.
    const price = String(Math.floor(ticker!.trade_price / 2 / 1000) * 1000);
    const request = {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price,
      volume: "0.0001",
      identifier,
    };
    const a = await insertAttempt(db.sql, {
      symbol: "KRW-BTC",
      action: "ENTER_LONG",
      mode: "live",
      side: "bid",
      ord_type: "limit" as never,
      price,
      volume: "0.0001",
      paper_trade_id: null,
      identifier,
      state: "pending",
      request_json: request,
    });
    const uuid = await createAtUpbit(h, request);
    await loseAttempt(db.sql, a!, uuid);
    let now = Date.now();

    assert.deepEqual(await recheckLostOrders(db.sql, h.rest, h.log, { nowMs: now }), {
      checked: 1,
      found: 0,
    });
    assert.equal((await lostCheck(db.sql, a!.id))?.resolved_at, null);
    assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.buy, true, "held");

    await h.rest.deleteOrder({ uuid });
    now += 61_000;
    assert.deepEqual(await recheckLostOrders(db.sql, h.rest, h.log, { nowMs: now }), {
      checked: 1,
      found: 1,
    });
    const check = await lostCheck(db.sql, a!.id);
    assert.equal(check?.checks, 2);
    assert.ok(check?.resolved_at instanceof Date);
    assert.equal((await attemptById(db.sql, a!.id))?.executed_volume, "0");
    assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined);
  } finally {
    await h.close();
  }
});

dbTest("lost orders: a failing re-check does not stop the open orders' fills", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    // A lost sell Upbit holds, whose stored body no longer reads as an order: its re-check throws.
    const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
    const sell = await pendingAttempt(db.sql, {
      market: "KRW-BTC",
      side: "ask",
      volume: buy.executed_volume!,
    });
    const lostUuid = await createAtUpbit(h, sell.request_json as Record<string, string>);
    await loseAttempt(db.sql, sell, lostUuid);
    await db.sql`update upbit_order_attempts set request_json = '{}'::jsonb where id = ${sell.id}`;
    await assert.rejects(recheckLostOrders(db.sql, h.rest, h.log), /no valid order body/);
    // An open buy that has filled at Upbit since.
    const open = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
    await transitionAttempt(db.sql, open.id, "pending", "sent");
    const uuid = await createAtUpbit(h, open.request_json as Record<string, string>);
    await transitionAttempt(db.sql, open.id, "sent", "open", { uuid });

    const poller = new OrderPoller({ sql: db.sql, rest: h.rest, maxPolls: 3, log: h.log });
    assert.deepEqual(await poller.pollOnce(), { open: 0, finalised: 1 });
    const filled = await attemptById(db.sql, open.id);
    // A market buy ends as Upbit's `cancel` once its KRW is spent, with its fills.
    assert.equal(filled?.final_state, "cancel");
    assert.ok(Number(filled?.executed_volume) > 0, `executed ${filled?.executed_volume}`);
    assert.equal((await lostCheck(db.sql, sell.id))?.resolved_at ?? null, null, "still lost");
  } finally {
    await h.close();
  }
});

dbTest(
  "lost orders: a lost close holds its market's paper exit until found, so nothing is sold twice",
  async (db) => {
    // The owner holds 0.5 BTC of their own: a second sale of upbot's coins would sell theirs.
    const h = await startSim({ markets: MARKETS, balances: { "KRW-BTC": "0.5" } });
    const btc = async () => {
      const { data } = await h.rest.getAccounts();
      return data.find((a) => a.currency === "BTC")?.balance;
    };
    try {
      const config = executorConfig(h.sim, "live");
      const executor = liveExecutor(db.sql, h.rest, config, h.log, {
        unknownSettleMs: 300,
        rotationWaitMs: 0,
      });
      await executor.start();
      const poller = new OrderPoller({ sql: db.sql, rest: h.rest, maxPolls: 3, log: h.log });
      const { data: [ticker] } = await h.rest.getTicker({ markets: ["KRW-BTC"] });
      const price = ticker!.trade_price;
      const qty = Math.floor((10_000 / price) * 1e8) / 1e8;
      const entryTs = Date.now();
      await insertPaperEvent(db.sql, {
        action: "ENTER_LONG",
        market: "KRW-BTC",
        ts: entryTs,
        price,
        qty,
        fee: 5,
        ev: 0.1,
      }, "default");
      const entryOf = async () =>
        (await db.sql<AttemptRow[]>`
          select * from upbit_order_attempts where action = 'ENTER_LONG'`)[0];
      for (let i = 0; i < 50 && (await entryOf())?.state !== "filled"; i++) {
        await executor.runOnce();
        await poller.pollOnce();
      }
      const bought = (await entryOf())?.executed_volume ?? "0";
      assert.ok(Number(bought) > 0, `the live entry filled (${(await entryOf())?.state})`);

      // A close sold those coins at Upbit, and then upbot lost every answer about it.
      const close = await pendingAttempt(db.sql, {
        market: "KRW-BTC",
        side: "ask",
        volume: bought,
      });
      const uuid = await createAtUpbit(h, close.request_json as Record<string, string>);
      await loseAttempt(db.sql, close, uuid);
      assert.equal(await btc(), "0.5", "only the owner's coins are left");

      // The paper exit comes while the close is lost: it waits, as the closer does.
      await insertPaperEvent(db.sql, {
        action: "EXIT_LONG",
        market: "KRW-BTC",
        ts: Date.now(),
        price,
        qty,
        fee: 5,
        pnl: 0,
        holdSec: 1,
        reason: "EV_BAD",
        entryTs,
        entryPrice: price,
        ev: -0.3,
      }, "default");
      const exits = () =>
        db.sql<AttemptRow[]>`
          select * from upbit_order_attempts
          where action = 'EXIT_LONG' and paper_trade_id is not null`;
      // The executor alone: the poller's slow re-check is what finds a lost order again, and
      // until Upbit shows it (it may not for a long while) the exit must hold.
      for (let i = 0; i < 5; i++) await executor.runOnce();
      assert.deepEqual(
        (await exits()).map((a) => a.state),
        [],
        "no exit written while the close is lost",
      );
      assert.equal(await btc(), "0.5", "the owner's coins are not sold");

      // Found again: its fills enter the ledger, which then holds nothing, and the exit is skipped.
      assert.deepEqual(await recheckLostOrders(db.sql, h.rest, h.log), { checked: 1, found: 1 });
      await executor.runOnce();
      const [exit] = await exits();
      assert.deepEqual([exit?.state, exit?.reason], ["skipped", "position_closed"]);
      assert.equal(await btc(), "0.5");
    } finally {
      await h.close();
    }
  },
);
