import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { AccountSync, derivePositions } from "../lib/pipeline/account.ts";
import { Evaluator } from "../lib/pipeline/evaluator.ts";
import { Feed } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { EvaluatorCore } from "../lib/strategy/evaluator_core.ts";
import { resolveParams } from "../lib/strategy/policy.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";

const MARKET = "KRW-BTC";

async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not met within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function quiet(): () => void {
  return setLogSink(() => {});
}

dbTest(
  "feed: bars equal the trades the simulator sent; restart backfills missed trades",
  async (db) => {
    const restoreLog = quiet();
    const sim = await startSimulator({ rate: 0, seed: 3, markets: [MARKET] });
    const rest = new UpbitRest({ baseUrl: sim.restUrl });
    const finals: Bar[] = [];
    const makeFeed = () =>
      new Feed({
        sql: db.sql,
        markets: [MARKET],
        wsUrl: sim.wsUrl,
        rest,
        log: createLogger("feed"),
        onFinalBars: (bars) => finals.push(...bars),
        flushIntervalMs: 50,
      });
    let feed = makeFeed();
    try {
      await feed.start();
      const t0 = Math.floor(Date.now() / 1000) * 1000 - 20_000;
      // "Connected" precedes the subscription taking effect: print warm-up trades (in an
      // earlier second) until the feed sees one.
      await until(() => {
        if (feed.stats().trades > 0) return true;
        sim.injectTrade({
          market: MARKET,
          price: 99_000_000,
          volume: 0.001,
          side: "BID",
          timestampMs: t0 - 5000,
        });
        return false;
      }, "the feed receives trades");
      const sent = [
        { price: 100_000_000, volume: 0.01, side: "BID" as const, timestampMs: t0 + 100 },
        { price: 100_050_000, volume: 0.02, side: "ASK" as const, timestampMs: t0 + 400 },
        { price: 99_990_000, volume: 0.005, side: "BID" as const, timestampMs: t0 + 900 },
        { price: 100_010_000, volume: 0.03, side: "ASK" as const, timestampMs: t0 + 1200 },
      ];
      for (const t of sent) sim.injectTrade({ market: MARKET, ...t });
      // A later trade moves the watermark (2 s lateness) past both seconds.
      sim.injectTrade({
        market: MARKET,
        price: 100_020_000,
        volume: 0.001,
        side: "BID",
        timestampMs: t0 + 4500,
      });
      await until(() => finals.some((b) => b.ts === t0 + 1000), "bars of t0 and t0+1 final");
      const rows = await db.sql`select * from market_1s where symbol = ${MARKET} order by ts`;
      const first = rows.find((r) => r.ts.getTime() === t0)!;
      assert.ok(first.is_final);
      assert.deepEqual(
        [first.open, first.high, first.low, first.close, first.trade_count].map(String),
        ["100000000", "100050000", "99990000", "99990000", "3"],
      );
      assert.equal(Number(first.volume), 0.035);
      assert.equal(Number(first.buy_volume), 0.015);
      assert.equal(Number(first.sell_volume), 0.02);
      assert.equal(
        Number(first.quote_volume),
        100_000_000 * 0.01 + 100_050_000 * 0.02 + 99_990_000 * 0.005,
      );
      const second = rows.find((r) => r.ts.getTime() === t0 + 1000)!;
      assert.ok(second.is_final);
      assert.equal(second.trade_count, 1);
      assert.equal(String(second.open), "100010000");
      const last = rows.find((r) => r.ts.getTime() === t0 + 4000)!;
      assert.equal(last.is_final, false, "the newest second is not final yet");

      // Restart: trades printed while the feed was down are fetched over REST.
      await feed.stop();
      for (let i = 0; i < 5; i++) {
        sim.injectTrade({
          market: MARKET,
          price: 100_100_000 + i * 1000,
          volume: 0.002,
          side: "BID",
          timestampMs: t0 + 6000 + i * 10,
        });
      }
      feed = makeFeed();
      await feed.start();
      assert.ok(feed.stats().startBackfilled >= 5, `backfilled ${feed.stats().startBackfilled}`);
      await until(() => feed.stats().connected, "connected " + JSON.stringify(feed.stats()));
      sim.injectTrade({
        market: MARKET,
        price: 100_200_000,
        volume: 0.001,
        side: "BID",
        timestampMs: t0 + 9500,
      });
      await until(async () => {
        const [r] = await db
          .sql`select * from market_1s where symbol = ${MARKET} and ts = ${new Date(t0 + 6000)}`;
        return Boolean(r?.is_final);
      }, "bar t0+6000 final");
      const [six] = await db
        .sql`select * from market_1s where symbol = ${MARKET} and ts = ${new Date(t0 + 6000)}`;
      assert.equal(six!.trade_count, 5);
      assert.equal(String(six!.high), "100104000");
    } finally {
      await feed.stop();
      rest.close();
      await sim.close();
      restoreLog();
    }
  },
);

