/**
 * @module Parameter sweep: a grid of `EVAL_*` values, each point a full backtest replay (the
 * evaluator's own code, the model learning online from the first bar), run across worker
 * threads and ranked by filled pnl. With walk-forward, the time range is cut into equal windows;
 * the point with the best filled pnl on one window is scored on the next (out of sample), while
 * the model keeps learning through all of them as it would live.
 */
import type { Bar } from "../strategy/bars.ts";
import { type ParamOverrides, type ProfileName, resolveParams } from "../strategy/policy.ts";
import { fixed } from "../strategy/paper_log.ts";
import { UsageError } from "./usage_error.ts";
import { type BarColumns, fromColumns, toColumns } from "./bar_columns.ts";
import type { Metrics } from "./metrics.ts";
import type { RunParameters } from "./report.ts";
import { runBacktest } from "./run.ts";

/** The variables a sweep may vary, and the parameter each sets. */
export const SWEEPABLE = {
  EVAL_TP_PCT: "tpPct",
  EVAL_SL_PCT: "slPct",
  EVAL_HORIZON_SEC: "horizonSec",
  EVAL_ENTRY_EV_MIN: "entryEvMin",
  EVAL_EXIT_EV_MIN: "exitEvMin",
} as const satisfies Record<string, keyof ParamOverrides>;

/** Points a sweep may have at most. */
export const MAX_POINTS = 1000;

/** One swept variable and its values. */
export interface SweepAxis {
  name: keyof typeof SWEEPABLE;
  values: number[];
}

/**
 * Parses `EVAL_TP_PCT=0.2:0.8:0.2,EVAL_SL_PCT=0.1:0.3:0.1` (from:to:step, `to` included; a single
 * value is allowed) and checks every point against the profile's rules.
 *
 * @throws {UsageError} for a bad spec, an empty or too large grid, or a point out of range.
 */
