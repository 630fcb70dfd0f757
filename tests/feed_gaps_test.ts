/**
 * @module The feed against the simulator where trades used to be lost: a future-dated trade, the
 * start-up catch-up of several busy markets, a slow first WebSocket connection, quiet markets
 * over short outages, and bars left open by a quiet spell.
 */
import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { Feed, type FeedOptions } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";

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

const secondOf = (ms: number) => Math.floor(ms / 1000) * 1000;

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

dbTest("feed: a trade stamped an hour ahead is rejected; later trades are not late", async (db) => {
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
});