dbTest(
  "feed: the start-up backfill crosses 00:00 UTC and stores every trade once",
  async (db) => {
    const restoreLog = quiet();
    const midnight = Date.UTC(2026, 2, 4); // 09:00 KST
    let clock = midnight - 10_000;
    const sim = await startSimulator({ rate: 0, seed: 6, markets: [MARKET], now: () => clock });
    const rest = new UpbitRest({ baseUrl: sim.restUrl });
    const trade = (ts: number, k: number) => {
      clock = ts;
      return sim.injectTrade({
        market: MARKET,
        price: 100_000_000 + k * 1000,
        volume: 0.01,
        side: "BID",
      });
    };
    // The last final bar before the feed went down: 23:59:50 UTC.
    const lastBar = midnight - 10_000;
    await upsertBars(db.sql, [{
      market: MARKET,
      ts: lastBar,
      open: 100_000_000,
      high: 100_000_000,
      low: 100_000_000,
      close: 100_000_000,
      volume: 0.01,
      quoteVolume: 1_000_000,
      tradeCount: 1,
      buyVolume: 0.01,
      sellVolume: 0,
    }], true);
    // While it was down: 600 trades from 23:59:51 to 00:00:08.98, 300 on each date.
    for (let i = 0; i < 600; i++) trade(lastBar + 1000 + i * 30, i % 5);
    const feed = new Feed({
      sql: db.sql,
      markets: [MARKET],
      wsUrl: sim.wsUrl,
      rest,
      log: createLogger("feed"),
      onFinalBars: () => {},
      flushIntervalMs: 50,
      // The simulated clock is months behind the wall clock.
      maxStartBackfillMs: 400 * 86_400_000,
    });
    try {
      await feed.start();
      assert.equal(feed.stats().startBackfilled, 600, "both dates, each trade once");
      // A live trade well after moves the watermark past every backfilled second.
      await until(() => {
        // (The subscription's SNAPSHOT repeats the newest backfilled trade: a duplicate.)
        if (feed.stats().trades - feed.stats().duplicates > 600) return true;
        trade(midnight + 20_000, 9);
        return false;
      }, "the feed receives live trades");
      await until(async () => {
        const [row] = await db.sql`select coalesce(sum(trade_count), 0)::int as n
          from market_1s where symbol = ${MARKET} and is_final
            and ts > ${new Date(lastBar)} and ts < ${new Date(midnight + 10_000)}`;
        return row!.n === 600;
      }, "600 trades in final bars " + JSON.stringify(feed.stats()));
      const [day] = await db.sql`select count(*)::int as n from market_1s
        where symbol = ${MARKET} and is_final and ts >= ${new Date(lastBar + 1000)}
          and ts < ${new Date(midnight)}`;
      assert.equal(day!.n, 9, "every second of the previous date before midnight");
      assert.equal(feed.stats().lateDropped, 0);
    } finally {
      await feed.stop();
      rest.close();
      await sim.close();
      restoreLog();
    }
  },
);

