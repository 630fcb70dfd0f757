/**
 * @module `deno task backtest`: replays history through the evaluator's own code and reports
 * paper and filled results (see docs/backtest.md).
 *
 * ```
 * deno task backtest --market KRW-BTC[,KRW-ETH] --from 2026-12-01 --to 2026-12-02
 *   [--profile test|default] [--set EVAL_TP_PCT=0.4 ...] [--source db|files]
 *   [--slippage-bps 2] [--latency-ms 300] [--out DIR]
 *   [--sweep EVAL_TP_PCT=0.2:0.8:0.2,EVAL_SL_PCT=0.2:0.6:0.2 [--walk-forward N] [--workers N]]
 * ```
 *
 * Prints the report, stores the run and its trades (`backtest_runs`, `backtest_trades`) and
 * writes `run-<id>.json`, `run-<id>.svg` and `run-<id>-reliability.svg` to `--out`
 * (default `DATA_DIR/backtests`). A sweep prints its ranking and writes `sweep-<time>.json` there
 * (sweep points are not stored in the database). Exit codes: 0 done, 1 failed, 2 bad arguments or configuration
 * (one line on stderr).
 */
import { parseBacktestArgs, UsageError } from "../lib/backtest/args.ts";
import { formatReport } from "../lib/backtest/report.ts";
import { appVersion, gitDescribe, runBacktest, writeReportFiles } from "../lib/backtest/run.ts";
import { barsFromDatabase, saveRun } from "../lib/backtest/store.ts";
import { formatSweep, loadBars, runSweep } from "../lib/backtest/sweep.ts";
import { barsFromTradeFiles } from "../lib/backtest/trade_files.ts";
import { bar, print, printError, Progress } from "../lib/backtest/terminal.ts";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { type Client, connect } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { parseEnvFile } from "../lib/env_file.ts";
import { migrate } from "../lib/db/migrate.ts";

/** `.env` (when present) overlaid by the environment, as raw strings (as `loadConfig` reads). */
function rawEnvironment(): Record<string, string> {
  let fromFile: Record<string, string> = {};
  try {
    fromFile = parseEnvFile(Deno.readTextFileSync(".env"));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return { ...fromFile, ...Deno.env.toObject() };
}

async function main(): Promise<number> {
  let config;
  let args;
  try {
    config = loadConfig();
    args = parseBacktestArgs(Deno.args, rawEnvironment());
  } catch (err) {
    if (err instanceof UsageError) {
      printError(`backtest: ${err.message}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      printError(`backtest: ${err.problems[0]!.name} ${err.problems[0]!.problem}`);
      return 2;
    }
    throw err;
  }
  const run = args.run;
  // A backtest only reads market_1s and writes its own tables, so it may run beside a live
  // upbot on PostgreSQL (no process lock); the embedded database allows one process only.
  let sql: Client;
  let close: () => Promise<void>;
  if (config.DATABASE_URL) {
    sql = connect({ kind: "url", url: config.DATABASE_URL }, { applicationName: "upbot-backtest" });
    close = () => sql.end({ timeout: 5 });
  } else {
    let embedded;
    try {
      embedded = await startEmbeddedDatabase({ dataDir: config.DATA_DIR });
    } catch (err) {
      printError(`backtest: ${(err as Error).message}`);
      return 2;
    }
    sql = connect({ kind: "embedded", ...embedded.endpoint });
    close = async () => {
      await sql.end({ timeout: 5 });
      await embedded.close();
    };
  }
  try {
    await migrate(sql);
    const fromMs = Date.parse(run.from);
    const toMs = Date.parse(run.to);
    const dataDir = config.DATA_DIR;
    const source = run.source === "db"
      ? (m: string) => barsFromDatabase(sql, m, fromMs, toMs)
      : (m: string) => barsFromTradeFiles(`${dataDir}/trades`, m, fromMs, toMs);
    const progress = new Progress();
    if (args.sweep) {
      const bars = await loadBars(run, source);
      if ([...bars.values()].every((b) => b.length === 0)) {
        printError(
          `backtest: no final bars of ${
            run.markets.join(",")
          } in ${run.from} .. ${run.to} (source=${run.source})`,
        );
        return 2;
      }
      const sweep = await runSweep({
        run,
        axes: args.sweep,
        bars,
        workers: args.workers ?? navigator.hardwareConcurrency,
        windows: args.windows,
        onProgress: (done, total) => progress.update(`sweep ${bar(done / total)} ${done}/${total}`),
      });
      progress.done();
      const dir = args.outDir ?? `${dataDir}/backtests`;
      await Deno.mkdir(dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
      const path = `${dir.replace(/\/+$/, "")}/sweep-${stamp}.json`;
      await Deno.writeTextFile(path, JSON.stringify(sweep, null, 2) + "\n");
      print(formatSweep(sweep));
      print(`\nsweep: ${path}\n`);
      return 0;
    }
    const report = await runBacktest(run, source, (market, bars, ts) => {
      progress.update(`${market} ${bar((ts - fromMs) / (toMs - fromMs))} ${bars} bars`);
    });
    progress.done();
    if (report.total.bars === 0) {
      printError(
        `backtest: no final bars of ${
          run.markets.join(",")
        } in ${run.from} .. ${run.to} (source=${run.source})`,
      );
      return 2;
    }
    const id = await saveRun(sql, report, { code: await gitDescribe(), app: await appVersion() });
    const files = await writeReportFiles(
      report,
      args.outDir ?? `${dataDir}/backtests`,
      `run-${id}`,
    );
    print(formatReport(report));
    print(`\nrun ${id}: ${files.json} ${files.equitySvg} ${files.reliabilitySvg}\n`);
    return 0;
  } finally {
    await close();
  }
}

Deno.exit(await main());
