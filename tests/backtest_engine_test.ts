/**
 * @module The backtest engine without the simulator: fill model, metrics, model-quality scores,
 * the report's determinism, runs stored in the database, and the command line.
 */
import assert from "node:assert/strict";
import { parseBacktestArgs, UsageError } from "../lib/backtest/args.ts";
import { equityChartSvg, reliabilityChartSvg } from "../lib/backtest/chart.ts";
import { type ExitOutcome, fillDelayMs, FillModel } from "../lib/backtest/fill.ts";
import { computeMetrics, equityCurve } from "../lib/backtest/metrics.ts";
import { QualityTracker } from "../lib/backtest/quality.ts";
import { replayMarket } from "../lib/backtest/replay.ts";
import { formatReport } from "../lib/backtest/report.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { barsFromDatabase, saveRun } from "../lib/backtest/store.ts";
import { connect } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { migrate } from "../lib/db/migrate.ts";
import { type Bar, FEED_ALLOWED_LATENESS_MS } from "../lib/strategy/bars.ts";
import { EvaluatorCore, stepBars } from "../lib/strategy/evaluator_core.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { bar, T0, testRun, walkBars } from "./_backtest_bars.ts";
import { dbTest } from "./_db.ts";

const RUN = testRun();

const BARS = walkBars();

/** Chunks of 700 bars, so replay crosses chunk boundaries. */
async function* chunked(bars: Bar[]): AsyncGenerator<Bar[]> {
  for (let i = 0; i < bars.length; i += 700) yield bars.slice(i, i + 700);
}

const ENTER = { action: "ENTER_LONG", market: "X", price: 99, qty: 1, fee: 0, ev: 0 } as const;

function exitAt(ts: number, entryTs: number) {
  return {
    action: "EXIT_LONG",
    market: "X",
    ts,
    price: 100,
    qty: 1,
    fee: 0,
    pnl: 0,
    holdSec: (ts - entryTs) / 1000,
    reason: "TP",
    entryTs,
    entryPrice: 99,
    ev: null,
  } as const;
}

Deno.test("FillModel fills at the open of the first bar live could trade at (signal + 1 s + lateness), with slippage and both fees", () => {
  const fills = new FillModel({ krwAmount: 10_000, slippageBps: 10 });
  assert.equal(fills.delayMs, 1000 + FEED_ALLOWED_LATENESS_MS);
  assert.equal(fillDelayMs(), fills.delayMs);
  let done: ExitOutcome | undefined;
  fills.onEnter({ ...ENTER, ts: 0 });
  // Bar 0 is final live only once a trade at >= 3000 arrives: bars 1000 and 2000 (still at 100)
  // come before the entry could reach the exchange; the price jumps to 110 at bar 3000.
  fills.onBar(bar("X", 1000, 100, 101, 99, 100));
  fills.onExit(exitAt(1000, 0), (t) => done = t);
  fills.onBar(bar("X", 2000, 100, 101, 99, 100));
  fills.onBar(bar("X", 3000, 110, 111, 109, 110));
  assert.equal(done, undefined, "the exit of bar 1000 waits for a bar at >= 4000");
  assert.equal(fills.exitPending, true);
  fills.onBar(bar("X", 4000, 120, 121, 119, 120));
  assert.equal(fills.exitPending, false);
  const entry = 110 * 1.001;
  const exit = 120 * 0.999;
  const qty = 10_000 / entry;
  const fees = (entry + exit) * qty * 0.0005;
  assert.deepEqual(done, {
    entry: { ts: 3000, price: entry },
    exit: { ts: 4000, price: exit },
    qty,
    fees,
    pnl: (exit - entry) * qty - fees,
  });
  assert.throws(() => new FillModel({ krwAmount: 10_000, slippageBps: -1 }), RangeError);
  assert.throws(
    () => new FillModel({ krwAmount: 10_000, slippageBps: 0, latencyMs: -1 }),
    RangeError,
  );
});

Deno.test("FillModel: latencyMs delays the fill to the first bar at >= signal + 1 s + lateness + latency", () => {
  const fills = new FillModel({ krwAmount: 10_000, slippageBps: 0, latencyMs: 500 });
  assert.equal(fills.delayMs, fillDelayMs(500));
  let done: ExitOutcome | undefined;
  fills.onEnter({ ...ENTER, ts: 0 });
  fills.onExit(exitAt(1000, 0), (t) => done = t);
  for (let ts = 1000; ts <= 5000; ts += 1000) fills.onBar(bar("X", ts, ts, ts, ts, ts));
  assert.ok(done && done !== "stale_entry");
  assert.deepEqual([done.entry.ts, done.entry.price], [4000, 4000], "0 + 3500 -> bar 4000");
  assert.deepEqual([done.exit.ts, done.exit.price], [5000, 5000], "1000 + 3500 -> bar 5000");
});

