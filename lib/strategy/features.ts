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

/** Seconds in the dense window: `t − 60 … t`. */
const WINDOW = MAX_WINDOW_SEC + 1;

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
  // The dense window of the current bar, reused (no allocation per bar).
  #close = new Float64Array(WINDOW);
  #high = new Float64Array(WINDOW);
  #low = new Float64Array(WINDOW);
  #buy = new Float64Array(WINDOW);
  #sell = new Float64Array(WINDOW);
  #trades = new Float64Array(WINDOW);

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
    this.#fillDense(bar.ts);
    return this.#compute();
  }

  /** Serialisable state. */
  snapshot(): FeatureExtractorState {
    return { bars: this.#bars.map((b) => ({ ...b })), carryClose: this.#carryClose };
  }

  /** Seconds `t − 60 … t` as dense arrays, missing seconds filled with a no-trade bar. */
  #fillDense(t: number): void {
    const first = this.#bars[0];
    let close = this.#carryClose ?? first?.open ?? 0;
    let i = 0;
    let k = 0;
    for (let s = t - MAX_WINDOW_SEC * 1000; s <= t; s += 1000, k++) {
      const b = this.#bars[i];
      if (b && b.ts === s) {
        i++;
        close = b.close;
        this.#close[k] = close;
        this.#high[k] = b.high;
        this.#low[k] = b.low;
        this.#buy[k] = b.buyVolume;
        this.#sell[k] = b.sellVolume;
        this.#trades[k] = b.tradeCount;
      } else {
        this.#close[k] = close;
        this.#high[k] = close;
        this.#low[k] = close;
        this.#buy[k] = 0;
        this.#sell[k] = 0;
        this.#trades[k] = 0;
      }
    }
  }

  /**
   * Features from the dense window whose last element is the current second. Every sum adds its
   * terms in the order the first (allocating) version of this code did, so the features, and
   * hence the model and the paper trades, are bit-identical to it.
   */
  #compute(): Features {
    const n = WINDOW;
    const close = this.#close;
    const closeAt = (secondsBack: number) => close[Math.max(0, n - 1 - secondsBack)]!;
    const ret = (w: number) => logRetPct(closeAt(w), closeAt(0));
    let sq15 = 0;
    let sq60 = 0;
    for (let k = 0; k < 60; k++) {
      const r = logRetPct(closeAt(k + 1), closeAt(k));
      const r2 = r * r;
      if (k < 15) sq15 += r2;
      sq60 += r2;
    }
    const imbalance = (w: number) => {
      let buy = 0;
      let sell = 0;
      for (let k = Math.max(0, n - w); k < n; k++) {
        buy += this.#buy[k]!;
        sell += this.#sell[k]!;
      }
      return buy + sell > 0 ? (buy - sell) / (buy + sell) : 0;
    };
    const intensity = (w: number) => {
      let sum = 0;
      for (let k = Math.max(0, n - w); k < n; k++) sum += this.#trades[k]!;
      return Math.log1p(sum);
    };
    let hi = -Infinity;
    let lo = Infinity;
    for (let k = Math.max(0, n - MAX_WINDOW_SEC); k < n; k++) {
      hi = Math.max(hi, this.#high[k]!);
      lo = Math.min(lo, this.#low[k]!);
    }
    const rangePos = hi > lo ? (closeAt(0) - lo) / (hi - lo) - 0.5 : 0;
    return {
      ret_1s: ret(1),
      ret_5s: ret(5),
      ret_15s: ret(15),
      ret_60s: ret(60),
      vol_15s: Math.sqrt(sq15),
      vol_60s: Math.sqrt(sq60),
      imbalance_5s: imbalance(5),
      imbalance_60s: imbalance(60),
      intensity_5s: intensity(5),
      intensity_60s: intensity(60),
      range_pos_60s: rangePos,
    };
  }
}

function logRetPct(from: number, to: number): number {
  return from > 0 && to > 0 ? 100 * Math.log(to / from) : 0;
}
