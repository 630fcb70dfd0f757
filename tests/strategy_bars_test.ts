import assert from "node:assert/strict";
import { type Bar, BarAggregator, type Trade } from "../lib/strategy/bars.ts";

const T = 1_700_000_000_000; // a whole second

function trade(
  offsetMs: number,
  price: number,
  volume: number,
  side: "ASK" | "BID",
  sequentialId: number,
  market = "KRW-BTC",
): Trade {
  return {
    market,
    price,
    volume,
    side,
    timestampMs: T + offsetMs,
    sequentialId: BigInt(sequentialId),
  };
}

// Second T: arrives out of order (c after b), a tie on the same ms (b, d), a duplicate of a.
const a = trade(100, 100, 1, "BID", 1);
const b = trade(900, 103, 2, "ASK", 3);
const c = trade(500, 99, 0.5, "BID", 2);
const d = trade(900, 101, 1, "BID", 4);
// Second T+1000.
const e = trade(1200, 102, 1, "BID", 5);
// Moves the watermark to T+1100: second T becomes final, second T+1000 does not.
const f = trade(3100, 104, 1, "ASK", 6);
// Too late: second T is final.
const g = trade(900, 50, 9, "BID", 7);
// Behind the watermark but its second is still open: included, and it is the open of T+1000.
const h = trade(1050, 97, 1, "ASK", 8);

const BAR_T: Bar = {
  market: "KRW-BTC",
  ts: T,
  open: 100,
  high: 103,
  low: 99,
  close: 101,
  volume: 4.5,
  quoteVolume: 100 + 206 + 49.5 + 101,
  tradeCount: 4,
  buyVolume: 2.5,
  sellVolume: 2,
  // Since migration 008: the last BID trade by time (d, tied with b at 900 ms, wins on id over
  // a and c) and the last ASK trade (b).
  askEst: 101,
  bidEst: 103,
};
const BAR_T1: Bar = {
  market: "KRW-BTC",
  ts: T + 1000,
  open: 97,
  high: 102,
  low: 97,
  close: 102,
  volume: 2,
  quoteVolume: 199,
  tradeCount: 2,
  buyVolume: 1,
  sellVolume: 1,
  // e (BID) and h (ASK, arrived after e but earlier in time).
  askEst: 102,
  bidEst: 97,
};

Deno.test("BarAggregator computes hand-checked bars with out-of-order, tied, duplicate and late trades", () => {
  const agg = new BarAggregator({ allowedLatenessMs: 2000 });
  const first = agg.ingest([a, b, c, d, { ...a }, e]);
  assert.deepEqual(first.final, []);
  assert.equal(first.duplicates, 1);
  assert.deepEqual(first.open.map((x) => x.ts), [T, T + 1000]);
  assert.deepEqual(first.open[0], BAR_T);

  const second = agg.ingest([f, g, h]);
  assert.deepEqual(second.final, [BAR_T]);
  assert.deepEqual(second.late, [g]);
  assert.deepEqual(second.open, [BAR_T1, {
    ...BAR_T1,
    ts: T + 3000,
    open: 104,
    high: 104,
    low: 104,
    close: 104,
    volume: 1,
    quoteVolume: 104,
    tradeCount: 1,
    buyVolume: 0,
    sellVolume: 1,
    askEst: null,
    bidEst: 104,
  }]);
  assert.deepEqual(agg.stats(), { accepted: 7, duplicates: 1, lateDropped: 1, futureRejected: 0 });

  // T+1000 becomes final only when the watermark passes T+2000, i.e. a trade at >= T+4000.
  assert.deepEqual(agg.ingest([trade(3999, 104, 1, "BID", 9)]).final, []);
  const last = agg.ingest([trade(4000, 105, 1, "BID", 10)]);
  assert.deepEqual(last.final, [BAR_T1]);
});

Deno.test("BarAggregator never finalises because time passes without trades", () => {
  const agg = new BarAggregator({ allowedLatenessMs: 2000 });
  agg.ingest([a]);
  for (let i = 0; i < 5; i++) assert.deepEqual(agg.ingest([]).final, []);
  assert.equal(agg.openBars().length, 1);
  assert.equal(agg.watermarkMs("KRW-BTC"), T + 100 - 2000);
});

Deno.test("BarAggregator gives the same bars however the stream is cut into batches", () => {
  const stream = [a, b, c, d, a, e, f, g, h, trade(6000, 110, 1, "BID", 11)];
  const whole = new BarAggregator().ingest(stream).final;
  const oneByOne = new BarAggregator();
  const pieces: Bar[] = [];
  for (const t of stream) pieces.push(...oneByOne.ingest([t]).final);
  assert.deepEqual(pieces, whole);
  assert.deepEqual(whole, [BAR_T, BAR_T1, { ...whole[2]!, ts: T + 3000 }]);
});

Deno.test("BarAggregator shared watermark finalises a quiet market; market scope waits", () => {
  const quiet = trade(100, 5000, 1, "BID", 1, "KRW-XRP");
  const busy = trade(4500, 100, 1, "BID", 2, "KRW-BTC");
  const shared = new BarAggregator({ allowedLatenessMs: 2000 });
  shared.ingest([quiet]);
  const s = shared.ingest([busy]);
  assert.deepEqual(s.final.map((x) => [x.market, x.ts]), [["KRW-XRP", T]]);

  const perMarket = new BarAggregator({ allowedLatenessMs: 2000, watermarkScope: "market" });
  perMarket.ingest([quiet]);
  assert.deepEqual(perMarket.ingest([busy]).final, []);
  // A trade of the quiet market itself for a second still open is accepted.
  const more = perMarket.ingest([trade(200, 5001, 1, "ASK", 3, "KRW-XRP")]);
  assert.deepEqual(more.late, []);
  assert.equal(more.open[0]?.close, 5001);
});