Deno.test("FillModel skips an entry whose fill bar is past EXECUTOR_MAX_SIGNAL_AGE_SEC (a gap), never an exit", () => {
  const fills = new FillModel({ krwAmount: 10_000, slippageBps: 0, maxSignalAgeSec: 60 });
  const outcomes: ExitOutcome[] = [];
  // Entry at 0, then no bar until 61 s: live would find the signal 61 s old and skip it.
  fills.onEnter({ ...ENTER, ts: 0 });
  fills.onBar(bar("X", 61_000, 100, 100, 100, 100));
  fills.onExit(exitAt(61_000, 0), (t) => outcomes.push(t));
  fills.onBar(bar("X", 64_000, 100, 100, 100, 100));
  assert.deepEqual(outcomes, ["stale_entry"], "no exit is filled for a skipped entry");
  // Exactly 60 s is not stale (the executor skips only when older than the limit).
  fills.onEnter({ ...ENTER, ts: 65_000 });
  fills.onBar(bar("X", 125_000, 200, 200, 200, 200));
  // The exit's fill bar is ten minutes later: exits are sent however late.
  fills.onExit(exitAt(126_000, 65_000), (t) => outcomes.push(t));
  fills.onBar(bar("X", 726_000, 300, 300, 300, 300));
  const last = outcomes[1];
  assert.ok(last && last !== "stale_entry", String(last));
  assert.deepEqual([last.entry.ts, last.exit.ts, last.exit.price], [125_000, 726_000, 300]);
});

Deno.test("computeMetrics: win rate, drawdown, Sharpe, Sortino, exposure, best and worst", () => {
  const t = (exitTs: number, pnl: number) => ({
    market: "X",
    entryTs: exitTs - 10_000,
    exitTs,
    pnl,
    notional: 10_000,
    fees: 10,
  });
  const m = computeMetrics([t(30_000, -50), t(10_000, 100), t(20_000, -200)], 100_000);
  // By exit time: +100, -200, -50 -> equity 100, -100, -150; peak 100 -> drawdown 250.
  assert.equal(m.trades, 3);
  assert.equal(m.wins, 1);
  assert.equal(m.winRate, 1 / 3);
  assert.equal(m.totalPnl, -150);
  assert.equal(m.avgPnl, -50);
  assert.equal(m.maxDrawdown, 250);
  assert.equal(m.exposure, 0.3);
  assert.equal(m.fees, 30);
  assert.equal(m.best, 100);
  assert.equal(m.worst, -200);
  const r = [0.01, -0.02, -0.005];
  const mean = (0.01 - 0.02 - 0.005) / 3;
  const sd = Math.sqrt(r.reduce((a, x) => a + (x - mean) ** 2, 0) / 2);
  const dd = Math.sqrt((0.02 ** 2 + 0.005 ** 2) / 3);
  assert.ok(Math.abs(m.sharpe! - mean / sd) < 1e-12);
  assert.ok(Math.abs(m.sortino! - mean / dd) < 1e-12);
  assert.deepEqual(equityCurve([t(10_000, 100), t(20_000, -200)]).map((p) => p.drawdown), [0, 200]);
  const none = computeMetrics([], 0);
  assert.deepEqual([none.trades, none.winRate, none.sharpe, none.exposure], [0, null, null, null]);
});

Deno.test("QualityTracker scores a uniform model at ln 3 and the base rate from earlier labels", () => {
  const q = new QualityTracker();
  const pred = (ts: number) => ({
    market: "X",
    ts,
    pUp: 1 / 3,
    pDown: 1 / 3,
    pFlat: 1 / 3,
    ev: 0,
    spreadPct: 0,
    features: {} as never,
    trainedCount: 0,
    skill: { scored: 0, modelLogLoss: null, baseLogLoss: null, open: true },
  });
  const label = (ts: number, l: 1 | -1 | 0) => ({
    market: "X",
    ts,
    label: l,
    barrierHitTs: ts,
    ret: 0,
  });
  q.onStep([], pred(0));
  q.onStep([], pred(1));
  q.onStep([label(0, 1)], pred(2));
  q.onStep([label(1, 1), label(2, -1)], null);
  const r = q.report();
  assert.equal(r.scored, 3);
  assert.ok(Math.abs(r.model.logLoss! - Math.log(3)) < 1e-12);
  assert.ok(Math.abs(r.model.brier! - 2 / 3) < 1e-12);
  // Base rate: ts 0 and 1 predicted with no labels seen (1/3 each); ts 2 after one "up":
  // (2/4, 1/4, 1/4) scored against "down".
  const expected = (2 * Math.log(3) - Math.log(1 / 4)) / 3;
  assert.ok(Math.abs(r.baseRate.logLoss! - expected) < 1e-12);
  assert.deepEqual(r.labelShare, { up: 2 / 3, down: 1 / 3, flat: 0 });
  assert.equal(r.reliability.up[3]!.n, 3, "1/3 falls in the 0.3-0.4 bin");
  assert.equal(r.reliability.up[3]!.observed, 2 / 3);
});

