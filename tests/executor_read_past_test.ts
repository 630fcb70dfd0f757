/**
 * A market that waits for long (its entry still filling, or a lost sell a person must look at)
 * pins the executor's durable cursor before it. A running executor must not read every later
 * paper trade of every market again on each pass (about one a second, for ever): it reads only
 * new trades and the waiting market's. Counted in rows of the paper trade read, on the simulator.
 * The waiting market's trades are still handled in id order once the wait ends, and a restart in
 * the middle (the durable cursor) handles nothing twice and loses nothing.
 */
import assert from "node:assert/strict";
import type { Client } from "../lib/db/connect.ts";
import { type Executor, identifierFor } from "../lib/execution/executor.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import {
  type AttemptRow,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { insertPaperEvent, paperTradesWithAttemptAfter } from "../lib/store/paper_trades.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor, type SimHandle, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";
const ETH = "KRW-ETH";

/**
 * `sql` for the executor, counting the rows of its paper trade read (the one query that selects
 * `attempt_identifier`). The executor's other queries go through untouched.
 */
function countingReads(sql: Client): { sql: Client; rows: () => number } {
  let rows = 0;
  const counted = new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const query = Reflect.apply(target, thisArg, args);
      const strings = args[0];
      if (Array.isArray(strings) && strings.join("?").includes("as attempt_identifier")) {
        query.then((r: unknown[]) => rows += r.length, () => {});
      }
      return query;
    },
  });
  return { sql: counted, rows: () => rows };
}

interface Rig {
  h: SimHandle;
  /** The executor (replaced by {@linkcode Rig.restart}). */
  executor: Executor;
  /** A fresh executor on the same database, as after a crash, started. */
  restart(): Promise<void>;
  /** Rows of paper trades the current executor read in one {@linkcode Rig.pass}. */
  pass(): Promise<{ handled: number; read: number }>;
  poller: OrderPoller;
  /** A paper trade; an exit closes `market`'s open entry. */
  paper(market: string, action: "ENTER_LONG" | "EXIT_LONG"): Promise<number>;
  /** The attempt of each paper trade (null: none), by paper trade id. */
  attempts(): Promise<Map<number, AttemptRow | null>>;
}

/**
 * A live executor on the simulator whose BTC entry (the first paper trade) is still filling: its
 * order rests at Upbit far under the market, so BTC's exit waits until `endWait` cancels it.
 */
async function rig(db: TestDatabase, h: SimHandle): Promise<Rig & { endWait(): Promise<void> }> {
  // More orders than the default cap of a minute.
  const config = executorConfig(h.sim, "live", { MAX_ORDERS_PER_MIN: "100" });
  const make = (sql: Client) =>
    liveExecutor(sql, h.rest, config, h.log, { unknownSettleMs: 300, rotationWaitMs: 0 });
  let counting = countingReads(db.sql);
  let executor = make(counting.sql);
  // The resting entry is polled as long as the test runs, never cancelled for its age.
  const poller = new OrderPoller({ sql: db.sql, rest: h.rest, maxPolls: 1000, log: h.log });
  const prices = new Map<string, number>();
  for (const t of (await h.rest.getTicker({ markets: [BTC, ETH] })).data) {
    prices.set(t.market, t.trade_price);
  }
  const paper = (market: string, action: "ENTER_LONG" | "EXIT_LONG") => {
    const price = prices.get(market)!;
    const qty = Math.floor((10_000 / price) * 1e8) / 1e8;
    return insertPaperEvent(
      db.sql,
      action === "ENTER_LONG" ? { action, market, ts: Date.now(), price, qty, fee: 5, ev: 0.1 } : {
        action,
        market,
        ts: Date.now(),
        price,
        qty,
        fee: 5,
        pnl: 0,
        holdSec: 1,
        reason: "EV_BAD",
        entryTs: Date.now(),
        entryPrice: price,
        ev: -0.3,
      },
      "default",
    );
  };
  // BTC's entry as the executor sent it, but resting: a bid at half the price.
  const enterId = await paper(BTC, "ENTER_LONG");
  const identifier = identifierFor(await installationId(db.sql), enterId, "ENTER_LONG");
  const resting = await h.rest.postOrder({
    market: BTC,
    side: "bid",
    ord_type: "limit",
    price: String(Math.round(prices.get(BTC)! / 2 / 1000) * 1000),
    volume: "0.0001",
    identifier,
  });
  assert.equal(resting.kind, "accepted");
  const uuid = resting.kind === "accepted" ? resting.order.uuid : "";
  const row = await insertAttempt(db.sql, {
    symbol: BTC,
    action: "ENTER_LONG",
    mode: "live",
    side: "bid",
    ord_type: "price",
    price: "10000",
    volume: null,
    paper_trade_id: enterId,
    identifier,
    state: "pending",
    request_json: { market: BTC, side: "bid", ord_type: "price", price: "10000", identifier },
  });
  await transitionAttempt(db.sql, row!.id, "pending", "open", { uuid });
  await executor.start();
  return {
    h,
    get executor() {
      return executor;
    },
    async restart() {
      counting = countingReads(db.sql);
      executor = make(counting.sql);
      await executor.start();
    },
    async pass() {
      const before = counting.rows();
      const { handled } = await executor.runOnce();
      return { handled, read: counting.rows() - before };
    },
    poller,
    paper,
    async attempts() {
      const papers = await db.sql<{ id: string }[]>`select id from paper_trades order by id`;
      const rows = await db.sql<AttemptRow[]>`
        select * from upbit_order_attempts where paper_trade_id is not null`;
      const by = new Map(rows.map((a) => [Number(a.paper_trade_id), a]));
      return new Map(papers.map((p) => [Number(p.id), by.get(Number(p.id)) ?? null]));
    },
    async endWait() {
      const cancel = await h.rest.deleteOrder({ uuid });
      assert.ok(cancel.data, "the resting entry is cancelled");
    },
  };
}