Deno.test("BarAggregator.flushBefore finalises open bars and later trades for them are late", () => {
  const agg = new BarAggregator({ allowedLatenessMs: 2000 });
  agg.ingest([a, e]);
  const flushed = agg.flushBefore(T + 1000);
  assert.deepEqual(flushed.final.map((x) => x.ts), [T]);
  assert.deepEqual(agg.openBars().map((x) => x.ts), [T + 1000]);
  const after = agg.ingest([c]);
  assert.deepEqual(after.late, [c]);
  assert.equal(agg.stats().lateDropped, 1);
  // A flush never moves the watermark back.
  agg.flushBefore(T);
  assert.equal(agg.watermarkMs("KRW-BTC"), T + 1000);
});

Deno.test("BarAggregator rejects trades stamped far ahead of nowMs", () => {
  const agg = new BarAggregator({ maxFutureMs: 60_000 });
  const bogus = trade(3_600_000, 1, 1, "BID", 1);
  const batch = agg.ingest([bogus, a], T + 1000);
  assert.deepEqual(batch.future, [bogus]);
  assert.equal(batch.open.length, 1);
  assert.equal(agg.watermarkMs("KRW-BTC"), T + 100 - 2000);
});

Deno.test("BarAggregator forgets old trade identities (bounded memory), and reports them as late", () => {
  const agg = new BarAggregator({ allowedLatenessMs: 0, dedupRetentionMs: 0, maxDedupKeys: 1 });
  agg.ingest([a, e, trade(2500, 1, 1, "BID", 9)]);
  // a's second is final and forgotten: its replay is late, not a duplicate and never applied.
  const replay = agg.ingest([a]);
  assert.equal(replay.duplicates, 0);
  assert.deepEqual(replay.late, [a]);
  // A duplicate within an open second is still detected.
  const dup = agg.ingest([trade(2500, 1, 1, "BID", 9)]);
  assert.equal(dup.duplicates, 1);
});

Deno.test("BarAggregator remembers final seconds by sequential id: replays are duplicates, new trades late", () => {
  const agg = new BarAggregator({ allowedLatenessMs: 0 });
  const first = agg.ingest([a, b, c, d, e, trade(2500, 1, 1, "BID", 9)]);
  assert.deepEqual(first.final.map((x) => [x.ts, x.tradeCount]), [[T, 4], [T + 1000, 1]]);
  // Seconds T and T+1000 are final: their identities are kept as sorted ids.
  const replay = agg.ingest([d, a, e]);
  assert.equal(replay.duplicates, 3);
  assert.deepEqual(replay.late, []);
  const fresh = trade(300, 100, 1, "BID", 7);
  assert.deepEqual(agg.ingest([fresh]).late, [fresh]);
  // Dropped either way (its second is final); only the counter it lands in differs.
  assert.equal(agg.ingest([trade(100, 555, 1, "BID", 1)]).duplicates, 1);
  // Ids beyond 64 bits (never seen at Upbit) keep their full identities.
  const huge = { ...trade(2600, 1, 1, "ASK", 0), sequentialId: 2n ** 70n };
  agg.ingest([huge, trade(4000, 1, 1, "BID", 10)]);
  assert.equal(agg.ingest([huge]).duplicates, 1);
  assert.deepEqual(agg.ingest([{ ...huge, sequentialId: 2n ** 70n + 1n }]).late.length, 1);
  assert.deepEqual(agg.stats(), { accepted: 8, duplicates: 5, lateDropped: 2, futureRejected: 0 });
});

Deno.test("BarAggregator tells apart trades whose sequential ids round to the same double", () => {
  const id = 17303368620470000; // above 2^53: 17303368620470001 parses to the same number
  const agg = new BarAggregator();
  const batch = agg.ingest([
    trade(47, 100473000, 0.1, "BID", id),
    trade(47, 100474000, 0.2, "BID", id),
  ]);
  assert.equal(batch.duplicates, 0);
  assert.equal(batch.open[0]?.tradeCount, 2);
});

Deno.test("BarAggregator: trades sharing a sequential id are one trade only when every field matches", () => {
  const agg = new BarAggregator();
  const first = trade(10, 100, 1, "BID", 7);
  const otherPrice = trade(10, 101, 1, "BID", 7);
  const otherSide = trade(10, 100, 1, "ASK", 7);
  const otherTime = trade(20, 100, 1, "BID", 7);
  const batch = agg.ingest([first, otherPrice, otherSide, otherTime]);
  assert.equal(batch.duplicates, 0);
  assert.equal(batch.open[0]?.tradeCount, 4);
  // Replays of each, as fresh objects, are duplicates and change nothing.
  const replay = agg.ingest([first, otherPrice, otherSide, otherTime].map((t) => ({ ...t })));
  assert.equal(replay.duplicates, 4);
  assert.equal(replay.open.length, 0);
  assert.equal(agg.openBars()[0]?.tradeCount, 4);
});

Deno.test("BarAggregator refuses negative options", () => {
  assert.throws(
    () => new BarAggregator({ allowedLatenessMs: -1 }),
    new RangeError(
      "Cannot create BarAggregator as 'allowedLatenessMs' must be >= 0: current value is -1",
    ),
  );
});
