/**
 * @module The skill gate: entries only while the model has shown skill on the labels that matured.
 *
 * Every prediction (p_up, p_down, p_flat) is kept until its triple-barrier label matures, then
 * scored by its log loss, next to the base-rate predictor's: the label frequencies known when the
 * prediction was made (exponentially weighted counts, Laplace-smoothed), i.e. what a model without
 * features would have said. Both losses are exponentially weighted means over about `windowLabels`
 * labels (a plain mean until that many were scored). The gate is open when at least `minLabels`
 * labels were scored and the model's loss is below the base rate's by at least `marginNats`.
 * A model that does not beat the base rate has no information beyond the label frequencies, so its
 * EV is noise plus overconfidence: trading on it pays fees and spread for nothing.
 *
 * The gate says whether an entry may be taken, and whether EV may close a position (`EV_BAD`);
 * SL, TP and TIMEOUT exits are never blocked. Everything is plain
 * JSON ({@linkcode SkillGate.snapshot}) and deterministic, so a restart resumes it exactly.
 */
import { z } from "zod";
import type { BarrierProbabilities } from "./model.ts";
import type { BarrierLabel } from "./labels.ts";

/** Settings of the gate (a profile's `skillGate`; null in a profile: no gate). */
export interface SkillGateParams {
  /** Labels scored before the gate can open (integer >= 1). */
  minLabels: number;
  /** Effective number of labels the running means remember (>= 1). */
  windowLabels: number;
  /** The model's log loss must be below the base rate's by at least this, nats per label. */
  marginNats: number;
}

/** The gate's view at one bar (stored with the prediction as evidence). */
export interface SkillScores {
  /** Labels scored so far (both predictors). */
  scored: number;
  /** Running mean log loss of the model (nats), null before the first scored label. */
  modelLogLoss: number | null;
  /** Running mean log loss of the base-rate predictor (nats), null before the first. */
  baseLogLoss: number | null;
  /** Whether an entry may be taken (always true without a gate). */
  open: boolean;
}

const finite = z.number().refine(Number.isFinite, "must be finite");

/** zod schema of {@linkcode SkillGateParams} (the range checks are {@linkcode checkSkillGateParams}). */
export const SkillGateParamsSchema = z.object({
  minLabels: finite,
  windowLabels: finite,
  marginNats: finite,
});

/** zod schema of a persisted {@linkcode SkillGateState}. */
export const SkillGateStateSchema = z.object({
  /** Predictions whose label has not matured: [ts, [model up, down, flat, base up, down, flat]]. */
  pending: z.array(z.tuple([finite, z.array(finite).length(6)])),
  /** Exponentially weighted label counts: up, down, flat. */
  labelCounts: z.tuple([finite, finite, finite]),
  scored: finite,
  modelLogLoss: finite,
  baseLogLoss: finite,
});

/** Serialisable state of a {@linkcode SkillGate}. */
export type SkillGateState = z.infer<typeof SkillGateStateSchema>;

/** Probabilities are clipped to this before the log, so one certain miss stays finite. */
const EPSILON = 1e-15;

function classIndex(label: BarrierLabel): 0 | 1 | 2 {
  return label === 1 ? 0 : label === -1 ? 1 : 2;
}

/**
 * Scores the model against the base rate as labels mature and says whether entries are allowed.
 *
 * @example
 * ```ts
 * const gate = new SkillGate({ minLabels: 2, windowLabels: 100, marginNats: 0.01 });
 * gate.onPrediction(0, { pUp: 0.8, pDown: 0.1, pFlat: 0.1 });
 * gate.onLabel(0, 1);
 * gate.scores().open; // false: one label scored, two needed
 * ```
 */
export class SkillGate {
  readonly params: SkillGateParams | null;
  #pending = new Map<number, number[]>();
  #labelCounts: [number, number, number] = [0, 0, 0];
  #scored = 0;
  #modelLogLoss = 0;
  #baseLogLoss = 0;

