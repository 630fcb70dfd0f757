/**
 * @module The 1-minute rollup `market_1m` (migration 007): kept equal to the 1-second bars the feed
 * writes (inserts, repeated upserts of open bars, finals, out-of-order seconds), and what the
 * Grafana data source reads for bins of a minute or more.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { barsTable, binSeconds, grafanaRoutes } from "../lib/http/grafana_routes.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { dbTest } from "./_db.ts";

const T0 = Date.parse("2026-05-01T00:00:00Z");

function bar(market: string, sec: number, price: number, volume: number, trades: number): Bar {
  return {
    market,
    ts: T0 + sec * 1000,
    open: price,
    high: price + 1,
    low: price - 1,
    close: price + 0.5,
    volume,
    quoteVolume: price * volume,
    tradeCount: trades,
    buyVolume: volume / 2,
    sellVolume: volume / 2,
  };
}

dbTest("market_1m follows every write of market_1s", async (db) => {
  const { sql } = db;
  // Seconds 0..179 of two markets, written as the feed does: open versions first (twice, growing),
  // then final; one minute's seconds arrive out of order.
  const seconds = [...Array(180).keys()];
  const order = [
    ...seconds.slice(0, 60),
    ...seconds.slice(60, 120).reverse(),
    ...seconds.slice(120),
  ];
  for (const market of ["KRW-BTC", "KRW-ETH"]) {
    for (const s of order) {
      const price = 1000 + ((s * 37) % 50) + (market === "KRW-ETH" ? 500 : 0);
      await upsertBars(sql, [bar(market, s, price, 0.1, 1)], false);
      await upsertBars(sql, [bar(market, s, price, 0.25 + s / 1000, 3)], false);
      await upsertBars(sql, [bar(market, s, price, 0.5 + s / 1000, 4)], true);
      // A late open version of a final bar changes nothing (and must not move the rollup).
      await upsertBars(sql, [bar(market, s, price, 99, 99)], false);
    }
  }
  const rollup = await sql`
    select symbol, ts, trim_scale(open)::text as open, trim_scale(high)::text as high,
           trim_scale(low)::text as low, trim_scale(close)::text as close,
           trim_scale(volume)::text as volume, trade_count
    from market_1m order by symbol, ts`;
  const fromSeconds = await sql`
    select symbol, date_trunc('minute', ts) as ts,
           trim_scale((array_agg(open order by ts))[1])::text as open,
           trim_scale(max(high))::text as high, trim_scale(min(low))::text as low,
           trim_scale((array_agg(close order by ts desc))[1])::text as close,
           trim_scale(sum(volume))::text as volume, sum(trade_count)::int as trade_count
    from market_1s group by 1, 2 order by 1, 2`;
  assert.equal(rollup.length, 6);
  assert.deepEqual(
    rollup.map((r) => ({ ...r })),
    fromSeconds.map((r) => ({ ...r })),
  );
});

dbTest("Grafana reads the rollup for bins of whole minutes, with the same answer", async (db) => {
  const { sql } = db;
  for (let s = 0; s < 3600; s += 1) {
    if (s % 7 === 3) continue; // quiet seconds
    await sql`
      insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume,
                             trade_count, buy_volume, sell_volume, is_final)
      values ('KRW-BTC', ${new Date(T0 + s * 1000)}, ${1000 + (s % 90)}, ${1001 + (s % 90)},
              ${999 + (s % 90)}, ${1000 + (s % 90)}, ${0.01 + (s % 13) / 100}, 1, 1, 0, 0, true)`;
  }
  assert.equal(barsTable(binSeconds(T0, T0 + 3_600_000, 1000, 20)), "market_1m");
  assert.equal(binSeconds(T0, T0 + 3_600_000, 1000, 20), 180);
  assert.equal(binSeconds(T0, T0 + 3_600_000, 1000, 1000), 4);
  assert.equal(binSeconds(T0, T0 + 3_600_000, 1000, 50), 120, "72 s rounds up to 2 minutes");
  const app = new Hono();
  app.route("/", grafanaRoutes({ sql, markets: ["KRW-BTC"] }));
  const query = async (target: string) => {
    const res = await app.request("/grafana/query", {
      method: "POST",
      body: JSON.stringify({
        range: { from: new Date(T0).toISOString(), to: new Date(T0 + 3_599_999).toISOString() },
        maxDataPoints: 20,
        targets: [{ target }],
      }),
    });
    assert.equal(res.status, 200);
    return (await res.json())[0].datapoints as [number, number][];
  };
  const expected = await sql<{ t: number; close: number; volume: number }[]>`
    select (extract(epoch from date_bin('180 seconds', ts, timestamptz 'epoch')) * 1000)::float8 as t,
           (array_agg(close order by ts desc))[1]::float8 as close, sum(volume)::float8 as volume
    from market_1s group by 1 order by 1`;
  assert.equal(expected.length, 20);
  assert.deepEqual(await query("close"), expected.map((r) => [r.close, r.t]));
  const volume = await query("volume");
  assert.deepEqual(volume.map(([, t]) => t), expected.map((r) => r.t));
  for (const [i, [v]] of volume.entries()) assert.ok(Math.abs(v - expected[i]!.volume) < 1e-9);
});
