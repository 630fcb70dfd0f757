/**
 * @module Parity of the backtest with the live evaluator: upbot runs against the simulator (shadow
 * mode, as tests/pipeline_e2e_test.ts does), then the backtest replays the `market_1s` bars the
 * live evaluator had processed and must produce the same paper trades, trade for trade (action,
 * bar, price, quantity, fee, pnl, reason, hold, EV). The fill model is layered on top and is not
 * part of parity; its premise is checked against the live run: the executor (shadow) never acts
 * on a paper trade of bar `s` before `s` + 1 s + the feed's lateness, the earliest bar the
 * backtest fills at.
 */
import assert from "node:assert/strict";
import { fillDelayMs } from "../lib/backtest/fill.ts";
import { replayMarket } from "../lib/backtest/replay.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import { barsFromDatabase } from "../lib/backtest/store.ts";
import { parseConfig } from "../lib/config.ts";
import type { Client } from "../lib/db/connect.ts";
import type { PaperEvent } from "../lib/strategy/policy.ts";
import { overridesFromConfig, resolveParams } from "../lib/strategy/policy.ts";
import { startUpbot } from "../lib/upbot.ts";
import { startSimulator } from "../sim/mod.ts";
import { testBackends } from "./_db.ts";
import { captureLog, type Cleanups, freshDatabaseEnv } from "./_fault_rig.ts";

/**
 * A strategy that trades every few seconds on the simulator (shadow mode: no orders). The entry
 * threshold is low enough that the spread cost in EV (up to ~0.05 % on the simulator's ETH) never
 * keeps it out.
 */
const ENV = {
  PAPER_POLICY_PROFILE: "test",
  EVAL_ENTRY_EV_MIN: "-1",
  EVAL_TP_PCT: "0.05",
  EVAL_SL_PCT: "0.05",
  EVAL_HORIZON_SEC: "3",
  ORDER_KRW_AMOUNT: "10000",
};

const MARKETS = ["KRW-BTC", "KRW-ETH"];

interface LiveRow {
  symbol: string;
  action: string;
  ts: Date;
  entry_ts: Date;
  entry_price: string;
  exit_price: string | null;
  qty: string;
  fee: string;
  pnl: string | null;
  hold_sec: number | null;
  exit_reason: string | null;
  ev: number | null;
}

/** The comparable content of a paper event (numbers exactly as the evaluator computed them). */
function fromEvent(e: PaperEvent) {
  return e.action === "ENTER_LONG" ? [e.market, e.action, e.ts, e.price, e.qty, e.fee, e.ev] : [
    e.market,
    e.action,
    e.ts,
    e.entryTs,
    e.entryPrice,
    e.price,
    e.qty,
    e.fee,
    e.pnl,
    e.holdSec,
    e.reason,
    e.ev,
  ];
}

function fromRow(r: LiveRow) {
  return r.action === "ENTER_LONG"
    ? [
      r.symbol,
      r.action,
      r.ts.getTime(),
      Number(r.entry_price),
      Number(r.qty),
      Number(r.fee),
      r.ev,
    ]
    : [
      r.symbol,
      r.action,
      r.ts.getTime(),
      r.entry_ts.getTime(),
      Number(r.entry_price),
      Number(r.exit_price),
      Number(r.qty),
      Number(r.fee),
      Number(r.pnl),
      r.hold_sec,
      r.exit_reason,
      r.ev,
    ];
}

