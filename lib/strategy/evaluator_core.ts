/**
 * @module The evaluator of one market, without I/O: labels, features, model, EV, paper position.
 *
 * Each final bar, in ts order: (1) the labels that matured train the model with the features that
 * were stored when their bar was predicted; (2) features at this bar and a prediction from the
 * updated model; (3) the paper policy steps with this bar and its EV, entries allowed only while
 * the skill gate is open (`skill_gate.ts`: the model has beaten the base rate on the labels that
 * matured; the same labels score it in step 1), and `EV_BAD` exits only while the gate is open
 * and the model has learned from a label (SL/TP/TIMEOUT always apply). Everything is deterministic,
 * so replaying the same bars from the same snapshot gives the same labels, predictions and events.
 *
 * Restart: {@linkcode EvaluatorCore.snapshot} is plain JSON for the actor to persist;
 * {@linkcode EvaluatorCore.restore} validates it and takes the open paper position from the
 * database, which wins over the snapshot's (paper trades are stored as they happen, snapshots
 * less often).
 */
import { z } from "zod";
import type { Bar } from "./bars.ts";
import { FEATURE_NAMES, FeatureExtractor, type Features, featureVector } from "./features.ts";
import { type MaturedLabel, TripleBarrierLabeler } from "./labels.ts";
import { type ModelOptions, OnlineBarrierModel } from "./model.ts";
import {
  cooldownEndTs,
  expectedValuePct,
  type PaperEvent,
  PaperPolicy,
  type PaperPosition,
  type StrategyParams,
} from "./policy.ts";
import {
  SkillGate,
  SkillGateParamsSchema,
  SkillGateStateSchema,
  type SkillScores,
} from "./skill_gate.ts";
import { SpreadEstimator } from "./spread.ts";

/** Options of {@linkcode EvaluatorCore}. */
export interface EvaluatorCoreOptions {
  market: string;
  /** Resolved profile (see `resolveParams`). */
  params: StrategyParams;
  /** Quote amount of one paper entry (`ORDER_KRW_AMOUNT`). */
  krwAmount: number;
  model?: ModelOptions;
  /** What the database says was already evaluated for this market (none: a first run). */
  history?: PaperHistory;
}

/**
 * What was already evaluated for a market, from the database. A restart without a usable snapshot
 * replays bars that were evaluated before (to rebuild features, labels and the model): their paper
 * trades are already written, and writing them again would send the same orders twice.
 */
export interface PaperHistory {
  /**
   * `ts` of the newest bar already evaluated (the newest prediction or paper trade), or null. On
   * bars up to it the paper policy does not step: no paper trade is emitted and the position stays
   * the one taken from `paper_trades`.
   */
  evaluatedThroughTs: number | null;
  /** `ts` of the newest `EXIT_LONG`, or null: its cooldown holds when the snapshot is lost. */
  lastExitTs: number | null;
}

/** The prediction made at a bar's close (a row of the predictions table). */
export interface Prediction {
  market: string;
  ts: number;
  pUp: number;
  pDown: number;
  pFlat: number;
  /** EV in percent (after the fee and the expected spread cost). */
  ev: number;
  /** The expected spread cost of a round trip subtracted in `ev`, percent. */
  spreadPct: number;
  features: Features;
  /** Labels the model had learned from when it made this prediction. */
  trainedCount: number;
  /** The skill gate after this bar's labels were scored: whether an entry was allowed, and why. */
  skill: SkillScores;
}

/** What one bar produced. */
export interface EvaluatorStep {
  /** Labels that matured at this bar (store them). */
  labels: MaturedLabel[];
  /** Null only when the bar was ignored (not after the previous bar). */
  prediction: Prediction | null;
  /** At most one paper trade event. */
  paperEvents: PaperEvent[];
}

const finite = z.number().refine(Number.isFinite, "must be finite");

const BarSchema = z.object({
  market: z.string(),
  ts: finite,
  open: finite,
  high: finite,
  low: finite,
  close: finite,
  volume: finite,
  quoteVolume: finite,
  tradeCount: finite,
  buyVolume: finite,
  sellVolume: finite,
});

