import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import {
  type CandleEvent,
  type OrderbookEvent,
  type TickerEvent,
  type TradeEvent,
  UpbitPublicWs,
  type UpbitPublicWsOptions,
} from "../lib/upbit/ws_public.ts";
import {
  type SimTrade,
  type Simulator,
  type SimulatorOptions,
  startSimulator,
} from "../sim/mod.ts";

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Harness {
  sim: Simulator;
  ws: UpbitPublicWs;
  trades: TradeEvent[];
  batches: number;
  tickers: TickerEvent[];
  books: OrderbookEvent[];
  candles: CandleEvent[];
}

async function withWs(
  options: Partial<UpbitPublicWsOptions>,
  fn: (h: Harness) => Promise<void>,
  simOptions: SimulatorOptions = {},
): Promise<void> {
  const restore = setLogSink(() => {});
  const sim = await startSimulator({ port: 0, seed: 1, rate: 0, ...simOptions });
  const rest = new UpbitRest({ baseUrl: sim.restUrl, backoff: { baseMs: 20 } });
  const h = {
    sim,
    trades: [],
    batches: 0,
    tickers: [],
    books: [],
    candles: [],
  } as unknown as Harness;
  h.ws = new UpbitPublicWs({
    url: sim.wsUrl,
    rest,
    reconnect: { baseMs: 200, maxMs: 400 },
    backfillDelayMs: 100,
    onTrades: (batch) => {
      h.batches++;
      h.trades.push(...batch);
    },
    onTicker: (e) => h.tickers.push(e),
    onOrderbook: (e) => h.books.push(e),
    onCandle: (e) => h.candles.push(e),
    ...options,
  });
  try {
    h.ws.start();
    await waitFor("connection", () => h.ws.stats().connected);
    await fn(h);
  } finally {
    await h.ws.close();
    rest.close();
    await sim.close();
    restore();
  }
}

const inject = (sim: Simulator, market: string, price: number): SimTrade =>
  sim.injectTrade({ market, price, volume: 0.001, side: price % 2 === 0 ? "BID" : "ASK" });

Deno.test("UpbitPublicWs streams trades, ticker, orderbook and candle.1s of many markets", async () => {
  await withWs({
    trades: ["KRW-BTC", "KRW-ETH"],
    tickers: ["KRW-BTC"],
    orderbooks: ["KRW-BTC"],
    candles1s: ["KRW-BTC"],
  }, async (h) => {
    await new Promise((r) => setTimeout(r, 100)); // let the subscription take effect
    const a = inject(h.sim, "KRW-BTC", 140_000_000);
    const b = inject(h.sim, "KRW-ETH", 5_000_000);
    await waitFor(
      "two trades",
      () => h.trades.filter((t) => t.streamType === "REALTIME").length >= 2,
    );
    const live = h.trades.filter((t) => t.streamType === "REALTIME");
    assert.deepEqual(live.map((t) => [t.market, t.price, t.volume, t.side, t.sequentialId]), [
      ["KRW-BTC", 140_000_000, 0.001, "BID", BigInt(a.sequentialId)],
      ["KRW-ETH", 5_000_000, 0.001, "BID", BigInt(b.sequentialId)],
    ]);
    assert.equal(live[0]?.timestampMs, a.timestampMs);
    await waitFor(
      "ticker, orderbook, candle",
      () =>
        h.tickers.some((t) => t.price === 140_000_000) && h.books.length > 0 &&
        h.candles.some((c) => c.close === 140_000_000),
    );
    assert.equal(h.tickers.at(-1)?.market, "KRW-BTC");
    assert.ok((h.books.at(-1)?.units.length ?? 0) > 0);
    const stats = h.ws.stats();
    assert.equal(stats.malformed, 0);
    assert.equal(stats.duplicates, 0);
  });
});

