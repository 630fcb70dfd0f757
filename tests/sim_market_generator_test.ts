import assert from "node:assert/strict";
import { SimMarket } from "../sim/market.ts";
import { DEFAULT_MARKETS } from "../sim/market_specs.ts";
import { isOnKrwGrid, krwTickSize, tickDown, tickText, tickUp } from "../sim/tick_size.ts";

const T0 = Date.UTC(2026, 0, 15, 3, 0, 0);

function market(seed: number, now = () => T0): SimMarket {
  return new SimMarket({ seed, markets: DEFAULT_MARKETS, rate: 0, historySize: 10_000, now });
}

/** n trades, the k-th generated at T0 + 100 ms × ⌊k / 100⌋, in batches of `step`. */
const content = (m: SimMarket, n: number, step = 100) => {
  const out: string[] = [];
  for (let done = 0; done < n;) {
    const size = Math.min(step, n - done, 100 - (done % 100));
    for (const t of m.generate(size, T0 + 100 * Math.floor(done / 100))) {
      out.push(`${t.market} ${t.price} ${t.volume} ${t.side}`);
    }
    done += size;
  }
  return out;
};

Deno.test("SimMarket generates the same trades for the same seed and clock, whatever the batch sizes", () => {
  const a = content(market(42), 3_000, 100);
  const b = content(market(42), 3_000, 7);
  assert.equal(a.length, 3_000);
  assert.deepEqual(a, b);
  const c = content(market(43), 3_000, 100);
  assert.notDeepEqual(a, c);
});

Deno.test("SimMarket prices lie on the KRW tick grid and sequential ids increase above 2^53", () => {
  const m = market(7);
  const trades = m.generate(20_000, T0);
  let lastSid = 0n;
  const seen = new Set<string>();
  for (const t of trades) {
    assert.ok(isOnKrwGrid(t.price), `${t.market} ${t.price} off grid`);
    assert.ok(t.sequentialId > lastSid, "sequential ids strictly increase");
    // Like Upbit's (about 1.7e16): consecutive ids differ only past the 53rd bit of a float.
    assert.ok(t.sequentialId > 2n ** 53n);
    assert.ok(t.volume > 0);
    assert.equal(Number(t.volume.toFixed(8)), t.volume, "volume has at most 8 decimals");
    lastSid = t.sequentialId;
    seen.add(t.market);
  }
  assert.equal(seen.size, DEFAULT_MARKETS.length, "every market trades");
  assert.equal(trades[0]!.sequentialId, BigInt(T0) * 10_000n, "trade time in ms × 10,000 + n");
});

Deno.test("SimMarket starts at realistic levels: BTC near 1e8 KRW, small coins below 1 KRW", () => {
  const m = market(1);
  assert.equal(m.markets().length, 12);
  const btc = m.lastPrice("KRW-BTC");
  assert.ok(btc > 5e7 && btc < 5e8, `BTC ${btc}`);
  assert.ok(m.lastPrice("KRW-ETH") > 1e6);
  assert.ok(m.lastPrice("KRW-SHIB") < 1);
  assert.ok(m.lastPrice("KRW-BTT") < 0.01);
  // Trades at one instant do not move the mid: the walk advances with time, not trade count.
  m.generate(100_000, T0);
  const after = m.lastPrice("KRW-BTC");
  assert.ok(after > btc * 0.7 && after < btc * 1.3, `BTC drifted to ${after}`);
});

Deno.test("SimMarket trade sizes vary widely (bursts and a heavy tail)", () => {
  const m = market(5);
  const notionals = m.generate(20_000, T0).map((t) => t.price * t.volume).sort((a, b) => a - b);
  const median = notionals[notionals.length >> 1] ?? 0;
  const p99 = notionals[Math.floor(notionals.length * 0.99)] ?? 0;
  assert.ok(median > 10_000 && median < 300_000, `median ${median}`);
  assert.ok(p99 > median * 10, "heavy right tail");
  // Bursts: runs of >= 3 consecutive same-market same-side trades occur.
  const trades = m.generate(20_000, T0);
  let runs = 0;
  for (let i = 2; i < trades.length; i++) {
    const [a, b, c] = [trades[i - 2]!, trades[i - 1]!, trades[i]!];
    if (a.market === c.market && b.market === c.market && a.side === c.side && b.side === c.side) {
      runs++;
    }
  }
  assert.ok(runs > 50, `runs ${runs}`);
});

Deno.test("SimMarket book has 30 levels on the grid around the last trade", () => {
  const m = market(9);
  m.generate(5_000, T0);
  for (const code of DEFAULT_MARKETS) {
    const { asks, bids } = m.book(code);
    assert.equal(asks.length, 30);
    assert.equal(bids.length, 30);
    const last = m.lastPrice(code);
    assert.ok(asks[0]!.price > bids[0]!.price);
    assert.ok(last === asks[0]!.price || last === bids[0]!.price, `${code} last ${last}`);
    for (let i = 1; i < 30; i++) {
      assert.ok(asks[i]!.price > asks[i - 1]!.price);
      assert.ok(bids[i]!.price < bids[i - 1]!.price);
      assert.ok(isOnKrwGrid(asks[i]!.price) && isOnKrwGrid(bids[i]!.price));
      assert.ok(asks[i]!.size > 0 && bids[i]!.size > 0);
    }
  }
});

