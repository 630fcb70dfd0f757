import assert from "node:assert/strict";
import { SimMarket } from "../sim/market.ts";
import { DEFAULT_MARKET_SPECS, DEFAULT_MARKETS } from "../sim/market_specs.ts";
import { krwTickSize, tickUp } from "../sim/tick_size.ts";

const T0 = Date.UTC(2026, 2, 3, 1, 0, 0);
const HOURS = 3;

interface Run {
  market: SimMarket;
  /** Spread in ticks, once a minute per market. */
  spreads: Map<string, number[]>;
  /** Mid-quote ((best bid + best ask) / 2), once a minute per market. */
  mids: Map<string, number[]>;
}

/**
 * Runs the generator over `HOURS` simulated hours (no wall-clock wait): 30 trades/s across the
 * markets, printed every 100 ms, and samples every market's book once a minute.
 */
function simulate(volatilityScale = 1): Run {
  const market = new SimMarket({
    seed: 21,
    markets: DEFAULT_MARKETS,
    rate: 0,
    now: () => T0,
    volatilityScale,
  });
  const spreads = new Map<string, number[]>(DEFAULT_MARKETS.map((m) => [m, []]));
  const mids = new Map<string, number[]>(DEFAULT_MARKETS.map((m) => [m, []]));
  const end = T0 + HOURS * 3_600_000;
  for (let t = T0; t < end; t += 100) {
    market.generate(3, t);
    if ((t - T0) % 60_000 === 30_000) {
      for (const code of DEFAULT_MARKETS) {
        const { asks, bids } = market.bookOf(code, 1);
        let ticks = 0;
        for (let p = bids[0]!.price; p < asks[0]!.price; p = tickUp(p)) ticks++;
        spreads.get(code)!.push(ticks);
        mids.get(code)!.push((bids[0]!.price + asks[0]!.price) / 2);
      }
    }
  }
  return { market, spreads, mids };
}

const logReturns = (prices: number[]) => prices.slice(1).map((p, i) => Math.log(p / prices[i]!));

/** Standard deviation of the one-minute log returns of the mid-quote. */
function minuteVolatility(run: Run, code: string): { std: number; n: number } {
  const returns = logReturns(run.mids.get(code)!);
  const mean = returns.reduce((s, r) => s + r, 0) / returns.length;
  const variance = returns.reduce((s, r) => s + (r - mean) ** 2, 0) / (returns.length - 1);
  return { std: Math.sqrt(variance), n: returns.length };
}

Deno.test("SimMarket: each market's one-minute volatility and spread match market_specs.ts", () => {
  const run = simulate();
  for (const spec of DEFAULT_MARKET_SPECS) {
    const { std, n } = minuteVolatility(run, spec.code);
    assert.equal(n, HOURS * 60 - 1, `${spec.code}: one return a minute`);
    // The quote lives on the tick grid: rounding the mid adds a uniform error of one tick at
    // each end of a return (variance tick² / 6), which matters where a tick is a large part of the
    // price (KRW-SHIB: 0.0001 at 0.0185, 0.54 %).
    const tick = krwTickSize(spec.price) / spec.price;
    const expected = Math.sqrt(spec.volatility1m ** 2 + tick ** 2 / 6);
    // ±30 %: the sampling error of a standard deviation over ~180 returns is about 5 %.
    assert.ok(
      std > expected * 0.7 && std < expected * 1.3,
      `${spec.code}: one-minute volatility ${(std * 100).toFixed(3)} %, expected ${
        (expected * 100).toFixed(3)
      } % (table ${(spec.volatility1m * 100).toFixed(3)} %)`,
    );
    // Realistic for major KRW markets: 0.05-0.3 % a minute.
    assert.ok(spec.volatility1m >= 0.0005 && spec.volatility1m <= 0.003, spec.code);
    const sampled = run.spreads.get(spec.code)!;
    const meanSpread = sampled.reduce((s, x) => s + x, 0) / sampled.length;
    assert.ok(
      Math.abs(meanSpread - spec.spreadTicks) <= 0.3 * spec.spreadTicks,
      `${spec.code}: mean spread ${meanSpread.toFixed(2)} ticks, table ${spec.spreadTicks}`,
    );
    assert.ok(sampled.every((x) => x >= 1), `${spec.code}: the book never crosses or locks`);
  }
});

Deno.test("SimMarket: volatilityScale multiplies the one-minute volatility (test knob)", () => {
  const calm = minuteVolatility(simulate(1), "KRW-BTC").std;
  const wild = minuteVolatility(simulate(10), "KRW-BTC").std;
  assert.ok(wild > calm * 7 && wild < calm * 13, `calm ${calm}, scaled ${wild}`);
});

Deno.test("SimMarket: the walk has no drift, so returns do not predict the next return", () => {
  const run = simulate();
  // Lag-1 autocorrelation of one-minute mid-quote returns, pooled over the markets: near 0 (no
  // momentum, no reversion a policy could harvest). With ~2,100 returns its standard error is
  // about 0.022; the rounding of the mid to the tick grid alone pulls it slightly negative.
  let num = 0;
  let den = 0;
  for (const code of DEFAULT_MARKETS) {
    const r = logReturns(run.mids.get(code)!);
    const mean = r.reduce((s, x) => s + x, 0) / r.length;
    for (let i = 1; i < r.length; i++) num += (r[i]! - mean) * (r[i - 1]! - mean);
    for (const x of r) den += (x - mean) ** 2;
  }
  const rho = num / den;
  assert.ok(Math.abs(rho) < 0.1, `lag-1 autocorrelation ${rho}`);
  // The trade prices a chart shows: minute closes exist for every minute of every market.
  for (const code of DEFAULT_MARKETS) {
    assert.equal(run.market.candles(code, 60, 1_000).length, HOURS * 60, `${code} minute candles`);
  }
});
