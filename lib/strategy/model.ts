/**
 * @module Online prediction of triple-barrier outcomes: multinomial logistic regression.
 *
 * Three classes (take-profit first, stop-loss first, horizon), softmax over linear scores of the
 * standardised features. Trained by one SGD step per matured label, with L2 on the weights (not the
 * biases). Standardisation uses a running mean and variance that forget slowly (an exponential
 * window of `scalerWindow` samples), so the model follows a drifting market. Standardised values
 * are clipped to ±`clip` so one wild bar cannot blow up a step.
 *
 * Before any training every weight is 0 and the probabilities are uniform (1/3 each); the biases
 * then learn the label frequencies first, since they move on every step.
 *
 * The whole state is plain JSON ({@linkcode OnlineBarrierModel.toJSON} /
 * {@linkcode OnlineBarrierModel.fromJSON}) so the evaluator can persist and resume it.
 */
import { z } from "zod";
import type { BarrierLabel } from "./labels.ts";

/** Predicted probabilities of the three barrier outcomes (they sum to 1). */
export interface BarrierProbabilities {
  pUp: number;
  pDown: number;
  pFlat: number;
}

/** Options of {@linkcode OnlineBarrierModel}. */
export interface ModelOptions {
  /** SGD step size. @default {0.05} */
  learningRate?: number;
  /** L2 penalty on the weights. @default {0.0001} */
  l2?: number;
  /** Effective number of samples the running mean and variance remember. @default {5000} */
  scalerWindow?: number;
  /** Standardised features are clipped to ±clip. @default {5} */
  clip?: number;
}

const finite = z.number().refine(Number.isFinite, "must be finite");

/** zod schema of a persisted model (validate what comes back from the database). */
export const ModelStateSchema = z.object({
  version: z.literal(1),
  featureNames: z.array(z.string()),
  options: z.object({
    learningRate: finite,
    l2: finite,
    scalerWindow: finite,
    clip: finite,
  }),
  /** Rows up, down, flat; each has one weight per feature, then the bias. */
  weights: z.array(z.array(finite)).length(3),
  scaler: z.object({ count: finite, mean: z.array(finite), variance: z.array(finite) }),
  /** Labels trained on: up, down, flat. */
  classCounts: z.tuple([finite, finite, finite]),
});

/** The persisted form of a model. */
export type ModelState = z.infer<typeof ModelStateSchema>;

/** Class index of a label: 0 up (+1), 1 down (−1), 2 flat (0). */
function classIndex(label: BarrierLabel): 0 | 1 | 2 {
  return label === 1 ? 0 : label === -1 ? 1 : 2;
}

/**
 * Multinomial logistic regression trained online.
 *
 * @example
 * ```ts
 * const model = new OnlineBarrierModel(["a", "b"]);
 * model.predict([0.1, -0.2]); // { pUp: 1/3, pDown: 1/3, pFlat: 1/3 } before training
 * model.train([0.1, -0.2], 1);
 * ```
 */
export class OnlineBarrierModel {
  readonly featureNames: readonly string[];
  readonly options: Required<ModelOptions>;
  #weights: number[][];
  #count = 0;
  #mean: number[];
  #variance: number[];
  #classCounts: [number, number, number] = [0, 0, 0];

  /** @throws {RangeError} on a non-positive learning rate, window or clip, or a negative l2. */
  constructor(featureNames: readonly string[], options: ModelOptions = {}) {
    this.featureNames = [...featureNames];
    this.options = {
      learningRate: options.learningRate ?? 0.05,
      l2: options.l2 ?? 1e-4,
      scalerWindow: options.scalerWindow ?? 5000,
      clip: options.clip ?? 5,
    };
    const o = this.options;
    if (!(o.learningRate > 0) || !(o.scalerWindow >= 1) || !(o.clip > 0) || !(o.l2 >= 0)) {
      throw new RangeError(
        `Cannot create OnlineBarrierModel as its options are out of range: ${JSON.stringify(o)}`,
      );
    }
    const d = this.featureNames.length;
    this.#weights = [0, 1, 2].map(() => new Array<number>(d + 1).fill(0));
    this.#mean = new Array<number>(d).fill(0);
    this.#variance = new Array<number>(d).fill(0);
  }

  /** Labels trained on so far. */
  get trainedCount(): number {
    return this.#classCounts[0] + this.#classCounts[1] + this.#classCounts[2];
  }