  /**
   * @param params null: no gate (entries always allowed; the scores are still kept as evidence).
   * @throws {RangeError} when `minLabels` is not an integer >= 1, `windowLabels` < 1 or the margin
   * is not finite.
   */
  constructor(params: SkillGateParams | null, state?: SkillGateState) {
    if (params) checkSkillGateParams(params, "SkillGate");
    this.params = params ? { ...params } : null;
    if (state) {
      this.#pending = new Map(state.pending.map(([ts, p]) => [ts, [...p]]));
      this.#labelCounts = [...state.labelCounts];
      this.#scored = state.scored;
      this.#modelLogLoss = state.modelLogLoss;
      this.#baseLogLoss = state.baseLogLoss;
    }
  }

  /** Records the prediction made at bar `ts`, and the base rate's, to score when its label matures. */
  onPrediction(ts: number, p: BarrierProbabilities): void {
    const c = this.#labelCounts;
    const total = c[0] + c[1] + c[2] + 3;
    this.#pending.set(ts, [
      p.pUp,
      p.pDown,
      p.pFlat,
      (c[0] + 1) / total,
      (c[1] + 1) / total,
      (c[2] + 1) / total,
    ]);
  }

  /** Scores the prediction of bar `ts` (if it was recorded) and learns the label's frequency. */
  onLabel(ts: number, label: BarrierLabel): void {
    const k = classIndex(label);
    const window = this.params?.windowLabels ?? DEFAULT_WINDOW_LABELS;
    const keep = 1 - 1 / window;
    const c = this.#labelCounts;
    for (let i = 0; i < 3; i++) c[i] = c[i]! * keep;
    c[k]++;
    const p = this.#pending.get(ts);
    if (!p) return;
    this.#pending.delete(ts);
    this.#scored++;
    const alpha = Math.max(1 / this.#scored, 1 / window);
    const modelLoss = -Math.log(Math.max(p[k]!, EPSILON));
    const baseLoss = -Math.log(Math.max(p[3 + k]!, EPSILON));
    this.#modelLogLoss += alpha * (modelLoss - this.#modelLogLoss);
    this.#baseLogLoss += alpha * (baseLoss - this.#baseLogLoss);
  }

  /** Whether an entry may be taken now. */
  get open(): boolean {
    const g = this.params;
    if (!g) return true;
    return this.#scored >= g.minLabels &&
      this.#baseLogLoss - this.#modelLogLoss >= g.marginNats;
  }

  /** The running scores and the gate's state. */
  scores(): SkillScores {
    const any = this.#scored > 0;
    return {
      scored: this.#scored,
      modelLogLoss: any ? this.#modelLogLoss : null,
      baseLogLoss: any ? this.#baseLogLoss : null,
      open: this.open,
    };
  }

  /** Serialisable state. */
  snapshot(): SkillGateState {
    return {
      pending: [...this.#pending].map(([ts, p]) => [ts, [...p]]),
      labelCounts: [...this.#labelCounts],
      scored: this.#scored,
      modelLogLoss: this.#modelLogLoss,
      baseLogLoss: this.#baseLogLoss,
    };
  }
}

/** Window of the scores kept without a gate (evidence only). */
const DEFAULT_WINDOW_LABELS = 3600;

/**
 * Checks gate settings.
 *
 * @throws {RangeError} naming `who` and the first setting out of range.
 */
export function checkSkillGateParams(g: SkillGateParams, who: string): void {
  const bad = (name: keyof SkillGateParams, rule: string) => {
    throw new RangeError(
      `Cannot use ${who} as 'skillGate.${name}' must be ${rule}: current value is ${g[name]}`,
    );
  };
  if (!Number.isInteger(g.minLabels) || g.minLabels < 1) bad("minLabels", "an integer >= 1");
  if (!(g.windowLabels >= 1) || !Number.isFinite(g.windowLabels)) bad("windowLabels", ">= 1");
  if (!Number.isFinite(g.marginNats)) bad("marginNats", "finite");
}
