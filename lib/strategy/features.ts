/**
 * @module Features of one market's recent 1-second bars.
 *
 * Bars are sparse: a second without trades has no bar. Such a second counts as "no trades at the
 * previous close" (its return is 0, its volume 0). Before the first bar ever seen, the price is
 * taken to be that bar's open, so windows longer than the history give partial-window values
 * rather than inventing a move.
 *
 * Every feature is finite and roughly scale-free (percent returns, ratios, log counts); the model
 * standardises them further.
 */
import type { Bar } from "./bars.ts";

/** Names of the features, in the order of {@linkcode featureVector}. */
export const FEATURE_NAMES = [
  "ret_1s",
  "ret_5s",
  "ret_15s",
  "ret_60s",
  "vol_15s",
  "vol_60s",
  "imbalance_5s",
  "imbalance_60s",
  "intensity_5s",
  "intensity_60s",
  "range_pos_60s",
] as const;

/** One feature name. */
export type FeatureName = (typeof FEATURE_NAMES)[number];

/** A feature set keyed by name (stored with each prediction as JSON). */
export type Features = Record<FeatureName, number>;

/** The longest window, in seconds. */
export const MAX_WINDOW_SEC = 60;

/** Serialisable state of a {@linkcode FeatureExtractor}. */
export interface FeatureExtractorState {
  /** Bars of the last {@linkcode MAX_WINDOW_SEC} + 1 seconds, ts ascending. */
  bars: Bar[];
  /** Close of the newest bar older than `bars`, or null. */
  carryClose: number | null;
}

/** The features of `f` as a vector in {@linkcode FEATURE_NAMES} order. */
export function featureVector(f: Features): number[] {
  return FEATURE_NAMES.map((name) => f[name]);
}

/**
 * Keeps one market's recent bars and computes the features at each new bar.
 *
 * @example
 * ```ts
 * const fx = new FeatureExtractor();
 * const f = fx.onBar({ market: "KRW-BTC", ts: 0, open: 100, high: 101, low: 99, close: 101,
 *   volume: 2, quoteVolume: 201, tradeCount: 2, buyVolume: 2, sellVolume: 0 });
 * f.imbalance_5s; // 1: only buyer-initiated volume
 * ```
 */
export class FeatureExtractor {
  #bars: Bar[] = [];
  #carryClose: number | null = null;

  constructor(state?: FeatureExtractorState) {
    if (state) {
      this.#bars = state.bars.map((b) => ({ ...b }));
      this.#carryClose = state.carryClose;
    }
  }

  /** Adds `bar` (ts strictly after the previous one) and returns the features at its close. */
  onBar(bar: Bar): Features {
    const last = this.#bars[this.#bars.length - 1];
    if (last && bar.ts <= last.ts) {
      throw new RangeError(`FeatureExtractor bars must be in ts order: ${bar.ts} after ${last.ts}`);
    }
    this.#bars.push({ ...bar });
    const oldest = bar.ts - MAX_WINDOW_SEC * 1000;
    while (this.#bars.length > 0 && (this.#bars[0]?.ts ?? Infinity) < oldest) {
      this.#carryClose = this.#bars.shift()?.close ?? this.#carryClose;
    }
    return computeFeatures(this.#dense(bar.ts));
  }

  /** Serialisable state. */
  snapshot(): FeatureExtractorState {
    return { bars: this.#bars.map((b) => ({ ...b })), carryClose: this.#carryClose };
  }

  /** Seconds `t − 60 … t` as a dense array, missing seconds filled with a no-trade bar. */
  #dense(t: number): DenseSecond[] {
    const first = this.#bars[0];
    let close = this.#carryClose ?? first?.open ?? 0;
    const out: DenseSecond[] = [];
    let i = 0;
    for (let s = t - MAX_WINDOW_SEC * 1000; s <= t; s += 1000) {
      const b = this.#bars[i];
      if (b && b.ts === s) {
        i++;
        close = b.close;
        out.push({
          close,
          high: b.high,
          low: b.low,
          buy: b.buyVolume,
          sell: b.sellVolume,
          trades: b.tradeCount,
        });
      } else {
        out.push({ close, high: close, low: close, buy: 0, sell: 0, trades: 0 });
      }
    }
    return out;
  }
}

interface DenseSecond {
  close: number;
  high: number;
  low: number;
  buy: number;
  sell: number;
  trades: number;
}

/** Features from a dense window whose last element is the current second (61 elements). */
function computeFeatures(d: DenseSecond[]): Features {
  const n = d.length;
  const closeAt = (secondsBack: number) => d[Math.max(0, n - 1 - secondsBack)]?.close ?? 0;
  const ret = (w: number) => logRetPct(closeAt(w), closeAt(0));
  const vol = (w: number) => {
    let sum = 0;
    for (let k = 0; k < w; k++) {
      const r = logRetPct(closeAt(k + 1), closeAt(k));
      sum += r * r;
    }
    return Math.sqrt(sum);
  };
  const tail = (w: number) => d.slice(Math.max(0, n - w));
  const imbalance = (w: number) => {
    let buy = 0;
    let sell = 0;
    for (const s of tail(w)) {
      buy += s.buy;
      sell += s.sell;
    }
    return buy + sell > 0 ? (buy - sell) / (buy + sell) : 0;
  };
  const intensity = (w: number) => Math.log1p(tail(w).reduce((a, s) => a + s.trades, 0));
  const window60 = tail(MAX_WINDOW_SEC);
  const hi = Math.max(...window60.map((s) => s.high));
  const lo = Math.min(...window60.map((s) => s.low));
  const rangePos = hi > lo ? (closeAt(0) - lo) / (hi - lo) - 0.5 : 0;
  return {
    ret_1s: ret(1),
    ret_5s: ret(5),
    ret_15s: ret(15),
    ret_60s: ret(60),
    vol_15s: vol(15),
    vol_60s: vol(60),
    imbalance_5s: imbalance(5),
    imbalance_60s: imbalance(60),
    intensity_5s: intensity(5),
    intensity_60s: intensity(60),
    range_pos_60s: rangePos,
  };
}

function logRetPct(from: number, to: number): number {
  return from > 0 && to > 0 ? 100 * Math.log(to / from) : 0;
}
