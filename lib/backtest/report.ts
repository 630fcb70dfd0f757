/**
 * @module The backtest report: one plain-JSON object built from the market replays (same input,
 * same bytes: no wall clock, no run id, fixed orders), and its text rendering for the terminal.
 */
import { fixed, formatPrice } from "../strategy/paper_log.ts";
import { FEE_RATE, type StrategyParams } from "../strategy/policy.ts";
import { DEFAULT_MAX_SIGNAL_AGE_SEC, fillDelayMs } from "./fill.ts";
import { computeMetrics, type Metrics, type TradeOutcome } from "./metrics.ts";
import type { MarketReplay, RoundTrip } from "./replay.ts";
import { CLASSES, type QualityReport, type ReliabilityBin } from "./quality.ts";

/** What the run was asked to do (stored with the run, printed in the report). */
export interface RunParameters {
  markets: string[];
  /** ISO 8601, inclusive. */
  from: string;
  /** ISO 8601, exclusive. */
  to: string;
  source: "db" | "files";
  profile: string;
  params: StrategyParams;
  krwAmount: number;
  slippageBps: number;
  /**
   * Extra order latency of the fill model, ms (`--latency-ms`): fills wait this much beyond the
   * feed's lateness (see `lib/backtest/fill.ts`). Absent: 0.
   */
  latencyMs?: number;
  /**
   * `EXECUTOR_MAX_SIGNAL_AGE_SEC`: entries filling later are skipped as stale. Absent: its default
   * (`DEFAULT_MAX_SIGNAL_AGE_SEC`).
   */
  maxSignalAgeSec?: number;
}

/** One market's (or the total's) section. */
export interface ReportSection {
  market: string;
  bars: number;
  /** Market time replayed, ms (first to last bar, inclusive; summed in the total). */
  replayedMs: number;
  /** A paper position was still open when the data ended (not counted). */
  openAtEnd: number;
  /** Round trips whose entry or exit had no fill bar before the data ended (paper only). */
  unfilled: number;
  /**
   * Round trips whose entry live would have skipped as stale (its fill bar came more than
   * `maxSignalAgeSec` after the signal, across a gap in the bars): counted in paper only.
   */
  staleEntries: number;
  /** Paper trades at the bar's close, as the live evaluator records them. */
  paper: Metrics;
  /** The same trades bought and sold at the estimated ask and bid (see `SpreadPaper`). */
  paperAtSpread: Metrics;
  filled: Metrics;
  quality: QualityReport;
  /** Bars at which the skill gate allowed entries (`lib/strategy/skill_gate.ts`). */
  gateOpenBars: number;
  /** Bars at which the policy was flat with EV above the entry threshold and the gate refused. */
  gateRefused: number;
}

/** One round trip as reported and stored. */
export interface TradeRow {
  market: string;
  entryTs: string;
  exitTs: string;
  reason: string;
  holdSec: number;
  qty: number;
  paperEntry: number;
  paperExit: number;
  paperFees: number;
  paperPnl: number;
  spreadEntry: number;
  spreadExit: number;
  spreadPnl: number;
  fillEntryTs: string | null;
  fillExitTs: string | null;
  fillEntry: number | null;
  fillExit: number | null;
  fillQty: number | null;
  fillFees: number | null;
  fillPnl: number | null;
  /** The entry was skipped as stale (no fill): `fill*` are null. */
  staleEntry: boolean;
}

/** The whole report. */
export interface BacktestReport {
  version: 1;
  run: RunParameters;
  feeRatePerSide: number;
  markets: ReportSection[];
  total: ReportSection;
  trades: TradeRow[];
}

function paperOutcome(t: RoundTrip): TradeOutcome {
  return {
    market: t.market,
    entryTs: t.enter.ts,
    exitTs: t.exit.ts,
    pnl: t.exit.pnl,
    notional: t.enter.price * t.enter.qty,
    fees: t.enter.fee + t.exit.fee,
  };
}

function spreadOutcome(t: RoundTrip): TradeOutcome {
  return {
    market: t.market,
    entryTs: t.enter.ts,
    exitTs: t.exit.ts,
    pnl: t.atSpread.pnl,
    notional: t.atSpread.entryPrice * t.enter.qty,
    fees: t.atSpread.fees,
  };
}

function filledOutcome(t: RoundTrip): TradeOutcome | null {
  const f = t.filled;
  if (!f) return null;
  return {
    market: t.market,
    entryTs: f.entry.ts,
    exitTs: f.exit.ts,
    pnl: f.pnl,
    notional: f.entry.price * f.qty,
    fees: f.fees,
  };
}

