/**
 * @module Benchmark of the backtest replay: bars per second through the evaluator's own code
 * (features, labels, online model, policy, spread estimate) plus the fill model and the quality
 * scores, for one market and for ten (one after the other, on one core), from bars in memory
 * (no database); then a sweep of 8 points on 1, 2, … worker threads up to the number of cores.
 * Prints the numbers; asserts nothing. Method and results: docs/backtest.md.
 *
 * The suite (`bench/suite.ts`) uses {@linkcode benchReplay}: the one-market replay next to the live
 * evaluator (`lib/pipeline/evaluator.ts`) on the same bars read from and written to a database.
 *
 * Usage: deno run -A bench/backtest_replay.ts [barsPerMarket=200000]
 */
import { replayMarket } from "../lib/backtest/replay.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { parseSweep, runSweep } from "../lib/backtest/sweep.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { resolveParams } from "../lib/strategy/policy.ts";
import { createLogger } from "../lib/log.ts";
import { Evaluator } from "../lib/pipeline/evaluator.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { type BenchRow, fmt } from "./_harness.ts";
import { freshDatabase } from "./feed_ingest.ts";

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

/** What {@linkcode benchReplay} measured, bars per second. */
export interface ReplayFigures {
  bars: number;
  /** Bars the live evaluator ran over (the first of the same series). */
  liveBars: number;
  /** The backtest replay of one market (bars in memory), the best of `runs`. */
  replayBarsPerSec: number;
  /** The live evaluator on the same bars: read from `market_1s`, labels, predictions and paper trades written, per backend. */
  liveBarsPerSec: Record<string, number>;
}

/**
 * The backtest replay of `bars` bars of one market (best of `runs`, after a warm-up), and the live
 * evaluator (`Evaluator.runOnce`, 500 bars per transaction, as in upbot) over the first `liveBars`
 * of the same bars on a fresh database of each backend (it is two orders of magnitude slower).
 */
export async function benchReplay(
  bars = 50_000,
  runs = 3,
  backends: ("pglite" | "postgres")[] = ["pglite"],
  liveBars = 5_000,
): Promise<ReplayFigures> {
  const params = resolveParams("test");
  const data = walk("KRW-BTC", bars, 1);
  const options = { market: "KRW-BTC", params, krwAmount: 10_000, slippageBps: 2 };
  await replayMarket(chunks(data.slice(0, 20_000)), options);
  let best = 0;
  for (let run = 0; run < runs; run++) {
    const t0 = performance.now();
    const r = await replayMarket(chunks(data), options);
    best = Math.max(best, r.bars / ((performance.now() - t0) / 1000));
  }
  const live: Record<string, number> = {};
  for (const backend of backends) {
    const { db, dispose } = await freshDatabase(backend);
    try {
      // 2,000 bars per statement: postgres.js allows 65,534 parameters.
      for (const part of chunks(data.slice(0, liveBars), 2000)) {
        await upsertBars(db.sql, part, true);
      }
      const evaluator = new Evaluator({
        sql: db.sql,
        markets: ["KRW-BTC"],
        profile: "test",
        params,
        krwAmount: 10_000,
        log: createLogger("bench.evaluator"),
        // From the first bar on (a fresh evaluator starts this far before the newest one).
        warmupMs: liveBars * 1000 + 1000,
      });
      await evaluator.start();
      const t0 = performance.now();
      let done = 0;
      for (;;) {
        const s = await evaluator.runOnce();
        done += s.bars;
        if (s.bars === 0) break;
      }
      live[backend] = done / ((performance.now() - t0) / 1000);
    } finally {
      await dispose();
    }
  }
  return { bars, liveBars, replayBarsPerSec: best, liveBarsPerSec: live };
}

/** The suite's row. */
export function replayRow(f: ReplayFigures): BenchRow {
  const live = Object.entries(f.liveBarsPerSec);
  const fastest = Math.max(...live.map(([, v]) => v));
  return {
    part: "replay",
    measure: "bars/s through the evaluator, one market",
    upbot: `${fmt(f.replayBarsPerSec)} (backtest, ${fmt(f.bars)} bars)`,
    reference: `live evaluator ${live.map(([b, v]) => `${fmt(v)} (${b})`).join(", ")}`,
    ratio: live.length > 0 ? `${fmt(f.replayBarsPerSec / fastest, 1)}x` : "-",
    target: "-",
    met: "-",
  };
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 200_000);
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
}
