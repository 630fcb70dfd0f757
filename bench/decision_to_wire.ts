/**
 * @module Decision-to-wire benchmark: from the evaluator's decision (its paper trade committed) to
 * the simulator receiving the order, through upbot's real path in live mode: the executor and the
 * order-poller actors in their own Workers under the supervisor, as in upbot, against the
 * simulator in its own process with keys the simulator accepts.
 *
 * Each decision is committed as the evaluator commits one (`insertPaperEvent` and the evaluator's
 * snapshot row in one transaction); its moment is taken right after that commit resolves, then the
 * `wake` goes to the executor (`Supervisor.send`, as the evaluator's `ctx.send` is routed). The
 * executor reads the paper trade with its durable cursor, writes the `pending` attempt, re-checks
 * halts, passes the risk gate (fresh balances by `GET /v1/accounts`), marks the attempt `sent` and
 * POSTs it. The receipt is the simulator's own record of when the `POST /v1/orders` reached its
 * handler (`GET /_sim/receipts`). Both clocks are `performance.timeOrigin + performance.now()` on
 * this machine; their difference is measured with `GET /_sim/clock` (the sample with the shortest
 * round trip) and subtracted.
 *
 * Decisions alternate ENTER_LONG and EXIT_LONG on one market; the next one is committed once the
 * previous order is final (the order-poller filled it) and at least `spacingMs` later, so the
 * rate caps (upbot's and the simulator's) never hold an order back. Settings that would refuse
 * such a run are raised (MAX_ORDERS_PER_MIN 600, the daily loss limit); every rule still runs.
 *
 * Usage: deno run -A --unstable-worker-options bench/decision_to_wire.ts [pglite|postgres] [decisions=400]
 *   (postgres needs BENCH_DATABASE_URL or TEST_DATABASE_URL: a fresh database is created on it)
 */
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";
import { parseConfig } from "../lib/config.ts";
import type { Database, DbConnection } from "../lib/db/connect.ts";
import { Lease } from "../lib/db/lease.ts";
import { LIVE_GUARD_PHRASE } from "../lib/execution/guard.ts";
import { reconciliationGate } from "../lib/execution/system_gate.ts";
import { configureLogging } from "../lib/log.ts";
import { pipelineActorSpecs } from "../lib/pipeline/actor_specs.ts";
import { saveActorState } from "../lib/store/actor_state.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import type { PaperEvent } from "../lib/strategy/policy.ts";
import { type BenchRow, fmt, out, percentile, sleep, startSimProcess } from "./_harness.ts";
import { freshDatabase } from "./feed_ingest.ts";

const MARKET = "KRW-BTC";
const FINAL = new Set([
  "filled",
  "cancelled",
  "prevented",
  "rejected",
  "failed",
  "conflict",
  "skipped",
]);

/** What one run measured. */
export interface WireFigures {
  backend: "pglite" | "postgres";
  decisions: number;
  /** Decision to receipt, ms, in decision order. */
  latenciesMs: number[];
  /** The same, entries only and exits only. */
  entriesMs: number[];
  exitsMs: number[];
  /**
   * The floor, measured between upbot's decisions: a bare client (the bench's own connection and
   * an `UpbitRest` in the main thread) commits a row, takes its moment, commits a second row (the
   * durable write) and POSTs an order; to its receipt, ms. No actor hop, no reads, no gate.
   */
  floorMs: number[];
  /** Decisions whose order never reached the simulator (with the attempt's state and reason). */
  missing: string[];
  /** The simulator's clock minus ours (subtracted), and the half round trip that bounds it. */
  clockOffsetMs: number;
  clockUncertaintyMs: number;
}

