/**
 * @module The backtest JSON (`/api/backtests`, `/api/backtests/:id`, `/api/backtests/:id/trades`)
 * of the HTTP app over runs the backtest engine replayed on generated bars and stored as
 * `deno task backtest` stores them: what each field holds, paging, filters, 400s and 404s.
 */
import assert from "node:assert/strict";
import type { BacktestReport } from "../lib/backtest/report.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { saveRun } from "../lib/backtest/store.ts";
import { createApp } from "../lib/http/app.ts";
import { backtestRoutes } from "../lib/http/backtest_routes.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { T0, testRun, walkBars } from "./_backtest_bars.ts";
import { dbTest } from "./_db.ts";

const BARS = walkBars();

const RUN = testRun();

async function* chunks(bars: Bar[]): AsyncGenerator<Bar[]> {
  for (let i = 0; i < bars.length; i += 700) yield bars.slice(i, i + 700);
}

/** The headline fields `/api/backtests` serves for `report`. */
function headline(report: BacktestReport) {
  const t = report.total;
  return {
    trades: t.paper.trades,
    win_rate: t.paper.winRate,
    paper_pnl: t.paper.totalPnl,
    spread_pnl: t.paperAtSpread.totalPnl,
    filled_trades: t.filled.trades,
    filled_win_rate: t.filled.winRate,
    filled_pnl: t.filled.totalPnl,
    paper_max_drawdown: t.paper.maxDrawdown,
    filled_max_drawdown: t.filled.maxDrawdown,
  };
}

