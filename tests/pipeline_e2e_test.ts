/**
 * @module End-to-end tests of the whole actor pipeline against the simulator, through
 * `startUpbot` (workers, supervisor, least-privilege permissions, HTTP server), on every backend
 * of `testBackends()`: feed -> market_1s -> evaluator -> labels, predictions, paper trades ->
 * executor -> upbit_order_attempts -> order-poller -> snapshots and final state; account ->
 * live_positions. The logic classes have their own tests (execution_test.ts,
 * pipeline_services_test.ts); these check that the running system keeps the same promises.
 *
 * The workers log at `error` only (they print straight to stdout); set `E2E_WORKER_LOG_LEVEL=info`
 * to see them when a test fails. Main-thread lines are captured and shown in failure messages.
 */
import assert from "node:assert/strict";
import type { UpbotSupervisorEvent } from "../lib/pipeline/supervisor.ts";
import type { Client } from "../lib/db/connect.ts";
import type { LogLevel } from "../lib/log.ts";
import type { Upbot } from "../lib/upbot.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import {
  DEFAULT_ACCESS_KEY,
  DEFAULT_SECRET_KEY,
  type Simulator,
  startSimulator,
} from "../sim/mod.ts";
import { testBackends } from "./_db.ts";
import { type Cleanups, startUpbotRig } from "./_fault_rig.ts";
import { LIVE_ENV } from "./_upbot_rig.ts";

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
const workerLevel = Deno.env.get("E2E_WORKER_LOG_LEVEL") as LogLevel | undefined;
const WORKER_LOG_LEVEL: LogLevel = workerLevel && LEVELS.includes(workerLevel)
  ? workerLevel
  : "error";

/** A running upbot pointed at a running simulator, on a fresh database. */
interface Rig {
  backend: string;
  sim: Simulator;
  upbot: Upbot;
  /** upbot's own client (main thread). */
  sql: Client;
  /** A client of the simulator with its keys (test-side checks). */
  rest: UpbitRest;
  markets: string[];
  /** Main-thread log lines (supervisor, boot). */
  lines: string[];
  events: UpbotSupervisorEvent[];
  /** Summary of the database and actors, for failure messages. */
  describe(): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface RigOptions {
  markets: string[];
  /** upbot's variables (on top of the simulator's URLs, a fresh database and port 0). */
  env: Record<string, string>;
}

async function startRig(backend: string, options: RigOptions): Promise<Rig> {
  // Run in reverse on dispose (and on a failed start).
  const cleanups: Cleanups = [];
  const cleanUp = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    // 200 trades a second across the markets: enough for bars every second in each. Ten times
    // the documented volatility (the sim's test knob), so that take-profit / stop-loss exits of
    // the test profile (±0.15 % in 30 s) happen within the test's time.
    const sim = await startSimulator({
      seed: 11,
      markets: options.markets,
      rate: 200,
      volatilityScale: 10,
    });
    cleanups.push(() => sim.close());
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
    });
    cleanups.push(() => rest.close());
    const rig = await startUpbotRig({
      backend,
      sim,
      markets: options.markets,
      env: options.env,
      supervisor: { log: { level: WORKER_LOG_LEVEL, format: "json" } },
    });
    cleanups.push(() => rig[Symbol.asyncDispose]());
    const { upbot, lines, events } = rig;
    const sql = upbot.sql;
    return {
      backend,
      sim,
      upbot,
      sql,
      rest,
      markets: options.markets,
      lines,
      events,
      async describe() {
        const counts = await sql`
          select (select count(*) from market_1s where is_final) as final_bars,
                 (select count(*) from barrier_labels) as labels,
                 (select count(*) from predictions) as predictions,
                 (select count(*) from paper_trades) as paper_trades,
                 (select count(*) from upbit_order_snapshots) as snapshots,
                 (select count(*) from live_positions) as positions`;
        const statuses = await sql`
          select mode, status, count(*)::int as n from upbit_order_attempts
          group by mode, status order by mode, status`;
        const actors = upbot.supervisor.status().map((s) =>
          `${s.name}=${s.state}/restarts=${s.restarts}/err=${s.lastError ?? "-"}`
        );
        return [
          `backend=${backend}`,
          `counts=${JSON.stringify(counts[0])}`,
          `attempts=${JSON.stringify(statuses)}`,
          `sim_orders=${sim.orders().length}`,
          `actors: ${actors.join(" ")}`,
          `last lines:\n${lines.slice(-15).join("\n")}`,
        ].join("\n");
      },
      [Symbol.asyncDispose]: cleanUp,
    };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/** Polls `check` (every 100 ms) until it holds; fails with the rig's state after `timeoutMs`. */
