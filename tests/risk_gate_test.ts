import assert from "node:assert/strict";
import { haltEntries, resumeEntries } from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import {
  gateOrder,
  kstDayStart,
  realisedLossSince,
  resumeAfterDailyLoss,
  riskContext,
  type RiskDecision,
  type RiskLimits,
  type RiskOrder,
} from "../lib/execution/risk_gate.ts";
import { recordGone } from "../lib/execution/position_ledger.ts";
import { LOST_ORDER_RECHECK_MS } from "../lib/execution/lost_orders.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { attemptById, transitionAttempt } from "../lib/store/order_attempts.ts";
import type { UpbitRest } from "../lib/upbit/rest.ts";
import { dbTest } from "./_db.ts";
import {
  pendingAttempt,
  placeLive,
  sendAndSettle,
  startSim,
  storeLastPrices,
} from "./_live_orders.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"];
const LIMITS: RiskLimits = {
  maxOrderKrw: 50_000,
  maxOpenPositions: 3,
  maxExposureKrw: 1_000_000,
  maxDailyLossKrw: 20_000,
  maxSignalAgeSec: 60,
};

function entry(market: string, krw = 10_000, signalTs = Date.now()): RiskOrder {
  return { side: "bid", market, krw, signalTs };
}

function code(d: RiskDecision): string {
  return d.ok ? "ok" : d.code;
}

/** The send path: the gate, then the wire only when it says yes. */
async function gatedSend(
  sql: Sql,
  rest: UpbitRest,
  order: RiskOrder,
  limits: RiskLimits,
  nowMs?: number,
): Promise<RiskDecision> {
  const d = await gateOrder(sql, order, limits, { rest, nowMs });
  if (!d.ok) return d;
  await placeLive(
    sql,
    rest,
    order.side === "bid"
      ? { market: order.market, side: "bid", krw: order.krw }
      : { market: order.market, side: "ask", volume: d.volume! },
  );
  return d;
}

dbTest(
  "risk gate: with RISK_MAX_OPEN_POSITIONS=1 and three markets one entry goes out",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const limits = { ...LIMITS, maxOpenPositions: 1 };
      const decisions = [];
      for (const m of MARKETS) {
        decisions.push(
          code(await gatedSend(db.sql, h.rest, entry(m), limits)),
        );
      }
      assert.deepEqual(decisions, ["ok", "max_open_positions", "max_open_positions"]);
      assert.equal(h.sim.orders().length, 1, "one order reached the exchange");
      assert.equal(h.sim.orders()[0]!.market, "KRW-BTC");
      // A second entry on the market already held is no new position.
      assert.equal(code(await gateOrder(db.sql, entry("KRW-BTC"), limits, { rest: h.rest })), "ok");

      // An entry in flight (written, not sent yet) holds its slot too.
      const two = { ...LIMITS, maxOpenPositions: 2 };
      assert.equal(code(await gateOrder(db.sql, entry("KRW-ETH"), two, { rest: h.rest })), "ok");
      await pendingAttempt(db.sql, { market: "KRW-XRP", side: "bid", krw: 10_000 });
      assert.equal(
        code(await gateOrder(db.sql, entry("KRW-ETH"), two, { rest: h.rest })),
        "max_open_positions",
      );
    } finally {
      await h.close();
    }
  },
);

dbTest("risk gate: a buy larger than the free KRW is refused before the wire", async (db) => {
  const h = await startSim({ markets: MARKETS, krw: 20_000 });
  try {
    await storeLastPrices(db.sql, h.rest, MARKETS);
    const d = await gatedSend(db.sql, h.rest, entry("KRW-BTC", 20_000), LIMITS);
    assert.equal(code(d), "insufficient_krw", "20,000 KRW needs 20,010 with the fee");
    assert.match(d.ok ? "" : d.detail, /20000 KRW free, 20010 needed/);
    assert.equal(h.sim.orders().length, 0, "nothing reached the exchange");
    assert.equal(code(await gatedSend(db.sql, h.rest, entry("KRW-BTC", 19_000), LIMITS)), "ok");
    assert.equal(h.sim.orders().length, 1);
  } finally {
    await h.close();
  }
});