Deno.test("SimMarket.inject prints a trade, moves the price and notifies listeners in order", () => {
  const m = market(3);
  const seen: bigint[] = [];
  const stop = m.onTrade((t) => seen.push(t.sequentialId));
  const a = m.inject({ market: "KRW-BTC", price: 150_000_000, volume: 0.5, side: "BID" });
  const b = m.inject({ market: "KRW-BTC", price: 149_000_000, volume: 0.1, side: "ASK" });
  stop();
  m.inject({ market: "KRW-BTC", price: 149_000_000, volume: 0.1, side: "ASK" });
  assert.deepEqual(seen, [a.sequentialId, b.sequentialId]);
  assert.equal(m.lastPrice("KRW-BTC"), 149_000_000);
  const book = m.book("KRW-BTC");
  assert.equal(book.bids[0]!.price, 149_000_000, "a sell hits the best bid");
  assert.equal(book.asks[0]!.price, 149_001_000);
});

Deno.test("SimMarket.tradesBefore pages newest first through the history with a cursor", () => {
  const m = market(11);
  m.generate(5_000, T0);
  const first = m.tradesBefore("KRW-XRP", 100);
  assert.equal(first.length, 100);
  for (let i = 1; i < first.length; i++) {
    assert.ok(first[i]!.sequentialId < first[i - 1]!.sequentialId, "newest first");
  }
  const cursor = first[first.length - 1]!.sequentialId;
  const next = m.tradesBefore("KRW-XRP", 100, cursor);
  assert.ok(next.length > 0);
  assert.ok(next[0]!.sequentialId < cursor, "strictly older than the cursor");
  const all = m.tradesBefore("KRW-XRP", 100_000);
  const idx = all.findIndex((t) => t.sequentialId === cursor);
  assert.deepEqual(
    next.map((t) => t.sequentialId),
    all.slice(idx + 1, idx + 101).map((t) => t.sequentialId),
  );
  assert.deepEqual(m.tradesBefore("KRW-XRP", 10, 1n), []);
});

Deno.test("SimMarket history is bounded per market", () => {
  const m = new SimMarket({
    seed: 1,
    markets: ["KRW-BTC"],
    rate: 0,
    historySize: 50,
    now: () => T0,
  });
  const trades = m.generate(120, T0);
  const kept = m.tradesBefore("KRW-BTC", 500);
  assert.equal(kept.length, 50);
  assert.equal(kept[0]!.sequentialId, trades[119]!.sequentialId);
  assert.equal(kept[49]!.sequentialId, trades[70]!.sequentialId);
});

Deno.test("SimMarket candles aggregate trades per second and per minute unit", () => {
  let now = T0;
  const m = new SimMarket({ seed: 1, markets: ["KRW-XRP"], rate: 0, now: () => now });
  const put = (ms: number, price: number, volume: number) => {
    now = ms;
    m.inject({ market: "KRW-XRP", price, volume, side: "BID", timestampMs: ms });
  };
  put(T0 + 100, 3000, 1);
  put(T0 + 900, 3010, 2);
  put(T0 + 1_500, 2990, 1);
  put(T0 + 61_000, 3005, 4);
  put(T0 + 190_000, 3001, 1);
  const secs = m.candles("KRW-XRP", 1, 10);
  assert.equal(secs.length, 4);
  assert.deepEqual(
    [secs[3]!.open, secs[3]!.high, secs[3]!.low, secs[3]!.close, secs[3]!.volume],
    [3000, 3010, 3000, 3010, 3],
  );
  assert.equal(secs[3]!.amount, 3000 + 6020);
  assert.equal(secs[3]!.lastTs, T0 + 900);
  const threeMin = m.candles("KRW-XRP", 180, 10);
  assert.equal(threeMin.length, 2);
  assert.deepEqual(
    [
      threeMin[1]!.startMs,
      threeMin[1]!.open,
      threeMin[1]!.high,
      threeMin[1]!.low,
      threeMin[1]!.close,
    ],
    [T0, 3000, 3010, 2990, 3005],
  );
  assert.equal(threeMin[1]!.volume, 8);
  // `to` is an exclusive bound on the candle start.
  assert.equal(m.candles("KRW-XRP", 60, 10, T0 + 60_000).length, 1);
  assert.equal(m.candles("KRW-XRP", 1, 2).length, 2);
});

Deno.test("KRW tick table of §8.3 and grid stepping across bands", () => {
  const rows: [number, string][] = [
    [140_000_000, "1000"],
    [1_500_000, "1000"],
    [600_000, "500"],
    [250_000, "100"],
    [60_000, "50"],
    [25_000, "10"],
    [6_000, "5"],
    [3_000, "1"],
    [400, "1"],
    [50, "0.1"],
    [5, "0.01"],
    [0.5, "0.001"],
    [0.0185, "0.0001"],
    [0.005, "0.00001"],
    [0.00089, "0.000001"],
    [0.00005, "0.0000001"],
    [0.000005, "0.00000001"],
  ];
  for (const [price, tick] of rows) assert.equal(tickText(krwTickSize(price)), tick, `${price}`);
  assert.equal(tickDown(1_000_000), 999_500);
  assert.equal(tickUp(999_500), 1_000_000);
  assert.equal(tickDown(0.1), 0.0999);
  assert.equal(tickUp(0.0999), 0.1);
  assert.equal(tickUp(0.0185), 0.0186);
  assert.ok(isOnKrwGrid(0.00089) && !isOnKrwGrid(0.0008905));
  assert.ok(!isOnKrwGrid(140_000_500));
});
