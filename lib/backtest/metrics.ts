/**
 * @module Performance metrics of a list of round trips (per market or in total).
 *
 * Definitions (docs/backtest.md repeats them): a trade's return is its pnl over its entry
 * notional (entry price · qty); Sharpe is mean / sample standard deviation of those per-trade
 * returns, Sortino is mean / downside deviation (root mean square of the negative returns, over
 * all trades), neither annualised; max drawdown is the largest fall of cumulative pnl from its
 * running peak (starting at 0), in KRW; exposure is time in a position over the time replayed.
 */

/** One closed trade, in the terms metrics need. */
export interface TradeOutcome {
  market: string;
  entryTs: number;
  exitTs: number;
  /** Net of fees (quote currency). */
  pnl: number;
  /** Entry price · qty. */
  notional: number;
  fees: number;
}

/** Metrics of one set of trades. */
export interface Metrics {
  trades: number;
  wins: number;
  /** wins / trades (null without trades). */
  winRate: number | null;
  totalPnl: number;
  avgPnl: number | null;
  /** Mean per-trade return, percent. */
  avgReturnPct: number | null;
  maxDrawdown: number;
  sharpe: number | null;
  sortino: number | null;
  /** Time in a position / time replayed (0..1; summed over markets for a total). */
  exposure: number | null;
  fees: number;
  best: number | null;
  worst: number | null;
}

/**
 * Metrics of `trades` (any order; sorted here by exit time, then market) over `replayedMs` of
 * market time (the sum over markets for a total).
 *
 * @example
 * ```ts
 * computeMetrics([], 1000).trades; // 0
 * ```
 */
export function computeMetrics(trades: readonly TradeOutcome[], replayedMs: number): Metrics {
  const sorted = [...trades].sort((a, b) =>
    a.exitTs - b.exitTs || (a.market < b.market ? -1 : a.market > b.market ? 1 : 0)
  );
  const n = sorted.length;
  let total = 0;
  let fees = 0;
  let wins = 0;
  let peak = 0;
  let maxDrawdown = 0;
  let held = 0;
  let best: number | null = null;
  let worst: number | null = null;
  const returns: number[] = [];
  for (const t of sorted) {
    total += t.pnl;
    fees += t.fees;
    if (t.pnl > 0) wins++;
    if (total > peak) peak = total;
    if (peak - total > maxDrawdown) maxDrawdown = peak - total;
    held += t.exitTs - t.entryTs;
    best = best === null || t.pnl > best ? t.pnl : best;
    worst = worst === null || t.pnl < worst ? t.pnl : worst;
    returns.push(t.notional > 0 ? t.pnl / t.notional : 0);
  }
  const mean = n === 0 ? null : returns.reduce((a, b) => a + b, 0) / n;
  let sharpe: number | null = null;
  let sortino: number | null = null;
  if (mean !== null && n >= 2) {
    const variance = returns.reduce((a, r) => a + (r - mean) ** 2, 0) / (n - 1);
    sharpe = variance > 0 ? mean / Math.sqrt(variance) : null;
    const downside = returns.reduce((a, r) => a + Math.min(r, 0) ** 2, 0) / n;
    sortino = downside > 0 ? mean / Math.sqrt(downside) : null;
  }
  return {
    trades: n,
    wins,
    winRate: n === 0 ? null : wins / n,
    totalPnl: total,
    avgPnl: n === 0 ? null : total / n,
    avgReturnPct: mean === null ? null : mean * 100,
    maxDrawdown,
    sharpe,
    sortino,
    exposure: replayedMs > 0 ? held / replayedMs : null,
    fees,
    best,
    worst,
  };
}

/** The cumulative pnl after each trade and its drawdown from the running peak. */
export interface EquityPoint {
  ts: number;
  equity: number;
  drawdown: number;
}

/** Equity curve of `trades` (by exit time), starting at 0. */
export function equityCurve(trades: readonly TradeOutcome[]): EquityPoint[] {
  const sorted = [...trades].sort((a, b) =>
    a.exitTs - b.exitTs || (a.market < b.market ? -1 : a.market > b.market ? 1 : 0)
  );
  let equity = 0;
  let peak = 0;
  return sorted.map((t) => {
    equity += t.pnl;
    if (equity > peak) peak = equity;
    return { ts: t.exitTs, equity, drawdown: peak - equity };
  });
}