export function parseSweep(spec: string, profile: string, base: ParamOverrides): SweepAxis[] {
  const axes: SweepAxis[] = [];
  for (const part of spec.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const m = /^([A-Z_]+)=(-?[\d.]+)(?::(-?[\d.]+):([\d.]+))?$/.exec(part);
    const name = m?.[1] as keyof typeof SWEEPABLE | undefined;
    if (!m || !name || !(name in SWEEPABLE)) {
      throw new UsageError(
        `--sweep takes NAME=FROM:TO:STEP[,...] with NAME one of ${
          Object.keys(SWEEPABLE).join(", ")
        }: got ${JSON.stringify(part)}`,
      );
    }
    if (axes.some((a) => a.name === name)) throw new UsageError(`--sweep lists ${name} twice`);
    const from = Number(m[2]);
    const to = m[3] === undefined ? from : Number(m[3]);
    const step = m[4] === undefined ? 1 : Number(m[4]);
    if (![from, to, step].every(Number.isFinite) || !(step > 0) || to < from) {
      throw new UsageError(
        `--sweep ${name} needs FROM <= TO and STEP > 0: got ${JSON.stringify(part)}`,
      );
    }
    const values: number[] = [];
    for (let i = 0; from + i * step <= to + step * 1e-9; i++) {
      values.push(Number((from + i * step).toFixed(10)));
      if (values.length > MAX_POINTS) break;
    }
    axes.push({ name, values });
  }
  if (axes.length === 0) throw new UsageError("--sweep needs at least one NAME=FROM:TO:STEP");
  const points = axes.reduce((n, a) => n * a.values.length, 1);
  if (points > MAX_POINTS) {
    throw new UsageError(`--sweep grid has ${points} points: at most ${MAX_POINTS}`);
  }
  for (const settings of grid(axes)) {
    try {
      resolveParams(profile as ProfileName, overridesOf(base, settings));
    } catch (err) {
      throw new UsageError(`--sweep point ${JSON.stringify(settings)}: ${(err as Error).message}`);
    }
  }
  return axes;
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function grid(axes: readonly SweepAxis[]): Record<string, number>[] {
  let out: Record<string, number>[] = [{}];
  for (const axis of axes) {
    out = out.flatMap((p) => axis.values.map((v) => ({ ...p, [axis.name]: v })));
  }
  return out;
}

function overridesOf(base: ParamOverrides, settings: Record<string, number>): ParamOverrides {
  const o: ParamOverrides = { ...base };
  for (const [name, value] of Object.entries(settings)) {
    o[SWEEPABLE[name as keyof typeof SWEEPABLE]] = value;
  }
  return o;
}

/** Results of one window of one point. */
export interface WindowScore {
  from: string;
  to: string;
  /** Round trips entered in the window. */
  trades: number;
  paperPnl: number;
  /** Filled pnl of those trades (unfilled ones count 0). */
  filledPnl: number;
}

/** One grid point's result. */
export interface SweepPoint {
  index: number;
  settings: Record<string, number>;
  paper: Metrics;
  filled: Metrics;
  windows: WindowScore[];
}

/** One walk-forward step: chosen on `chosenOn`, scored on the next window. */
export interface WalkForwardStep {
  chosenOn: WindowScore;
  settings: Record<string, number>;
  outOfSample: WindowScore;
}

/** The whole sweep. */
export interface SweepReport {
  version: 1;
  run: RunParameters;
  axes: SweepAxis[];
  /** Windows of the walk-forward (1: none). */
  windows: number;
  /** Every point, best first. */
  ranked: SweepPoint[];
  walkForward: WalkForwardStep[];
}

/** The replay of one grid point (what a worker does). */
export async function evaluatePoint(
  run: RunParameters,
  index: number,
  settings: Record<string, number>,
  bars: ReadonlyMap<string, Bar[]>,
  windows: number,
): Promise<SweepPoint> {
  const params = resolveParams(run.profile as ProfileName, overridesOf(run.params, settings));
  const report = await runBacktest({ ...run, params }, (m) => toChunks(bars.get(m) ?? []));
  const from = Date.parse(run.from);
  const size = (Date.parse(run.to) - from) / windows;
  const scores: WindowScore[] = Array.from({ length: windows }, (_, i) => ({
    from: new Date(from + Math.round(i * size)).toISOString(),
    to: new Date(from + Math.round((i + 1) * size)).toISOString(),
    trades: 0,
    paperPnl: 0,
    filledPnl: 0,
  }));
  for (const t of report.trades) {
    const i = Math.min(windows - 1, Math.floor((Date.parse(t.entryTs) - from) / size));
    const w = scores[Math.max(0, i)]!;
    w.trades++;
    w.paperPnl += t.paperPnl;
    w.filledPnl += t.fillPnl ?? 0;
  }
  return {
    index,
    settings,
    paper: report.total.paper,
    filled: report.total.filled,
    windows: scores,
  };
}

async function* toChunks(bars: Bar[]): AsyncGenerator<Bar[]> {
  yield bars;
}

function better(a: SweepPoint, b: SweepPoint, score: (p: SweepPoint) => number): number {
  return score(b) - score(a) || b.paper.totalPnl - a.paper.totalPnl || a.index - b.index;
}

/** Ranks points and runs the walk-forward selection. */
export function buildSweepReport(
  run: RunParameters,
  axes: SweepAxis[],
  windows: number,
  points: SweepPoint[],
): SweepReport {
  const ranked = [...points].sort((a, b) => better(a, b, (p) => p.filled.totalPnl));
  const walkForward: WalkForwardStep[] = [];
  for (let i = 1; i < windows; i++) {
    const best = [...points].sort((a, b) => better(a, b, (p) => p.windows[i - 1]!.filledPnl))[0]!;
    walkForward.push({
      chosenOn: best.windows[i - 1]!,
      settings: best.settings,
      outOfSample: best.windows[i]!,
    });
  }
  return { version: 1, run, axes, windows, ranked, walkForward };
}

function settingsText(s: Record<string, number>): string {
  return Object.entries(s).map(([k, v]) => `${k}=${v}`).join(" ");
}

/** The sweep as text (deterministic). */
export function formatSweep(r: SweepReport, top = 20): string {
  const lines = [
    `Sweep ${r.run.markets.join(",")} ${r.run.from} .. ${r.run.to} (profile=${r.run.profile}, ` +
    `${r.ranked.length} points, slippage=${r.run.slippageBps}bps), ranked by filled pnl:`,
  ];
  const rows = [["rank", "settings", "trades", "win", "paper", "filled", "sharpe", "maxDD"]];
  r.ranked.slice(0, top).forEach((p, i) =>
    rows.push([
      String(i + 1),
      settingsText(p.settings),
      String(p.filled.trades),
      p.filled.winRate === null ? "-" : `${fixed(p.filled.winRate * 100, 1)}%`,
      fixed(p.paper.totalPnl, 2),
      fixed(p.filled.totalPnl, 2),
      p.filled.sharpe === null ? "-" : fixed(p.filled.sharpe, 3),
      fixed(p.filled.maxDrawdown, 2),
    ])
  );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) {
    lines.push(
      row.map((c, i) => (i === 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "),
    );
  }
  if (r.walkForward.length > 0) {
    lines.push("", `Walk-forward (${r.windows} windows; chosen on one, scored on the next):`);
    let total = 0;
    for (const s of r.walkForward) {
      total += s.outOfSample.filledPnl;
      lines.push(
        `  ${s.outOfSample.from} .. ${s.outOfSample.to}: ${settingsText(s.settings)} ` +
          `in-sample filled ${fixed(s.chosenOn.filledPnl, 2)}, out-of-sample filled ` +
          `${fixed(s.outOfSample.filledPnl, 2)} (${s.outOfSample.trades} trades)`,
      );
    }
    lines.push(`  out-of-sample total: ${fixed(total, 2)}`);
  }
  return lines.join("\n") + "\n";
}

/** A message to a sweep worker. */
export type SweepRequest =
  | { type: "init"; run: RunParameters; windows: number; markets: BarColumns[] }
  | { type: "point"; index: number; settings: Record<string, number> };

/** A sweep worker's answer. */
export type SweepResponse =
  | { type: "point"; point: SweepPoint }
  | { type: "error"; message: string };

/** Options of {@linkcode runSweep}. */
export interface SweepOptions {
  run: RunParameters;
  axes: SweepAxis[];
  bars: ReadonlyMap<string, Bar[]>;
  /** Worker threads. */
  workers: number;
  /** Run in this thread instead of workers. @default {workers <= 1} */
  inThread?: boolean;
  /** Walk-forward windows (1: none). */
  windows: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Runs every grid point, on `workers` threads, and builds the report.
 *
 * @example
 * ```ts ignore
 * const report = await runSweep({ run, axes, bars, workers: navigator.hardwareConcurrency, windows: 2 });
 * ```
 */
export async function runSweep(o: SweepOptions): Promise<SweepReport> {
  const points = grid(o.axes);
  const results: SweepPoint[] = [];
  if (o.inThread ?? o.workers <= 1) {
    for (const [index, settings] of points.entries()) {
      results.push(await evaluatePoint(o.run, index, settings, o.bars, o.windows));
      o.onProgress?.(results.length, points.length);
    }
    return buildSweepReport(o.run, o.axes, o.windows, results);
  }
  const markets = [...o.bars].map(([m, bars]) => toColumns(m, bars));
  let next = 0;
  const workers = Array.from(
    { length: Math.min(o.workers, points.length) },
    () => new Worker(new URL("./sweep_worker.ts", import.meta.url), { type: "module" }),
  );
  try {
    await Promise.all(workers.map((w) =>
      new Promise<void>((resolve, reject) => {
        const send = () => {
          if (next >= points.length) return resolve();
          const index = next++;
          w.postMessage({ type: "point", index, settings: points[index]! } satisfies SweepRequest);
        };
        w.onmessage = (e: MessageEvent<SweepResponse>) => {
          if (e.data.type === "error") return reject(new Error(e.data.message));
          results.push(e.data.point);
          o.onProgress?.(results.length, points.length);
          send();
        };
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`sweep worker failed: ${e.message}`));
        };
        w.postMessage(
          { type: "init", run: o.run, windows: o.windows, markets } satisfies SweepRequest,
        );
        send();
      })
    ));
  } finally {
    for (const w of workers) w.terminate();
  }
  results.sort((a, b) => a.index - b.index);
  return buildSweepReport(o.run, o.axes, o.windows, results);
}

/** Final bars of every market of `run`, in memory (what the sweep's workers replay). */
export async function loadBars(
  run: RunParameters,
  source: (market: string) => AsyncIterable<Bar[]>,
): Promise<Map<string, Bar[]>> {
  const out = new Map<string, Bar[]>();
  for (const m of run.markets) {
    const all: Bar[] = [];
    for await (const chunk of source(m)) for (const b of chunk) all.push(b);
    out.set(m, all);
  }
  return out;
}

/** Bars back from columns (used by the worker). */
export function barsFromColumns(markets: readonly BarColumns[]): Map<string, Bar[]> {
  return new Map(markets.map((c) => [c.market, fromColumns(c)]));
}
