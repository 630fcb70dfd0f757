/**
 * @module Replays final bars of one market through the evaluator's own code
 * ({@linkcode EvaluatorCore} stepped by {@linkcode stepBars}, exactly as the evaluator actor does),
 * then layers the fill model and the model-quality scores on the paper-trade stream it produced.
 */
import type { Bar } from "../strategy/bars.ts";
import { EvaluatorCore, stepBars } from "../strategy/evaluator_core.ts";
import {
  FEE_RATE,
  type PaperEnter,
  type PaperEvent,
  type PaperExit,
  type StrategyParams,
} from "../strategy/policy.ts";
import { type FilledTrade, FillModel } from "./fill.ts";
import { type QualityReport, QualityTracker } from "./quality.ts";

/** Options of {@linkcode replayMarket}. */
export interface ReplayOptions {
  market: string;
  params: StrategyParams;
  /** `ORDER_KRW_AMOUNT`. */
  krwAmount: number;
  slippageBps: number;
  /** Extra order latency of the fill model, ms (see `FillOptions.latencyMs`). @default {0} */
  latencyMs?: number;
  /**
   * `EXECUTOR_MAX_SIGNAL_AGE_SEC` of the fill model (stale entries are skipped).
   * @default {DEFAULT_MAX_SIGNAL_AGE_SEC}
   */
  maxSignalAgeSec?: number;
  /** Called after each chunk with the bars replayed so far (progress display). */
  onProgress?: (bars: number, lastTs: number) => void;
}

/**
 * The paper trade priced at the spread: bought half the expected spread above the paper entry,
 * sold half below the paper exit (the estimate EV used at each bar), same quantity, both fees.
 */
export interface SpreadPaper {
  entryPrice: number;
  exitPrice: number;
  fees: number;
  pnl: number;
}

/** A closed round trip: the paper trade as the live evaluator would have logged it, and its fill. */
export interface RoundTrip {
  market: string;
  enter: PaperEnter;
  exit: PaperExit;
  atSpread: SpreadPaper;
  /**
   * Null when the data ended before the exit could fill, or when the entry was skipped as stale
   * (`staleEntry`).
   */
  filled: FilledTrade | null;
  /** Live would have skipped the entry (its fill bar came after `EXECUTOR_MAX_SIGNAL_AGE_SEC`). */
  staleEntry: boolean;
}

/** What the skill gate did over a replay (`lib/strategy/skill_gate.ts`). */
export interface GateSummary {
  /** Bars at which the gate allowed entries. */
  openBars: number;
  /** Bars at which the policy was flat, EV was above the entry threshold and the gate refused. */
  refused: number;
  /** The model's and the base rate's running log loss at the last bar (null before any label). */
  modelLogLoss: number | null;
  baseLogLoss: number | null;
}

/** What replaying one market produced. */
export interface MarketReplay {
  market: string;
  bars: number;
  /** `ts` of the first and last bar replayed (null without bars). */
  firstTs: number | null;
  lastTs: number | null;
  /** Every paper event in order (the stream compared with the live evaluator's). */
  events: PaperEvent[];
  trades: RoundTrip[];
  /** The paper entry still open when the data ended, or null. */
  openAtEnd: PaperEnter | null;
  quality: QualityReport;
  gate: GateSummary;
}

function atSpread(
  enter: PaperEnter,
  exit: PaperExit,
  entrySpreadPct: number,
  exitSpreadPct: number,
): SpreadPaper {
  const entryPrice = enter.price * (1 + entrySpreadPct / 200);
  const exitPrice = exit.price * (1 - exitSpreadPct / 200);
  const fees = (entryPrice + exitPrice) * enter.qty * FEE_RATE;
  return { entryPrice, exitPrice, fees, pnl: (exitPrice - entryPrice) * enter.qty - fees };
}

/**
 * Replays `chunks` (final bars of `options.market`, oldest first, in any chunking) from a fresh
 * evaluator state, as the live evaluator does on a fresh database.
 *
 * @example
 * ```ts ignore
 * const r = await replayMarket([bars], { market: "KRW-BTC", params, krwAmount: 10_000, slippageBps: 0 });
 * ```
 */
export async function replayMarket(
  chunks: AsyncIterable<Bar[]> | Iterable<Bar[]>,
  options: ReplayOptions,
): Promise<MarketReplay> {
  const core = new EvaluatorCore({
    market: options.market,
    params: options.params,
    krwAmount: options.krwAmount,
  });
  const fills = new FillModel({
    krwAmount: options.krwAmount,
    slippageBps: options.slippageBps,
    latencyMs: options.latencyMs,
    maxSignalAgeSec: options.maxSignalAgeSec,
  });
  const quality = new QualityTracker();
  const events: PaperEvent[] = [];
  const trades: RoundTrip[] = [];
  let enter: PaperEnter | null = null;
  let entrySpreadPct = 0;
  let bars = 0;
  let firstTs: number | null = null;
  let lastTs: number | null = null;
  const gate: GateSummary = { openBars: 0, refused: 0, modelLogLoss: null, baseLogLoss: null };
  const one: Bar[] = [undefined as unknown as Bar];
  for await (const chunk of chunks) {
    for (const bar of chunk) {
      if (lastTs !== null && bar.ts <= lastTs) continue;
      fills.onBar(bar);
      one[0] = bar;
      const step = stepBars(core, one);
      bars++;
      firstTs ??= bar.ts;
      lastTs = bar.ts;
      const prediction = step.predictions[0] ?? null;
      quality.onStep(step.labels, prediction);
      if (prediction) {
        const skill = prediction.skill;
        if (skill.open) gate.openBars++;
        else if (enter === null && prediction.ev > options.params.entryEvMin) gate.refused++;
        gate.modelLogLoss = skill.modelLogLoss;
        gate.baseLogLoss = skill.baseLogLoss;
      }
      const spreadPct = prediction?.spreadPct ?? 0;
      for (const e of step.events) {
        events.push(e);
        if (e.action === "ENTER_LONG") {
          enter = e;
          entrySpreadPct = spreadPct;
          fills.onEnter(e);
        } else if (enter) {
          const trip: RoundTrip = {
            market: options.market,
            enter,
            exit: e,
            atSpread: atSpread(enter, e, entrySpreadPct, spreadPct),
            filled: null,
            staleEntry: false,
          };
          trades.push(trip);
          enter = null;
          fills.onExit(e, (f) => {
            if (f === "stale_entry") trip.staleEntry = true;
            else trip.filled = f;
          });
        }
      }
    }
    if (lastTs !== null) options.onProgress?.(bars, lastTs);
  }
  return {
    market: options.market,
    bars,
    firstTs,
    lastTs,
    events,
    trades,
    openAtEnd: enter,
    quality: quality.report(),
    gate,
  };
}