/** Our clock, the same expression as the simulator's receipts. */
function clockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The simulator's clock minus ours, from the sample with the shortest round trip. */
async function clockOffset(restUrl: string): Promise<{ offsetMs: number; halfRttMs: number }> {
  let best = { offsetMs: 0, halfRttMs: Infinity };
  for (let i = 0; i < 50; i++) {
    const t0 = clockMs();
    const res = await fetch(`${restUrl}/_sim/clock`);
    const { now_ms } = await res.json() as { now_ms: number };
    const t1 = clockMs();
    const half = (t1 - t0) / 2;
    if (half < best.halfRttMs) best = { offsetMs: now_ms - (t0 + half), halfRttMs: half };
  }
  return best;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Commits one decision as the evaluator does (paper trade + its snapshot, one transaction). */
async function commitDecision(db: Database, event: PaperEvent, profile: string): Promise<number> {
  let id = 0;
  await db.sql.begin(async (tx) => {
    id = await insertPaperEvent(tx, event, profile);
    await saveActorState(tx, `evaluator.${event.market}`, { bench: event.ts });
  });
  return id;
}

/** Runs `decisions` decisions on a fresh database of `backend`. */
export async function benchDecisionToWire(
  backend: "pglite" | "postgres",
  decisions = 400,
  spacingMs = 150,
): Promise<WireFigures> {
  const { db, dispose } = await freshDatabase(backend);
  const sim = await startSimProcess({ rate: 5, markets: [MARKET] });
  let supervisor: UpbotSupervisor | undefined;
  // On PostgreSQL upbot trades under the lease: its attempt writes are fenced by it.
  const lease = db.connection.kind === "url"
    ? new Lease({ connection: db.connection, holder: `bench pid ${Deno.pid}` })
    : null;
  try {
    let connection: DbConnection = db.connection;
    if (lease && connection.kind === "url") {
      const fence = await lease.tryAcquire();
      if (!fence) throw new Error("could not take the lease of the fresh database");
      connection = { ...connection, lease: fence };
    }
    const ticker = await (await fetch(`${sim.restUrl}/v1/ticker?markets=${MARKET}`)).json() as {
      trade_price: number;
    }[];
    const price = ticker[0]!.trade_price;
    // The feed's newest bar: the risk gate values positions and entries at its close.
    await upsertBars(db.sql, [{
      market: MARKET,
      ts: Math.floor(Date.now() / 1000) * 1000 - 1000,
      open: price,
      high: price,
      low: price,
      close: price,
      volume: 0.01,
      quoteVolume: price * 0.01,
      tradeCount: 1,
      buyVolume: 0.005,
      sellVolume: 0.005,
      askEst: null,
      bidEst: null,
    }], true);
    const config = parseConfig({
      MARKETS: MARKET,
      UPBIT_REST_URL: sim.restUrl,
      UPBIT_WS_URL: sim.wsUrl,
      UPBIT_ACCESS_KEY: sim.accessKey,
      UPBIT_SECRET_KEY: sim.secretKey,
      UPBIT_TRADE_MODE: "live",
      LIVE_TRADING_ENABLED: "true",
      LIVE_GUARD_PHRASE,
      PAPER_POLICY_PROFILE: "default",
      MAX_ORDERS_PER_MIN: "600",
      RISK_MAX_DAILY_LOSS_KRW: "10000000",
      LIVE_ORDER_POLL_INTERVAL_SEC: "1",
    });
    const specs = pipelineActorSpecs(config, connection).filter((s) =>
      s.name === "executor" || s.name === "order_poller"
    );
    supervisor = new UpbotSupervisor({
      actors: specs,
      log: { level: "error", format: "json" },
      statusLogIntervalMs: 0,
    });
    await supervisor.start();
    // Live start: nothing goes out before the executor has reconciled with the exchange.
    await waitFor(async () => (await reconciliationGate(db.sql)).open, 30_000, "reconciliation");
    const { offsetMs, halfRttMs } = await clockOffset(sim.restUrl);
    // The floor's client and table; its orders rest far below the market (never filled). Both
    // clients' orders together exceed Upbit's 8 orders/s, so the simulator's limits are relaxed
    // (upbot's own client keeps its limiter).
    await fetch(`${sim.restUrl}/_sim/faults`, {
      method: "POST",
      body: JSON.stringify({ rate_limit_factor: 1000 }),
    }).then((r) => r.body?.cancel());
    await db.sql`create table bench_floor (n integer not null, at timestamptz default now())`;
    const floorRest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
      rateLimiter: { budgets: { order: { limit: 1000, windowMs: 1000 } } },
    });
    const floorPrice = Math.floor((price * 0.5) / 100_000) * 100_000;
    const floorVolume = (Math.ceil((6000 / floorPrice) * 1e8) / 1e8).toFixed(8);
    const floorAt = new Map<string, number>();

    const decidedAt = new Map<number, { at: number; action: string }>();
    let entry: { ts: number; price: number; qty: number } | null = null;
    let last = 0;
    for (let i = 0; i < decisions; i++) {
      await sleep(Math.max(0, last + spacingMs - Date.now()));
      last = Date.now();
      const ts = Date.now();
      let event: PaperEvent;
      if (entry === null) {
        const qty = Math.floor((config.ORDER_KRW_AMOUNT / price) * 1e8) / 1e8;
        event = {
          action: "ENTER_LONG",
          market: MARKET,
          ts,
          price,
          qty,
          fee: price * qty * 0.0005,
          ev: 1,
        };
        entry = { ts, price, qty };
      } else {
        event = {
          action: "EXIT_LONG",
          market: MARKET,
          ts,
          price,
          qty: entry.qty,
          fee: price * entry.qty * 0.0005,
          pnl: 0,
          holdSec: Math.round((ts - entry.ts) / 1000),
          reason: "TIMEOUT",
          entryTs: entry.ts,
          entryPrice: entry.price,
          ev: null,
        };
        entry = null;
      }
      const id = await commitDecision(db, event, config.PAPER_POLICY_PROFILE);
      decidedAt.set(id, { at: clockMs(), action: event.action });
      supervisor.send("executor", { type: "wake", topic: "paper_trades" });
      // Polled only after the order has (almost always) reached the wire, not to compete with it.
      await sleep(Math.min(100, spacingMs));
      await waitFor(
        async () => {
          const [row] = await db.sql<{ state: string }[]>`
          select state from upbit_order_attempts where paper_trade_id = ${id}`;
          return row !== undefined && FINAL.has(row.state);
        },
        30_000,
        `the order of decision ${i + 1}`,
      );
      // The floor, between two decisions.
      await db.sql`insert into bench_floor (n) values (${i})`;
      const floorStart = clockMs();
      await db.sql`insert into bench_floor (n) values (${-i - 1})`;
      const identifier = `bench-floor-${i}`;
      floorAt.set(identifier, floorStart);
      const posted = await floorRest.postOrder({
        market: MARKET,
        side: "bid",
        ord_type: "limit",
        price: String(floorPrice),
        volume: floorVolume,
        identifier,
      });
      if (posted.kind !== "accepted") throw new Error(`the floor's order was not accepted`);
    }
    floorRest.close();

    const receipts = new Map(
      (await (await fetch(`${sim.restUrl}/_sim/receipts`)).json() as {
        identifier: string;
        received_at_ms: number;
      }[]).map((r) => [r.identifier, r.received_at_ms]),
    );
    const attempts = await db.sql<
      { paper_trade_id: string; identifier: string; state: string; reason: string | null }[]
    >`
      select paper_trade_id::text, identifier, state, reason from upbit_order_attempts
      where paper_trade_id is not null order by paper_trade_id`;
    const byPaper = new Map(attempts.map((a) => [Number(a.paper_trade_id), a]));
    const figures: WireFigures = {
      backend,
      decisions,
      latenciesMs: [],
      floorMs: [],
      entriesMs: [],
      exitsMs: [],
      missing: [],
      clockOffsetMs: offsetMs,
      clockUncertaintyMs: halfRttMs,
    };
    for (const [identifier, at] of floorAt) {
      const received = receipts.get(identifier);
      if (received !== undefined) figures.floorMs.push(received - offsetMs - at);
    }
    for (const [id, d] of decidedAt) {
      const a = byPaper.get(id);
      const received = a ? receipts.get(a.identifier) : undefined;
      if (!a || received === undefined) {
        figures.missing.push(
          `paper trade ${id} (${d.action}): ${a ? `${a.state} ${a.reason ?? ""}` : "no attempt"}`,
        );
        continue;
      }
      const ms = received - offsetMs - d.at;
      figures.latenciesMs.push(ms);
      (d.action === "ENTER_LONG" ? figures.entriesMs : figures.exitsMs).push(ms);
    }
    return figures;
  } finally {
    await supervisor?.stop("bench done");
    await lease?.release();
    await sim.close();
    await dispose();
  }
}

