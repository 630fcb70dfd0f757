/**
 * @module Benchmark of the backtest replay: bars per second through the evaluator's own code
 * (features, labels, online model, policy, spread estimate) plus the fill model and the quality
 * scores, for one market and for ten (one after the other, on one core), from bars in memory
 * (no database); then a sweep of 8 points on 1, 2, … worker threads up to the number of cores.
 * Prints the numbers; asserts nothing. Method and results: docs/backtest.md.
 *
 * Usage: deno run -A bench/backtest_replay.ts [barsPerMarket=200000]
 */
import { replayMarket } from "../lib/backtest/replay.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { parseSweep, runSweep } from "../lib/backtest/sweep.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { resolveParams } from "../lib/strategy/policy.ts";

const n = Number(Deno.args[0] ?? 200_000);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
const T0 = Date.UTC(2026, 11, 1);

/** A seeded random walk with trade sides (about a 0.02 % spread). */
function walk(market: string, count: number, seed: number): Bar[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const bars: Bar[] = new Array(count);
  let price = 100_000_000;
  for (let i = 0; i < count; i++) {
    const open = price;
    const close = Math.round(open * (1 + (rand() - 0.5) * 0.002));
    bars[i] = {
      market,
      ts: T0 + i * 1000,
      open,
      high: Math.max(open, close) + 1000,
      low: Math.min(open, close) - 1000,
      close,
      volume: 0.01,
      quoteVolume: close * 0.01,
      tradeCount: 3,
      buyVolume: 0.005,
      sellVolume: 0.005,
      askEst: close + 10_000,
      bidEst: close - 10_000,
    };
    price = close;
  }
  return bars;
}

function* chunks(bars: Bar[], size = 5000): Generator<Bar[]> {
  for (let i = 0; i < bars.length; i += size) yield bars.slice(i, i + size);
}

const params = resolveParams("test");
const one = walk("KRW-BTC", n, 1);
// Warm-up (JIT), then the measured run.
await replayMarket(chunks(one.slice(0, 20_000)), {
  market: "KRW-BTC",
  params,
  krwAmount: 10_000,
  slippageBps: 2,
});
// Three measured runs (the machine may be shared: the best is the least disturbed).
for (let run = 1; run <= 3; run++) {
  const t0 = performance.now();
  const r = await replayMarket(chunks(one), {
    market: "KRW-BTC",
    params,
    krwAmount: 10_000,
    slippageBps: 2,
  });
  const s = (performance.now() - t0) / 1000;
  out(
    `one market, run ${run}:  ${r.bars} bars in ${s.toFixed(2)} s = ${
      Math.round(r.bars / s).toLocaleString("en")
    } bars/s (${r.trades.length} round trips)`,
  );
}
{
  const markets = Array.from({ length: 10 }, (_, i) => `KRW-M${i}`);
  const per = Math.floor(n / 10);
  const data = new Map(markets.map((m, i) => [m, walk(m, per, i + 2)]));
  const t0 = performance.now();
  const report = await runBacktest(
    {
      markets,
      from: new Date(T0).toISOString(),
      to: new Date(T0 + per * 1000).toISOString(),
      source: "db",
      profile: "test",
      params,
      krwAmount: 10_000,
      slippageBps: 2,
    },
    (m) => chunks(data.get(m)!),
  );
  const s = (performance.now() - t0) / 1000;
  out(
    `ten markets: ${report.total.bars} bars in ${s.toFixed(2)} s = ${
      Math.round(report.total.bars / s).toLocaleString("en")
    } bars/s (report included)`,
  );
}
{
  const cores = navigator.hardwareConcurrency;
  const bars = new Map([["KRW-BTC", one.slice(0, 50_000)]]);
  const run = {
    markets: ["KRW-BTC"],
    from: new Date(T0).toISOString(),
    to: new Date(T0 + 50_000_000).toISOString(),
    source: "db" as const,
    profile: "test",
    params,
    krwAmount: 10_000,
    slippageBps: 2,
  };
  const axes = parseSweep("EVAL_TP_PCT=0.1:0.4:0.1,EVAL_SL_PCT=0.1:0.2:0.1", "test", params);
  let base = 0;
  for (let workers = 1; workers <= Math.max(2, cores); workers *= 2) {
    const t0 = performance.now();
    await runSweep({ run, axes, bars, workers, windows: 1, inThread: false });
    const s = (performance.now() - t0) / 1000;
    if (workers === 1) base = s;
    out(
      `sweep of 8 x 50000 bars, ${workers} worker(s): ${s.toFixed(2)} s = ${
        Math.round(400_000 / s).toLocaleString("en")
      } bars/s, speed-up ${(base / s).toFixed(2)} (${cores} cores)`,
    );
  }
}
