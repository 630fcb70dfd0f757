/**
 * @module Paper that tells the truth: bars carry the price a market order would get (the last
 * trade of each side), the evaluator's EV subtracts the expected spread as it subtracts the fee,
 * and the backtest shows paper pnl at the close and at the spread.
 */
import assert from "node:assert/strict";
import { replayMarket } from "../lib/backtest/replay.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { EvaluatorCore } from "../lib/strategy/evaluator_core.ts";
import { expectedValuePct, resolveParams } from "../lib/strategy/policy.ts";
import { SpreadEstimator } from "../lib/strategy/spread.ts";
import { finalBarsAfter, upsertBars } from "../lib/store/market_1s.ts";
import { dbTest } from "./_db.ts";
import { walk } from "./_backtest_bars.ts";

/** `bars` with an ask `halfPct` percent above and a bid as far below each close. */
function withSides(bars: Bar[], halfPct: number): Bar[] {
  return bars.map((b) => ({
    ...b,
    askEst: b.close * (1 + halfPct / 100),
    bidEst: b.close * (1 - halfPct / 100),
  }));
}

Deno.test("SpreadEstimator: a moving average of (ask − bid) / mid, 0 for crossed sides and before any sample", () => {
  const s = new SpreadEstimator();
  const [b] = walk("KRW-BTC", 1, 1);
  assert.equal(s.costPct, 0);
  s.onBar(b!);
  assert.equal(s.costPct, 0, "a bar without sides is no sample");
  s.onBar({ ...b!, askEst: 100.1, bidEst: 99.9 });
  assert.ok(Math.abs(s.costPct - 0.2) < 1e-12);
  s.onBar({ ...b!, askEst: 99, bidEst: 100 });
  assert.ok(Math.abs(s.costPct - 0.2 * (1 - 2 / 61)) < 1e-12, "crossed: a sample of 0");
  assert.deepEqual(new SpreadEstimator(s.snapshot()).costPct, s.costPct);
  assert.equal(
    expectedValuePct({ pUp: 0.5, pDown: 0.2, pFlat: 0.3 }, { tpPct: 0.5, slPct: 0.4 }, 0.02),
    0.5 * 0.5 - 0.2 * 0.4 - 0.1 - 0.02,
  );
});

Deno.test("EV subtracts the spread: wide sides keep the test profile out where it would trade", () => {
  const params = resolveParams("test"); // enters when EV > -0.15; untrained EV = -0.1
  const plain = walk("KRW-BTC", 600, 3);
  const run = (bars: Bar[]) => {
    const core = new EvaluatorCore({ market: "KRW-BTC", params, krwAmount: 10_000 });
    return bars.map((b) => core.onBar(b));
  };
  const narrow = run(plain);
  // A 0.1 % spread each way = 0.2 % a round trip: EV below -0.15 from the first bar on.
  const wide = run(withSides(plain, 0.1));
  assert.ok(narrow.some((s) => s.paperEvents.length > 0));
  assert.equal(wide[0]!.prediction!.ev, narrow[0]!.prediction!.ev - wide[0]!.prediction!.spreadPct);
  assert.ok(Math.abs(wide[0]!.prediction!.spreadPct - 0.2) < 1e-9);
  assert.equal(wide.filter((s) => s.paperEvents.length > 0).length, 0);
  // The snapshot keeps the estimate across a restart.
  const core = new EvaluatorCore({ market: "KRW-BTC", params, krwAmount: 10_000 });
  const sided = withSides(plain, 0.01);
  sided.slice(0, 100).forEach((b) => core.onBar(b));
  const { core: resumed } = EvaluatorCore.restore(
    { market: "KRW-BTC", params, krwAmount: 10_000 },
    JSON.parse(JSON.stringify(core.snapshot())),
    core.position,
  );
  const next = sided[100]!;
  assert.deepEqual(resumed.onBar(next), core.onBar(next));
});

Deno.test("the backtest shows paper pnl at the close and at the estimated ask and bid", async () => {
  const params = resolveParams("test", { entryEvMin: -1 });
  const bars = withSides(walk("KRW-BTC", 900, 4), 0.02);
  const r = await replayMarket([bars], {
    market: "KRW-BTC",
    params,
    krwAmount: 10_000,
    slippageBps: 0,
  });
  assert.ok(r.trades.length > 5);
  for (const t of r.trades) {
    assert.ok(t.atSpread.entryPrice > t.enter.price && t.atSpread.exitPrice < t.exit.price);
    // About 0.04 % of the notional less than at the close.
    const cost = t.exit.pnl - t.atSpread.pnl;
    assert.ok(cost > 0.03e-2 * 10_000 && cost < 0.05e-2 * 10_000, `cost ${cost}`);
  }
});

dbTest(
  "market_1s keeps ask_est and bid_est (null when the bar had no trade of that side)",
  async (db) => {
    const [a, b] = walk("KRW-BTC", 2, 5);
    await upsertBars(db.sql, [{ ...a!, askEst: 100.5, bidEst: 99.5 }, {
      ...b!,
      askEst: null,
      bidEst: 98,
    }], true);
    const got = await finalBarsAfter(db.sql, "KRW-BTC", 0);
    assert.deepEqual(got.map((x) => [x.askEst, x.bidEst]), [[100.5, 99.5], [null, 98]]);
  },
);
