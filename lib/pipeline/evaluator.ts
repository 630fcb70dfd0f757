/**
 * @module The evaluator's logic: final bars from `market_1s` -> triple-barrier labels, online
 * predictions and EV -> paper trades, per market.
 *
 * Bars are read from the database (the feed's message only wakes this), and each batch's labels,
 * predictions, paper trades and the evaluator's own snapshot commit in one transaction: after a
 * crash the evaluator resumes from its last snapshot and, being deterministic, produces exactly
 * what the lost batch would have. Without a usable snapshot (lost, unreadable) it rebuilds its
 * state from the last `warmupMs` of bars, but bars up to the newest prediction or paper trade of
 * the market were evaluated before: they emit no paper trade again (the executor would send those
 * orders a second time), and the paper position is the one in `paper_trades`.
 */
import type { Client, Sql } from "../db/connect.ts";
import { assertLeaseHeld, leaseFenceOf } from "../db/lease.ts";
import type { Logger } from "../log.ts";
import {
  EvaluatorCore,
  type EvaluatorCoreOptions,
  type PaperHistory,
  stepBars,
} from "../strategy/evaluator_core.ts";
import type { MaturedLabel } from "../strategy/labels.ts";
import { formatPaperTrade } from "../strategy/paper_log.ts";
import type { StrategyParams } from "../strategy/policy.ts";
import type { Prediction } from "../strategy/evaluator_core.ts";
import { loadActorState, saveActorState } from "../store/actor_state.ts";
import { finalBarsAfter } from "../store/market_1s.ts";
import { insertPaperEvent, openPosition } from "../store/paper_trades.ts";

/** Options of {@linkcode Evaluator}. */
export interface EvaluatorOptions {
  sql: Client;
  markets: readonly string[];
  /** `PAPER_POLICY_PROFILE`, stored with every prediction and paper trade. */
  profile: string;
  params: StrategyParams;
  krwAmount: number;
  log: Logger;
  /** Called after paper trades were committed (wakes the executor). */
  onPaperTrades?: () => void;
  /** Bars per transaction. @default {500} */
  batchBars?: number;
  /**
   * A fresh evaluator (no usable snapshot) starts this far before the newest final bar; bars
   * evaluated before (up to the newest prediction or paper trade of the market) only rebuild its
   * state, without paper trades. @default {600000}
   */
  warmupMs?: number;
}

/** What one {@linkcode Evaluator.runOnce} did. */
export interface EvaluateSummary {
  bars: number;
  labels: number;
  paperTrades: number;
}

function stateKey(market: string): string {
  return `evaluator.${market}`;
}

/** Runs the strategy over new final bars. */
export class Evaluator {
  #options: EvaluatorOptions;
  #cores = new Map<string, EvaluatorCore>();
  /** Where a market without a snapshot starts reading. */
  #startAfter = new Map<string, number>();
  /** The skill gate's state last logged, per market. */
  #gateOpen = new Map<string, boolean>();
  /** What the database says was evaluated already, per market (read at start). */
  #history = new Map<string, PaperHistory>();

  constructor(options: EvaluatorOptions) {
    this.#options = options;
  }