Deno.test("replayMarket produces the paper stream of stepBars over the same bars, whatever the chunking", async () => {
  const bars = BARS["KRW-BTC"]!;
  const core = new EvaluatorCore({ market: "KRW-BTC", params: RUN.params, krwAmount: 10_000 });
  const direct = stepBars(core, bars).events;
  const replay = await replayMarket(chunked(bars), {
    market: "KRW-BTC",
    params: RUN.params,
    krwAmount: 10_000,
    slippageBps: 0,
  });
  assert.ok(direct.length >= 20, `${direct.length} paper events`);
  assert.deepEqual(replay.events, direct);
  assert.equal(replay.bars, bars.length);
  assert.equal(
    replay.trades.length,
    direct.filter((e) => e.action === "EXIT_LONG").length,
  );
  // Each fill is at the open of the first bar at >= the paper action's bar + 1 s + lateness
  // (these bars have no gap: the third bar after it).
  const byTs = new Map(bars.map((b, i) => [b.ts, i]));
  const filled = replay.trades.filter((t) => t.filled);
  assert.ok(filled.length >= 10);
  for (const t of filled) {
    const entryBar = bars[byTs.get(t.enter.ts)! + 3]!;
    assert.equal(entryBar.ts, t.enter.ts + 1000 + FEED_ALLOWED_LATENESS_MS);
    assert.equal(t.filled!.entry.ts, entryBar.ts);
    assert.equal(t.filled!.entry.price, entryBar.open);
    const exitBar = bars[byTs.get(t.exit.ts)! + 3]!;
    assert.equal(t.filled!.exit.ts, exitBar.ts);
    assert.equal(t.filled!.exit.price, exitBar.open);
    assert.equal(t.staleEntry, false);
  }
});

Deno.test("the same input gives the same report, text and charts byte for byte", async () => {
  const once = async () => {
    const report = await runBacktest(RUN, (m) => chunked(BARS[m]!));
    return [
      JSON.stringify(report),
      formatReport(report),
      equityChartSvg(report),
      reliabilityChartSvg(report),
    ];
  };
  const a = await once();
  const b = await once();
  assert.deepEqual(a, b);
  const report = JSON.parse(a[0]!);
  assert.ok(report.total.paper.trades > 0);
  assert.equal(
    report.total.paper.trades,
    report.markets[0].paper.trades + report.markets[1].paper.trades,
  );
  assert.match(a[1]!, /^TOTAL +paper +\d+/m);
  assert.match(a[2]!, /^<svg /);
  // Slippage and next-open fills make the filled pnl differ from the paper pnl.
  assert.notEqual(report.total.filled.totalPnl, report.total.paper.totalPnl);
});

dbTest("saveRun stores the run and every trade; barsFromDatabase reads [from, to)", async (db) => {
  const sql = db.sql;
  await upsertBars(sql, BARS["KRW-BTC"]!.slice(0, 1200), true);
  await upsertBars(sql, BARS["KRW-BTC"]!.slice(1200, 1300), false);
  const got: Bar[] = [];
  for await (const c of barsFromDatabase(sql, "KRW-BTC", T0 + 5000, T0 + 1_100_000, 300)) {
    got.push(...c);
  }
  assert.deepEqual(got.map((b) => b.ts), BARS["KRW-BTC"]!.slice(5, 1100).map((b) => b.ts));
  const run = { ...RUN, markets: ["KRW-BTC"] };
  const report = await runBacktest(run, (m) => barsFromDatabase(sql, m, T0, T0 + 3_600_000));
  assert.equal(report.total.bars, 1200, "only final bars");
  const id = await saveRun(sql, report, { code: "test", app: "unknown" });
  const [row] = await sql`select code_version, markets, source, report from backtest_runs
    where id = ${id}`;
  assert.deepEqual([row!.code_version, row!.markets, row!.source], ["test", ["KRW-BTC"], "db"]);
  assert.deepEqual(row!.report, JSON.parse(JSON.stringify(report)));
  const trades = await sql`select seq, symbol, exit_reason, paper_pnl::text, fill_pnl::text
    from backtest_trades where run_id = ${id} order by seq`;
  assert.equal(trades.length, report.trades.length);
  assert.ok(trades.length > 0);
  trades.forEach((t, i) => {
    assert.equal(t.seq, i + 1);
    assert.equal(Number(t.paper_pnl), report.trades[i]!.paperPnl);
    assert.equal(t.fill_pnl === null ? null : Number(t.fill_pnl), report.trades[i]!.fillPnl);
  });
});