dbTest(
  "backtest JSON: runs newest first with their headline numbers, a run, its trades",
  async (db) => {
    const sql = db.sql;
    const app = createApp({
      liveness: () => ({ ok: true, db: "ok", uptime_sec: 0 }),
      readiness: () => ({ ready: true, problems: [] }),
      routes: [backtestRoutes({ sql })],
    });
    const get = async (path: string) => {
      const res = await app.request(path);
      return { status: res.status, body: await res.json() };
    };

    const both = await runBacktest(RUN, (m) => chunks(BARS[m]!));
    const btcRun = { ...RUN, markets: ["KRW-BTC"], slippageBps: 10 };
    const btc = await runBacktest(btcRun, (m) => chunks(BARS[m]!));
    assert.ok(both.trades.length > 2 && btc.trades.length > 0, "both runs traded");
    assert.ok(both.trades.length < 1000, "the default page holds every trade");
    const before = Date.now();
    const bothId = await saveRun(sql, both, { code: "v1-test", app: "0.1.0" });
    const btcId = await saveRun(sql, btc, { code: "v1-test", app: "0.1.0" });
    const after = Date.now();

    // The list: newest first, each run's window, parameters and the totals of its report.
    const list = await get("/api/backtests");
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.map((r: { id: number }) => r.id), [btcId, bothId]);
    const [btcRow, bothRow] = list.body;
    assert.ok(bothRow.ts >= before - 1000 && bothRow.ts <= after + 1000, String(bothRow.ts));
    assert.deepEqual(bothRow.markets, ["KRW-BTC", "KRW-ETH"]);
    assert.equal(bothRow.from, T0);
    assert.equal(bothRow.to, T0 + 3_600_000);
    assert.equal(bothRow.source, "db");
    assert.equal(bothRow.profile, "test");
    assert.deepEqual(bothRow.parameters, JSON.parse(JSON.stringify(RUN)));
    assert.equal(bothRow.code_version, "v1-test");
    assert.equal(bothRow.app_version, "0.1.0");
    for (const [row, report] of [[bothRow, both], [btcRow, btc]] as const) {
      const got = Object.fromEntries(Object.keys(headline(report)).map((k) => [k, row[k]]));
      assert.deepEqual(got, headline(report));
    }
    assert.equal(btcRow.parameters.slippageBps, 10);
    assert.notEqual(btcRow.filled_pnl, bothRow.filled_pnl);

    // Paging back by id, and the market filter.
    assert.deepEqual((await get("/api/backtests?limit=1")).body.map((r: { id: number }) => r.id), [
      btcId,
    ]);
    assert.deepEqual(
      (await get(`/api/backtests?before=${btcId}`)).body.map((r: { id: number }) => r.id),
      [bothId],
    );
    assert.deepEqual(
      (await get("/api/backtests?market=KRW-ETH")).body.map((r: { id: number }) => r.id),
      [bothId],
    );

    // One run: the list's fields and the report (its trades are served by /trades).
    const one = await get(`/api/backtests/${bothId}`);
    assert.equal(one.status, 200);
    const { report, ...fields } = one.body;
    assert.deepEqual(fields, bothRow);
    const { trades: _trades, ...withoutTrades } = JSON.parse(JSON.stringify(both));
    assert.deepEqual(report, withoutTrades);

    // Its trades: newest first (by seq, the exit order), prices, reasons, both pnls, ts in ms.
    const trades = await get(`/api/backtests/${bothId}/trades`);
    assert.equal(trades.status, 200);
    assert.equal(trades.body.length, both.trades.length);
    assert.deepEqual(
      trades.body.map((t: { id: number }) => t.id),
      both.trades.map((_, i) => i + 1).reverse(),
    );
    const ms = (iso: string | null) => (iso === null ? null : Date.parse(iso));
    for (const t of trades.body) {
      const want = both.trades[t.id - 1]!;
      assert.deepEqual(t, {
        id: t.id,
        ts: ms(want.exitTs),
        market: want.market,
        entry_ts: ms(want.entryTs),
        exit_ts: ms(want.exitTs),
        exit_reason: want.reason,
        hold_sec: want.holdSec,
        qty: want.qty,
        paper_entry: want.paperEntry,
        paper_exit: want.paperExit,
        paper_fees: want.paperFees,
        paper_pnl: want.paperPnl,
        spread_entry: want.spreadEntry,
        spread_exit: want.spreadExit,
        spread_pnl: want.spreadPnl,
        fill_entry_ts: ms(want.fillEntryTs),
        fill_exit_ts: ms(want.fillExitTs),
        fill_entry: want.fillEntry,
        fill_exit: want.fillExit,
        fill_qty: want.fillQty,
        fill_fees: want.fillFees,
        fill_pnl: want.fillPnl,
      });
    }
    const n = both.trades.length;
    const page = await get(`/api/backtests/${bothId}/trades?limit=2&before=${n}`);
    assert.deepEqual(page.body.map((t: { id: number }) => t.id), [n - 1, n - 2]);
    const eth = await get(`/api/backtests/${bothId}/trades?market=KRW-ETH`);
    assert.equal(eth.body.length, both.trades.filter((t) => t.market === "KRW-ETH").length);
    assert.ok(eth.body.every((t: { market: string }) => t.market === "KRW-ETH"));

    // A bad id is a 400 naming it; an unknown run a 404; a bad query a 400 naming the field.
    for (const bad of ["abc", "0", "1.5", "-1", "1e3", "99999999999999999"]) {
      for (const suffix of ["", "/trades"]) {
        const res = await get(`/api/backtests/${bad}${suffix}`);
        assert.equal(res.status, 400, `${bad}${suffix}`);
        assert.deepEqual(res.body, {
          error: "invalid path",
          field: "id",
          message: "must be a run id (a whole number)",
        });
      }
    }
    const missing = btcId + 1;
    for (const suffix of ["", "/trades"]) {
      const res = await get(`/api/backtests/${missing}${suffix}`);
      assert.equal(res.status, 404);
      assert.deepEqual(res.body, { error: "backtest run not found", id: missing });
    }
    const unknownParam = await get("/api/backtests?sort=asc");
    assert.equal(unknownParam.status, 400);
    assert.equal(unknownParam.body.field, "sort");
    const badLimit = await get(`/api/backtests/${bothId}/trades?limit=0`);
    assert.equal(badLimit.status, 400);
    assert.equal(badLimit.body.field, "limit");
    assert.equal((await get(`/api/backtests/${bothId}?x=1`)).status, 400);
  },
);