Deno.test("UpbitPublicWs reconnects, backfills the gap from REST, and delivers no duplicate", async () => {
  await withWs({ trades: ["KRW-BTC", "KRW-ETH"] }, async (h) => {
    await new Promise((r) => setTimeout(r, 100));
    const injected: SimTrade[] = [];
    for (let i = 0; i < 5; i++) injected.push(inject(h.sim, "KRW-BTC", 140_000_000 + i * 1000));
    injected.push(inject(h.sim, "KRW-ETH", 5_000_000));
    await waitFor("first trades", () => h.trades.length >= 6);

    h.sim.dropWebSockets();
    await waitFor("the drop", () => !h.ws.stats().connected);
    // Printed while disconnected: only the REST backfill can deliver these.
    for (let i = 0; i < 7; i++) injected.push(inject(h.sim, "KRW-BTC", 141_000_000 + i * 1000));
    injected.push(inject(h.sim, "KRW-ETH", 5_001_000));
    await waitFor("reconnect", () => h.ws.stats().connected && h.ws.stats().reconnects === 1);
    await waitFor("backfill", () => h.ws.stats().backfilled >= 8);
    for (let i = 0; i < 3; i++) injected.push(inject(h.sim, "KRW-BTC", 142_000_000 + i * 1000));
    await waitFor("all trades", () => h.trades.length >= injected.length);
    await new Promise((r) => setTimeout(r, 100));

    const ids = h.trades.map((t) => t.sequentialId);
    assert.equal(new Set(ids).size, ids.length, "no trade delivered twice");
    assert.deepEqual(
      [...ids].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
      injected.map((t) => BigInt(t.sequentialId)).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
      "every injected trade delivered exactly once",
    );
    for (const market of ["KRW-BTC", "KRW-ETH"]) {
      const ts = h.trades.filter((t) => t.market === market).map((t) => t.timestampMs);
      assert.deepEqual(ts, [...ts].sort((x, y) => x - y), `${market} trades in time order`);
    }
    assert.equal(h.trades.filter((t) => t.streamType === "BACKFILL").length, 8);
    const stats = h.ws.stats();
    assert.equal(stats.reconnects, 1);
    assert.equal(stats.gapsUnfilled, 0);
    assert.ok(stats.duplicates >= 1, "the SNAPSHOT after reconnect was dropped as a duplicate");
  });
});

Deno.test("UpbitPublicWs streams candle.1m .. candle.240m as candle events of their unit", async () => {
  await withWs(
    { trades: ["KRW-BTC"], candles: { "5m": ["KRW-BTC"], "240m": ["KRW-ETH"] } },
    async (h) => {
      await new Promise((r) => setTimeout(r, 100));
      inject(h.sim, "KRW-BTC", 140_000_000);
      inject(h.sim, "KRW-ETH", 5_000_000);
      await waitFor(
        "both candles",
        () => h.candles.some((c) => c.unit === "5m") && h.candles.some((c) => c.unit === "240m"),
      );
      const five = h.candles.find((c) => c.unit === "5m")!;
      assert.equal(five.market, "KRW-BTC");
      assert.equal(five.close, 140_000_000);
      const minute = Number(five.candleDateTimeUtc.slice(14, 16));
      assert.equal(minute % 5, 0, five.candleDateTimeUtc);
      const fourHours = h.candles.find((c) => c.unit === "240m")!;
      assert.equal(fourHours.market, "KRW-ETH");
      assert.match(fourHours.candleDateTimeUtc, /T(00|04|08|12|16|20):00:00$/);
      assert.equal(h.ws.stats().malformed, 0);
    },
  );
});

