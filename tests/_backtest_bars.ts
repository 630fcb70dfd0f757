/**
 * @module Synthetic 1-second bars for the backtest tests: a seeded random walk.
 */
import type { RunParameters } from "../lib/backtest/report.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { resolveParams } from "../lib/strategy/policy.ts";

/** 2026-12-01T00:00:00Z. */
export const T0 = Date.UTC(2026, 11, 1);

/**
 * The backtest run of these tests with `overrides` on top: KRW-BTC and KRW-ETH over the hour from
 * {@linkcode T0}, from the database, the `test` profile, 10,000 KRW an entry, 2 bps slippage.
 */
export function testRun(overrides: Partial<RunParameters> = {}): RunParameters {
  return {
    markets: ["KRW-BTC", "KRW-ETH"],
    from: new Date(T0).toISOString(),
    to: new Date(T0 + 3_600_000).toISOString(),
    source: "db",
    profile: "test",
    params: resolveParams("test"),
    krwAmount: 10_000,
    slippageBps: 2,
    ...overrides,
  };
}

/** 3000 bars of KRW-BTC (seed 1, from 100,000 KRW) and of KRW-ETH (seed 2, from 5,000 KRW). */
export function walkBars(): Record<string, Bar[]> {
  return {
    "KRW-BTC": walk("KRW-BTC", 3000, 1),
    "KRW-ETH": walk("KRW-ETH", 3000, 2, 5_000),
  };
}

/** A bar without trade sides. */
export function bar(market: string, ts: number, o: number, h: number, l: number, c: number): Bar {
  return {
    market,
    ts,
    open: o,
    high: h,
    low: l,
    close: c,
    volume: 1,
    quoteVolume: c,
    tradeCount: 1,
    buyVolume: 0.5,
    sellVolume: 0.5,
  };
}

/** A seeded random walk of `n` one-second bars (whole KRW prices). */
export function walk(market: string, n: number, seed: number, start = 100_000): Bar[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out: Bar[] = [];
  let price = start;
  for (let i = 0; i < n; i++) {
    const open = price;
    const close = Math.max(1, Math.round(open * (1 + (rand() - 0.5) * 0.004)));
    const high = Math.max(open, close) + Math.round(rand() * 30);
    const low = Math.min(open, close) - Math.round(rand() * 30);
    out.push(bar(market, T0 + i * 1000, open, high, low, close));
    price = close;
  }
  return out;
}

/**
 * `n` one-second bars of a market WITH an edge (seeded). Each second is an up signal (a quarter of
 * them: buyers dominate and the close ticks up 0.02 %), a down signal (a quarter: the mirror) or
 * neutral (balanced sides, the close within ±0.002 %). The second after an up signal trades up to
 * 0.6 % above its open for a moment (its high), the second after a down signal down to 0.6 %
 * below (its low); closes are not moved by these spikes. So the last second's return and order
 * flow predict which barrier is hit next: a model can learn it, and the base rate cannot.
 */
export function edgeMarket(market: string, n: number, seed: number): Bar[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out: Bar[] = [];
  let price = 100_000;
  let signal = 0;
  for (let i = 0; i < n; i++) {
    const spike = signal;
    const r = rand();
    signal = r < 0.25 ? 1 : r < 0.5 ? -1 : 0;
    const open = price;
    const close = open * (1 + signal * 0.0002 + (rand() - 0.5) * 0.00004);
    const high = Math.max(open, close) * (1 + (spike === 1 ? 0.006 : 0.00002));
    const low = Math.min(open, close) * (1 - (spike === -1 ? 0.006 : 0.00002));
    const buy = 1 + signal * 0.8;
    out.push({
      ...bar(market, T0 + i * 1000, open, high, low, close),
      volume: 2,
      buyVolume: buy,
      sellVolume: 2 - buy,
    });
    price = close;
  }
  return out;
}