function replayedMs(r: MarketReplay): number {
  return r.firstTs === null || r.lastTs === null ? 0 : r.lastTs - r.firstTs + 1000;
}

function section(market: string, replays: readonly MarketReplay[], quality: QualityReport) {
  const trips = replays.flatMap((r) => r.trades);
  const ms = replays.reduce((a, r) => a + replayedMs(r), 0);
  const filled = trips.map(filledOutcome).filter((t): t is TradeOutcome => t !== null);
  const stale = trips.filter((t) => t.staleEntry).length;
  return {
    market,
    bars: replays.reduce((a, r) => a + r.bars, 0),
    replayedMs: ms,
    openAtEnd: replays.filter((r) => r.openAtEnd !== null).length,
    unfilled: trips.length - filled.length - stale,
    staleEntries: stale,
    paper: computeMetrics(trips.map(paperOutcome), ms),
    paperAtSpread: computeMetrics(trips.map(spreadOutcome), ms),
    filled: computeMetrics(filled, ms),
    quality,
    gateOpenBars: replays.reduce((a, r) => a + r.gate.openBars, 0),
    gateRefused: replays.reduce((a, r) => a + r.gate.refused, 0),
  };
}

/** Scores of several markets pooled (weighted by predictions scored). */
export function combineQuality(parts: readonly QualityReport[]): QualityReport {
  const scored = parts.reduce((a, q) => a + q.scored, 0);
  const mean = (pick: (q: QualityReport) => number | null) =>
    scored === 0 ? null : parts.reduce((a, q) => a + (pick(q) ?? 0) * q.scored, 0) / scored;
  const bins = (c: (typeof CLASSES)[number]): ReliabilityBin[] =>
    parts[0]?.reliability[c].map((b, i) => {
      const n = parts.reduce((a, q) => a + q.reliability[c][i]!.n, 0);
      const sum = (pick: (x: ReliabilityBin) => number | null) =>
        parts.reduce((a, q) => {
          const x = q.reliability[c][i]!;
          return a + (pick(x) ?? 0) * x.n;
        }, 0);
      return {
        from: b.from,
        n,
        predicted: n === 0 ? null : sum((x) => x.predicted) / n,
        observed: n === 0 ? null : sum((x) => x.observed) / n,
      };
    }) ?? [];
  return {
    scored,
    model: { logLoss: mean((q) => q.model.logLoss), brier: mean((q) => q.model.brier) },
    baseRate: { logLoss: mean((q) => q.baseRate.logLoss), brier: mean((q) => q.baseRate.brier) },
    labelShare: scored === 0 ? null : {
      up: mean((q) => q.labelShare?.up ?? 0)!,
      down: mean((q) => q.labelShare?.down ?? 0)!,
      flat: mean((q) => q.labelShare?.flat ?? 0)!,
    },
    reliability: { up: bins("up"), down: bins("down"), flat: bins("flat") },
  };
}

function iso(ts: number): string {
  return new Date(ts).toISOString();
}

function tradeRow(t: RoundTrip): TradeRow {
  const f = t.filled;
  return {
    market: t.market,
    entryTs: iso(t.enter.ts),
    exitTs: iso(t.exit.ts),
    reason: t.exit.reason,
    holdSec: t.exit.holdSec,
    qty: t.enter.qty,
    paperEntry: t.enter.price,
    paperExit: t.exit.price,
    paperFees: t.enter.fee + t.exit.fee,
    paperPnl: t.exit.pnl,
    spreadEntry: t.atSpread.entryPrice,
    spreadExit: t.atSpread.exitPrice,
    spreadPnl: t.atSpread.pnl,
    fillEntryTs: f ? iso(f.entry.ts) : null,
    fillExitTs: f ? iso(f.exit.ts) : null,
    fillEntry: f?.entry.price ?? null,
    fillExit: f?.exit.price ?? null,
    fillQty: f?.qty ?? null,
    fillFees: f?.fees ?? null,
    fillPnl: f?.pnl ?? null,
    staleEntry: t.staleEntry,
  };
}

/**
 * Builds the report of `replays` (one per market, any order; sections follow `run.markets`).
 *
 * @example
 * ```ts ignore
 * const report = buildReport(run, replays);
 * ```
 */
export function buildReport(run: RunParameters, replays: readonly MarketReplay[]): BacktestReport {
  const ordered = run.markets.map((m) => replays.find((r) => r.market === m)).filter((
    r,
  ): r is MarketReplay => r !== undefined);
  const markets = ordered.map((r) => section(r.market, [r], r.quality));
  const total = section("TOTAL", ordered, combineQuality(ordered.map((r) => r.quality)));
  const trades = ordered.flatMap((r) => r.trades).sort((a, b) =>
    a.exit.ts - b.exit.ts || (a.market < b.market ? -1 : a.market > b.market ? 1 : 0)
  ).map(tradeRow);
  return { version: 1, run, feeRatePerSide: FEE_RATE, markets, total, trades };
}