/**
 * An ETH round trip through the executor and the poller while BTC's exit waits: each pass reads
 * the new trade and BTC's exit only.
 */
async function ethRoundTrip(r: Rig): Promise<void> {
  for (const action of ["ENTER_LONG", "EXIT_LONG"] as const) {
    await r.paper(ETH, action);
    assert.deepEqual(await r.pass(), { handled: 1, read: 2 }, action);
    await r.poller.pollOnce();
  }
}

dbTest(
  "executor: while one market waits, a pass reads only new trades and the waiting market's",
  async (db) => {
    const h = await startSim({ markets: [BTC, ETH] });
    try {
      const r = await rig(db, h);
      const btcExit = await r.paper(BTC, "EXIT_LONG");
      assert.deepEqual(await r.pass(), { handled: 0, read: 2 }, "the entry is handled already");
      for (let i = 0; i < 4; i++) await ethRoundTrip(r);
      // BTC's exit still waits and pins the durable cursor; ETH's 8 trades are handled.
      assert.equal(r.executor.cursor, btcExit - 1);
      // A pass with nothing new reads BTC's waiting exit only, not ETH's handled trades again.
      assert.deepEqual(await r.pass(), { handled: 0, read: 1 });
      assert.deepEqual(await r.pass(), { handled: 0, read: 1 });
      // New trades: read once each (a BTC one is held back behind the exit, and read again).
      const btcEntry2 = await r.paper(BTC, "ENTER_LONG");
      await r.paper(ETH, "ENTER_LONG");
      assert.deepEqual(await r.pass(), { handled: 1, read: 3 });
      assert.deepEqual(await r.pass(), { handled: 0, read: 2 });
      await r.poller.pollOnce();
      await r.paper(ETH, "EXIT_LONG");
      const btcExit2 = await r.paper(BTC, "EXIT_LONG");
      assert.deepEqual(await r.pass(), { handled: 1, read: 4 });
      // The wait ends (the entry is cancelled, having bought nothing): BTC's trades in id order.
      await r.endWait();
      await r.poller.pollOnce();
      assert.deepEqual(await r.pass(), { handled: 2, read: 3 }, "exit, entry; exit 2 waits");
      await r.poller.pollOnce();
      assert.deepEqual(await r.pass(), { handled: 1, read: 1 });
      assert.equal(r.executor.cursor, btcExit2, "all handled");
      assert.deepEqual(await r.pass(), { handled: 0, read: 0 });
      await r.poller.pollOnce();
      const attempts = await r.attempts();
      assert.equal(attempts.get(btcExit)?.reason, "entry_bought_nothing");
      const btc = [btcExit, btcEntry2, btcExit2].map((id) => Number(attempts.get(id)!.id));
      assert.deepEqual(btc, [...btc].sort((a, b) => a - b), "BTC's trades in id order");
      assert.equal(attempts.get(btcExit2)?.state, "filled", "exit 2 sold what entry 2 bought");
      assertOncePerTrade(attempts, h);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "executor: a restart while a market waits reads from the durable cursor once, then handles nothing twice and nothing lost",
  async (db) => {
    const h = await startSim({ markets: [BTC, ETH] });
    try {
      const r = await rig(db, h);
      const btcExit = await r.paper(BTC, "EXIT_LONG");
      assert.deepEqual(await r.pass(), { handled: 0, read: 2 });
      for (let i = 0; i < 3; i++) await ethRoundTrip(r);
      assert.deepEqual(await r.pass(), { handled: 0, read: 1 });
      // Written while the executor is down: one trade of each market.
      await r.paper(ETH, "ENTER_LONG");
      await r.paper(BTC, "ENTER_LONG");
      await r.restart();
      assert.equal(r.executor.cursor, btcExit - 1, "the durable cursor stayed before the wait");
      // The first pass reads everything after the durable cursor: the 6 handled ETH trades are
      // skipped by their attempt rows; the new ETH entry is handled.
      assert.deepEqual(await r.pass(), { handled: 1, read: 9 });
      assert.deepEqual(await r.pass(), { handled: 0, read: 2 }, "BTC's exit and entry only");
      await r.poller.pollOnce();
      const ethExit = await r.paper(ETH, "EXIT_LONG");
      const btcExit2 = await r.paper(BTC, "EXIT_LONG");
      // Restarted again in the middle: nothing handled is sent again.
      await r.restart();
      assert.deepEqual(await r.pass(), { handled: 1, read: 11 });
      await r.endWait();
      await r.poller.pollOnce();
      assert.deepEqual(await r.pass(), { handled: 2, read: 3 });
      await r.poller.pollOnce();
      assert.deepEqual(await r.pass(), { handled: 1, read: 1 });
      assert.equal(r.executor.cursor, btcExit2);
      await r.restart();
      assert.deepEqual(await r.pass(), { handled: 0, read: 0 });
      await r.poller.pollOnce();
      const attempts = await r.attempts();
      assert.equal(attempts.get(ethExit)?.state, "filled");
      assert.equal(attempts.get(btcExit2)?.state, "filled");
      assertOncePerTrade(attempts, h);
    } finally {
      await h.close();
    }
  },
);

/** Every paper trade has its attempt, and Upbit has one order per identifier sent. */
function assertOncePerTrade(attempts: Map<number, AttemptRow | null>, h: SimHandle): void {
  for (const [id, a] of attempts) assert.ok(a, `paper trade ${id} handled`);
  const sent = [...attempts.values()].filter((a) => a!.uuid !== null).map((a) => a!.identifier);
  const orders = h.sim.orders().map((o) => o.identifier);
  assert.deepEqual([...orders].sort(), [...new Set(sent)].sort(), "one order per identifier");
}

dbTest(
  "paper trade read: a waiting market's trades are found by index, not by scanning the others'",
  async (db) => {
    // 20,000 trades. KRW-M3 has a tenth of the first 10,000, then one that waits (10,100) and
    // two new ones (19,999 and 20,000); the 9,897 between are other markets'.
    await db.sql`
      insert into paper_trades (ts, symbol, action, policy_profile, entry_ts, entry_price, qty, fee)
      select now(), case when g <= 10000 then 'KRW-M' || (g % 10)
                         when g in (10100, 19999, 20000) then 'KRW-M3'
                         else 'KRW-N' || (g % 9) end,
        'ENTER_LONG', 'default', now(), 1, 1, 0
      from generate_series(1, 20000) g`;
    await db.sql`analyze paper_trades`;
    const { rows, read } = await db.sql.begin(async (tx) => {
      const rows = await paperTradesWithAttemptAfter(tx, 10099, 50, {
        through: 19998,
        heldFrom: new Map([["KRW-M3", 10100]]),
      });
      // Index entries and rows of sequential scans the read went through, from this
      // transaction's own statistics.
      const [s] = await tx<{ n: string }[]>`
        select pg_stat_get_xact_tuples_returned('paper_trades'::regclass)
          + (select sum(pg_stat_get_xact_tuples_returned(indexrelid)) from pg_index
             where indrelid = 'paper_trades'::regclass) as n`;
      return { rows, read: Number(s!.n) };
    });
    assert.deepEqual(rows.map((r) => r.id), [10100, 19999, 20000]);
    assert.ok(read <= 10, `${read} entries read for 3 trades`);
  },
);
