/**
 * @module The Grafana data source (`/grafana`) on a running upbot trading live on the simulator:
 * every query of the shipped dashboard (grafana/dashboards/upbot.json) is answered with data,
 * series are downsampled in SQL to the requested points, and bad requests get a 400. A backtest
 * run replayed over the rig's own bars (`lib/backtest`, stored as `deno task backtest` stores it)
 * feeds the Backtest panels, chosen through the dashboard's `run` variable.
 */
import assert from "node:assert/strict";
import { parseBacktestArgs } from "../lib/backtest/args.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { barsFromDatabase, saveRun } from "../lib/backtest/store.ts";
import { ledgerPositions } from "../lib/execution/position_ledger.ts";
import { Hono } from "hono";
import { ApiError } from "../lib/http/errors.ts";
import {
  binSeconds,
  GRAFANA_SERIES,
  grafanaRoutes,
  MAX_POINTS_PER_QUERY,
  MAX_POINTS_PER_SERIES,
} from "../lib/http/grafana_routes.ts";
import { dbTest, testBackends } from "./_db.ts";
import { LIVE_ENV, startUpbotRig, waitFor } from "./_upbot_rig.ts";

const DASHBOARD = new URL("../grafana/dashboards/upbot.json", import.meta.url);

interface Panel {
  title: string;
  type: string;
  targets: { target: string; payload?: unknown; refId: string }[];
}

async function post(url: string, body: unknown) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

