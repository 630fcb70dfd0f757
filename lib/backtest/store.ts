/**
 * @module Backtest runs in the database: `backtest_runs` (parameters, code version, report) and
 * `backtest_trades` (one row per round trip), and the final bars a run replays from `market_1s`.
 */
import type { Sql } from "../db/connect.ts";
import type { Bar } from "../strategy/bars.ts";
import { finalBarsAfter } from "../store/market_1s.ts";
import type { BacktestReport } from "./report.ts";

/** Version stamps stored with a run. */
export interface CodeVersion {
  /** `git describe --always --dirty`, or `unknown`. */
  code: string;
  /** `version` of deno.json, or `unknown`. */
  app: string;
}

/**
 * Inserts the run and its trades in one transaction; returns the run id.
 *
 * @example
 * ```ts ignore
 * const id = await saveRun(sql, report, { code: "v1.2-3-gabc", app: "unknown" });
 * ```
 */
export async function saveRun(
  sql: Sql,
  report: BacktestReport,
  version: CodeVersion,
): Promise<number> {
  const run = report.run;
  const insert = async (tx: Sql) => {
    const [row] = await tx<{ id: string }[]>`
      insert into backtest_runs (code_version, app_version, markets, from_ts, to_ts, source,
                                 parameters, report)
      values (${version.code}, ${version.app}, ${run.markets}, ${run.from}, ${run.to},
              ${run.source}, ${tx.json(run as never)}, ${tx.json(report as never)})
      returning id`;
    const id = Number(row!.id);
    const rows = report.trades.map((t, i) => ({
      run_id: id,
      seq: i + 1,
      symbol: t.market,
      entry_ts: t.entryTs,
      exit_ts: t.exitTs,
      exit_reason: t.reason,
      hold_sec: t.holdSec,
      qty: String(t.qty),
      paper_entry: String(t.paperEntry),
      paper_exit: String(t.paperExit),
      paper_fees: String(t.paperFees),
      paper_pnl: String(t.paperPnl),
      spread_entry: String(t.spreadEntry),
      spread_exit: String(t.spreadExit),
      spread_pnl: String(t.spreadPnl),
      fill_entry_ts: t.fillEntryTs,
      fill_exit_ts: t.fillExitTs,
      fill_entry: t.fillEntry === null ? null : String(t.fillEntry),
      fill_exit: t.fillExit === null ? null : String(t.fillExit),
      fill_qty: t.fillQty === null ? null : String(t.fillQty),
      fill_fees: t.fillFees === null ? null : String(t.fillFees),
      fill_pnl: t.fillPnl === null ? null : String(t.fillPnl),
    }));
    for (let i = 0; i < rows.length; i += 1000) {
      await tx`insert into backtest_trades ${tx(rows.slice(i, i + 1000))}`;
    }
    return id;
  };
  if ("begin" in sql) return await sql.begin((tx) => insert(tx)) as number;
  return await insert(sql);
}

/**
 * Final bars of `market` with `fromMs <= ts < toMs`, oldest first, in chunks of `chunk`.
 *
 * @example
 * ```ts ignore
 * for await (const bars of barsFromDatabase(sql, "KRW-BTC", from, to)) console.log(bars.length);
 * ```
 */
export async function* barsFromDatabase(
  sql: Sql,
  market: string,
  fromMs: number,
  toMs: number,
  chunk = 5000,
): AsyncGenerator<Bar[]> {
  let after = fromMs - 1;
  for (;;) {
    const bars = await finalBarsAfter(sql, market, after, chunk);
    const inside = bars.filter((b) => b.ts < toMs);
    if (inside.length > 0) yield inside;
    if (bars.length < chunk || inside.length < bars.length) return;
    after = bars[bars.length - 1]!.ts;
  }
}