function num(x: number | null, digits: number): string {
  return x === null ? "-" : fixed(x, digits);
}

function pct(x: number | null, digits = 1): string {
  return x === null ? "-" : `${fixed(x * 100, digits)}%`;
}

const COLUMNS = [
  "market",
  "",
  "trades",
  "win",
  "total",
  "avg",
  "maxDD",
  "sharpe",
  "sortino",
  "expo",
  "fees",
  "best",
  "worst",
] as const;

function metricCells(market: string, kind: string, m: Metrics): string[] {
  return [
    market,
    kind,
    String(m.trades),
    pct(m.winRate),
    num(m.totalPnl, 2),
    num(m.avgPnl, 2),
    num(m.maxDrawdown, 2),
    num(m.sharpe, 3),
    num(m.sortino, 3),
    pct(m.exposure),
    num(m.fees, 2),
    num(m.best, 2),
    num(m.worst, 2),
  ];
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd()
  ).join("\n");
}

/** The report as text for a terminal (deterministic, like the JSON). */
export function formatReport(report: BacktestReport): string {
  const r = report.run;
  const p = r.params;
  const lines = [
    `Backtest ${r.markets.join(",")} ${r.from} .. ${r.to} (source=${r.source})`,
    `profile=${r.profile} tp=${p.tpPct}% sl=${p.slPct}% horizon=${p.horizonSec}s ` +
    `entry_ev_min=${p.entryEvMin} exit_ev_min=${p.exitEvMin} cooldown=${p.cooldownSec}s ` +
    (p.skillGate
      ? `skill_gate=${p.skillGate.minLabels}/${p.skillGate.windowLabels}/${p.skillGate.marginNats} `
      : "skill_gate=off ") +
    `krw=${r.krwAmount} fee=${fixed(report.feeRatePerSide * 100, 2)}%/side ` +
    `slippage=${r.slippageBps}bps latency=${r.latencyMs ?? 0}ms ` +
    `max_signal_age=${r.maxSignalAgeSec ?? DEFAULT_MAX_SIGNAL_AGE_SEC}s`,
    "paper: at the bar's close (as the live evaluator); @spread: bought at the estimated ask, " +
    `sold at the estimated bid; filled: at the open of the first bar ` +
    `${fillDelayMs(r.latencyMs ?? 0) / 1000}s or more after the signal ` +
    "bar's start (the earliest live could trade) with slippage, stale entries skipped",
    "",
  ];
  const rows: string[][] = [[...COLUMNS]];
  for (const s of [...report.markets, report.total]) {
    rows.push(metricCells(s.market, "paper", s.paper));
    rows.push(metricCells("", "@spread", s.paperAtSpread));
    rows.push(metricCells("", "filled", s.filled));
  }
  lines.push(table(rows), "");
  const qrows: string[][] = [[
    "market",
    "bars",
    "scored",
    "logloss",
    "base",
    "brier",
    "base",
    "open@end",
    "unfilled",
    "stale",
    "gate open",
    "refused",
  ]];
  for (const s of [...report.markets, report.total]) {
    const q = s.quality;
    qrows.push([
      s.market,
      String(s.bars),
      String(q.scored),
      num(q.model.logLoss, 4),
      num(q.baseRate.logLoss, 4),
      num(q.model.brier, 4),
      num(q.baseRate.brier, 4),
      String(s.openAtEnd),
      String(s.unfilled),
      String(s.staleEntries),
      s.bars === 0 ? "-" : `${fixed((100 * s.gateOpenBars) / s.bars, 1)}%`,
      String(s.gateRefused),
    ]);
  }
  lines.push(
    "Model quality (p_up/p_down/p_flat vs the running label frequencies; the skill gate " +
      "(min labels/window/margin nats) allows entries only while the model beats them):",
  );
  lines.push(table(qrows));
  const best = report.trades.length === 0
    ? null
    : report.trades.reduce((a, t) => (t.paperPnl > a.paperPnl ? t : a));
  if (best) {
    lines.push(
      "",
      `best paper trade: ${best.market} ${best.entryTs} ${formatPrice(best.paperEntry)} -> ` +
        `${formatPrice(best.paperExit)} (${best.reason}) pnl=${fixed(best.paperPnl, 2)}`,
    );
  }
  return lines.join("\n") + "\n";
}