for (const backend of testBackends()) {
  Deno.test(`Grafana data source: every dashboard query answers with data [${backend}]`, async () => {
    const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
    // Row panels only group the others; they query nothing.
    const panels = (dashboard.panels as Panel[]).filter((p) => p.type !== "row");
    const variables = (dashboard.templating.list as { name: string }[]).map((v) => v.name);
    assert.deepEqual(variables, ["run"]);
    const dashboardTargets = panels.flatMap((p) => p.targets.map((t) => t.target));
    // The dashboard uses every series the data source serves.
    assert.deepEqual([...dashboardTargets].sort(), Object.keys(GRAFANA_SERIES).sort());

    await using rig = await startUpbotRig(backend, LIVE_ENV);
    const g = `${rig.url}/grafana`;
    const startedAt = Date.now();
    // A live round trip filled on the simulator (entry and exit), so realised pnl exists.
    await waitFor("a filled live exit", async () => {
      const [row] = await rig.upbot.sql`
        select count(*)::int as n from upbit_order_attempts
        where mode = 'live' and action = 'EXIT_LONG' and executed_volume > 0
          and avg_price is not null`;
      return row!.n > 0;
    }, 90_000);

    // /api/account: the exchange's balances and the ledger's open positions at the last close.
    await waitFor("balances polled", async () => {
      const [row] = await rig.upbot.sql`select count(*)::int as n from upbit_account_snapshots`;
      return row!.n > 0;
    });
    // Entries follow one another, so a position is open most of the time; read until the served
    // positions match the ledger read right after them.
    const account = await waitFor("an open position served as the ledger has it", async () => {
      const body = await (await fetch(`${rig.url}/api/account`)).json();
      const ledgerOpen = (await ledgerPositions(rig.upbot.sql))
        .filter((p) => Number(p.openVolume) !== 0).map((p) => p.symbol);
      const served = body.positions.map((p: { market: string }) => p.market);
      return served.length > 0 && JSON.stringify(served) === JSON.stringify(ledgerOpen)
        ? body
        : undefined;
    });
    assert.ok(account.balances.some((b: { currency: string }) => b.currency === "KRW"));
    for (const p of account.positions) {
      assert.ok(p.qty > 0 && typeof p.avg_price === "number", JSON.stringify(p));
      assert.equal(typeof p.last_close, "number");
      assert.ok(
        Math.abs(p.unrealised_pnl - (p.last_close - p.avg_price) * p.qty) < 1e-6,
        JSON.stringify(p),
      );
    }

    // A backtest run over the bars this upbot recorded, with the parameters it trades with.
    const btArgs = parseBacktestArgs([
      "--market",
      "KRW-BTC,KRW-ETH",
      "--from",
      new Date(startedAt - 60_000).toISOString(),
      "--to",
      new Date().toISOString(),
    ], LIVE_ENV);
    const btFrom = Date.parse(btArgs.run.from);
    const btTo = Date.parse(btArgs.run.to);
    const report = await runBacktest(
      btArgs.run,
      (m) => barsFromDatabase(rig.upbot.sql, m, btFrom, btTo),
    );
    assert.ok(report.trades.length > 0, "the backtest traded");
    const runId = await saveRun(rig.upbot.sql, report, { code: "test", app: "unknown" });

    assert.equal((await fetch(`${g}/`)).status, 200);
    assert.equal((await fetch(g)).status, 200);
    const metrics = await post(`${g}/metrics`, {});
    assert.equal(metrics.status, 200);
    assert.deepEqual(
      metrics.body.map((m: { value: string }) => m.value).sort(),
      Object.keys(GRAFANA_SERIES).sort(),
    );
    assert.ok(metrics.body.every((m: { payloads: unknown[] }) => Array.isArray(m.payloads)));
    assert.deepEqual(
      (await post(`${g}/metric-payload-options`, { metric: "close", name: "market" })).body,
      [
        { label: "KRW-BTC", value: "KRW-BTC" },
        { label: "KRW-ETH", value: "KRW-ETH" },
      ],
    );
    assert.deepEqual((await post(`${g}/variable`, { payload: { target: "markets" } })).body, [
      { __text: "KRW-BTC", __value: "KRW-BTC" },
      { __text: "KRW-ETH", __value: "KRW-ETH" },
    ]);
    // The run variable and the run payload option list the stored run.
    const runText = `#${runId} KRW-BTC,KRW-ETH ${btArgs.run.from} to ${btArgs.run.to}`;
    assert.deepEqual((await post(`${g}/variable`, { payload: { target: "backtests" } })).body, [
      { __text: runText, __value: String(runId) },
    ]);
    assert.deepEqual(
      (await post(`${g}/variable`, { payload: JSON.stringify({ target: "backtests" }) })).body,
      [{ __text: runText, __value: String(runId) }],
    );
    assert.deepEqual(
      (await post(`${g}/metric-payload-options`, { metric: "backtest_equity", name: "run" })).body,
      [{ label: runText, value: String(runId) }],
    );
    const equityMetric = metrics.body.find((m: { value: string }) => m.value === "backtest_equity");
    assert.equal(equityMetric.payloads[0].name, "run");
    assert.deepEqual((await post(`${g}/tag-keys`, {})).body, [{ type: "string", text: "market" }]);
    assert.deepEqual((await post(`${g}/tag-values`, { key: "market" })).body, [
      { text: "KRW-BTC" },
      { text: "KRW-ETH" },
    ]);

    // The isolates' heaps come with the heartbeats, after the sampler's first sample at start-up:
    // wait for a later one (every 10 s).
    await waitFor("a sample of the actors' heaps", async () => {
      const [row] = await rig.upbot.sql`
        select count(*)::int as n from obs_samples where metric = 'actor_heap_used_bytes'`;
      return row!.n > 0;
    }, 30_000);
    const to = Date.now() + 1000;
    const from = startedAt - 60_000;
    const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    for (const panel of panels) {
      const res = await post(`${g}/query`, {
        range,
        intervalMs: 1000,
        maxDataPoints: 500,
        // As Grafana does: the dashboard's variables replaced in the payload.
        targets: panel.targets.map((t) => ({
          ...t,
          payload: typeof t.payload === "string"
            ? t.payload.replaceAll("$run", String(runId))
            : t.payload,
        })),
      });
      assert.equal(res.status, 200, `${panel.title}: ${JSON.stringify(res.body)}`);
      assert.ok(res.body.length > 0, `${panel.title}: no frame`);
      if (panel.type === "table") {
        const [t] = res.body;
        assert.equal(t.type, "table");
        assert.ok(t.rows.length > 0, `${panel.title}: no rows`);
        for (const row of t.rows) assert.equal(row.length, t.columns.length);
      } else {
        const points = res.body.flatMap((s: { datapoints: [number, number][] }) => s.datapoints);
        assert.ok(points.length > 0, `${panel.title}: no datapoints`);
        for (const s of res.body) {
          assert.equal(typeof s.target, "string");
          for (const [v, t] of s.datapoints) {
            assert.ok(Number.isFinite(v) && t >= from - 1000 && t <= to, `${panel.title} ${t}`);
          }
        }
      }
    }

    // Downsampled in SQL: 5 points asked over the range -> bins of ceil(span / 5) seconds.
    const span = to - from;
    const binMs = binSeconds(from, to, 1000, 5) * 1000;
    assert.ok(binMs >= Math.ceil(span / 5), "at most 5 bins over the range");
    const coarse = await post(`${g}/query`, {
      range,
      intervalMs: 1000,
      maxDataPoints: 5,
      targets: [{ target: "volume", refId: "A", payload: { market: "KRW-BTC" } }],
    });
    assert.equal(coarse.status, 200);
    assert.deepEqual(coarse.body.map((s: { target: string }) => s.target), ["volume KRW-BTC"]);
    const dps: [number, number][] = coarse.body[0].datapoints;
    assert.ok(dps.length >= 1 && dps.length <= 6, JSON.stringify(dps));
    for (const [, t] of dps) assert.equal(t % binMs, 0);
    // The bins add up to the raw rows of the range (nothing lost or double counted).
    const [raw] = await rig.upbot.sql`
      select sum(volume)::float8 as v from market_1s
      where symbol = 'KRW-BTC' and ts >= to_timestamp(${from}::float8 / 1000)
        and ts <= to_timestamp(${to}::float8 / 1000)
        and ts < date_bin(make_interval(secs => ${binMs / 1000}::int),
                          to_timestamp(${to}::float8 / 1000), timestamptz 'epoch')
                 + make_interval(secs => ${binMs / 1000}::int)`;
    const binned = dps.reduce((sum, [v]) => sum + v, 0);
    assert.ok(Math.abs(binned - raw!.v) < 1e-6 * Math.max(1, raw!.v), `${binned} vs ${raw!.v}`);
    // An ad hoc filter narrows per-market series.
    const filtered = await post(`${g}/query`, {
      range,
      maxDataPoints: 50,
      targets: [{ target: "close", refId: "A" }],
      adhocFilters: [{ key: "market", operator: "=", value: "KRW-ETH" }],
    });
    assert.deepEqual(filtered.body.map((s: { target: string }) => s.target), ["close KRW-ETH"]);

    // The run's equity: each curve ends at the run's total (cumulative, nothing lost in the bins),
    // and the trades table has one row per round trip.
    const equity = await post(`${g}/query`, {
      range,
      maxDataPoints: 7,
      targets: [{ target: "backtest_equity", refId: "A", payload: { run: runId } }],
    });
    assert.equal(equity.status, 200);
    const last = (name: string) => {
      const s = equity.body.find((x: { target: string }) => x.target === name);
      assert.ok(
        s,
        `${name} in ${JSON.stringify(equity.body.map((x: { target: string }) => x.target))}`,
      );
      return s.datapoints.at(-1)[0] as number;
    };
    const close = (a: number, b: number) => Math.abs(a - b) < 1e-6 * Math.max(1, Math.abs(b));
    assert.ok(close(last(`backtest ${runId} paper pnl`), report.total.paper.totalPnl));
    assert.ok(
      close(last(`backtest ${runId} paper at spread pnl`), report.total.paperAtSpread.totalPnl),
    );
    if (report.total.filled.trades > 0) {
      assert.ok(close(last(`backtest ${runId} filled pnl`), report.total.filled.totalPnl));
    }
    for (const s of equity.body) assert.ok(s.datapoints.length <= 8, JSON.stringify(s));
    // No run given: the newest run.
    const newest = await post(`${g}/query`, {
      range,
      targets: [{ target: "backtest_trades_table", refId: "A" }],
    });
    assert.equal(newest.body[0].rows.length, report.trades.length);

    // Bad requests.
    const badRun = await post(`${g}/query`, {
      range,
      targets: [{ target: "backtest_equity", payload: { run: "$run" } }],
    });
    assert.equal(badRun.status, 400);
    assert.equal(badRun.body.field, "targets.0.payload.run");
    const unknownRun = await post(`${g}/query`, {
      range,
      targets: [{ target: "backtest_trades_table", payload: { run: runId + 1 } }],
    });
    assert.equal(unknownRun.status, 400);
    assert.equal(unknownRun.body.message, `no backtest run ${runId + 1}`);
    const unknown = await post(`${g}/query`, { range, targets: [{ target: "nope", refId: "A" }] });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.field, "targets.0.target");
    const inverted = await post(`${g}/query`, {
      range: { from: range.to, to: range.from },
      targets: [{ target: "close" }],
    });
    assert.equal(inverted.status, 400);
    assert.equal(inverted.body.field, "range");
    const badTime = await post(`${g}/query`, {
      range: { from: "yesterday", to: range.to },
      targets: [],
    });
    assert.equal(badTime.status, 400);
    assert.equal(badTime.body.field, "range.from");
    const badMarket = await post(`${g}/query`, {
      range,
      targets: [{ target: "close", payload: { market: "btc" } }],
    });
    assert.equal(badMarket.status, 400);
    assert.equal(badMarket.body.field, "targets.0.payload.market");
  });
}