const PositionSchema = z.object({
  market: z.string(),
  entryTs: finite,
  entryPrice: finite,
  qty: finite,
  entryFee: finite,
});

/** zod schema of a persisted {@linkcode EvaluatorSnapshot}. */
export const EvaluatorSnapshotSchema = z.object({
  version: z.literal(1),
  market: z.string(),
  params: z.object({
    tpPct: finite,
    slPct: finite,
    horizonSec: finite,
    entryEvMin: finite,
    exitEvMin: finite,
    cooldownSec: finite,
    /** Absent in snapshots written before the skill gate existed. */
    skillGate: SkillGateParamsSchema.nullable().optional(),
  }),
  lastTs: finite.nullable(),
  labeler: z.object({
    market: z.string(),
    lastTs: finite.nullable(),
    pending: z.array(z.object({ ts: finite, close: finite, lastClose: finite })),
  }),
  features: z.object({ bars: z.array(BarSchema), carryClose: finite.nullable() }),
  /** Features stored with each prediction whose label has not matured: [ts, vector]. */
  pendingFeatures: z.array(z.tuple([finite, z.array(finite)])),
  model: z.unknown(),
  policy: z.object({ position: PositionSchema.nullable(), noEntryBeforeTs: finite.nullable() }),
  /** Absent in snapshots written before the spread estimate existed. */
  spread: z.object({ emaPct: finite.nullable() }).optional(),
  /** Absent in snapshots written before the skill gate existed (the gate then starts afresh). */
  skillGate: SkillGateStateSchema.optional(),
});

/** The persisted state of an {@linkcode EvaluatorCore} (plain JSON). */
export type EvaluatorSnapshot = z.infer<typeof EvaluatorSnapshotSchema>;

/** Result of {@linkcode EvaluatorCore.restore}. */
export interface RestoreResult {
  core: EvaluatorCore;
  /** What was not restored and why, for one log line each (empty when all was restored). */
  notes: string[];
}

/**
 * Composes features, labels, model and paper policy for one market.
 *
 * @example
 * ```ts
 * import { resolveParams } from "./policy.ts";
 * const core = new EvaluatorCore({
 *   market: "KRW-BTC",
 *   params: resolveParams("test"),
 *   krwAmount: 10_000,
 * });
 * const step = core.onBar({ market: "KRW-BTC", ts: 0, open: 100, high: 100, low: 100,
 *   close: 100, volume: 1, quoteVolume: 100, tradeCount: 1, buyVolume: 1, sellVolume: 0 });
 * step.prediction?.ev; // −0.1 with the untrained model and the test profile
 * ```
 */
export class EvaluatorCore {
  readonly market: string;
  readonly params: StrategyParams;
  readonly krwAmount: number;
  #labeler: TripleBarrierLabeler;
  #features: FeatureExtractor;
  #model: OnlineBarrierModel;
  #policy: PaperPolicy;
  #spread = new SpreadEstimator();
  #gate: SkillGate;
  #pendingFeatures = new Map<number, number[]>();
  #lastTs: number | null = null;
  /** Bars up to this ts were evaluated before (see {@linkcode PaperHistory}). */
  #evaluatedThroughTs: number | null;

  constructor(options: EvaluatorCoreOptions) {
    this.market = options.market;
    this.params = { ...options.params };
    this.krwAmount = options.krwAmount;
    this.#evaluatedThroughTs = options.history?.evaluatedThroughTs ?? null;
    this.#labeler = new TripleBarrierLabeler(this.market, this.params);
    this.#features = new FeatureExtractor();
    this.#model = new OnlineBarrierModel(FEATURE_NAMES, options.model);
    this.#policy = new PaperPolicy(this.market, this.params, { krwAmount: this.krwAmount });
    this.#gate = new SkillGate(this.params.skillGate);
  }

  /** The open paper position, or null. */
  get position(): PaperPosition | null {
    return this.#policy.position;
  }

  /** `ts` of the last bar processed, or null. */
  get lastTs(): number | null {
    return this.#lastTs;
  }

