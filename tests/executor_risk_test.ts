/**
 * The executor's live send path with the reconciliation gate and the risk gate, against the
 * simulator: nothing goes out before reconciliation, and refusals are stored on the attempt.
 */
import assert from "node:assert/strict";
import type { Client, Sql } from "../lib/db/connect.ts";
import { Executor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { type MarketRefusal, riskLimits } from "../lib/execution/risk_gate.ts";
import { MarketStatusPoller } from "../lib/pipeline/market_status.ts";
import { entryRefusalForMarket } from "../lib/store/market_status.ts";
import { reconciliationGate } from "../lib/execution/system_gate.ts";
import { createLogger } from "../lib/log.ts";
import { installationId } from "../lib/store/order_attempts.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { findingsOf } from "../lib/store/reconciliations.ts";
import { dbTest } from "./_db.ts";
import { executorConfig, type SimHandle, startSim } from "./_live_orders.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"];

function liveExecutor(
  sql: Client,
  h: SimHandle,
  env: Record<string, string> = {},
  now?: () => number,
  marketRefusal?: MarketRefusal,
): Executor {
  const config = executorConfig(h.sim, "live", env);
  return new Executor({
    sql,
    rest: h.rest,
    decision: decideTradeMode(config),
    settings: {
      orderKrwAmount: config.ORDER_KRW_AMOUNT,
      maxOrdersPerMin: config.MAX_ORDERS_PER_MIN,
      maxRetries: config.EXECUTOR_MAX_RETRIES,
      shadowEnabled: config.SHADOW_ENABLED,
      maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
    },
    risk: { limits: riskLimits(config), marketRefusal },
    log: createLogger("executor"),
    unknownSettleMs: 300,
    // Creates land at once on this simulator: no landing wait (tests/money_race_test.ts has it).
    rotationWaitMs: 0,
    retryBackoff: { baseMs: 50, maxMs: 200 },
    now,
  });
}

async function paperEntry(sql: Sql, market: string, price: number): Promise<number> {
  const qty = Math.floor((10000 / price) * 1e8) / 1e8;
  return await insertPaperEvent(sql, {
    action: "ENTER_LONG",
    market,
    ts: Date.now() - 1000,
    price,
    qty,
    fee: price * qty * 0.0005,
    ev: 0.1,
  }, "default");
}

async function lastPrice(h: SimHandle, market: string): Promise<number> {
  const { data } = await h.rest.getTicker({ markets: [market] });
  return data[0]!.trade_price;
}

