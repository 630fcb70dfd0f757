/**
 * @module `deno task fetch-history --market KRW-BTC[,KRW-ETH] --days 3`: fills
 * `DATA_DIR/trades/` from Upbit's REST trade history (`UPBIT_REST_URL`), resumable, within the
 * quotation rate limit, with a progress bar on a terminal. See docs/backtest.md.
 *
 * Exit codes: 0 done, 1 failed (run again to resume), 2 bad arguments or configuration.
 */
import { fetchHistory, MAX_DAYS } from "../lib/backtest/fetch_history.ts";
import { parseNumberArg, splitArgs, UsageError } from "../lib/backtest/args.ts";
import { bar, print, printError, Progress } from "../lib/backtest/terminal.ts";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { MARKET_CODE_PATTERN } from "../lib/domain.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";

const MARKET = MARKET_CODE_PATTERN;

function parseArgs(argv: readonly string[]): { markets: string[]; days: number } {
  let markets: string[] | null = null;
  let days: number | null = null;
  for (const [name, value] of splitArgs(argv)) {
    if (name === "market") {
      markets = value.split(",").map((m) => m.trim()).filter((m) => m !== "");
      const bad = markets.find((m) => !MARKET.test(m));
      if (bad !== undefined) {
        throw new UsageError(`--market ${JSON.stringify(bad)} is not a market code like KRW-BTC`);
      }
    } else if (name === "days") {
      days = parseNumberArg("--days", value, {
        min: 1,
        max: MAX_DAYS,
        whole: true,
        note: " (Upbit's trade history)",
      });
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  if (!markets || markets.length === 0) throw new UsageError("--market is required");
  if (days === null) throw new UsageError("--days is required (1-7)");
  return { markets, days };
}

async function main(): Promise<number> {
  let config;
  let args;
  try {
    config = loadConfig();
    args = parseArgs(Deno.args);
  } catch (err) {
    if (err instanceof UsageError) {
      printError(`fetch-history: ${err.message}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      printError(`fetch-history: ${err.problems[0]!.name} ${err.problems[0]!.problem}`);
      return 2;
    }
    throw err;
  }
  const rest = new UpbitRest({
    baseUrl: config.UPBIT_REST_URL,
    timeoutMs: config.UPBIT_REST_TIMEOUT_MS,
  });
  const dir = `${config.DATA_DIR.replace(/\/+$/, "")}/trades`;
  const progress = new Progress();
  try {
    for (const market of args.markets) {
      const result = await fetchHistory({
        rest,
        dir,
        market,
        days: args.days,
        onProgress: (p) =>
          progress.update(
            `${market} ${p.date} (${p.dateIndex + 1}/${p.dates}) ${
              bar((p.dateIndex + p.fraction) / p.dates)
            }`,
          ),
      });
      progress.done();
      print(
        `${market}: ${result.written} trades written for ${result.dates[0]} .. ${
          result.dates.at(-1)
        }` +
          (result.skipped.length > 0 ? ` (already complete: ${result.skipped.join(", ")})` : "") +
          "\n",
      );
    }
    return 0;
  } catch (err) {
    progress.done();
    printError(`fetch-history: ${(err as Error).message} (run again to resume)`);
    return 1;
  } finally {
    rest.close();
  }
}

Deno.exit(await main());
