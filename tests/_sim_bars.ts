/**
 * @module Final 1-second bars of the simulator's edge-free market, generated offline (no clock,
 * no server): `SimMarket.generate` prints the trades, the feed's own `BarAggregator` builds the bars.
 */
import type { Bar } from "../lib/strategy/bars.ts";
import { BarAggregator } from "../lib/strategy/bars.ts";
import { SimMarket } from "../sim/market.ts";
import { DEFAULT_MARKETS } from "../sim/market_specs.ts";

/**
 * `minutes` simulated minutes of `markets` (default: all the simulator's) from `t0`: `tradesPerSec` trades across the
 * markets, printed every 100 ms. Returns each market's final bars, oldest first.
 */
export function simBars(
  seed: number,
  minutes: number,
  tradesPerSec = 30,
  markets: readonly string[] = DEFAULT_MARKETS,
  t0 = Date.UTC(2026, 11, 1),
): Map<string, Bar[]> {
  const market = new SimMarket({ seed, markets, rate: 0, now: () => t0 });
  const agg = new BarAggregator();
  const out = new Map<string, Bar[]>(markets.map((m) => [m, []]));
  const keep = (bars: Bar[]) => {
    for (const b of bars) out.get(b.market)!.push(b);
  };
  const perBatch = tradesPerSec / 10;
  let carry = 0;
  const end = t0 + minutes * 60_000;
  for (let t = t0; t < end; t += 100) {
    carry += perBatch;
    const n = Math.floor(carry);
    carry -= n;
    if (n > 0) keep(agg.ingest(market.generate(n, t)).final);
  }
  keep(agg.flushBefore(Number.MAX_SAFE_INTEGER).final);
  return out;
}
