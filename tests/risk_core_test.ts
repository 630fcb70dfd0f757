import assert from "node:assert/strict";
import {
  checkOrder,
  type EntryOrder,
  fromUnits,
  type RiskContext,
  type RiskLimits,
  RiskRefusalCode,
  toUnits,
} from "../lib/execution/risk_core.ts";

const NOW = 1_780_000_000_000;
const LIMITS: RiskLimits = {
  maxOrderKrw: 50_000,
  maxOpenPositions: 2,
  maxExposureKrw: 100_000,
  maxDailyLossKrw: 20_000,
  maxSignalAgeSec: 60,
};

function ctx(patch: Partial<RiskContext> = {}): RiskContext {
  return {
    nowMs: NOW,
    lastPrice: 100_000_000,
    freeKrw: 1_000_000,
    freeCoin: "0",
    heldMarkets: [],
    entriesInFlight: [],
    exposureKrw: 0,
    realisedLossKrw: 0,
    marketWarning: null,
    haltReason: null,
    unknownOrders: [],
    ...patch,
  };
}

const entry = (patch: Partial<EntryOrder> = {}): EntryOrder => ({
  side: "bid",
  market: "KRW-BTC",
  krw: 10_000,
  signalTs: NOW - 1000,
  ...patch,
});

function refusal(order: Parameters<typeof checkOrder>[0], c: RiskContext): string {
  const d = checkOrder(order, c, LIMITS);
  assert.equal(d.ok, false, JSON.stringify(d));
  return d.ok ? "" : d.code;
}

Deno.test("checkOrder() lets a plain entry through", () => {
  assert.deepEqual(checkOrder(entry(), ctx(), LIMITS), { ok: true });
});

Deno.test("checkOrder() refuses entries by each entry rule with its own code", () => {
  assert.equal(refusal(entry(), ctx({ haltReason: "operator" })), "entries_halted");
  assert.equal(refusal(entry(), ctx({ marketWarning: "CAUTION" })), "market_warning");
  assert.equal(
    refusal(entry(), ctx({ unknownOrders: ["paper-x-1-ENTER_LONG"] })),
    "market_order_unknown",
  );
  assert.equal(refusal(entry({ signalTs: NOW - 61_000 }), ctx()), "signal_stale");
  assert.equal(refusal(entry(), ctx({ realisedLossKrw: 20_000 })), "daily_loss_limit");
  assert.equal(refusal(entry({ krw: 50_001 }), ctx()), "order_over_max_krw");
  assert.equal(refusal(entry({ krw: 4_999 }), ctx()), "below_min_total");
  assert.equal(refusal(entry(), ctx({ lastPrice: null })), "no_price");
  assert.equal(
    refusal(
      entry(),
      ctx({ heldMarkets: ["KRW-ETH"], entriesInFlight: [{ market: "KRW-XRP", krw: 10_000 }] }),
    ),
    "max_open_positions",
  );
  assert.equal(
    refusal(entry(), ctx({ exposureKrw: 95_000, heldMarkets: ["KRW-BTC"] })),
    "max_exposure",
  );
  // Fee included: 10,000 KRW needs 10,005 free.
  assert.equal(refusal(entry(), ctx({ freeKrw: 10_004 })), "insufficient_krw");
  assert.deepEqual(checkOrder(entry(), ctx({ freeKrw: 10_005 }), LIMITS), { ok: true });
  // Every code used is in the exported enum (what the executor stores).
  for (const code of RiskRefusalCode.options) assert.equal(RiskRefusalCode.parse(code), code);
});

Deno.test("checkOrder() above Upbit's 1e9 maximum refuses with above_max_total", () => {
  const wide = { ...LIMITS, maxOrderKrw: 1_000_000_000, maxExposureKrw: 1e12 };
  const d = checkOrder(entry({ krw: 1_000_000_000 }), ctx({ freeKrw: 2e9 }), wide);
  assert.equal(d.ok, true);
  const over = checkOrder(entry({ krw: 1_000_000_001 }), ctx({ freeKrw: 2e9 }), {
    ...wide,
    maxOrderKrw: 2_000_000_000,
  });
  assert.deepEqual(over.ok ? null : over.code, "above_max_total");
});

Deno.test("checkOrder() counts a market already held as no new position", () => {
  const c = ctx({ heldMarkets: ["KRW-BTC", "KRW-ETH"], exposureKrw: 20_000 });
  assert.deepEqual(checkOrder(entry(), c, LIMITS), { ok: true });
  assert.equal(refusal(entry({ market: "KRW-XRP" }), c), "max_open_positions");
});