dbTest(
  "risk gate: a loss past RISK_MAX_DAILY_LOSS_KRW stops entries until the next KST day or a resume; exits go on",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const limits = { ...LIMITS, maxDailyLossKrw: 5 };
      const eth = await placeLive(db.sql, h.rest, { market: "KRW-ETH", side: "bid", krw: 10_000 });
      const btc = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      // Selling right back loses both fees and the spread: more than 5 KRW.
      assert.equal(
        code(
          await gatedSend(db.sql, h.rest, {
            side: "ask",
            market: "KRW-BTC",
            volume: btc.executed_volume!,
          }, limits),
        ),
        "ok",
      );
      const loss = await realisedLossSince(db.sql, new Date(kstDayStart(Date.now())));
      assert.ok(loss > 5, `realised loss ${loss}`);
      const refused = await gateOrder(db.sql, entry("KRW-XRP"), limits, { rest: h.rest });
      assert.equal(code(refused), "daily_loss_limit");
      const ordersBefore = h.sim.orders().length;
      // The exit of the other position goes on.
      assert.equal(
        code(
          await gatedSend(db.sql, h.rest, {
            side: "ask",
            market: "KRW-ETH",
            volume: eth.executed_volume!,
          }, limits),
        ),
        "ok",
      );
      assert.equal(h.sim.orders().length, ordersBefore + 1);

      // The next KST day starts afresh.
      const tomorrow = kstDayStart(Date.now()) + 86_400_000 + 60_000;
      assert.equal(
        code(
          await gateOrder(db.sql, entry("KRW-XRP", 10_000, tomorrow), limits, {
            rest: h.rest,
            nowMs: tomorrow,
          }),
        ),
        "ok",
      );
      // Today, only a resume lifts it.
      assert.equal(
        code(await gateOrder(db.sql, entry("KRW-XRP"), limits, { rest: h.rest })),
        "daily_loss_limit",
      );
      await resumeAfterDailyLoss(db.sql, "test");
      assert.equal(code(await gateOrder(db.sql, entry("KRW-XRP"), limits, { rest: h.rest })), "ok");
      // A new loss after the resume stops entries again; the operator's resume of all entries
      // (`deno task resume`) lifts it too.
      const xrp = await placeLive(db.sql, h.rest, { market: "KRW-XRP", side: "bid", krw: 10_000 });
      await placeLive(db.sql, h.rest, {
        market: "KRW-XRP",
        side: "ask",
        volume: xrp.executed_volume!,
      });
      assert.equal(
        code(await gateOrder(db.sql, entry("KRW-XRP"), limits, { rest: h.rest })),
        "daily_loss_limit",
      );
      await resumeEntries(db.sql, { scope: "global", by: "cli" });
      assert.equal(code(await gateOrder(db.sql, entry("KRW-XRP"), limits, { rest: h.rest })), "ok");
    } finally {
      await h.close();
    }
  },
);

dbTest("risk gate: an exit is never refused by an entry limit", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    await storeLastPrices(db.sql, h.rest, MARKETS);
    const btc = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
    await placeLive(db.sql, h.rest, { market: "KRW-ETH", side: "bid", krw: 10_000 });
    // Every entry rule breached at once.
    await haltEntries(db.sql, { scope: "global", reason: "operator stop", by: "test" });
    const unknown = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "bid", krw: 10_000 });
    await transitionAttempt(db.sql, unknown.id, "pending", "unknown", { reason: "lost_response" });
    const tight: RiskLimits = {
      maxOrderKrw: 5000,
      maxOpenPositions: 1,
      maxExposureKrw: 5000,
      maxDailyLossKrw: 1,
      maxSignalAgeSec: 1,
    };
    const ctx = await riskContext(db.sql, "KRW-BTC", { rest: h.rest });
    assert.ok(ctx.haltReason && ctx.unknownOrders.length === 1 && ctx.heldMarkets.length === 2);
    assert.equal(
      code(await gateOrder(db.sql, entry("KRW-BTC", 5000), tight, { rest: h.rest })),
      "entries_halted",
    );
    const sold = await gatedSend(db.sql, h.rest, {
      side: "ask",
      market: "KRW-BTC",
      volume: btc.executed_volume!,
    }, tight);
    assert.deepEqual(sold, { ok: true, volume: btc.executed_volume });
    assert.ok(h.sim.orders().some((o) => o.side === "ask" && o.market === "KRW-BTC"));
    await resumeEntries(db.sql, { scope: "global", by: "test" });
  } finally {
    await h.close();
  }
});