async function until(
  rig: Rig,
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`not within ${timeoutMs} ms: ${what}\n${await rig.describe()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function count(sql: Client, table: string, where = "true"): Promise<number> {
  const [row] = await sql.unsafe(`select count(*)::int as n from ${table} where ${where}`);
  return row!.n as number;
}

interface PaperRow {
  id: string;
  action: "ENTER_LONG" | "EXIT_LONG";
  symbol: string;
  entry_id: string | null;
}

async function paperTrades(sql: Client, maxId = Number.MAX_SAFE_INTEGER): Promise<PaperRow[]> {
  return await sql<PaperRow[]>`
    select id::text, action, symbol, entry_id::text from paper_trades p where p.id <= ${maxId}
    order by p.id`;
}

async function attemptRows(sql: Client) {
  return await sql`select * from upbit_order_attempts order by id`;
}

/**
 * The latest final bar of `market` that lies inside the simulator's recent trade history equals
 * those trades: open / close by sequence, high, low, volume, trade count, buy and sell volume.
 */
async function assertBarMatchesSimTrades(rig: Rig, market: string): Promise<void> {
  const ticks = [];
  let cursor: bigint | undefined;
  for (let page = 0; page < 3; page++) {
    const { data } = await rig.rest.getTradesTicks({ market, count: 500, cursor });
    ticks.push(...data);
    if (data.length < 500) break;
    cursor = data.at(-1)!.sequential_id;
  }
  assert.ok(ticks.length > 0, "the simulator printed trades");
  const oldestMs = Math.min(...ticks.map((t) => t.timestamp));
  // Only a second that starts after the oldest tick is complete in this history.
  const [bar] = await rig.sql`
    select extract(epoch from ts)::float8 * 1000 as ms, open::float8, high::float8, low::float8,
           close::float8, volume::float8, buy_volume::float8, sell_volume::float8, trade_count
    from market_1s
    where symbol = ${market} and is_final and ts > to_timestamp(${oldestMs / 1000})
    order by ts desc limit 1`;
  assert.ok(bar, `a final ${market} bar within the last ${ticks.length} trades`);
  const unique = [...new Map(ticks.map((t) => [t.sequential_id, t])).values()];
  const inBar = unique
    .filter((t) => t.timestamp >= bar.ms && t.timestamp < bar.ms + 1000)
    .sort((a, b) => (a.sequential_id < b.sequential_id ? -1 : 1));
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  const expected = {
    open: inBar[0]?.trade_price,
    close: inBar.at(-1)?.trade_price,
    high: Math.max(...inBar.map((t) => t.trade_price)),
    low: Math.min(...inBar.map((t) => t.trade_price)),
    trade_count: inBar.length,
  };
  assert.deepEqual(
    { open: bar.open, close: bar.close, high: bar.high, low: bar.low, count: bar.trade_count },
    {
      open: expected.open,
      close: expected.close,
      high: expected.high,
      low: expected.low,
      count: expected.trade_count,
    },
    `bar at ${new Date(bar.ms).toISOString()} vs the simulator's trades`,
  );
  const volume = sum(inBar.map((t) => t.trade_volume));
  const buy = sum(inBar.filter((t) => t.ask_bid === "BID").map((t) => t.trade_volume));
  assert.ok(close(bar.volume, volume), `volume ${bar.volume} vs ${volume}`);
  assert.ok(close(bar.buy_volume, buy), `buy volume ${bar.buy_volume} vs ${buy}`);
  assert.ok(close(bar.sell_volume, volume - buy), `sell volume ${bar.sell_volume}`);
}

/** The simulator's (default) keys as upbot variables. */
function simKeys(): Record<string, string> {
  return { UPBIT_ACCESS_KEY: DEFAULT_ACCESS_KEY, UPBIT_SECRET_KEY: DEFAULT_SECRET_KEY };
}

const MAX_RETRIES = 2;