dbTest(
  "Grafana /query: bounded work (points per series, duplicate series, points per query)",
  async (db) => {
    const { sql } = db;
    const app = new Hono();
    app.route("/", grafanaRoutes({ sql, markets: ["KRW-BTC", "KRW-ETH"] }));
    // As the app answers them (lib/http/app.ts).
    app.onError((err, c) => {
      if (err instanceof ApiError) return c.json(err.body, err.status);
      throw err;
    });
    const query = async (body: Record<string, unknown>) => {
      const res = await app.request("/grafana/query", {
        method: "POST",
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    const T0 = Date.parse("2026-05-01T00:00:00Z");
    // 27 hours at 1-second bins: the bins follow the points asked for, here the most allowed.
    const range = {
      from: new Date(T0).toISOString(),
      to: new Date(T0 + 27 * 3_600_000).toISOString(),
    };
    const markets = (n: number) => Array.from({ length: n }, (_, i) => `KRW-C${i}`);
    const tooMany = (points: number) =>
      `asks for ${points} points or more, over the limit of ${MAX_POINTS_PER_QUERY} points per ` +
      `query (series x points per series): ask for a shorter range, fewer points per series ` +
      `(maxDataPoints) or fewer series (targets or markets)`;

    assert.equal(MAX_POINTS_PER_SERIES, 10_000);
    assert.equal(MAX_POINTS_PER_QUERY, 200_000);
    // More points per series than allowed.
    const wide = await query({
      range,
      intervalMs: 1000,
      maxDataPoints: 10_001,
      targets: [{ target: "close", refId: "A" }],
    });
    assert.equal(wide.status, 400);
    assert.deepEqual(wide.body, {
      error: "invalid body",
      field: "maxDataPoints",
      message: "must be at most 10000 (points per series)",
    });
    // 27 h in 10 000 points: 10-s bins, 9721 of them over the range.
    assert.equal(binSeconds(T0, T0 + 27 * 3_600_000, 1000, 10_000), 10);
    // 20 markets x 9721 points fit; 25 markets do not, refused before reading anything.
    const fits = await query({
      range,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [{ target: "close", refId: "A", payload: { market: markets(20) } }],
    });
    assert.equal(fits.status, 200, JSON.stringify(fits.body));
    const over = await query({
      range,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [{ target: "close", refId: "A", payload: { market: markets(25) } }],
    });
    assert.equal(over.status, 400);
    assert.deepEqual(over.body, {
      error: "invalid body",
      field: "targets",
      message: tooMany(25 * 9721),
    });
    // Series add up across targets: close and volume of 12 markets each.
    const both = await query({
      range,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [
        { target: "close", refId: "A", payload: { market: markets(12) } },
        { target: "volume", refId: "B", payload: { market: markets(12) } },
      ],
    });
    assert.equal(both.status, 400);
    assert.equal(both.body.message, tooMany(24 * 9721));
    // A market listed twice is one series.
    const repeated = await query({
      range,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [{ target: "close", refId: "A", payload: { market: Array(100).fill("KRW-BTC") } }],
    });
    assert.equal(repeated.status, 200, JSON.stringify(repeated.body));

    // The same series twice is refused, however it is spelled; other markets are other series.
    for (
      const targets of [
        [{ target: "close", refId: "A" }, { target: "close", refId: "B" }],
        [
          { target: "close", refId: "A", payload: { market: "KRW-BTC" } },
          { target: "close", refId: "B", payload: { market: ["KRW-BTC"] } },
        ],
        [
          { target: "attempts", refId: "A" },
          { target: "attempts", refId: "B", payload: { market: "KRW-ETH" } },
        ],
      ]
    ) {
      const dup = await query({ range, maxDataPoints: 100, targets });
      assert.equal(dup.status, 400, JSON.stringify(targets));
      assert.deepEqual(dup.body, {
        error: "invalid body",
        field: "targets.1.target",
        message: "the same series as targets.0: ask for each series once",
      });
    }
    const distinct = await query({
      range,
      maxDataPoints: 100,
      targets: [
        { target: "close", refId: "A", payload: { market: "KRW-BTC" } },
        { target: "close", refId: "B", payload: { market: "KRW-ETH" } },
        { target: "close", refId: "C", hide: true },
      ],
    });
    assert.equal(distinct.status, 200, JSON.stringify(distinct.body));

    // Series known only once read (one per sampled label) are counted as answered: 21 labels with a
    // sample every second over 10 001 s pass the limit, and the answer is the same 400.
    await sql`
    insert into obs_samples (ts, metric, label, value)
    select to_timestamp(${T0 / 1000}::float8 + s), 'actor_restarts', 'actor' || l, 1
    from generate_series(0, 10000) s, generate_series(1, 21) l`;
    const sampledRange = {
      from: new Date(T0).toISOString(),
      to: new Date(T0 + 10_000_000).toISOString(),
    };
    const sampled = await query({
      range: sampledRange,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [{ target: "actor_restarts", refId: "A" }],
    });
    assert.equal(sampled.status, 400);
    assert.match(sampled.body.message, /^asks for \d+ points or more, over the limit of 200000 /);
    // 19 of them fit.
    await sql`delete from obs_samples where label in ('actor20', 'actor21')`;
    const sampledFits = await query({
      range: sampledRange,
      intervalMs: 1000,
      maxDataPoints: 10_000,
      targets: [{ target: "actor_restarts", refId: "A" }],
    });
    assert.equal(sampledFits.status, 200);
    assert.equal(sampledFits.body.length, 19);
    assert.equal(sampledFits.body[0].datapoints.length, 10_001);
  },
);
