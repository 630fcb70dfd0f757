/**
 * The live position closer on a market nobody bids on (the simulator's `bookless_markets`): the
 * risk gate refuses the sell as `no_bids` (Upbit would refuse a market sell beyond the visible
 * book, §8.2), the closer waits out its backoff instead of writing a new CLOSE on every pass, and
 * once bids are back the position is sold.
 */
import assert from "node:assert/strict";
import { activeAlarms } from "../lib/store/alarms.ts";
import { pendingFlatten, requestFlatten } from "../lib/control/trading_state.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor } from "./_live_orders.ts";

const BTC = "KRW-BTC";
/**
 * The executor's backoff between refused sells: 60-72 s (jitter 0.2), never growing. Passes run
 * well inside it; the test lets it pass by ageing the refusals (see `Rig.backoffPassed`).
 */
const BACKOFF_MS = 60_000;

async function rig(db: TestDatabase) {
  const sim = await startSimulator({ rate: 0, seed: 7, markets: [BTC, "KRW-ETH"] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: 1500,
  });
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const config = executorConfig(sim, "live");
  const ex = liveExecutor(db.sql, rest, config, createLogger("executor"), {
    settings: { maxOrdersPerMin: 600 },
    unknownSettleMs: 0,
    rotationWaitMs: 0,
    retryBackoff: { baseMs: BACKOFF_MS, maxMs: BACKOFF_MS },
  });
  await ex.start();
  const poller = new OrderPoller({
    sql: db.sql,
    rest,
    maxPolls: 50,
    log: createLogger("order_poller"),
  });
  const r = {
    sim,
    rest,
    ex,
    lines,
    /**
     * A backoff's worth of time passes for the closer: the live sells recorded so far are dated
     * back by more than the longest backoff. (The closer dates refusals by the rows'
     * `updated_at`, written with the wall clock, so moving the executor's clock instead would
     * not do.)
     */
    async backoffPassed(): Promise<void> {
      await db.sql`update upbit_order_attempts
        set updated_at = updated_at - make_interval(secs => ${(1.2 * BACKOFF_MS + 1000) / 1000})
        where mode = 'live' and side = 'ask'`;
    },
    /** One executor pass and one poller pass, then a short pause. */
    async pass(): Promise<void> {
      await ex.runOnce();
      await poller.pollOnce();
      await new Promise((res) => setTimeout(res, 30));
    },
    /** Passes until `done()`, failing after `ms`. */
    async until(what: string, done: () => Promise<boolean>, ms = 15_000): Promise<void> {
      const end = Date.now() + ms;
      while (!(await done())) {
        if (Date.now() > end) {
          assert.fail(`not within ${ms} ms: ${what}\n${lines.slice(-15).join("\n")}`);
        }
        await r.pass();
      }
    },
    async balance(currency: string): Promise<string> {
      const { data } = await rest.getAccounts();
      return formatDec(dec(data.find((a) => a.currency === currency)?.balance ?? "0"));
    },
    async [Symbol.asyncDispose]() {
      restore();
      rest.close();
      await sim.close();
    },
  };
  return r;
}

type Rig = Awaited<ReturnType<typeof rig>>;

async function rows(db: TestDatabase): Promise<AttemptRow[]> {
  return await db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

async function closes(db: TestDatabase): Promise<AttemptRow[]> {
  return (await rows(db)).filter((a) => a.action === "CLOSE");
}

async function openVolume(db: TestDatabase): Promise<string> {
  return (await ledgerPosition(db.sql, BTC))?.openVolume ?? "0";
}

async function settledAndFlat(db: TestDatabase): Promise<boolean> {
  const [row] = await db.sql`select count(*)::int as n from upbit_order_attempts
    where state in ('pending', 'sent', 'unknown', 'open', 'partially_filled')`;
  return row!.n === 0 && dec(await openVolume(db)) === 0n;
}

/** A live BTC position bought through the executor; returns the volume bought. */
async function openPosition(r: Rig, db: TestDatabase): Promise<string> {
  await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market: BTC,
    ts: Date.now(),
    price: 140_500_000,
    qty: 0.0001,
    fee: 1,
    ev: 0.1,
  }, "default");
  await r.until("the entry filled", async () => {
    const state = (await rows(db))[0]?.state;
    return state === "filled" || state === "cancelled";
  });
  const bought = (await rows(db))[0]!.executed_volume!;
  assert.ok(dec(bought) > 0n);
  return bought;
}

/** `n` passes. */
async function passes(r: Rig, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await r.pass();
}

const asksSent = (r: Rig) => r.sim.orders().filter((o) => o.market === BTC && o.side === "ask");