  /** Probabilities of take-profit first, stop-loss first and horizon for features `x`. */
  predict(x: readonly number[]): BarrierProbabilities {
    const p = this.#probabilities(this.#standardise(x));
    return { pUp: p[0], pDown: p[1], pFlat: p[2] };
  }

  /** One SGD step on the features a prediction was made with and the label that matured. */
  train(x: readonly number[], label: BarrierLabel): void {
    this.#checkLength(x);
    this.#updateScaler(x);
    const z = this.#standardise(x);
    const p = this.#probabilities(z);
    const target = classIndex(label);
    const { learningRate: lr, l2 } = this.options;
    const d = z.length;
    for (let k = 0; k < 3; k++) {
      const row = this.#weights[k] as number[];
      const err = (p[k] as number) - (k === target ? 1 : 0);
      for (let j = 0; j < d; j++) {
        row[j] = (row[j] as number) - lr * (err * (z[j] as number) + l2 * (row[j] as number));
      }
      row[d] = (row[d] as number) - lr * err;
    }
    this.#classCounts[target]++;
  }

  /** The whole state as plain JSON. */
  toJSON(): ModelState {
    return {
      version: 1,
      featureNames: [...this.featureNames],
      options: { ...this.options },
      weights: this.#weights.map((r) => [...r]),
      scaler: { count: this.#count, mean: [...this.#mean], variance: [...this.#variance] },
      classCounts: [...this.#classCounts],
    };
  }

  /**
   * Rebuilds a model from {@linkcode toJSON} output (validated).
   *
   * @throws {Error} when the state is malformed or was made for other features.
   */
  static fromJSON(state: unknown, expectedFeatureNames?: readonly string[]): OnlineBarrierModel {
    const s = ModelStateSchema.parse(state);
    const d = s.featureNames.length;
    if (
      expectedFeatureNames &&
      (expectedFeatureNames.length !== d ||
        expectedFeatureNames.some((n, i) => n !== s.featureNames[i]))
    ) {
      throw new Error("OnlineBarrierModel state was made for other features");
    }
    if (
      s.weights.some((r) => r.length !== d + 1) || s.scaler.mean.length !== d ||
      s.scaler.variance.length !== d
    ) {
      throw new Error("OnlineBarrierModel state has inconsistent dimensions");
    }
    const model = new OnlineBarrierModel(s.featureNames, s.options);
    model.#weights = s.weights.map((r) => [...r]);
    model.#count = s.scaler.count;
    model.#mean = [...s.scaler.mean];
    model.#variance = [...s.scaler.variance];
    model.#classCounts = [...s.classCounts];
    return model;
  }

  #checkLength(x: readonly number[]): void {
    if (x.length !== this.featureNames.length) {
      throw new RangeError(
        `OnlineBarrierModel expects ${this.featureNames.length} features: got ${x.length}`,
      );
    }
  }

  #updateScaler(x: readonly number[]): void {
    this.#count = Math.min(this.#count + 1, this.options.scalerWindow);
    const alpha = 1 / this.#count;
    for (let j = 0; j < x.length; j++) {
      const delta = (x[j] as number) - (this.#mean[j] as number);
      this.#mean[j] = (this.#mean[j] as number) + alpha * delta;
      this.#variance[j] = (1 - alpha) * ((this.#variance[j] as number) + alpha * delta * delta);
    }
  }

  #standardise(x: readonly number[]): number[] {
    this.#checkLength(x);
    const clip = this.options.clip;
    return x.map((v, j) => {
      const sd = Math.sqrt(this.#variance[j] as number);
      if (!(sd > 1e-12) || !Number.isFinite(v)) return 0;
      const z = (v - (this.#mean[j] as number)) / sd;
      return Math.max(-clip, Math.min(clip, z));
    });
  }

  #probabilities(z: readonly number[]): [number, number, number] {
    const d = z.length;
    const scores = this.#weights.map((row) => {
      let s = row[d] as number;
      for (let j = 0; j < d; j++) s += (row[j] as number) * (z[j] as number);
      return s;
    });
    const max = Math.max(...scores);
    const e = scores.map((s) => Math.exp(s - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return [(e[0] as number) / sum, (e[1] as number) / sum, (e[2] as number) / sum];
  }
}