Deno.test("parseBacktestArgs: defaults from the environment, --set over them, one-line errors", () => {
  const base = [
    "--market",
    "KRW-BTC,KRW-ETH",
    "--from",
    "2026-12-01",
    "--to",
    "2026-12-01T06:00:00Z",
  ];
  const a = parseBacktestArgs(
    [...base, "--set", "EVAL_TP_PCT=0.4", "--slippage-bps=3"],
    { PAPER_POLICY_PROFILE: "default", EVAL_TP_PCT: "0.9", EVAL_SL_PCT: "0.3" },
  );
  assert.deepEqual(a.run.markets, ["KRW-BTC", "KRW-ETH"]);
  assert.equal(a.run.from, "2026-12-01T00:00:00.000Z");
  assert.equal(a.run.to, "2026-12-01T06:00:00.000Z");
  assert.equal(a.run.profile, "default");
  assert.deepEqual([a.run.params.tpPct, a.run.params.slPct, a.run.params.horizonSec], [
    0.4,
    0.3,
    300,
  ]);
  assert.equal(a.run.slippageBps, 3);
  assert.deepEqual([a.run.latencyMs, a.run.maxSignalAgeSec], [0, 60], "defaults");
  const b = parseBacktestArgs(
    [...base, "--latency-ms", "400", "--set", "EXECUTOR_MAX_SIGNAL_AGE_SEC=30"],
    { EXECUTOR_MAX_SIGNAL_AGE_SEC: "90" },
  );
  assert.deepEqual([b.run.latencyMs, b.run.maxSignalAgeSec], [400, 30]);
  const c = parseBacktestArgs(base, { EXECUTOR_MAX_SIGNAL_AGE_SEC: "90" });
  assert.equal(c.run.maxSignalAgeSec, 90, "from the environment");
  const bad: [string[], RegExp][] = [
    [["--market", "KRW-BTC"], /^--from is required/],
    [[...base, "--source", "s3"], /^--source must be db or files/],
    [[...base, "--set", "LOG_LEVEL=debug"], /^--set takes NAME=VALUE with NAME one of/],
    [[...base, "--set", "EVAL_HORIZON_SEC=1.5"], /^EVAL_HORIZON_SEC must be an integer/],
    [
      ["--market", "KRW-BTC", "--from", "yesterday", "--to", "2026-12-02"],
      /^--from must be YYYY-MM-DD/,
    ],
    [[...base, "--market"], /^--market needs a value$/],
    [[...base, "--latency-ms", "1.5"], /^--latency-ms must be a whole number/],
    [[...base, "--latency-ms", "-1"], /^--latency-ms must be a whole number/],
    [[...base, "--set", "EXECUTOR_MAX_SIGNAL_AGE_SEC=0"], /^EXECUTOR_MAX_SIGNAL_AGE_SEC /],
  ];
  for (const [argv, re] of bad) {
    assert.throws(() => parseBacktestArgs(argv, {}), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, re);
      assert.ok(!err.message.includes("\n"));
      return true;
    });
  }
});

Deno.test("deno task backtest: report, stored run, JSON and SVG files; exit 2 on bad input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_backtest_cli_" });
  try {
    const embedded = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...embedded.endpoint });
    await migrate(sql);
    await upsertBars(sql, BARS["KRW-BTC"]!, true);
    await sql.end({ timeout: 5 });
    await embedded.close();
    const cli = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "tools/backtest.ts", ...args],
        env: { DATA_DIR: dir, NO_COLOR: "1" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    const ok = await cli(
      "--market",
      "KRW-BTC",
      "--from",
      RUN.from,
      "--to",
      RUN.to,
      "--profile",
      "test",
      "--slippage-bps",
      "2",
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^KRW-BTC +paper +\d+/m);
    const m = /^run (\d+): (\S+\.json) (\S+\.svg) (\S+-reliability\.svg)$/m.exec(ok.stdout);
    assert.ok(m, ok.stdout);
    const json = JSON.parse(await Deno.readTextFile(m[2]!));
    const expected = await runBacktest(
      { ...RUN, markets: ["KRW-BTC"], latencyMs: 0, maxSignalAgeSec: 60 },
      (mk) => chunked(BARS[mk]!),
    );
    assert.deepEqual(json, JSON.parse(JSON.stringify(expected)));
    assert.match(await Deno.readTextFile(m[3]!), /^<svg /);
    assert.match(await Deno.readTextFile(m[4]!), /^<svg /);
    const bad = await cli("--market", "KRW-BTC", "--from", "2026-12-02", "--to", "2026-12-01");
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, "backtest: --from must be before --to\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
