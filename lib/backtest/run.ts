/**
 * @module One backtest run: replay each market from its bar source, build the report, and write
 * the report's JSON and charts. The command-line tool and the tests call this.
 */
import denoJson from "../../deno.json" with { type: "json" };
import type { Bar } from "../strategy/bars.ts";
import { equityChartSvg, reliabilityChartSvg } from "./chart.ts";
import { replayMarket } from "./replay.ts";
import { type BacktestReport, buildReport, type RunParameters } from "./report.ts";

/** Where a market's bars come from: final bars in `[from, to)`, oldest first, in chunks. */
export type BarSource = (market: string) => AsyncIterable<Bar[]> | Iterable<Bar[]>;

/**
 * Replays every market of `run` (one after the other: each market's evaluator is independent,
 * as in the live evaluator) and returns the report.
 *
 * @example
 * ```ts ignore
 * const report = await runBacktest(run, (m) => barsFromDatabase(sql, m, from, to));
 * ```
 */
export async function runBacktest(
  run: RunParameters,
  source: BarSource,
  onProgress?: (market: string, bars: number, lastTs: number) => void,
): Promise<BacktestReport> {
  const replays = [];
  for (const market of run.markets) {
    replays.push(
      await replayMarket(source(market), {
        market,
        params: run.params,
        krwAmount: run.krwAmount,
        slippageBps: run.slippageBps,
        latencyMs: run.latencyMs,
        maxSignalAgeSec: run.maxSignalAgeSec,
        onProgress: onProgress && ((bars, ts) => onProgress(market, bars, ts)),
      }),
    );
  }
  return buildReport(run, replays);
}

/** Paths written by {@linkcode writeReportFiles}. */
export interface ReportFiles {
  json: string;
  equitySvg: string;
  reliabilitySvg: string;
}

/** Writes `<dir>/<name>.json`, `<name>.svg` (equity and drawdown) and `<name>-reliability.svg`. */
export async function writeReportFiles(
  report: BacktestReport,
  dir: string,
  name: string,
): Promise<ReportFiles> {
  await Deno.mkdir(dir, { recursive: true });
  const base = `${dir.replace(/\/+$/, "")}/${name}`;
  const files = {
    json: `${base}.json`,
    equitySvg: `${base}.svg`,
    reliabilitySvg: `${base}-reliability.svg`,
  };
  await Deno.writeTextFile(files.json, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(files.equitySvg, equityChartSvg(report));
  await Deno.writeTextFile(files.reliabilitySvg, reliabilityChartSvg(report));
  return files;
}

/** `git describe --always --dirty` of the working directory, or `unknown`. */
export async function gitDescribe(): Promise<string> {
  try {
    const out = await new Deno.Command("git", {
      args: ["describe", "--always", "--dirty"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && text ? text : "unknown";
  } catch {
    return "unknown";
  }
}

/** `version` of the project's deno.json (imported, so a compiled binary holds it), or `unknown`. */
export function appVersion(): Promise<string> {
  const v = (denoJson as { version?: unknown }).version;
  return Promise.resolve(typeof v === "string" && v ? v : "unknown");
}
