/**
 * @module The parameter sweep: grid parsing, the same results on worker threads as in one thread,
 * ranking, walk-forward selection, and the command line.
 */
import assert from "node:assert/strict";
import { parseBacktestArgs, UsageError } from "../lib/backtest/args.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { formatSweep, grid, parseSweep, runSweep } from "../lib/backtest/sweep.ts";
import { connect } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { migrate } from "../lib/db/migrate.ts";
import { resolveParams } from "../lib/strategy/policy.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { T0, testRun, walk } from "./_backtest_bars.ts";

const RUN = testRun({ to: new Date(T0 + 2400_000).toISOString(), slippageBps: 1 });

const BARS = new Map([
  [
    "KRW-BTC",
    walk("KRW-BTC", 2400, 11).map((b) => ({ ...b, askEst: b.close + 5, bidEst: b.close - 5 })),
  ],
  ["KRW-ETH", walk("KRW-ETH", 2400, 12, 4_000)],
]);

Deno.test("parseSweep: from:to:step grids, checked against the profile, one-line errors", () => {
  const axes = parseSweep("EVAL_TP_PCT=0.2:0.8:0.2,EVAL_SL_PCT=0.1", "default", {});
  assert.deepEqual(axes, [
    { name: "EVAL_TP_PCT", values: [0.2, 0.4, 0.6, 0.8] },
    { name: "EVAL_SL_PCT", values: [0.1] },
  ]);
  assert.deepEqual(grid(axes).map((p) => p.EVAL_TP_PCT), [0.2, 0.4, 0.6, 0.8]);
  assert.equal(grid(axes).length, 4);
  const bad: [string, RegExp][] = [
    ["ORDER_KRW_AMOUNT=1:2:1", /^--sweep takes NAME=FROM:TO:STEP/],
    ["EVAL_TP_PCT=0.8:0.2:0.2", /needs FROM <= TO and STEP > 0/],
    ["EVAL_TP_PCT=0.1:0.2:0.1,EVAL_TP_PCT=0.3", /lists EVAL_TP_PCT twice/],
    ["EVAL_HORIZON_SEC=1.5", /must be an integer >= 1/],
    ["EVAL_TP_PCT=0.01:10:0.001", /at most 1000/],
  ];
  for (const [spec, re] of bad) {
    assert.throws(() => parseSweep(spec, "test", {}), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, re);
      return true;
    });
  }
  assert.throws(
    () =>
      parseBacktestArgs([
        "--market",
        "KRW-BTC",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-02",
        "--walk-forward",
        "2",
      ], {}),
    /--walk-forward needs --sweep/,
  );
});

Deno.test("runSweep: worker threads give the one-thread results; ranked by filled pnl; walk-forward", async () => {
  const axes = parseSweep("EVAL_TP_PCT=0.1:0.3:0.1,EVAL_SL_PCT=0.1:0.2:0.1", "test", RUN.params);
  const inThread = await runSweep({ run: RUN, axes, bars: BARS, workers: 1, windows: 3 });
  const threaded = await runSweep({ run: RUN, axes, bars: BARS, workers: 2, windows: 3 });
  assert.equal(JSON.stringify(threaded), JSON.stringify(inThread));
  assert.equal(formatSweep(threaded), formatSweep(inThread));
  const r = inThread;
  assert.equal(r.ranked.length, 6);
  for (let i = 1; i < r.ranked.length; i++) {
    assert.ok(r.ranked[i - 1]!.filled.totalPnl >= r.ranked[i]!.filled.totalPnl);
  }
  // A point equals a plain backtest with its parameters.
  const p = r.ranked[0]!;
  const params = resolveParams("test", {
    tpPct: p.settings.EVAL_TP_PCT,
    slPct: p.settings.EVAL_SL_PCT,
  });
  const plain = await runBacktest({ ...RUN, params }, (m) => [BARS.get(m)!]);
  assert.deepEqual(p.filled, plain.total.filled);
  assert.equal(p.windows.reduce((a, w) => a + w.trades, 0), plain.trades.length);
  // Walk-forward: chosen on window i by its filled pnl, scored on window i+1.
  assert.equal(r.walkForward.length, 2);
  r.walkForward.forEach((step, i) => {
    const best = Math.max(...r.ranked.map((q) => q.windows[i]!.filledPnl));
    const chosen = r.ranked.find((q) =>
      JSON.stringify(q.settings) === JSON.stringify(step.settings)
    )!;
    assert.equal(chosen.windows[i]!.filledPnl, best);
    assert.deepEqual(step.outOfSample, chosen.windows[i + 1]);
  });
  assert.match(formatSweep(r), /out-of-sample total: -?\d+\.\d\d/);
});

Deno.test("deno task backtest --sweep --walk-forward prints the ranking and writes its JSON", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_sweep_cli_" });
  try {
    const embedded = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...embedded.endpoint });
    await migrate(sql);
    await upsertBars(sql, BARS.get("KRW-BTC")!, true);
    await sql.end({ timeout: 5 });
    await embedded.close();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "tools/backtest.ts",
        "--market",
        "KRW-BTC",
        "--from",
        RUN.from,
        "--to",
        RUN.to,
        "--profile",
        "test",
        "--sweep",
        "EVAL_TP_PCT=0.1:0.2:0.1",
        "--walk-forward",
        "2",
        "--workers",
        "2",
      ],
      env: { DATA_DIR: dir, NO_COLOR: "1" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(stdout, /^Sweep KRW-BTC .* 2 points/m);
    assert.match(stdout, /^ +1 +EVAL_TP_PCT=0\.[12] /m);
    assert.match(stdout, /^Walk-forward \(2 windows/m);
    const path = /^sweep: (\S+\.json)$/m.exec(stdout)?.[1];
    assert.ok(path);
    const json = JSON.parse(await Deno.readTextFile(path));
    assert.equal(json.ranked.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