/** Live mode on the simulator: all five guard conditions, and a strategy that trades at once. */
function liveEnv(): Record<string, string> {
  return {
    ...LIVE_ENV,
    // This simulator creates an order as the request arrives (no create_delay_ms fault), so no
    // create lands late: a short landing wait keeps entries under 5xx faults from waiting a minute.
    EXECUTOR_LANDING_WAIT_SEC: "2",
    EXECUTOR_MAX_RETRIES: String(MAX_RETRIES),
    // Every market may hold a position: these tests exercise orders under faults, not the risk
    // gate's limits (tests/executor_risk_test.ts does).
    RISK_MAX_OPEN_POSITIONS: "100",
    RISK_MAX_EXPOSURE_KRW: "10000000",
    RISK_MAX_DAILY_LOSS_KRW: "10000000",
  };
}

/** Why a live attempt may end without an order (reason codes of the executor). */
const NO_ORDER_REASONS = new Set([
  "entry_bought_nothing",
  "no_live_entry",
  "under_min_total",
  "exit_below_min_total",
  "stale_signal",
  "retries_exhausted",
  "insufficient_funds_bid",
]);

/** Whether a live attempt will change no more (a terminal state of the state machine). */
const RESOLVED_SQL = `state in ('filled', 'cancelled', 'prevented', 'rejected', 'failed',
  'conflict', 'skipped', 'logged', 'test_ok')`;

/** Waits until every paper trade up to `maxId` has a live attempt that will change no more. */
async function settleLive(rig: Rig, maxId: number, timeoutMs = 45_000): Promise<void> {
  await until(
    rig,
    `every paper trade up to ${maxId} has a resolved live attempt`,
    async () =>
      await count(
        rig.sql,
        "upbit_order_attempts",
        `paper_trade_id <= ${maxId} and ${RESOLVED_SQL}`,
      ) >=
        (await paperTrades(rig.sql, maxId)).length,
    timeoutMs,
  );
}

/**
 * The live invariants, for paper trades up to `maxId` (all resolved): each has its attempt;
 * at most one exchange order per identifier and none without an attempt; each final state,
 * executed volume and fee equals the simulator's order; every live order has snapshots.
 * Returns the attempts checked.
 */
async function assertLiveInvariants(rig: Rig, maxId: number) {
  // Orders first: an attempt row is written before its request, so every order read here has
  // its attempt in the rows read next.
  const orders = rig.sim.orders();
  const attempts = await attemptRows(rig.sql);
  const papers = await paperTrades(rig.sql, maxId);
  const context = async () => `\n${await rig.describe()}`;
  const identifiers = new Set(attempts.map((a) => a.identifier));
  assert.equal(identifiers.size, attempts.length, "one attempt per identifier");
  const ordersById = Map.groupBy(orders, (o) => o.identifier ?? "(none)");
  for (const [identifier, list] of ordersById) {
    assert.ok(identifiers.has(identifier), `order ${identifier} has an attempt${await context()}`);
    assert.equal(list.length, 1, `exactly one exchange order for ${identifier}`);
  }
  const byIdentifier = new Map(attempts.map((a) => [a.identifier, a]));
  const checked = [];
  for (const p of papers) {
    const [inst] = await rig.sql`select id from installation`;
    const identifier = `paper-${inst!.id}-${p.id}-${p.action}`;
    const a = byIdentifier.get(identifier);
    assert.ok(a, `paper trade ${p.id} has its attempt ${identifier}${await context()}`);
    assert.equal(a.mode, "live");
    checked.push(a);
    const order = ordersById.get(identifier)?.[0];
    if (a.status !== "done") {
      assert.ok(
        NO_ORDER_REASONS.has(a.reason),
        `${identifier} ended ${a.state} (${a.reason}: ${a.error_msg})${await context()}`,
      );
      assert.equal(order, undefined, `${identifier} ended ${a.status} but an order exists`);
      continue;
    }
    assert.ok(order, `${identifier} is done, so its order exists`);
    assert.equal(a.uuid, order.uuid);
    assert.equal(a.final_state, order.state);
    assert.equal(Number(a.executed_volume), Number(order.executed_volume));
    const { data } = await rig.rest.getOrder({ uuid: order.uuid });
    assert.equal(Number(a.paid_fee), Number(data.paid_fee), `${identifier} paid_fee`);
    assert.equal(Number(a.executed_volume), Number(data.executed_volume));
    const [snap] = await rig.sql`
      select count(*)::int as n, bool_or(state = ${order.state}) as final_seen
      from upbit_order_snapshots where uuid = ${order.uuid}`;
    assert.ok(snap!.n > 0 && snap!.final_seen, `${identifier} has snapshots incl. its final state`);
    if (p.action === "EXIT_LONG") {
      // It sold what its entry really bought, not the paper quantity.
      const entry = byIdentifier.get(`paper-${inst!.id}-${p.entry_id}-ENTER_LONG`);
      assert.equal(Number(a.volume), Number(entry?.executed_volume));
    }
  }
  return checked;
}