/** Polls `check` until it holds; a generous limit, as the machine may be busy with other tests. */
async function until(
  what: string,
  check: () => Promise<boolean>,
  describe: () => Promise<string>,
  timeoutMs = 240_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`not within ${timeoutMs} ms: ${what}\n${await describe()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

for (const backend of testBackends()) {
  Deno.test(`backtest replays a live simulator run's bars into the same paper trades [${backend}]`, async () => {
    const log = captureLog();
    const lines = log.lines;
    const cleanups: Cleanups = [log.restore];
    try {
      const sim = await startSimulator({
        seed: 7,
        markets: MARKETS,
        rate: 200,
        volatilityScale: 10,
      });
      cleanups.push(() => sim.close());
      const dbEnv = await freshDatabaseEnv(backend, cleanups);
      if (dbEnv.DATA_DIR === undefined) {
        // PostgreSQL: upbot still keeps its control directory under DATA_DIR (default ./data,
        // which another upbot, e.g. another test process, may hold).
        const dir = await Deno.makeTempDir({ prefix: "upbot_parity_" });
        cleanups.push(() => Deno.remove(dir, { recursive: true }));
        dbEnv.DATA_DIR = dir;
      }
      const config = parseConfig({
        HTTP_PORT: "0",
        LOG_LEVEL: "warn",
        LOG_FORMAT: "json",
        MARKETS: MARKETS.join(","),
        UPBIT_REST_URL: sim.restUrl,
        UPBIT_WS_URL: sim.wsUrl,
        ...dbEnv,
        ...ENV,
      });
      const upbot = await startUpbot(config, {
        supervisor: { log: { level: "error", format: "json" }, statusLogIntervalMs: 0 },
      });
      cleanups.push(() => upbot.stop());
      const sql: Client = upbot.sql;
      await until(
        "two closed paper trades in each market",
        async () => {
          const rows = await sql<{ symbol: string; n: number }[]>`
            select symbol, count(*)::int as n from paper_trades where action = 'EXIT_LONG'
            group by symbol`;
          return MARKETS.every((m) => (rows.find((r) => r.symbol === m)?.n ?? 0) >= 2);
        },
        async () =>
          JSON.stringify(
            await sql`
              select symbol, count(*)::int as bars,
                     (select count(*)::int from predictions p where p.symbol = b.symbol) as preds,
                     (select count(*)::int from paper_trades t where t.symbol = b.symbol) as papers
              from market_1s b where is_final group by symbol`,
          ),
      );

      const params = resolveParams("test", overridesFromConfig(config));
      let compared = 0;
      for (const market of MARKETS) {
        // What the live evaluator has processed: its snapshot's last bar (paper trades commit in
        // the same transaction as the snapshot).
        const [state] = await sql<{ state: { lastTs: number } }[]>`
          select state from actor_state where name = ${`evaluator.${market}`}`;
        const lastTs = state!.state.lastTs;
        const live = await sql<LiveRow[]>`
          select symbol, action, ts, entry_ts, entry_price::text, exit_price::text, qty::text,
                 fee::text, pnl::text, hold_sec, exit_reason, ev
          from paper_trades where symbol = ${market} and ts <= ${new Date(lastTs)} order by id`;
        const replay = await replayMarket(barsFromDatabase(sql, market, 0, lastTs + 1), {
          market,
          params,
          krwAmount: config.ORDER_KRW_AMOUNT,
          slippageBps: 0,
        });
        assert.equal(replay.lastTs, lastTs);
        assert.ok(live.length >= 4, `${market}: ${live.length} live paper trades`);
        assert.deepEqual(replay.events.map(fromEvent), live.map(fromRow), `${market} paper trades`);
        compared += live.length;
      }
      assert.ok(compared >= 8);

      // The fill model's premise, checked on the live path: no order of a paper trade of bar `s`
      // leaves the executor before `s` + 1 s + the feed's lateness (bar `s` is not final before a
      // trade that late arrives, and the simulator stamps trades with the time it sends them), so
      // the backtest's fill bar (the first at >= that time) is never earlier than live could act.
      const delays = await sql<{ market: string; ms: number }[]>`
        select p.symbol as market,
               (extract(epoch from a.ts - p.ts) * 1000)::float8 as ms
        from upbit_order_attempts a join paper_trades p on p.id = a.paper_trade_id
        where a.mode = 'shadow' order by a.id`;
      assert.ok(delays.length >= 4, `${delays.length} shadow attempts`);
      const fillDelay = fillDelayMs();
      for (const d of delays) {
        assert.ok(d.ms >= fillDelay, `${d.market}: a shadow order ${d.ms} ms after its bar`);
      }

      // The whole run through runBacktest (what the CLI does) is byte-identical when repeated.
      // Its range ends once every market has bars 4 s past the last exit compared above, so that
      // exit (and the round trips before it) have their fill bars.
      const [lastExit] = await sql<{ t: Date }[]>`
        select max(ts) as t from paper_trades where action = 'EXIT_LONG'`;
      const fillsDue = lastExit!.t.getTime() + 4000;
      const newestBars = () =>
        sql<{ symbol: string; t: Date }[]>`
          select symbol, max(ts) as t from market_1s where is_final group by symbol`;
      await until(
        "bars past the last exit's fill bar in each market",
        async () => {
          const rows = await newestBars();
          return MARKETS.every((m) =>
            (rows.find((r) => r.symbol === m)?.t.getTime() ?? 0) >= fillsDue
          );
        },
        async () => JSON.stringify(await newestBars()),
      );
      const lastTs = Math.min(
        ...(await sql<
          { t: Date }[]
        >`select max(ts) as t from market_1s where is_final group by symbol`)
          .map((r) => r.t.getTime()),
      );
      const run = {
        markets: MARKETS,
        from: new Date(0).toISOString(),
        to: new Date(lastTs + 1000).toISOString(),
        source: "db" as const,
        profile: "test",
        params,
        krwAmount: config.ORDER_KRW_AMOUNT,
        slippageBps: 2,
      };
      const source = (m: string) => barsFromDatabase(sql, m, 0, lastTs + 1000);
      const report = await runBacktest(run, source);
      const a = JSON.stringify(report);
      const b = JSON.stringify(await runBacktest(run, source));
      assert.equal(a, b);
      const filled = report.trades.filter((t) => t.fillEntryTs !== null);
      assert.ok(filled.length > 0);
      for (const t of filled) {
        assert.ok(Date.parse(t.fillEntryTs!) >= Date.parse(t.entryTs) + fillDelay, t.entryTs);
        assert.ok(Date.parse(t.fillExitTs!) >= Date.parse(t.exitTs) + fillDelay, t.exitTs);
      }
    } catch (err) {
      throw new Error(`${(err as Error).stack}\nlast lines:\n${lines.slice(-10).join("\n")}`);
    } finally {
      for (const fn of cleanups.reverse()) await fn();
    }
  });
}