function p3(values: number[]): string {
  return [50, 99, 100].map((p) => fmt(percentile(values, p), 2)).join(" / ");
}

/** The suite's row for one backend. */
export function wireRow(f: WireFigures): BenchRow {
  const p99 = percentile(f.latenciesMs, 99);
  const complete = f.missing.length === 0;
  return {
    part: `decision-to-wire (${f.backend})`,
    measure: `decision to order received, p50 / p99 / max (ms), ${f.latenciesMs.length} orders`,
    upbot: complete ? p3(f.latenciesMs) : `${p3(f.latenciesMs)}; ${f.missing.length} missing`,
    reference: `floor ${p3(f.floorMs)}`,
    ratio: `${fmt(percentile(f.latenciesMs, 99) / percentile(f.floorMs, 99), 1)}x (p99)`,
    target: f.backend === "postgres" ? "p99 <= 5 ms" : "-",
    met: f.backend === "postgres" ? (complete && p99 <= 5 ? "yes" : "no") : "-",
  };
}

/** One line per run, for the doc. */
export function describeWire(f: WireFigures): string {
  return `${f.backend}: ${f.latenciesMs.length} of ${f.decisions} decisions on the wire; p50 / p99 / max ${
    p3(f.latenciesMs)
  } ms (entries ${p3(f.entriesMs)}, exits ${p3(f.exitsMs)}); floor (commit + POST, bare) ${
    p3(f.floorMs)
  } ms; clock difference ${fmt(f.clockOffsetMs, 3)} ms +- ${
    fmt(f.clockUncertaintyMs, 3)
  } ms subtracted${f.missing.length > 0 ? `; missing: ${f.missing.slice(0, 3).join("; ")}` : ""}`;
}

if (import.meta.main) {
  configureLogging({ level: "error" });
  const backend = (Deno.args[0] ?? "pglite") as "pglite" | "postgres";
  const f = await benchDecisionToWire(backend, Number(Deno.args[1] ?? 400));
  out(describeWire(f));
  out(JSON.stringify(wireRow(f)));
}