  #coreOptions(market: string): EvaluatorCoreOptions {
    return {
      market,
      params: this.#options.params,
      krwAmount: this.#options.krwAmount,
      history: this.#history.get(market),
    };
  }

  /** Restores every market's state (snapshot + open position from `paper_trades`). */
  async start(): Promise<void> {
    const p = this.#options.params;
    this.#options.log.info(
      `Evaluator started (profile=${this.#options.profile} tp=${p.tpPct}% sl=${p.slPct}% horizon=${p.horizonSec}s entry_ev_min=${p.entryEvMin} exit_ev_min=${p.exitEvMin})`,
      { markets: this.#options.markets },
    );
    for (const market of this.#options.markets) {
      const snapshot = await loadActorState<unknown>(this.#options.sql, stateKey(market));
      const position = await openPosition(this.#options.sql, market);
      // Read on every start: a snapshot lost or unreadable (or older than the rows) must not
      // make the bars evaluated before emit their paper trades again.
      const history = await paperHistory(this.#options.sql, market);
      this.#history.set(market, history);
      const { core, notes } = EvaluatorCore.restore(this.#coreOptions(market), snapshot, position);
      for (const note of notes) this.#options.log.info(`Evaluator ${market}: ${note}`);
      if (position) {
        this.#options.log.info(`Evaluator ${market}: open paper position from the database`, {
          entry_price: position.entryPrice,
          qty: position.qty,
        });
      }
      this.#cores.set(market, core);
      if (core.lastTs === null) {
        const [row] = await this.#options.sql<{ ts: Date | null }[]>`
          select max(ts) as ts from market_1s where symbol = ${market} and is_final`;
        const newest = row?.ts?.getTime();
        const startAfter = newest === undefined ? 0 : newest - (this.#options.warmupMs ?? 600_000);
        this.#startAfter.set(market, startAfter);
        if (history.evaluatedThroughTs !== null && history.evaluatedThroughTs > startAfter) {
          this.#options.log.info(
            `Evaluator ${market}: bars up to the newest already evaluated rebuild the state without paper trades`,
            {
              from: new Date(startAfter).toISOString(),
              evaluated_through: new Date(history.evaluatedThroughTs).toISOString(),
            },
          );
        }
      }
    }
  }

  /** Processes every new final bar of every market. */
  async runOnce(): Promise<EvaluateSummary> {
    const total: EvaluateSummary = { bars: 0, labels: 0, paperTrades: 0 };
    for (const market of this.#options.markets) {
      for (;;) {
        const done = await this.#runMarket(market);
        total.bars += done.bars;
        total.labels += done.labels;
        total.paperTrades += done.paperTrades;
        if (done.bars < (this.#options.batchBars ?? 500)) break;
      }
    }
    if (total.paperTrades > 0) this.#options.onPaperTrades?.();
    return total;
  }

  async #runMarket(market: string): Promise<EvaluateSummary> {
    const core = this.#cores.get(market)!;
    const after = core.lastTs ?? this.#startAfter.get(market) ?? 0;
    const bars = await finalBarsAfter(
      this.#options.sql,
      market,
      after,
      this.#options.batchBars ?? 500,
    );
    if (bars.length === 0) return { bars: 0, labels: 0, paperTrades: 0 };
    const before = core.snapshot();
    const beforePosition = core.position;
    const { labels, predictions, events } = stepBars(core, bars);
    // Paper trades become orders. After a standby took the lease, this upbot's actors run on for
    // a moment while they stop, and the new leader's evaluator writes the same paper trades from
    // the same bars: a batch with paper trades commits only under the lease (the row lock taken
    // holds a takeover back until it commits), else nothing of it is written.
    const fence = events.length > 0 ? leaseFenceOf(this.#options.sql) : undefined;
    try {
      await this.#options.sql.begin(async (tx) => {
        if (fence) await assertLeaseHeld(tx, fence);
        await insertLabels(tx, labels, this.#options.params);
        await insertPredictions(tx, predictions, this.#options.profile);
        for (const e of events) await insertPaperEvent(tx, e, this.#options.profile);
        await saveActorState(tx, stateKey(market), core.snapshot());
      });
    } catch (err) {
      // Roll the in-memory state back too, so the batch is redone exactly.
      this.#cores.set(
        market,
        EvaluatorCore.restore(this.#coreOptions(market), before, beforePosition).core,
      );
      throw err;
    }
    for (const e of events) this.#options.log.info(formatPaperTrade(e), { market });
    if (this.#options.params.skillGate) this.#logGate(market, predictions);
    return { bars: bars.length, labels: labels.length, paperTrades: events.length };
  }

  /** One line whenever a market's skill gate opens or closes (and its state at start). */
  #logGate(market: string, predictions: readonly Prediction[]): void {
    for (const p of predictions) {
      if (this.#gateOpen.get(market) === p.skill.open) continue;
      this.#gateOpen.set(market, p.skill.open);
      this.#options.log.info(
        `Evaluator ${market}: skill gate ${p.skill.open ? "open" : "closed"}`,
        {
          scored: p.skill.scored,
          model_log_loss: p.skill.modelLogLoss,
          base_log_loss: p.skill.baseLogLoss,
        },
      );
    }
  }
}

/** The newest bar already evaluated for `market`, and its newest exit, from the tables. */
async function paperHistory(sql: Client, market: string): Promise<PaperHistory> {
  const [row] = await sql<
    { predicted: Date | null; traded: Date | null; exited: Date | null }[]
  >`
    select (select max(ts) from predictions where symbol = ${market}) as predicted,
           (select max(ts) from paper_trades where symbol = ${market}) as traded,
           (select max(ts) from paper_trades
            where symbol = ${market} and action = 'EXIT_LONG') as exited`;
  const predicted = row?.predicted?.getTime() ?? null;
  const traded = row?.traded?.getTime() ?? null;
  return {
    evaluatedThroughTs: predicted === null && traded === null
      ? null
      : Math.max(predicted ?? -Infinity, traded ?? -Infinity),
    lastExitTs: row?.exited?.getTime() ?? null,
  };
}

async function insertLabels(sql: Sql, labels: MaturedLabel[], p: StrategyParams): Promise<void> {
  if (labels.length === 0) return;
  const rows = labels.map((l) => ({
    symbol: l.market,
    ts: new Date(l.ts),
    tp_pct: p.tpPct,
    sl_pct: p.slPct,
    horizon_sec: p.horizonSec,
    label: l.label,
    barrier_hit_ts: new Date(l.barrierHitTs),
    ret: l.ret,
  }));
  await sql`insert into barrier_labels ${sql(rows)} on conflict (symbol, ts) do nothing`;
}

async function insertPredictions(sql: Sql, preds: Prediction[], profile: string): Promise<void> {
  if (preds.length === 0) return;
  const rows = preds.map((p) => ({
    symbol: p.market,
    ts: new Date(p.ts),
    p_up: p.pUp,
    p_down: p.pDown,
    p_flat: p.pFlat,
    ev: p.ev,
    // The skill gate's scores ride along (why an entry was or was not allowed), keyed apart
    // from the feature names.
    features: sql.json({
      ...p.features,
      skill_gate: {
        open: p.skill.open,
        scored: p.skill.scored,
        model_log_loss: p.skill.modelLogLoss,
        base_log_loss: p.skill.baseLogLoss,
      },
    } as never),
    profile,
  }));
  await sql`insert into predictions ${sql(rows)} on conflict (symbol, ts) do nothing`;
}