/**
 * Two markets on a simulator that makes no trades of its own, and a Feed on `db` for them:
 * `trade` prints one, `finalT0` starts a feed and prints until second `t0` (30 s ago) is final
 * in both markets, closing it with a later trade of each market in `closers`.
 */
async function twoMarketRig(db: TestDatabase, seed: number) {
  const markets = [MARKET, "KRW-ETH"];
  const sim = await startSimulator({ rate: 0, seed, markets });
  const rest = new UpbitRest({ baseUrl: sim.restUrl });
  const price: Record<string, number> = { [MARKET]: 100_000_000, "KRW-ETH": 5_000_000 };
  const trade = (market: string, ts: number, k = 0) =>
    sim.injectTrade({
      market,
      price: price[market]! + k * 1000,
      volume: 0.01,
      side: "BID",
      timestampMs: ts,
    });
  return {
    markets,
    trade,
    make: () =>
      new Feed({
        sql: db.sql,
        markets,
        wsUrl: sim.wsUrl,
        rest,
        log: createLogger("feed"),
        onFinalBars: () => {},
        flushIntervalMs: 50,
      }),
    async finalT0(feed: Feed, closers: string[]): Promise<number> {
      await feed.start();
      const t0 = Math.floor(Date.now() / 1000) * 1000 - 30_000;
      await until(() => {
        if (feed.stats().trades > 0) return true;
        for (const m of markets) trade(m, t0);
        return false;
      }, "the feed receives trades");
      for (const m of closers) trade(m, t0 + 4500); // makes second t0 final for both markets
      await until(async () => {
        const rows = await db
          .sql`select count(*)::int as n from market_1s where is_final and ts = ${new Date(t0)}`;
        return rows[0]!.n === 2;
      }, "t0 final in both markets");
      return t0;
    },
    async close(): Promise<void> {
      rest.close();
      await sim.close();
    },
  };
}

dbTest(
  "feed: the start-up backfill of every market survives live trades arriving meanwhile",
  async (db) => {
    const restoreLog = quiet();
    const rig = await twoMarketRig(db, 4);
    const { markets, trade } = rig;
    let feed = rig.make();
    try {
      const t0 = await rig.finalT0(feed, markets);
      await feed.stop();
      // While the feed is down: three trades per market in second t0+6, then live trades "now",
      // which the new subscription's snapshot delivers at once.
      for (const m of markets) for (let k = 0; k < 3; k++) trade(m, t0 + 6000 + k * 10, k);
      for (const m of markets) trade(m, Date.now());
      feed = rig.make();
      await feed.start();
      await until(async () => {
        const rows = await db.sql`select count(*)::int as n from market_1s
        where is_final and ts = ${new Date(t0 + 6000)} and trade_count = 3`;
        return rows[0]!.n === 2;
      }, "t0+6 final with its 3 backfilled trades in both markets " + JSON.stringify(feed.stats()));
      assert.equal(feed.stats().lateDropped, 0);
    } finally {
      await feed.stop();
      await rig.close();
      restoreLog();
    }
  },
);

function syntheticBars(n: number, t0: number): Bar[] {
  const bars: Bar[] = [];
  let price = 100_000_000;
  for (let i = 0; i < n; i++) {
    // A slow sine plus a deterministic zig-zag, so barriers get hit both ways.
    const next = Math.round(
      100_000_000 * (1 + 0.004 * Math.sin(i / 9) + 0.0008 * ((i * 7919) % 5 - 2)) / 1000,
    ) * 1000;
    bars.push({
      market: MARKET,
      ts: t0 + i * 1000,
      open: price,
      high: Math.max(price, next) + 1000,
      low: Math.min(price, next) - 1000,
      close: next,
      volume: 0.5,
      quoteVolume: next * 0.5,
      tradeCount: 3,
      buyVolume: i % 3 === 0 ? 0.4 : 0.1,
      sellVolume: i % 3 === 0 ? 0.1 : 0.4,
    });
    price = next;
  }
  return bars;
}

