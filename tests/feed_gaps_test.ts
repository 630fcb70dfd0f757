/**
 * @module The feed against the simulator where trades used to be lost: a future-dated trade, the
 * start-up catch-up of several busy markets, a slow first WebSocket connection, quiet markets
 * over short outages, and bars left open by a quiet spell.
 */
import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { Feed, type FeedOptions } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { openTestDatabase, testBackends, type TestDatabase } from "./_db.ts";

const BTC = "KRW-BTC";
const ETH = "KRW-ETH";
const PRICE: Record<string, number> = { [BTC]: 100_000_000, [ETH]: 5_000_000 };

async function until(
  cond: () => boolean | Promise<boolean>,
  what: () => string,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not met within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const secondOf = (ms: number) => Math.floor(ms / 1000) * 1000;

/** The cases below, run as steps of one test per backend (see the end of this file). */
const cases: { name: string; fn: (db: TestDatabase) => Promise<void> }[] = [];

/** Adds a case: run on a database of its own, as far as the feed can tell (see below). */
function feedCase(name: string, fn: (db: TestDatabase) => Promise<void>): void {
  cases.push({ name, fn });
}

/** A final bar of each market at `ts`, as a run before a restart left them. */
async function storeFinalBars(db: TestDatabase, markets: string[], ts: number): Promise<void> {
  await upsertBars(
    db.sql,
    markets.map((market) => ({
      market,
      ts,
      open: PRICE[market] ?? 10_000,
      high: PRICE[market] ?? 10_000,
      low: PRICE[market] ?? 10_000,
      close: PRICE[market] ?? 10_000,
      volume: 0.01,
      quoteVolume: (PRICE[market] ?? 10_000) * 0.01,
      tradeCount: 1,
      buyVolume: 0.01,
      sellVolume: 0,
    })),
    true,
  );
}

/** A simulator making no trades of its own, a REST client on it, and feeds on `db` for it. */
async function rig(db: TestDatabase, markets: string[], sim: Partial<SimulatorOptions> = {}) {
  const restoreLog = setLogSink(() => {});
  const s: Simulator = await startSimulator({ rate: 0, seed: 11, markets, ...sim });
  const rest = new UpbitRest({ baseUrl: s.restUrl });
  const finals: Bar[] = [];
  const feeds: Feed[] = [];
  return {
    sim: s,
    finals,
    /** Prints a trade of `market` (at `ts`, default now). */
    trade(market: string, ts?: number, k = 0) {
      return s.injectTrade({
        market,
        price: (PRICE[market] ?? 10_000) + k * 1000,
        volume: 0.01,
        side: "BID",
        ...(ts === undefined ? {} : { timestampMs: ts }),
      });
    },
    feed(options: Partial<FeedOptions> = {}): Feed {
      const feed = new Feed({
        sql: db.sql,
        markets,
        wsUrl: s.wsUrl,
        rest,
        log: createLogger("feed"),
        onFinalBars: (bars) => finals.push(...bars),
        flushIntervalMs: 50,
        ...options,
      });
      feeds.push(feed);
      return feed;
    },
    /**
     * Prints a trade of every market 4.5 s after `afterMs` (moving the watermark past every second
     * up to `afterMs`), then waits until each market's final bars of `[from, afterMs]` hold the
     * trades `expected` gives.
     */
    async expectFinal(
      feed: Feed,
      from: number,
      afterMs: number,
      expected: Record<string, number>,
    ): Promise<void> {
      for (const m of markets) this.trade(m, afterMs + 4500);
      const to = secondOf(afterMs) + 1000;
      const got: Record<string, number> = {};
      await until(async () => {
        for (const m of markets) got[m] = await this.finalTrades(m, from, to);
        return markets.every((m) => got[m] === expected[m]);
      }, () =>
        `final trades ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}, ` +
        JSON.stringify(feed.stats()));
    },
    /** Trades in final bars of `market` in `[from, to)`. */
    async finalTrades(market: string, from: number, to: number): Promise<number> {
      const [row] = await db.sql<{ n: number }[]>`select coalesce(sum(trade_count), 0)::int as n
        from market_1s where symbol = ${market} and is_final
          and ts >= ${new Date(from)} and ts < ${new Date(to)}`;
      return row!.n;
    },
    async close(): Promise<void> {
      for (const f of feeds) await f.stop();
      rest.close();
      await s.close();
      restoreLog();
    },
  };
}

feedCase(
  "feed: a trade stamped an hour ahead is rejected; later trades are not late",
  async (db) => {
    const r = await rig(db, [BTC, ETH]);
    try {
      const feed = r.feed();
      await feed.start();
      const t0 = secondOf(Date.now()) - 20_000;
      await until(() => {
        if (feed.stats().trades > 0) return true;
        r.trade(BTC, t0 - 5000);
        return false;
      }, () => "the feed receives trades");
      const before = feed.stats().trades;
      r.trade(ETH, Date.now() + 3_600_000); // a bad clock upstream
      for (let k = 0; k < 3; k++) r.trade(BTC, t0 + k * 100, k);
      r.trade(ETH, t0 + 500);
      r.trade(BTC, t0 + 4500); // moves the watermark past second t0
      await until(() => feed.stats().trades >= before + 6, () => JSON.stringify(feed.stats()));
      await feed.flush();
      const stats = feed.stats();
      assert.equal(stats.futureRejected, 1, JSON.stringify(stats));
      assert.equal(stats.lateDropped, 0, JSON.stringify(stats));
      assert.equal(await r.finalTrades(BTC, t0, t0 + 1000), 3);
      assert.equal(await r.finalTrades(ETH, t0, t0 + 1000), 1);
    } finally {
      await r.close();
    }
  },
);

feedCase(
  "feed: a restart with several busy markets loses none of their live trades held meanwhile",
  async (db) => {
    const markets = [BTC, ETH, "KRW-XRP"];
    const r = await rig(db, markets);
    let live: ReturnType<typeof setInterval> | undefined;
    try {
      // The run before wrote second `last` final everywhere and stopped; 600 trades per market
      // since (two pages each), and every REST answer takes a second: catching up one market
      // after another took seconds, and the last market's trades moved the shared watermark past
      // the first market's live trades of those seconds, held back meanwhile.
      const last = secondOf(Date.now()) - 30_000;
      await storeFinalBars(db, markets, last);
      const printed: Record<string, number[]> = Object.fromEntries(markets.map((m) => [m, []]));
      for (let i = 0; i < 600; i++) {
        for (const m of markets) printed[m]!.push(r.trade(m, last + 1000 + i * 40).timestampMs);
      }
      r.sim.setFaults({ latency_ms: 1000 });
      live = setInterval(() => {
        for (const m of markets) printed[m]!.push(r.trade(m).timestampMs);
      }, 50);
      const feed = r.feed();
      await feed.start();
      await sleep(500);
      clearInterval(live);
      r.sim.setFaults({ latency_ms: 0 });
      const newest = Math.max(...markets.flatMap((m) => printed[m]!));
      await r.expectFinal(
        feed,
        last + 1000,
        newest,
        Object.fromEntries(markets.map((m) => [m, printed[m]!.length])),
      );
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
      assert.ok(feed.stats().startBackfilled >= 1800, JSON.stringify(feed.stats()));
    } finally {
      clearInterval(live);
      await r.close();
    }
  },
);

feedCase(
  "feed: trades between the start-up catch-up and a late first subscription are caught up",
  async (db) => {
    const markets = [BTC, ETH];
    const r = await rig(db, markets);
    const sockets: WebSocket[] = [];
    try {
      const last = secondOf(Date.now()) - 10_000;
      await storeFinalBars(db, markets, last);
      for (const m of markets) r.trade(m, last + 2000);
      // Five WebSocket connects within a second use up the simulator's websocket-connect budget
      // (5/s): the feed's first connect is refused (429) and retried 1.5 s later.
      for (let i = 0; i < 5; i++) {
        const ws = new WebSocket(r.sim.wsUrl);
        sockets.push(ws);
        await new Promise((resolve) => ws.onopen = resolve);
      }
      for (const ws of sockets) ws.close();
      const feed = r.feed({ ws: { reconnect: { baseMs: 1500, maxMs: 1500, jitter: 0 } } });
      const started = feed.start();
      await sleep(400);
      assert.equal(feed.stats().connected, false, "the first connect was refused");
      // Printed after the catch-up could have run, before the subscription is live.
      const gap = markets.flatMap((m) => [r.trade(m, undefined, 1), r.trade(m, undefined, 2)]);
      await started;
      await until(() => feed.stats().connected, () => "connected");
      const newest = Math.max(...gap.map((t) => t.timestampMs));
      await r.expectFinal(feed, last + 1000, newest, { [BTC]: 3, [ETH]: 3 });
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
    } finally {
      for (const ws of sockets) ws.close();
      await r.close();
    }
  },
);

feedCase(
  "feed: a quiet market's trades during a short restart are caught up",
  async (db) => {
    const markets = [BTC, ETH];
    const r = await rig(db, markets);
    try {
      // KRW-BTC's last final bar is 5 s old, quiet KRW-ETH's 11 minutes: the feed was down 5 s.
      const now = Date.now();
      const last = secondOf(now) - 5000;
      await storeFinalBars(db, [BTC], last);
      await storeFinalBars(db, [ETH], secondOf(now) - 11 * 60_000);
      // During the outage: a 20 % move in KRW-ETH (two trades: the subscription's snapshot
      // repeats only the newest).
      r.trade(BTC, now - 3000);
      r.trade(ETH, now - 3000, 1000);
      r.trade(ETH, now - 2500, 1000);
      const feed = r.feed();
      await feed.start();
      await r.expectFinal(feed, last + 1000, now - 2500, { [BTC]: 1, [ETH]: 2 });
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
    } finally {
      await r.close();
    }
  },
);

feedCase(
  "feed: a market without a trade since start has its trades of a WebSocket drop backfilled",
  async (db) => {
    const markets = [BTC, ETH];
    const r = await rig(db, markets);
    try {
      const feed = r.feed({ ws: { reconnect: { baseMs: 300, maxMs: 300, jitter: 0 } } });
      await feed.start();
      const t0 = Date.now();
      let btc = 0;
      await until(() => {
        if (feed.stats().trades > 0) return true;
        r.trade(BTC);
        btc++;
        return false;
      }, () => "the feed receives KRW-BTC trades");
      r.sim.dropWebSockets();
      await until(() => !feed.stats().connected, () => "the drop");
      // Printed while disconnected; KRW-ETH has not traded since the feed started.
      const gap = [r.trade(ETH, undefined, 1), r.trade(ETH, undefined, 2), r.trade(BTC)];
      await until(() => feed.stats().connected, () => "reconnected");
      const newest = Math.max(...gap.map((t) => t.timestampMs));
      await r.expectFinal(feed, secondOf(t0), newest, { [BTC]: btc + 1, [ETH]: 2 });
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
    } finally {
      await r.close();
    }
  },
);

feedCase(
  "feed: the last bar before a quiet spell is final by the clock; a trade for it is late",
  async (db) => {
    const r = await rig(db, [BTC, ETH]);
    try {
      const feed = r.feed();
      await feed.start();
      await until(() => {
        if (feed.stats().trades > 0) return true;
        r.trade(ETH);
        return false;
      }, () => "the feed receives trades");
      const t = r.trade(BTC, undefined, 5); // then nothing: no later trade moves the watermark
      const ts = secondOf(t.timestampMs);
      await until(
        () => r.finals.some((b) => b.market === BTC && b.ts === ts),
        () => "the bar final within seconds " + JSON.stringify(feed.stats()),
        8000,
      );
      assert.equal(await r.finalTrades(BTC, ts, ts + 1000), 1);
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
      // A trade of that second arriving now is late: counted, not applied, the bar unchanged.
      r.trade(BTC, t.timestampMs, 6);
      await until(() => feed.stats().lateDropped === 1, () => JSON.stringify(feed.stats()));
      await feed.flush();
      assert.equal(await r.finalTrades(BTC, ts, ts + 1000), 1);
      assert.equal(r.finals.filter((b) => b.market === BTC && b.ts === ts).length, 1);
    } finally {
      await r.close();
    }
  },
);

feedCase(
  "feed: a host clock 5 s ahead of the exchange's finalises no bar before its trades are in",
  async (db) => {
    const r = await rig(db, [BTC, ETH]);
    let live: ReturnType<typeof setInterval> | undefined;
    try {
      const feed = r.feed({ now: () => Date.now() + 5000 });
      await feed.start();
      await until(() => {
        if (feed.stats().trades > 0) return true;
        r.trade(ETH);
        return false;
      }, () => "the feed receives trades");
      let printed = 0;
      const from = secondOf(Date.now()) + 1000;
      live = setInterval(() => {
        if (Date.now() >= from) {
          r.trade(BTC);
          printed++;
        }
      }, 100);
      await sleep(4000);
      clearInterval(live);
      const last = r.trade(BTC);
      await r.expectFinal(feed, from, last.timestampMs, { [BTC]: printed + 1, [ETH]: 0 });
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
    } finally {
      clearInterval(live);
      await r.close();
    }
  },
);

feedCase(
  "feed: no bar is final by the clock while a gap is being filled: its trades are not late",
  async (db) => {
    const r = await rig(db, [BTC, ETH]);
    try {
      const feed = r.feed({ ws: { reconnect: { baseMs: 300, maxMs: 300, jitter: 0 } } });
      await feed.start();
      await until(() => {
        if (feed.stats().trades > 0) return true;
        r.trade(ETH);
        return false;
      }, () => "the feed receives trades");
      await sleep(4000); // the clock has finalised the warm-up's seconds
      // The reconnect's backfill will take 4 s, while live frames come in.
      r.sim.setFaults({ latency_ms: 4000 });
      r.sim.dropWebSockets();
      await until(() => !feed.stats().connected, () => "the drop");
      // Printed while disconnected: only the reconnect's backfill brings them.
      const gap = [r.trade(BTC, undefined, 1), r.trade(ETH, undefined, 1), r.trade(BTC)];
      const from = secondOf(gap[0]!.timestampMs);
      await until(() => feed.stats().connected, () => "reconnected");
      await sleep(1000);
      gap.push(r.trade(ETH, undefined, 2)); // live, held until the backfill is in
      await sleep(3500);
      r.sim.setFaults({ latency_ms: 0 });
      const newest = Math.max(...gap.map((t) => t.timestampMs));
      await r.expectFinal(feed, from, newest, { [BTC]: 2, [ETH]: 2 });
      assert.equal(feed.stats().lateDropped, 0, JSON.stringify(feed.stats()));
    } finally {
      await r.close();
    }
  },
);

// One migrated database per backend for all the cases (opening one takes a second or more on
// PGlite): each case starts on an empty market_1s (the only table the feed reads or writes) and
// market_1m (its trigger's rollup), so it sees what a fresh database would show it.
for (const backend of testBackends()) {
  Deno.test(`feed gaps [${backend}]`, async (t) => {
    const db = await openTestDatabase(backend, { migrated: true });
    try {
      for (const { name, fn } of cases) {
        await t.step(name, async () => {
          await db.sql`truncate market_1s, market_1m`;
          await fn(db);
        });
      }
    } finally {
      await db.close();
    }
  });
}