  /**
   * Processes the next final bar of this market. A bar not after the previous one is ignored
   * (`prediction: null`), so replaying overlapping bars is harmless.
   *
   * @throws {RangeError} when the bar belongs to another market.
   */
  onBar(bar: Bar): EvaluatorStep {
    if (bar.market !== this.market) {
      throw new RangeError(`EvaluatorCore for ${this.market} got a bar of ${bar.market}`);
    }
    if (this.#lastTs !== null && bar.ts <= this.#lastTs) {
      return { labels: [], prediction: null, paperEvents: [] };
    }
    this.#lastTs = bar.ts;
    const labels = this.#labeler.onBar(bar);
    for (const label of labels) {
      const x = this.#pendingFeatures.get(label.ts);
      this.#pendingFeatures.delete(label.ts);
      if (x) this.#model.train(x, label.label);
      this.#gate.onLabel(label.ts, label.label);
    }
    this.#spread.onBar(bar);
    const spreadPct = this.#spread.costPct;
    const features = this.#features.onBar(bar);
    const x = featureVector(features);
    const trainedCount = this.#model.trainedCount;
    const p = this.#model.predict(x);
    const ev = expectedValuePct(p, this.params, spreadPct);
    this.#pendingFeatures.set(bar.ts, x);
    this.#gate.onPrediction(bar.ts, p);
    const skill = this.#gate.scores();
    const prediction: Prediction = {
      market: this.market,
      ts: bar.ts,
      pUp: p.pUp,
      pDown: p.pDown,
      pFlat: p.pFlat,
      ev,
      spreadPct,
      features,
      trainedCount,
      skill,
    };
    // EV_BAD only on an EV worth acting on: after a model reset (changed barriers, a lost or
    // unreadable snapshot) the untrained EV is below the default exit threshold whatever the
    // price does, and would close every open position at once. SL/TP/TIMEOUT still apply.
    const evExitAllowed = skill.open && trainedCount > 0;
    // A bar evaluated before (a replay after a lost snapshot) only rebuilds state: its paper
    // trades are in the database already, and the position is the one taken from there.
    const replayed = this.#evaluatedThroughTs !== null && bar.ts <= this.#evaluatedThroughTs;
    return {
      labels,
      prediction,
      paperEvents: replayed ? [] : this.#policy.onBar(bar, ev, skill.open, evExitAllowed),
    };
  }