dbTest(
  "executor live: no order goes out before the start's reconciliation completes",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      // Placed by another installation (a copy's lost database) while upbot was down: reported
      // and left alone. (One under this installation's own prefix would also halt entries.)
      const own = await installationId(db.sql);
      const stray = `paper-${own === "abcdefgh" ? "hgfedcba" : "abcdefgh"}-999-ENTER_LONG`;
      const placed = await h.rest.postOrder({
        market: "KRW-ETH",
        side: "bid",
        ord_type: "price",
        price: "10000",
        identifier: stray,
      });
      assert.equal(placed.kind, "accepted");
      await paperEntry(db.sql, "KRW-BTC", await lastPrice(h, "KRW-BTC"));
      let now = Date.now();
      const executor = liveExecutor(db.sql, h, {}, () => now);
      await executor.start();
      assert.equal((await reconciliationGate(db.sql)).open, false);
      // The exchange cannot be read: reconciliation fails, nothing is sent.
      h.sim.setFaults({ error_rate: 1 });
      assert.deepEqual(await executor.runOnce(), { handled: 0, more: true });
      h.sim.setFaults({ error_rate: 0 });
      // Not tried again at once (every run is stored); ten seconds later it is.
      assert.deepEqual(await executor.runOnce(), { handled: 0, more: true });
      const [runs] = await db.sql`select count(*)::int as n from reconciliations`;
      assert.equal(runs!.n, 1);
      now += 10_001;
      assert.equal(h.sim.orders().length, 1, "only the stray order exists");
      const [none] = await db.sql`select count(*)::int as n from upbit_order_attempts`;
      assert.equal(none!.n, 0);
      // Readable again: reconciliation records the stray order, then the entry goes out.
      await executor.runOnce();
      const findings = await findingsOf(db.sql);
      assert.deepEqual(findings.map((f) => [f.kind, f.identifier]), [[
        "foreign_installation_order",
        stray,
      ]]);
      assert.equal((await reconciliationGate(db.sql)).open, true);
      const sent = h.sim.orders().filter((o) => o.market === "KRW-BTC");
      assert.equal(sent.length, 1);
      const [run] = await db
        .sql`select completed_at from reconciliations where completed_at is not null`;
      const [attempt] = await db.sql`select ts from upbit_order_attempts`;
      assert.ok(attempt!.ts >= run!.completed_at, "the attempt was written after reconciliation");
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "executor live: a new entry is written once, as `sent` and committed, before its request goes out",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    // What another connection sees of the attempts at the moment the order is POSTed.
    const atRequest: { state: string; identifier: string }[][] = [];
    const rest = new UpbitRest({
      baseUrl: h.sim.restUrl,
      accessKey: h.sim.accessKey,
      secretKey: h.sim.secretKey,
      fetch: async (input, init) => {
        const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
        if (path === "/v1/orders" && init?.method === "POST") {
          atRequest.push([
            ...await db.sql<{ state: string; identifier: string }[]>`
            select state, identifier from upbit_order_attempts order by id`,
          ]);
        }
        return await fetch(input, init);
      },
    });
    try {
      const executor = liveExecutor(db.sql, { ...h, rest });
      await executor.start();
      const id = await paperEntry(db.sql, "KRW-BTC", await lastPrice(h, "KRW-BTC"));
      await executor.runOnce();
      const identifier = `paper-${await installationId(db.sql)}-${id}-ENTER_LONG`;
      assert.deepEqual(atRequest, [[{ state: "sent", identifier }]]);
      const [row] = await db.sql`select state, uuid from upbit_order_attempts`;
      assert.equal(row!.state, "open");
      assert.equal(h.sim.orders()[0]!.identifier, identifier);
    } finally {
      rest.close();
      await h.close();
    }
  },
);

dbTest(
  "executor live: the risk gate's refusal is stored on the attempt and nothing is sent",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const executor = liveExecutor(db.sql, h, { RISK_MAX_OPEN_POSITIONS: "1" });
      await executor.start();
      for (const m of MARKETS) await paperEntry(db.sql, m, await lastPrice(h, m));
      await executor.runOnce();
      const rows = await db.sql`select symbol, state, reason from upbit_order_attempts order by id`;
      assert.deepEqual(rows.map((r) => [r.symbol, r.state === "skipped" ? r.reason : "sent"]), [
        ["KRW-BTC", "sent"],
        ["KRW-ETH", "max_open_positions"],
        ["KRW-XRP", "max_open_positions"],
      ]);
      assert.deepEqual(h.sim.orders().map((o) => o.market), ["KRW-BTC"], "one entry on the wire");
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "executor live: an entry on a market under warning is refused before the wire (market status from the simulator)",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const res = await fetch(`${h.sim.restUrl}/_sim/markets`, {
        method: "POST",
        body: JSON.stringify({ market: "KRW-ETH", warning: true }),
      });
      assert.equal(res.status, 200, await res.text());
      await new MarketStatusPoller({ sql: db.sql, rest: h.rest, markets: MARKETS, log: h.log })
        .pollOnce();
      const executor = liveExecutor(db.sql, h, {}, undefined, entryRefusalForMarket);
      await executor.start();
      for (const m of ["KRW-BTC", "KRW-ETH"]) await paperEntry(db.sql, m, await lastPrice(h, m));
      await executor.runOnce();
      const rows = await db.sql`select symbol, state, reason from upbit_order_attempts order by id`;
      assert.deepEqual(rows.map((r) => [r.symbol, r.state === "skipped" ? r.reason : "sent"]), [
        ["KRW-BTC", "sent"],
        ["KRW-ETH", "market_warning"],
      ]);
      assert.deepEqual(h.sim.orders().map((o) => o.market), ["KRW-BTC"]);
    } finally {
      await h.close();
    }
  },
);