/** live_positions (written by the account actor) equal GET /v1/accounts, eventually. */
async function assertPositionsMatchAccounts(rig: Rig, timeoutMs = 15_000): Promise<void> {
  let last = "";
  await until(rig, "live_positions equal GET /v1/accounts", async () => {
    const { data: accounts } = await rig.rest.getAccounts();
    const rows = await rig.sql`
      select symbol, krw_balance::text, base_balance::text, base_locked::text,
             avg_buy_price::text, position_status
      from live_positions order by symbol`;
    const ledger = await rig.sql<{ symbol: string; open_volume: string }[]>`
      select symbol, open_volume::text from position_ledger`;
    const krw = accounts.find((a) => a.currency === "KRW");
    const expected = [...rig.markets].sort().map((symbol) => {
      const a = accounts.find((x) => x.currency === symbol.split("-")[1]);
      const owned = Number(ledger.find((l) => l.symbol === symbol)?.open_volume ?? 0);
      return {
        symbol,
        krw_balance: krw?.balance ?? "0",
        base_balance: a?.balance ?? "0",
        base_locked: a?.locked ?? "0",
        avg_buy_price: a?.avg_buy_price ?? "0",
        // The position is the ledger's: LONG while upbot owns a volume.
        position_status: owned > 0 ? "LONG" : "FLAT",
      };
    });
    const actual = rows.map((r) => ({ ...r, ...decimals(r) }));
    last = JSON.stringify({ expected, actual });
    return JSON.stringify(actual) ===
      JSON.stringify(expected.map((e) => ({ ...e, ...decimals(e) })));
  }, timeoutMs).catch((err) => {
    throw new Error(`${(err as Error).message}\n${last}`);
  });
}

/** Decimal strings compared by value ("0.10" = "0.1"). */
function decimals(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ["krw_balance", "base_balance", "base_locked", "avg_buy_price"]) {
    out[key] = Number(row[key]);
  }
  return out;
}

/** The actor list and health as served over HTTP. */
async function httpState(rig: Rig) {
  const actorsRes = await fetch(`${rig.upbot.httpUrl}/api/actors`);
  const actors = await actorsRes.json() as { name: string; state: string; restarts: number }[];
  const healthRes = await fetch(`${rig.upbot.httpUrl}/healthz`);
  const health = await healthRes.json() as { ok: boolean; db: string };
  return { actorsStatus: actorsRes.status, actors, healthStatus: healthRes.status, health };
}

const FIVE_ACTORS = ["feed", "evaluator", "executor", "order_poller", "account"];