dbTest(
  "evaluator: labels, predictions and paper trades; a restart mid-stream changes nothing",
  async (db) => {
    const restoreLog = quiet();
    try {
      const params = resolveParams("test");
      const t0 = Math.floor(Date.now() / 1000) * 1000 - 400_000;
      const bars = syntheticBars(400, t0);
      await upsertBars(db.sql, bars.slice(0, 150), true);
      let woken = 0;
      const make = () =>
        new Evaluator({
          sql: db.sql,
          markets: [MARKET],
          profile: "test",
          params,
          krwAmount: 10_000,
          log: createLogger("evaluator"),
          onPaperTrades: () => woken++,
          batchBars: 64,
          warmupMs: 10_000_000,
        });
      const first = make();
      await first.start();
      const a = await first.runOnce();
      assert.equal(a.bars, 150);
      await upsertBars(db.sql, bars.slice(150), true);
      const second = make(); // as after a crash: state comes from the database
      await second.start();
      const b = await second.runOnce();
      assert.equal(b.bars, 250);
      assert.equal((await second.runOnce()).bars, 0, "nothing is processed twice");

      // The same bars through one uninterrupted core give the same paper trades.
      const core = new EvaluatorCore({ market: MARKET, params, krwAmount: 10_000 });
      const expected = bars.flatMap((bar) => core.onBar(bar).paperEvents);
      const stored = await db.sql`select action, ts, entry_price, exit_price, exit_reason, qty
      from paper_trades order by id`;
      assert.ok(expected.length >= 2, "the test profile trades within minutes");
      assert.deepEqual(
        stored.map((
          r,
        ) => [
          r.action,
          r.ts.getTime(),
          r.action === "ENTER_LONG" ? Number(r.entry_price) : Number(r.exit_price),
          r.exit_reason,
        ]),
        expected.map((e) => [e.action, e.ts, e.price, e.action === "EXIT_LONG" ? e.reason : null]),
      );
      assert.ok(woken >= 1);
      const [labels] = await db.sql`select count(*)::int as n from barrier_labels`;
      const [preds] = await db.sql`select count(*)::int as n, min(p_up + p_down + p_flat) as lo,
      max(p_up + p_down + p_flat) as hi from predictions`;
      assert.equal(preds!.n, 400);
      assert.ok(Math.abs(preds!.lo - 1) < 1e-9 && Math.abs(preds!.hi - 1) < 1e-9);
      assert.ok(labels!.n > 300, `labels ${labels!.n}`);
    } finally {
      restoreLog();
    }
  },
);

dbTest(
  "account: live_positions hold the simulator's balances; coins upbot did not buy stay FLAT",
  async (db) => {
    const restoreLog = quiet();
    const sim = await startSimulator({ rate: 0, seed: 5, markets: [MARKET, "KRW-ETH"] });
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
    });
    try {
      const buy = await rest.postOrder({
        market: MARKET,
        side: "bid",
        ord_type: "price",
        price: "20000",
        identifier: "acct-test-1",
      });
      assert.equal(buy.kind, "accepted");
      const sync = new AccountSync({
        sql: db.sql,
        rest,
        markets: [MARKET, "KRW-ETH"],
        log: createLogger("account"),
      });
      await sync.pollOnce();
      const { data: accounts } = await rest.getAccounts();
      const krw = accounts.find((a) => a.currency === "KRW")!;
      const btc = accounts.find((a) => a.currency === "BTC")!;
      const rows = await db.sql`select * from live_positions order by symbol`;
      const byMarket = Object.fromEntries(rows.map((r) => [r.symbol, r]));
      // Bought outside upbot's ledger (by hand, as far as upbot knows): never upbot's position.
      assert.equal(byMarket[MARKET].position_status, "FLAT");
      assert.equal(Number(byMarket[MARKET].owned_volume), 0);
      assert.equal(byMarket[MARKET].base_balance, btc.balance);
      assert.equal(byMarket[MARKET].avg_buy_price, btc.avg_buy_price);
      assert.equal(byMarket[MARKET].krw_balance, krw.balance);
      assert.equal(byMarket["KRW-ETH"].position_status, "FLAT");
      const snaps = await db
        .sql`select currency, balance from upbit_account_snapshots order by currency`;
      assert.deepEqual(
        snaps.map((s) => [s.currency, s.balance]),
        accounts.map((a) => [a.currency, a.balance]).sort(),
      );
    } finally {
      rest.close();
      await sim.close();
      restoreLog();
    }
  },
);