Deno.test("checkOrder() counts entries in flight towards exposure", () => {
  const c = ctx({
    heldMarkets: ["KRW-BTC"],
    exposureKrw: 70_000,
    entriesInFlight: [{ market: "KRW-BTC", krw: 20_000 }],
  });
  const d = checkOrder(entry(), c, LIMITS);
  assert.equal(d.ok, true, "70,000 + 20,000 + 10,000 = the limit");
  assert.equal(refusal(entry({ krw: 10_001 }), c), "max_exposure");
});

Deno.test("checkOrder() passes an exit with every entry limit breached", () => {
  const breached = ctx({
    haltReason: "operator halt",
    marketWarning: "CAUTION",
    unknownOrders: ["paper-a-1-ENTER_LONG"],
    realisedLossKrw: 1e9,
    lastPrice: 100_000_000,
    freeKrw: 0,
    heldMarkets: ["KRW-ETH", "KRW-XRP", "KRW-BTC"],
    entriesInFlight: [{ market: "KRW-DOGE", krw: 1e9 }],
    exposureKrw: 1e12,
    nowMs: NOW + 86_400_000,
    freeCoin: "0.001",
  });
  assert.deepEqual(
    checkOrder({ side: "ask", market: "KRW-BTC", volume: "0.001" }, breached, {
      ...LIMITS,
      maxOpenPositions: 1,
      maxExposureKrw: 5000,
      maxDailyLossKrw: 1,
      maxOrderKrw: 5000,
    }),
    { ok: true, volume: "0.001" },
  );
});

Deno.test("checkOrder() caps an exit at the free coin and refuses dust under the minimum", () => {
  const c = ctx({ freeCoin: "0.0004", lastPrice: 100_000_000 });
  assert.deepEqual(checkOrder({ side: "ask", market: "KRW-BTC", volume: "0.001" }, c, LIMITS), {
    ok: true,
    volume: "0.0004",
    capped: "free_balance",
  });
  // The visible bids cap it further (90% of them); no bids at all: nothing to sell into.
  assert.deepEqual(
    checkOrder(
      { side: "ask", market: "KRW-BTC", volume: "0.001" },
      ctx({ freeCoin: "0.0004", bidDepth: "0.0003" }),
      LIMITS,
    ),
    { ok: true, volume: "0.00027", capped: "bid_depth" },
  );
  assert.deepEqual(
    checkOrder(
      { side: "ask", market: "KRW-BTC", volume: "0.0002" },
      ctx({ freeCoin: "0.0004", bidDepth: "0.0003" }),
      LIMITS,
    ),
    { ok: true, volume: "0.0002" },
  );
  const noBids = checkOrder(
    { side: "ask", market: "KRW-BTC", volume: "0.001" },
    ctx({ freeCoin: "1", bidDepth: "0" }),
    LIMITS,
  );
  assert.equal(noBids.ok ? null : noBids.code, "no_bids");
  // 0.00004 BTC at 100,000,000 = 4,000 KRW: dust.
  const dust = checkOrder(
    { side: "ask", market: "KRW-BTC", volume: "0.001" },
    ctx({ freeCoin: "0.00004" }),
    LIMITS,
  );
  assert.deepEqual(dust.ok ? null : dust.code, "exit_below_min_total");
  const none = checkOrder({ side: "ask", market: "KRW-BTC", volume: "0.001" }, ctx(), LIMITS);
  assert.deepEqual(none.ok ? null : none.code, "no_free_balance");
  // No price known: the exchange judges the minimum, the exit is not blocked.
  assert.equal(
    checkOrder(
      { side: "ask", market: "KRW-BTC", volume: "0.00001" },
      ctx({ freeCoin: "1", lastPrice: null }),
      LIMITS,
    ).ok,
    true,
  );
});

Deno.test("toUnits() and fromUnits() keep 8 decimals exactly, truncating beyond", () => {
  assert.equal(toUnits("1.23456789"), 123_456_789n);
  assert.equal(toUnits("0.000000019"), 1n);
  assert.equal(toUnits("12"), 1_200_000_000n);
  assert.equal(fromUnits(toUnits("0.10000000")), "0.1");
  assert.equal(fromUnits(-150_000_000n), "-1.5");
  assert.throws(() => toUnits("1e-8"), /not a decimal/);
});
