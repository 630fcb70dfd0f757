/**
 * @module The expected spread cost of a market round trip, estimated from the trade sides the
 * feed records per bar: a market buy pays the ask (≈ the bar's last buyer-initiated trade,
 * `askEst`), a market sell gets the bid (≈ its last seller-initiated trade, `bidEst`). Each bar
 * with both gives a sample `(ask − bid) / mid` (0 when negative: the price moved within the
 * second); the estimate is their exponential moving average over about a minute of samples.
 *
 * A round trip pays half the spread on the way in and half on the way out, so its cost is one
 * spread: EV subtracts {@linkcode SpreadEstimator.costPct} as it subtracts the fee. Until the first
 * sample (bars without the sides, e.g. stored before migration 008) the cost is 0.
 */
import type { Bar } from "./bars.ts";

/** Samples the moving average spans (about a minute of bars). */
const SPAN = 60;
const ALPHA = 2 / (SPAN + 1);

/** Serialisable state of a {@linkcode SpreadEstimator}. */
export interface SpreadState {
  /** The moving average, percent; null before the first sample. */
  emaPct: number | null;
}

/**
 * Running spread estimate of one market.
 *
 * @example
 * ```ts
 * const s = new SpreadEstimator();
 * s.onBar({ market: "KRW-BTC", ts: 0, open: 100, high: 100, low: 100, close: 100, volume: 2,
 *   quoteVolume: 200, tradeCount: 2, buyVolume: 1, sellVolume: 1, askEst: 100.1, bidEst: 99.9 });
 * s.costPct; // 0.2
 * ```
 */
export class SpreadEstimator {
  #emaPct: number | null;

  constructor(state?: SpreadState) {
    this.#emaPct = state?.emaPct ?? null;
  }

  /** The expected round-trip spread cost, percent (0 before any sample). */
  get costPct(): number {
    return this.#emaPct ?? 0;
  }

  /** Takes the bar's sample, if it has both sides. */
  onBar(bar: Bar): void {
    const ask = bar.askEst;
    const bid = bar.bidEst;
    if (ask == null || bid == null || !(ask > 0) || !(bid > 0)) return;
    const sample = Math.max(0, ((ask - bid) / ((ask + bid) / 2)) * 100);
    this.#emaPct = this.#emaPct === null ? sample : this.#emaPct + ALPHA * (sample - this.#emaPct);
  }

  /** Serialisable state. */
  snapshot(): SpreadState {
    return { emaPct: this.#emaPct };
  }
}