Deno.test("UpbitPublicWs backfills a gap across 00:00 UTC: every trade once, ids exact", async () => {
  const midnight = Date.UTC(2026, 2, 4); // 09:00 KST
  let clock = midnight - 60_000;
  const at = (ms: number, price: number) => {
    clock = ms;
    return inject(h0!.sim, "KRW-BTC", price);
  };
  let h0: Harness | undefined;
  await withWs({ trades: ["KRW-BTC"] }, async (h) => {
    h0 = h;
    await new Promise((r) => setTimeout(r, 100));
    const injected: SimTrade[] = [];
    for (let i = 0; i < 3; i++) injected.push(at(midnight - 60_000 + i * 1000, 140_000_000));
    await waitFor("first trades", () => h.trades.length >= 3);

    h.sim.dropWebSockets();
    await waitFor("the drop", () => !h.ws.stats().connected);
    // While disconnected: 700 trades from 23:59:56.5 to 00:00:03.5 UTC, two per millisecond (ids
    // n and n + 1, equal once rounded to a double), 350 on each date. Only a backfill that pages
    // the previous date with days_ago finds the first 350.
    for (let i = 0; i < 700; i++) {
      injected.push(at(midnight - 3_500 + Math.floor(i / 2) * 20, 140_000_000 + (i % 7) * 1000));
    }
    assert.equal(injected.filter((t) => t.timestampMs < midnight).length, 353);
    await waitFor("reconnect", () => h.ws.stats().connected && h.ws.stats().reconnects === 1);
    await waitFor("backfill", () => h.ws.stats().backfilled >= 700);
    injected.push(at(midnight + 10_000, 141_000_000));
    await waitFor("all trades", () => h.trades.length >= injected.length);
    await new Promise((r) => setTimeout(r, 100));

    const ids = h.trades.map((t) => t.sequentialId);
    assert.equal(new Set(ids).size, ids.length, "no trade delivered twice");
    assert.deepEqual(ids, injected.map((t) => t.sequentialId), "every trade, in order");
    const a = injected[3]!.sequentialId;
    const b = injected[4]!.sequentialId;
    assert.equal(b, a + 1n);
    assert.equal(parseFloat(String(a)), parseFloat(String(b)), "doubles could not tell them apart");
    assert.equal(h.trades.filter((t) => t.streamType === "BACKFILL").length, 700);
    assert.equal(h.ws.stats().gapsUnfilled, 0);
  }, { now: () => clock });
});

Deno.test("UpbitPublicWs counts and skips malformed frames without crashing", async () => {
  await withWs({ trades: ["KRW-BTC"] }, async (h) => {
    await new Promise((r) => setTimeout(r, 100));
    h.sim.setFaults({ malformed_frame_rate: 0.5 });
    const noisy: SimTrade[] = [];
    for (let i = 0; i < 40; i++) noisy.push(inject(h.sim, "KRW-BTC", 140_000_000 + i * 1000));
    await waitFor("40 frames", () => h.ws.stats().received >= 40);
    const stats = h.ws.stats();
    assert.ok(stats.malformed > 0);
    assert.equal(stats.malformed + h.trades.length, stats.received);
    const known = new Set(noisy.map((t) => BigInt(t.sequentialId)));
    assert.ok(h.trades.every((t) => known.has(t.sequentialId)), "only real trades are delivered");

    h.sim.setFaults({ malformed_frame_rate: 0 });
    const before = h.trades.length;
    const clean = inject(h.sim, "KRW-BTC", 150_000_000);
    await waitFor("a clean trade", () => h.trades.length > before);
    assert.equal(h.trades.at(-1)?.sequentialId, BigInt(clean.sequentialId));
    assert.equal(h.ws.stats().connected, true);
  });
});

Deno.test("UpbitPublicWs keeps the connection alive with PING and batches trades", async () => {
  await withWs({ trades: ["KRW-BTC"], keepaliveMs: 50, batchMs: 50 }, async (h) => {
    await waitFor("PING answers", () => h.ws.stats().received >= 3);
    assert.equal(h.ws.stats().malformed, 0, `{"status":"UP"} is not malformed`);
    for (let i = 0; i < 20; i++) inject(h.sim, "KRW-BTC", 140_000_000 + i * 1000);
    await waitFor("20 trades", () => h.trades.length >= 20);
    assert.ok(h.batches < 20, `trades arrive in batches (${h.batches} batches)`);
  });
});

Deno.test("UpbitPublicWs rejects an empty subscription and a non-ws URL", () => {
  assert.throws(() => new UpbitPublicWs({ url: "ws://x" }), {
    name: "TypeError",
    message: "Cannot create UpbitPublicWs as no market is subscribed",
  });
  assert.throws(() => new UpbitPublicWs({ url: "http://x", trades: ["KRW-BTC"] }), {
    name: "TypeError",
    message:
      `Cannot create UpbitPublicWs as 'url' must start with ws:// or wss://: current value is "http://x"`,
  });
});
