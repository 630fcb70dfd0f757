/**
 * @module How good the online model's predictions were on a replay: log loss and Brier score of
 * (p_up, p_down, p_flat) against the label that matured, next to a base-rate predictor (the
 * running label frequencies known when the prediction was made, Laplace-smoothed), and a
 * reliability table (predicted probability vs observed frequency, per decile, per class).
 */
import type { Prediction } from "../strategy/evaluator_core.ts";
import type { BarrierLabel, MaturedLabel } from "../strategy/labels.ts";

/** Class order used everywhere here: up (+1), down (−1), flat (0). */
export const CLASSES = ["up", "down", "flat"] as const;

/** Bins of the reliability table. */
export const RELIABILITY_BINS = 10;

/** Probabilities are clipped to this before the log, so one certain miss stays finite. */
const EPSILON = 1e-15;

/** One bin of one class: how many predictions fell in it, their mean, and how often it happened. */
export interface ReliabilityBin {
  /** Lower edge of the bin (probability). */
  from: number;
  n: number;
  /** Mean predicted probability in the bin (null when empty). */
  predicted: number | null;
  /** Observed frequency of the class in the bin (null when empty). */
  observed: number | null;
}

/** Scores of one predictor. */
export interface Scores {
  /** Mean negative log-likelihood of the label (nats). */
  logLoss: number | null;
  /** Mean multi-class Brier score, Σ_k (p_k − y_k)², from 0 (perfect) to 2. */
  brier: number | null;
}

/** The model-quality section of a report. */
export interface QualityReport {
  /** Predictions whose label matured in the replay. */
  scored: number;
  model: Scores;
  baseRate: Scores;
  /** Label frequencies over the scored predictions (up, down, flat). */
  labelShare: { up: number; down: number; flat: number } | null;
  reliability: Record<(typeof CLASSES)[number], ReliabilityBin[]>;
}

function classIndex(label: BarrierLabel): number {
  return label === 1 ? 0 : label === -1 ? 1 : 2;
}

interface Pending {
  model: [number, number, number];
  base: [number, number, number];
}

interface BinSum {
  n: number;
  p: number;
  y: number;
}

/**
 * Accumulates scores as predictions are made and their labels mature.
 *
 * @example
 * ```ts
 * const q = new QualityTracker();
 * q.report().scored; // 0
 * ```
 */
export class QualityTracker {
  #pending = new Map<number, Pending>();
  /** Labels matured so far, per class: the base rate's knowledge. */
  #seen: [number, number, number] = [0, 0, 0];
  #scored = 0;
  #logLoss = [0, 0];
  #brier = [0, 0];
  #share: [number, number, number] = [0, 0, 0];
  #bins: BinSum[][] = CLASSES.map(() =>
    Array.from({ length: RELIABILITY_BINS }, () => ({ n: 0, p: 0, y: 0 }))
  );

  /** Labels first (they matured at this bar, before its prediction), then the prediction. */
  onStep(labels: readonly MaturedLabel[], prediction: Prediction | null): void {
    for (const l of labels) this.#score(l);
    if (!prediction) return;
    const total = this.#seen[0] + this.#seen[1] + this.#seen[2] + 3;
    this.#pending.set(prediction.ts, {
      model: [prediction.pUp, prediction.pDown, prediction.pFlat],
      base: [(this.#seen[0] + 1) / total, (this.#seen[1] + 1) / total, (this.#seen[2] + 1) / total],
    });
  }

  #score(l: MaturedLabel): void {
    const k = classIndex(l.label);
    const p = this.#pending.get(l.ts);
    this.#seen[k]!++;
    if (!p) return;
    this.#pending.delete(l.ts);
    this.#scored++;
    this.#share[k]!++;
    [p.model, p.base].forEach((probs, which) => {
      this.#logLoss[which]! += -Math.log(Math.max(probs[k]!, EPSILON));
      let b = 0;
      for (let c = 0; c < 3; c++) b += (probs[c]! - (c === k ? 1 : 0)) ** 2;
      this.#brier[which]! += b;
    });
    for (let c = 0; c < 3; c++) {
      const pc = p.model[c]!;
      const bin = this
        .#bins[c]![Math.min(RELIABILITY_BINS - 1, Math.floor(pc * RELIABILITY_BINS))]!;
      bin.n++;
      bin.p += pc;
      bin.y += c === k ? 1 : 0;
    }
  }

  /** The scores so far. */
  report(): QualityReport {
    const n = this.#scored;
    const scores = (which: number): Scores => ({
      logLoss: n === 0 ? null : this.#logLoss[which]! / n,
      brier: n === 0 ? null : this.#brier[which]! / n,
    });
    const bins = (c: number): ReliabilityBin[] =>
      this.#bins[c]!.map((b, i) => ({
        from: i / RELIABILITY_BINS,
        n: b.n,
        predicted: b.n === 0 ? null : b.p / b.n,
        observed: b.n === 0 ? null : b.y / b.n,
      }));
    return {
      scored: n,
      model: scores(0),
      baseRate: scores(1),
      labelShare: n === 0
        ? null
        : { up: this.#share[0]! / n, down: this.#share[1]! / n, flat: this.#share[2]! / n },
      reliability: { up: bins(0), down: bins(1), flat: bins(2) },
    };
  }
}