Deno.test("derivePositions() takes the position from the ledger, never from the balances", () => {
  const acc = (currency: string, balance: string, avg: string) => ({
    currency,
    balance,
    locked: "0",
    avg_buy_price: avg,
    avg_buy_price_modified: false,
    unit_currency: "KRW",
  });
  const ledger = (symbol: string, openVolume: string, avgEntryPrice: string | null) => ({
    symbol,
    bought: "1",
    sold: "0",
    gone: "0",
    dust: "0",
    oversold: "0",
    openVolume,
    cost: "0",
    proceeds: "0",
    fees: "0",
    avgEntryPrice,
    realisedPnl: "0",
    lastTs: new Date(0),
  });
  const accounts = [
    acc("KRW", "1000", "0"),
    acc("BTC", "2", "100000000"), // the owner's: worth far more than the minimum
    acc("ETH", "0.5", "4000000"),
  ];
  const positions = derivePositions(accounts, [MARKET, "KRW-ETH"], [
    ledger("KRW-ETH", "0.1", "4002000"),
    ledger("KRW-XRP", "-1", null), // history sold more than it bought: owns nothing
  ]);
  assert.deepEqual(positions.map((p) => [p.symbol, p.status, p.ownedVolume, p.entryPrice]), [
    [MARKET, "FLAT", "0", null],
    ["KRW-ETH", "LONG", "0.1", "4002000"],
    ["KRW-XRP", "FLAT", "0", null],
  ]);
  assert.equal(positions[0]!.baseBalance, "2");
  assert.equal(positions[1]!.krwBalance, "1000");
});

dbTest(
  "feed: a restart's snapshot of a second written before is not a late trade; a live one is",
  async (db) => {
    const restoreLog = quiet();
    // KRW-ETH trades rarely: its newest trade sits in a second the first run wrote final, and
    // the second run's subscription repeats it as a SNAPSHOT behind the shared watermark.
    const rig = await twoMarketRig(db, 5);
    let feed = rig.make();
    try {
      const t0 = await rig.finalT0(feed, [MARKET]);
      await feed.stop();
      const ethBar = () =>
        db.sql<{ trade_count: number }[]>`select trade_count from market_1s
          where symbol = 'KRW-ETH' and ts = ${new Date(t0)}`;
      const [before] = await ethBar();
      feed = rig.make();
      await feed.start();
      await until(
        () => feed.stats().lateSnapshots > 0,
        "the snapshot of KRW-ETH's trade at t0 " + JSON.stringify(feed.stats()),
      );
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
      // A live trade as old is one the feed could not count: dropped, and said so.
      rig.trade("KRW-ETH", t0 + 100);
      await until(() => feed.stats().lateDropped === 1, "the live trade dropped as late");
      assert.equal(feed.stats().lateSnapshots, 1);
      await feed.flush();
      assert.deepEqual([...await ethBar()], [before], "the first run's bar is as it was");
    } finally {
      await feed.stop();
      await rig.close();
      restoreLog();
    }
  },
);