  /** Everything needed to resume, as plain JSON. */
  snapshot(): EvaluatorSnapshot {
    return {
      version: 1,
      market: this.market,
      params: { ...this.params },
      lastTs: this.#lastTs,
      labeler: this.#labeler.snapshot(),
      features: this.#features.snapshot(),
      pendingFeatures: [...this.#pendingFeatures].map(([ts, x]) => [ts, [...x]]),
      model: this.#model.toJSON(),
      policy: this.#policy.snapshot(),
      spread: this.#spread.snapshot(),
      skillGate: this.#gate.snapshot(),
    };
  }

  /**
   * Rebuilds an evaluator after a restart.
   *
   * - `snapshot` (unknown, validated): null, malformed or of another market starts fresh.
   * - When the barriers or horizon changed since the snapshot (the operator changed a profile or
   *   an `EVAL_*` variable), the labels in flight, the model and the skill gate's scores are
   *   dropped, since they mean "probability of these barriers"; the bar history is kept. Threshold
   *   and gate setting changes keep everything (the scores do not depend on them).
   * - `position` is the open paper position from the database (null: flat). It replaces the
   *   snapshot's position.
   * - `options.history`: bars up to its `evaluatedThroughTs` do not step the paper policy (see
   *   {@linkcode PaperHistory}); without a usable snapshot the cooldown restarts from its
   *   `lastExitTs`.
   *
   * @throws {RangeError} when `position` belongs to another market.
   */
  static restore(
    options: EvaluatorCoreOptions,
    snapshot: unknown,
    position: PaperPosition | null,
  ): RestoreResult {
    if (position && position.market !== options.market) {
      throw new RangeError(
        `EvaluatorCore for ${options.market} cannot take a position of ${position.market}`,
      );
    }
    const core = new EvaluatorCore(options);
    const notes: string[] = [];
    let noEntryBeforeTs: number | null = null;
    let restored = false;
    const parsed = snapshot === null || snapshot === undefined
      ? null
      : EvaluatorSnapshotSchema.safeParse(snapshot);
    if (parsed === null) {
      notes.push("no snapshot: starting fresh");
    } else if (!parsed.success) {
      notes.push(`snapshot unreadable, starting fresh: ${parsed.error.issues[0]?.message ?? ""}`);
    } else if (parsed.data.market !== options.market) {
      notes.push(`snapshot is of ${parsed.data.market}: starting fresh`);
    } else {
      const s = parsed.data;
      restored = true;
      core.#lastTs = s.lastTs;
      core.#features = new FeatureExtractor(s.features);
      if (s.spread) core.#spread = new SpreadEstimator(s.spread);
      noEntryBeforeTs = s.policy.noEntryBeforeTs;
      const sameBarriers = s.params.tpPct === core.params.tpPct &&
        s.params.slPct === core.params.slPct && s.params.horizonSec === core.params.horizonSec;
      if (!sameBarriers) {
        notes.push(
          "barriers or horizon changed since the snapshot: labels in flight and model reset",
        );
      } else {
        try {
          core.#model = OnlineBarrierModel.fromJSON(s.model, FEATURE_NAMES);
          core.#labeler = new TripleBarrierLabeler(core.market, core.params, s.labeler);
          core.#pendingFeatures = new Map(s.pendingFeatures.map(([ts, x]) => [ts, [...x]]));
          if (s.skillGate) core.#gate = new SkillGate(core.params.skillGate, s.skillGate);
        } catch (err) {
          notes.push(
            `model unreadable, reset: ${err instanceof Error ? err.message : String(err)}`,
          );
          core.#model = new OnlineBarrierModel(FEATURE_NAMES, options.model);
          core.#labeler = new TripleBarrierLabeler(core.market, core.params);
          core.#pendingFeatures = new Map();
          core.#gate = new SkillGate(core.params.skillGate);
        }
      }
      const had = s.policy.position;
      if (!samePosition(had, position)) {
        notes.push(
          `paper position from the database (${
            position ? "LONG" : "FLAT"
          }) replaces the snapshot's (${had ? "LONG" : "FLAT"})`,
        );
      }
    }
    const lastExitTs = options.history?.lastExitTs ?? null;
    if (!restored && lastExitTs !== null) {
      // No usable snapshot: the cooldown after the last exit in the database still holds.
      noEntryBeforeTs = cooldownEndTs(lastExitTs, core.params);
    }
    core.#policy = new PaperPolicy(core.market, core.params, { krwAmount: core.krwAmount }, {
      position: position ? { ...position } : null,
      noEntryBeforeTs,
    });
    return { core, notes };
  }
}

/** What {@linkcode stepBars} produced over a run of bars. */
export interface StepBatch {
  /** Labels that matured, in bar order. */
  labels: MaturedLabel[];
  /** One per bar processed (ignored bars have none). */
  predictions: Prediction[];
  /** Paper trade events, in bar order. */
  events: PaperEvent[];
}

/**
 * Feeds `bars` (final, oldest first) to `core` and collects what they produced. This is the one
 * loop both the evaluator actor and the backtest run, so a replay of the same bars from the same
 * state yields the same labels, predictions and paper trades.
 *
 * @example
 * ```ts
 * import { resolveParams } from "./policy.ts";
 * const core = new EvaluatorCore({ market: "KRW-BTC", params: resolveParams("test"), krwAmount: 10_000 });
 * stepBars(core, []).events.length; // 0
 * ```
 */
export function stepBars(core: EvaluatorCore, bars: Iterable<Bar>): StepBatch {
  const out: StepBatch = { labels: [], predictions: [], events: [] };
  for (const bar of bars) {
    const step = core.onBar(bar);
    for (const l of step.labels) out.labels.push(l);
    if (step.prediction) out.predictions.push(step.prediction);
    for (const e of step.paperEvents) out.events.push(e);
  }
  return out;
}

function samePosition(a: PaperPosition | null, b: PaperPosition | null): boolean {
  if (a === null || b === null) return a === b;
  return a.entryTs === b.entryTs && a.entryPrice === b.entryPrice && a.qty === b.qty;
}