for (const backend of testBackends()) {
  Deno.test(
    `e2e shadow: trades -> final bars -> labels, predictions -> paper trades -> logged attempts [${backend}]`,
    async () => {
      await using rig = await startRig(backend, {
        markets: ["KRW-BTC", "KRW-ETH"],
        env: { PAPER_POLICY_PROFILE: "test" },
      });
      const sql = rig.sql;
      await until(
        rig,
        "labels, predictions and a closed paper round trip",
        async () =>
          await count(sql, "barrier_labels") > 0 && await count(sql, "predictions") > 0 &&
          await count(sql, "paper_trades", "action = 'EXIT_LONG'") > 0,
      );
      const papers = await paperTrades(sql);
      const lastId = Number(papers.at(-1)!.id);
      await until(
        rig,
        "an attempt for every paper trade so far",
        async () =>
          await count(sql, "upbit_order_attempts", `paper_trade_id <= ${lastId}`) >=
            papers.length,
      );

      // Final bars: well-formed, from the simulator's trades, only in the configured markets.
      const bars = await sql`
        select symbol, open::float8, high::float8, low::float8, close::float8,
               volume::float8, buy_volume::float8, sell_volume::float8, trade_count
        from market_1s where is_final`;
      assert.ok(bars.length > 0);
      for (const b of bars) {
        assert.ok(rig.markets.includes(b.symbol), b.symbol);
        assert.ok(b.trade_count > 0 && b.volume > 0, JSON.stringify(b));
        assert.ok(b.low <= Math.min(b.open, b.close) && b.high >= Math.max(b.open, b.close));
        assert.ok(Math.abs(b.buy_volume + b.sell_volume - b.volume) < 1e-8);
      }

      await assertBarMatchesSimTrades(rig, rig.markets[0]!);

      // One shadow attempt per paper trade, logged, never sent: the sim has no order at all.
      const attempts = await attemptRows(sql);
      const byPaper = new Map(attempts.map((a) => [String(a.paper_trade_id), a]));
      for (const p of papers) {
        const a = byPaper.get(p.id);
        assert.ok(a, `paper trade ${p.id} has an attempt`);
        assert.match(a.identifier, new RegExp(`^paper-[a-z2-7]{8}-${p.id}-${p.action}$`));
        assert.equal(a.mode, "shadow");
        assert.equal(a.status, "logged");
        assert.equal(a.symbol, p.symbol);
        assert.deepEqual(
          [a.side, a.ord_type],
          p.action === "ENTER_LONG" ? ["bid", "price"] : ["ask", "market"],
        );
        assert.equal(a.uuid, null);
        assert.equal(a.http_status, null, "no API call in shadow mode");
      }
      assert.equal(
        new Set(attempts.map((a) => a.identifier)).size,
        attempts.length,
      );
      assert.deepEqual(rig.sim.orders(), []);

      const http = await httpState(rig);
      assert.equal(http.actorsStatus, 200);
      assert.deepEqual(http.actors.map((a) => a.name), FIVE_ACTORS);
      // Without keys the account actor exits normally and stays down; the rest run, uncrashed.
      assert.deepEqual(
        http.actors.map((a) => [a.name, a.state, a.restarts]),
        FIVE_ACTORS.map((n) => [n, n === "account" ? "stopped" : "running", 0]),
      );
      assert.equal(http.healthStatus, 200);
      assert.equal(http.health.ok, true);
      assert.equal(http.health.db, "ok");
    },
  );

  Deno.test(
    `e2e test mode: entries test_ok with http_status, latency and Remaining-Req; no order [${backend}]`,
    async () => {
      await using rig = await startRig(backend, {
        markets: ["KRW-BTC", "KRW-ETH"],
        env: {
          ...simKeys(),
          UPBIT_TRADE_MODE: "test",
          MAX_ORDERS_PER_MIN: "600",
          EXECUTOR_MAX_RETRIES: "1",
        },
      });
      const sql = rig.sql;
      await until(
        rig,
        "a closed paper round trip",
        async () => await count(sql, "paper_trades", "action = 'EXIT_LONG'") > 0,
      );
      const papers = await paperTrades(sql);
      const lastId = Number(papers.at(-1)!.id);
      // A definite refusal is final at once (rejected).
      await until(
        rig,
        "every paper trade so far has a settled test attempt",
        async () =>
          await count(
            sql,
            "upbit_order_attempts",
            `paper_trade_id <= ${lastId} and state in ('test_ok', 'rejected')`,
          ) >= papers.length,
      );
      const attempts = await attemptRows(sql);
      const byPaper = new Map(attempts.map((a) => [String(a.paper_trade_id), a]));
      for (const p of papers) {
        const a = byPaper.get(p.id);
        assert.ok(a, `paper trade ${p.id} has an attempt`);
        assert.match(a.identifier, new RegExp(`^paper-[a-z2-7]{8}-${p.id}-${p.action}$`));
        assert.equal(a.mode, "test");
        assert.equal(a.uuid, null, "a test uuid is never stored where the poller looks");
        if (p.action === "ENTER_LONG") {
          assert.equal(a.status, "test_ok", `${a.identifier}: ${a.error_msg}`);
          assert.equal(a.http_status, 201);
          assert.ok(Number.isInteger(a.latency_ms) && a.latency_ms >= 0);
          assert.match(a.remaining_req, /^group=order-test; min=\d+; sec=\d+$/);
          assert.equal(a.request_json.identifier, a.identifier);
        } else {
          // A test buy buys nothing, so the test sell of the paper quantity is refused for
          // lack of funds, as Upbit would (see execution_test.ts).
          assert.deepEqual([a.state, a.status], ["rejected", "error"]);
          assert.equal(a.reason, "insufficient_funds_ask");
          assert.match(a.error_msg, /^insufficient_funds_ask: /);
          assert.equal(a.http_status, 400);
          assert.equal(a.retry_count, 0, "a definite refusal is not retried");
        }
      }
      assert.deepEqual(rig.sim.orders(), [], "orders/test creates nothing");
      const { data: accounts } = await rig.rest.getAccounts();
      assert.deepEqual(accounts.map((a) => [a.currency, a.balance, a.locked]), [
        ["KRW", "10000000", "0"],
      ]);
    },
  );

  Deno.test(
    `e2e live: submitted -> done equal to the simulator's orders; positions equal balances [${backend}]`,
    async () => {
      await using rig = await startRig(backend, {
        markets: ["KRW-BTC", "KRW-ETH", "KRW-XRP"],
        env: liveEnv(),
      });
      const sql = rig.sql;
      await until(rig, "two live round trips done", async () =>
        await count(
          sql,
          "upbit_order_attempts",
          "action = 'EXIT_LONG' and status = 'done'",
        ) >= 2);
      const maxId = Number((await paperTrades(sql)).at(-1)!.id);
      await settleLive(rig, maxId);
      const checked = await assertLiveInvariants(rig, maxId);
      // Without faults every paper trade became an order that is done.
      assert.deepEqual(
        checked.filter((a) => a.status !== "done").map((a) => [a.identifier, a.error_msg]),
        [],
      );
      assert.ok(checked.length >= 4);
      await assertPositionsMatchAccounts(rig);
      assert.deepEqual(
        rig.events.filter((e) => e.type === "actor.crashed"),
        [],
      );
    },
  );

  Deno.test(
    `e2e live under faults: lost answers, 5xx, executor killed mid-order; one order per identifier [${backend}]`,
    async () => {
      await using rig = await startRig(backend, {
        markets: ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"],
        env: liveEnv(),
      });
      const sql = rig.sql;
      // Every (identifier, status, error) seen while polling: the path each attempt took.
      const seen = new Map<string, Set<string>>();
      const observe = async () => {
        for (const a of await attemptRows(sql)) {
          const path = seen.get(a.identifier) ?? new Set<string>();
          path.add(`${a.status}${a.error_msg ? ` (${a.error_msg})` : ""}`);
          seen.set(a.identifier, path);
        }
      };
      const everSeen = (re: RegExp) =>
        [...seen.values()].some((path) => [...path].some((step) => re.test(step)));
      const unsentSql = "not exists (select 1 from upbit_order_attempts a " +
        "where a.paper_trade_id = p.id)";

      // Every answer to an order creation is lost (the order exists, the answer is held back).
      rig.sim.setFaults({ lost_response_rate: 1 });
      // Kill the executor while it waits for a lost answer (between sending an order and
      // recording it) and while paper trades wait behind it (between writing a paper trade and
      // sending its order).
      let killed: { identifier: string; unsent: string[] } | undefined;
      await until(rig, "an order in flight and a paper trade behind it", async () => {
        await observe();
        const exchange = new Set(rig.sim.orders().map((o) => o.identifier));
        const [inFlight] = await sql`
          select identifier from upbit_order_attempts
          where mode = 'live' and status = 'pending' order by id limit 1`;
        if (!inFlight || !exchange.has(inFlight.identifier)) return false;
        const unsent = await sql`select id::text from paper_trades p where ${
          sql.unsafe(unsentSql)
        }`;
        if (unsent.length === 0) return false;
        assert.equal(rig.upbot.supervisor.kill("executor", "test: kill mid-order"), true);
        killed = { identifier: inFlight.identifier, unsent: unsent.map((p) => p.id) };
        return true;
      }, 30_000);
      // The new executor resolves that order by identifier, then meets a lost answer itself:
      // its request times out, and the outcome is resolved by identifier too.
      await until(rig, "a create of the new executor in flight", async () => {
        await observe();
        const exchange = new Set(rig.sim.orders().map((o) => o.identifier));
        const pending = await sql`
          select identifier from upbit_order_attempts
          where mode = 'live' and status = 'pending' and identifier <> ${killed!.identifier}`;
        return pending.some((a) => exchange.has(a.identifier));
      }, 30_000);
      // Then server errors (refused before the exchange: no order) on creates and everything else.
      // Switched now, while that create waits for its lost answer (the exchange decided to lose
      // it when it arrived): a create sent after the switch is refused at once, where one sent
      // after the timeout below but before the switch would wait out a timeout of its own.
      rig.sim.setFaults({ lost_response_rate: 0, error_rate: 0.5 });
      await until(rig, "a create that timed out", async () => {
        await observe();
        return everSeen(/^unknown \(outcome unknown: timeout\)$/);
      }, 30_000);
      await until(rig, "a create answered with a 5xx", async () => {
        await observe();
        return everSeen(/^unknown \(outcome unknown: server_error\)$/);
      }, 30_000);
      rig.sim.setFaults({ lost_response_rate: 0, error_rate: 0 });
      const maxId = Number((await paperTrades(sql)).at(-1)!.id);
      await settleLive(rig, maxId);
      await observe();
      const checked = await assertLiveInvariants(rig, maxId);
      const paths = [...seen].map(([id, path]) => `${id}: ${[...path].join(" -> ")}`).join("\n");
      const k = checked.find((a) => a.identifier === killed!.identifier);
      assert.equal(k?.status, "done", `the killed attempt ${killed!.identifier}\n${paths}`);
      // The paper trades that waited behind it were all handled after the restart.
      for (const id of killed!.unsent) {
        assert.ok(checked.some((a) => String(a.paper_trade_id) === id), `paper trade ${id}`);
      }
      // Nothing is left unresolved, whatever path an attempt took.
      const open = await sql`
        select identifier, status from upbit_order_attempts
        where paper_trade_id <= ${maxId} and not ${sql.unsafe(RESOLVED_SQL)}`;
      assert.deepEqual([...open], [], paths);
      assert.ok(
        rig.events.some((e) =>
          e.type === "actor.started" && e.actor === "executor" &&
          e.incarnation > 1
        ),
        "the executor came back",
      );
      // The account actor may still be backing off after the 5xx phase.
      await assertPositionsMatchAccounts(rig, 40_000);
    },
  );

  Deno.test(
    `e2e live: a myOrder event wakes the order-poller long before its next poll [${backend}]`,
    async () => {
      await using rig = await startRig(backend, {
        markets: ["KRW-BTC"],
        // Live, but the strategy never enters and the poller polls only once a minute.
        env: { ...liveEnv(), EVAL_ENTRY_EV_MIN: "100", LIVE_ORDER_POLL_INTERVAL_SEC: "60" },
      });
      const sql = rig.sql;
      // A resting limit bid far below the market, tracked as a submitted live attempt.
      const identifier = "e2e-myorder-1";
      const sent = await rig.rest.postOrder({
        market: "KRW-BTC",
        side: "bid",
        ord_type: "limit",
        price: "100000000",
        volume: "0.0001",
        identifier,
      });
      assert.equal(sent.kind, "accepted");
      const uuid = sent.kind === "accepted" ? sent.order.uuid : "";
      await sql`insert into upbit_order_attempts (symbol, action, mode, side, ord_type, price,
        volume, identifier, status, uuid, request_json)
        values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'limit', '100000000', '0.0001',
                ${identifier}, 'submitted', ${uuid}, '{}'::jsonb)`;
      // The poller has made its first pass at start and now sleeps for a minute. A trade
      // through the limit fills the order; the myOrder event must wake the poller.
      await new Promise((r) => setTimeout(r, 500));
      const filledAt = Date.now();
      rig.sim.injectTrade({ market: "KRW-BTC", price: 99_999_000, volume: 0.01, side: "ASK" });
      await until(
        rig,
        "the filled order recorded as final",
        // (The bought coins are then the ledger's: the closer sells them in a row of its own.)
        async () =>
          await count(
            sql,
            "upbit_order_attempts",
            `identifier = '${identifier}' and final_state is not null`,
          ) === 1,
        15_000,
      );
      assert.ok(Date.now() - filledAt < 15_000, "well before the 60 s poll");
      const [a] = await sql`select status, final_state, executed_volume::text as ev
        from upbit_order_attempts where identifier = ${identifier}`;
      assert.deepEqual([a?.status, a?.final_state, a?.ev], ["done", "done", "0.0001"]);
    },
  );
}