dbTest(
  "risk gate: an exit is capped at the free balance of the coin",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const btc = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const double = (Number(btc.executed_volume) * 2).toFixed(8);
      const d = await gateOrder(
        db.sql,
        { side: "ask", market: "KRW-BTC", volume: double },
        LIMITS,
        {
          rest: h.rest,
        },
      );
      assert.deepEqual(d, { ok: true, volume: btc.executed_volume, capped: "free_balance" });
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "risk gate: an exit is capped at 90% of the visible bids, which Upbit accepts where the whole sell is refused",
  async (db) => {
    // XRP: the whole book is worth less than Upbit's maximum order total. Coins enough to sell
    // more than the whole visible book holds (the owner's: the gate judges
    // the order given, the ledger decides volumes before it).
    const h = await startSim({ markets: MARKETS, balances: { "KRW-XRP": "100000000" } });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const { data: [book] } = await h.rest.getOrderbook({ markets: ["KRW-XRP"] });
      const bids = book!.orderbook_units.reduce((sum, u) => sum + u.bid_size, 0);
      const volume = (bids * 2).toFixed(8);
      // Sent whole, the sell is refused: more than the visible bids hold (§8.2).
      const whole = await h.rest.postOrder({
        market: "KRW-XRP",
        side: "ask",
        ord_type: "market",
        volume,
        identifier: "risk-gate-test-whole-sell",
      });
      assert.equal(whole.kind, "rejected");
      assert.equal(
        whole.kind === "rejected" && "code" in whole.error ? whole.error.code : "",
        "insufficient_liquidity_ask",
      );
      // Through the gate: capped at 90% of the bids, and sent, it fills.
      const d = await gatedSend(db.sql, h.rest, { side: "ask", market: "KRW-XRP", volume }, LIMITS);
      assert.ok(d.ok && d.capped === "bid_depth", JSON.stringify(d));
      const capped = Number(d.ok ? d.volume : NaN);
      assert.ok(Math.abs(capped - bids * 0.9) < 1e-7, `${capped} is 90% of ${bids}`);
      const sold = h.sim.orders().filter((o) => o.side === "ask");
      assert.equal(sold.length, 1);
      assert.equal(Number(sold[0]!.executed_volume), capped);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "risk gate: an order unknown after the poll limit blocks its market's entries until resolved",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const a = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
      const sent = await sendAndSettle(db.sql, h.rest, a);
      assert.equal(code(await gateOrder(db.sql, entry("KRW-ETH"), LIMITS, { rest: h.rest })), "ok");
      // A second order Upbit acknowledged and then stopped returning: the real order-poller
      // moves it to unknown at its poll limit.
      const b = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
      await transitionAttempt(db.sql, b.id, "pending", "sent");
      await transitionAttempt(db.sql, b.id, "sent", "open", { uuid: crypto.randomUUID() });
      let now = Date.now();
      const poller = new OrderPoller({
        sql: db.sql,
        rest: h.rest,
        maxPolls: 2,
        log: h.log,
        now: () => now,
      });
      await poller.pollOnce();
      await poller.pollOnce();
      assert.deepEqual(
        [(await attemptById(db.sql, b.id))?.state, (await attemptById(db.sql, b.id))?.reason],
        ["unknown", "order_not_found"],
      );
      const refused = await gateOrder(db.sql, entry("KRW-ETH"), LIMITS, { rest: h.rest });
      assert.equal(code(refused), "market_order_unknown");
      assert.match(refused.ok ? "" : refused.detail, new RegExp(b.identifier));
      assert.equal(
        code(await gateOrder(db.sql, entry("KRW-BTC"), LIMITS, { rest: h.rest })),
        "ok",
        "other markets trade",
      );
      assert.equal(
        code(
          await gateOrder(
            db.sql,
            { side: "ask", market: "KRW-ETH", volume: sent.executed_volume! },
            LIMITS,
            { rest: h.rest },
          ),
        ),
        "ok",
        "exits go on",
      );
      // Unknown by uuid and identifier: the executor's resolver gives it up as order_lost...
      await transitionAttempt(db.sql, b.id, "unknown", "failed", { reason: "order_lost" });
      // ...but it is never forgotten: entries wait, and the poller asks again at a slow rate.
      assert.equal(
        code(await gateOrder(db.sql, entry("KRW-ETH"), LIMITS, { rest: h.rest })),
        "market_order_unknown",
      );
      await poller.pollOnce();
      const checks = async () =>
        (await db.sql`select checks from lost_order_checks where attempt_id = ${b.id}`)[0]?.checks;
      assert.equal(await checks(), 1);
      await poller.pollOnce();
      assert.equal(await checks(), 1, "not again before the slow interval");
      now += LOST_ORDER_RECHECK_MS + 1;
      await poller.pollOnce();
      assert.equal(await checks(), 2);
      // Upbit answers at last (here: the order under its identifier appears): resolved.
      const appears = await h.rest.postOrder({
        market: "KRW-ETH",
        side: "bid",
        ord_type: "price",
        price: "10000",
        identifier: b.identifier,
      });
      assert.equal(appears.kind, "accepted");
      now += LOST_ORDER_RECHECK_MS + 1;
      await poller.pollOnce();
      assert.equal(code(await gateOrder(db.sql, entry("KRW-ETH"), LIMITS, { rest: h.rest })), "ok");
      const alarm = (await activeAlarms(db.sql)).find((x) => x.code === "lost_order_found");
      assert.equal(alarm?.market, "KRW-ETH");
    } finally {
      await h.close();
    }
  },
);

Deno.test("kstDayStart() is 15:00 UTC", () => {
  assert.equal(
    new Date(kstDayStart(Date.parse("2026-12-01T14:59:59Z"))).toISOString(),
    "2026-11-30T15:00:00.000Z",
  );
  assert.equal(
    new Date(kstDayStart(Date.parse("2026-12-01T15:00:00Z"))).toISOString(),
    "2026-12-01T15:00:00.000Z",
  );
});

dbTest("risk gate: volume recorded gone counts as a realised loss at its cost", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    const since = new Date(Date.now() - 1000);
    const btc = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
    assert.equal(await realisedLossSince(db.sql, since), 0, "a buy realises nothing");
    await recordGone(db.sql, "KRW-BTC", btc.executed_volume!, "sold by hand");
    const loss = await realisedLossSince(db.sql, since);
    // The whole cost of the buy, its fee included (at most the 10,000 KRW spent + 5 KRW fee).
    assert.ok(loss > 9_900 && loss <= 10_005, `loss ${loss}`);
    assert.equal(await realisedLossSince(db.sql, new Date(Date.now() + 60_000)), 0);
  } finally {
    await h.close();
  }
});
