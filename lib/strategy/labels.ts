/**
 * @module Triple-barrier labels of 1-second bars, computed incrementally.
 *
 * For the bar at `t` with close `c`: take-profit `c·(1+tp)`, stop-loss `c·(1−sl)`, horizon `H`
 * seconds. The bars with `ts` in `(t, t + H·1000]` are scanned in order: `+1` if a high reaches
 * the take-profit first, `−1` if a low reaches the stop-loss first, `0` when the horizon passes
 * with neither. When one bar reaches both, the order inside the bar is unknown and the label is the
 * conservative `−1`. The bar `t` itself is not scanned (its high and low came before its close).
 * A label matures when a barrier is hit, or with the first bar at or after `t + H·1000` (missing
 * seconds had no trades, so the horizon is known to have passed only when a later bar arrives).
 */
import type { Bar } from "./bars.ts";

/** A triple-barrier outcome: `1` take-profit first, `-1` stop-loss first, `0` horizon. */
export type BarrierLabel = 1 | -1 | 0;

/** A matured label. */
export interface MaturedLabel {
  market: string;
  /** `ts` of the labelled bar. */
  ts: number;
  label: BarrierLabel;
  /** `ts` of the bar that hit the barrier, or `t + H·1000` for a horizon label. */
  barrierHitTs: number;
  /** Return as a fraction: `+tp`, `−sl`, or last close within the horizon / `c` − 1. */
  ret: number;
}

/** Barrier settings, in percent like the profiles (`0.15` = 0.15 %). */
export interface BarrierParams {
  tpPct: number;
  slPct: number;
  horizonSec: number;
}

/** One bar waiting for its label (serialisable). */
export interface PendingLabel {
  ts: number;
  close: number;
  /** Close of the newest bar within the horizon seen so far. */
  lastClose: number;
}

/** Serialisable state of a {@linkcode TripleBarrierLabeler}. */
export interface LabelerState {
  market: string;
  lastTs: number | null;
  pending: PendingLabel[];
}

/**
 * Labels one market's bars as they arrive (in `ts` order).
 *
 * @example
 * ```ts
 * const labeler = new TripleBarrierLabeler("KRW-BTC", { tpPct: 1, slPct: 1, horizonSec: 10 });
 * labeler.onBar({ market: "KRW-BTC", ts: 0, open: 100, high: 100, low: 100, close: 100,
 *   volume: 1, quoteVolume: 100, tradeCount: 1, buyVolume: 1, sellVolume: 0 });
 * ```
 */
export class TripleBarrierLabeler {
  readonly market: string;
  readonly params: BarrierParams;
  #pending: PendingLabel[] = [];
  #lastTs: number | null = null;

  /** @throws {RangeError} when a barrier is not positive or the horizon is not a positive integer. */
  constructor(market: string, params: BarrierParams, state?: LabelerState) {
    if (!(params.tpPct > 0) || !(params.slPct > 0)) {
      throw new RangeError(
        `Cannot create TripleBarrierLabeler as 'tpPct' and 'slPct' must be > 0: current values are ${params.tpPct} and ${params.slPct}`,
      );
    }
    if (!Number.isInteger(params.horizonSec) || params.horizonSec < 1) {
      throw new RangeError(
        `Cannot create TripleBarrierLabeler as 'horizonSec' must be an integer >= 1: current value is ${params.horizonSec}`,
      );
    }
    this.market = market;
    this.params = { ...params };
    if (state) {
      this.#lastTs = state.lastTs;
      this.#pending = state.pending.map((p) => ({ ...p }));
    }
  }

  /**
   * Feeds the next bar (ts strictly increasing; an older or repeated bar is ignored and yields no
   * labels). Returns the labels that matured, in `ts` order; then adds this bar as pending.
   */
  onBar(bar: Bar): MaturedLabel[] {
    if (this.#lastTs !== null && bar.ts <= this.#lastTs) return [];
    this.#lastTs = bar.ts;
    const tp = this.params.tpPct / 100;
    const sl = this.params.slPct / 100;
    const horizonMs = this.params.horizonSec * 1000;
    const matured: MaturedLabel[] = [];
    const still: PendingLabel[] = [];
    for (const p of this.#pending) {
      const deadline = p.ts + horizonMs;
      if (bar.ts > deadline) {
        // The horizon passed during a gap (no trades): the last close within it stands.
        matured.push(this.#timeout(p, deadline));
        continue;
      }
      const hitsSl = bar.low <= p.close * (1 - sl);
      const hitsTp = bar.high >= p.close * (1 + tp);
      if (hitsSl) {
        matured.push({ market: this.market, ts: p.ts, label: -1, barrierHitTs: bar.ts, ret: -sl });
      } else if (hitsTp) {
        matured.push({ market: this.market, ts: p.ts, label: 1, barrierHitTs: bar.ts, ret: tp });
      } else if (bar.ts === deadline) {
        p.lastClose = bar.close;
        matured.push(this.#timeout(p, deadline));
      } else {
        p.lastClose = bar.close;
        still.push(p);
      }
    }
    still.push({ ts: bar.ts, close: bar.close, lastClose: bar.close });
    this.#pending = still;
    return matured;
  }

  /** Number of bars waiting for a label. */
  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Serialisable state (for {@linkcode TripleBarrierLabeler} restore). */
  snapshot(): LabelerState {
    return {
      market: this.market,
      lastTs: this.#lastTs,
      pending: this.#pending.map((p) => ({ ...p })),
    };
  }

  #timeout(p: PendingLabel, deadline: number): MaturedLabel {
    return {
      market: this.market,
      ts: p.ts,
      label: 0,
      barrierHitTs: deadline,
      ret: p.lastClose / p.close - 1,
    };
  }
}