dbTest(
  "closer: a close refused for want of bids (no_bids) waits out its backoff, not a new CLOSE every pass; sold once bids return",
  async (db) => {
    await using r = await rig(db);
    const bought = await openPosition(r, db);
    r.sim.setFaults({ bookless_markets: [BTC] });
    await requestFlatten(db.sql, { reason: "test", by: "test" });

    await r.until("a close", async () => (await closes(db)).length > 0);
    const [first] = await closes(db);
    assert.deepEqual([first!.state, first!.reason], ["skipped", "no_bids"]);
    await passes(r, 5);
    assert.equal((await closes(db)).length, 1, "no new CLOSE on every pass");
    assert.equal(asksSent(r).length, 0, "the gate refused it: nothing sent to Upbit");
    assert.equal(await openVolume(db), formatDec(dec(bought)), "still owed");
    assert.notEqual(await pendingFlatten(db.sql), null);
    // Said: nothing sells until the book comes back.
    const failing = async () =>
      (await activeAlarms(db.sql)).find((a) => a.code === "exit_failing" && a.market === BTC);
    assert.match((await failing())?.message ?? "", /no visible bids on KRW-BTC/);

    // Still no bids after the backoff: tried again (not given up), refused again, and waits again.
    await r.backoffPassed();
    await r.until("a second close", async () => (await closes(db)).length >= 2);
    const [, second] = await closes(db);
    assert.deepEqual([second!.state, second!.reason], ["skipped", "no_bids"]);
    await passes(r, 5);
    assert.equal((await closes(db)).length, 2, "no new CLOSE on every pass");

    // Bids are back: the next close (after its backoff) sells the position.
    r.sim.setFaults({ bookless_markets: [] });
    await passes(r, 3);
    assert.equal((await closes(db)).length, 2, "bids back, but the backoff still runs");
    await r.backoffPassed();
    await r.until("flat", () => settledAndFlat(db));
    const all = await closes(db);
    assert.deepEqual(all.map((x) => x.state), ["skipped", "skipped", "filled"]);
    assert.equal(all[2]!.request_json?.volume, formatDec(dec(bought)));
    assert.equal(formatDec(dec(all[2]!.executed_volume!)), formatDec(dec(bought)));
    assert.equal(asksSent(r).length, 1, "one sell reached Upbit");
    assert.equal(await r.balance("BTC"), "0");
    await r.pass();
    assert.equal(await pendingFlatten(db.sql), null, "the flatten completed");
    assert.equal(await failing(), undefined, "cleared by the sell accepted");
  },
);

dbTest(
  "closer: an exit skipped for want of bids (no_bids) holds the closer's CLOSE for the backoff; sold once bids return",
  async (db) => {
    await using r = await rig(db);
    const bought = await openPosition(r, db);
    r.sim.setFaults({ bookless_markets: [BTC] });
    await insertPaperEvent(db.sql, {
      action: "EXIT_LONG",
      market: BTC,
      ts: Date.now(),
      price: 140_500_000,
      qty: 0.0001,
      fee: 1,
      pnl: 0,
      holdSec: 5,
      reason: "EV_BAD",
      entryTs: Date.now() - 5000,
      entryPrice: 140_500_000,
      ev: -0.3,
    }, "default");

    await r.until("the exit judged", async () => {
      const exit = (await rows(db)).find((x) => x.action === "EXIT_LONG");
      return exit !== undefined && exit.state !== "pending";
    });
    const exit = (await rows(db)).find((x) => x.action === "EXIT_LONG")!;
    assert.deepEqual([exit.state, exit.reason], ["skipped", "no_bids"]);
    await passes(r, 5);
    assert.deepEqual(await closes(db), [], "the paper book is flat, but the closer waits");
    assert.equal(asksSent(r).length, 0);
    assert.equal(await openVolume(db), formatDec(dec(bought)));

    r.sim.setFaults({ bookless_markets: [] });
    await r.backoffPassed();
    await r.until("flat", () => settledAndFlat(db));
    const all = await closes(db);
    assert.deepEqual(all.map((x) => x.state), ["filled"]);
    assert.equal(formatDec(dec(all[0]!.executed_volume!)), formatDec(dec(bought)));
    assert.equal(asksSent(r).length, 1, "one sell reached Upbit");
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "closer: an exit refused as worth less than the minimum holds the closer for the backoff, not dust at once; sold when the price is back",
  async (db) => {
    await using r = await rig(db);
    const bought = await openPosition(r, db);
    const { data: [ticker] } = await r.rest.getTicker({ markets: [BTC] });
    const price = ticker!.trade_price;
    /** The market trades at `p` now: the simulator's book follows, and a bar records it. */
    const tradeAt = async (p: number) => {
      r.sim.injectTrade({ market: BTC, price: p, volume: 0.001, side: "ASK" });
      await db.sql`delete from market_1s where symbol = ${BTC}`;
      const c = String(p);
      await db.sql`insert into market_1s (symbol, ts, open, high, low, close, volume,
          quote_volume, trade_count, buy_volume, sell_volume, is_final)
        values (${BTC}, date_trunc('second', now()), ${c}, ${c}, ${c}, ${c}, 1, ${c}, 1, 0, 1, true)`;
    };
    // The price falls by 55%: at it the 10,000 KRW position is worth about 4,500 KRW.
    await tradeAt(Math.round(price * 0.45));
    await insertPaperEvent(db.sql, {
      action: "EXIT_LONG",
      market: BTC,
      ts: Date.now(),
      price: Math.round(price * 0.45),
      qty: 0.0001,
      fee: 1,
      pnl: 0,
      holdSec: 5,
      reason: "EV_BAD",
      entryTs: Date.now() - 5000,
      entryPrice: price,
      ev: -0.3,
    }, "default");
    await r.until("the exit judged", async () => {
      const exit = (await rows(db)).find((x) => x.action === "EXIT_LONG");
      return exit !== undefined && exit.state !== "pending";
    });
    const exit = (await rows(db)).find((x) => x.action === "EXIT_LONG")!;
    assert.deepEqual([exit.state, exit.reason], ["skipped", "exit_below_min_total"]);
    await passes(r, 5);
    const adjustments = () => db.sql<{ kind: string }[]>`select kind from position_adjustments`;
    assert.deepEqual((await adjustments()).map((a) => a.kind), [], "not written off as dust yet");
    assert.equal(await openVolume(db), formatDec(dec(bought)));

    // The price is back before the backoff ends: the position is sold, nothing written off.
    await tradeAt(price);
    await r.backoffPassed();
    await r.until("flat", () => settledAndFlat(db));
    assert.deepEqual((await closes(db)).map((x) => x.state), ["filled"]);
    assert.deepEqual((await adjustments()).map((a) => a.kind), []);
    assert.equal(await r.balance("BTC"), "0");
  },
);
