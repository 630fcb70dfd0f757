import assert from "node:assert/strict";
import { parseJsonExactIds } from "../lib/upbit/schemas.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";

type Row = Record<string, unknown>;

async function withSim(fn: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = await startSimulator({ rate: 0, seed: 5 });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

async function get(
  sim: Simulator,
  path: string,
): Promise<{ status: number; body: unknown; res: Response }> {
  const res = await fetch(sim.restUrl + path);
  // sequential_id exceeds 2^53: read it exactly (as a string), as the client does.
  return { status: res.status, body: parseJsonExactIds(await res.text()), res };
}

Deno.test("GET /v1/market/all lists every market, with market_event when is_details=true", async () => {
  await withSim(async (sim) => {
    const plain = (await get(sim, "/v1/market/all")).body as Row[];
    assert.equal(plain.length, 12);
    assert.deepEqual(plain[0], {
      market: "KRW-BTC",
      korean_name: "비트코인",
      english_name: "Bitcoin",
    });
    const detailed = (await get(sim, "/v1/market/all?is_details=true")).body as Row[];
    const event = detailed[0]!.market_event as { warning: boolean; caution: Row };
    assert.equal(event.warning, false);
    assert.equal(event.caution.PRICE_FLUCTUATIONS, false);
  });
});

Deno.test("GET /v1/ticker answers JSON numbers and follows injected trades", async () => {
  await withSim(async (sim) => {
    const t = sim.injectTrade({ market: "KRW-ETH", price: 5_123_000, volume: 0.25, side: "BID" });
    const { status, body, res } = await get(sim, "/v1/ticker?markets=KRW-ETH,KRW-BTC");
    assert.equal(status, 200);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const [eth, btc] = body as Row[];
    assert.equal(eth!.market, "KRW-ETH");
    assert.equal(btc!.market, "KRW-BTC");
    assert.equal(eth!.trade_price, 5_123_000);
    assert.equal(eth!.trade_volume, 0.25);
    assert.equal(eth!.trade_timestamp, t.timestampMs);
    assert.match(String(eth!.trade_date), /^\d{8}$/);
    assert.match(String(eth!.trade_time), /^\d{6}$/);
    for (
      const key of [
        "opening_price",
        "high_price",
        "low_price",
        "prev_closing_price",
        "change_price",
        "change_rate",
        "signed_change_price",
        "signed_change_rate",
        "acc_trade_price",
        "acc_trade_price_24h",
        "acc_trade_volume",
        "acc_trade_volume_24h",
        "highest_52_week_price",
        "lowest_52_week_price",
        "timestamp",
      ]
    ) assert.equal(typeof eth![key], "number", key);
    assert.ok(["RISE", "EVEN", "FALL"].includes(String(eth!.change)));
    const signed = Number(eth!.signed_change_price);
    assert.equal(Math.abs(signed), eth!.change_price);
    assert.equal(signed, 5_123_000 - Number(eth!.prev_closing_price));
    assert.match(String(eth!.highest_52_week_date), /^\d{4}-\d{2}-\d{2}$/);
  });
});

Deno.test("GET /v1/trades/ticks returns newest first and pages older trades with cursor", async () => {
  await withSim(async (sim) => {
    const ids: bigint[] = [];
    for (let i = 0; i < 12; i++) {
      ids.push(
        sim.injectTrade({
          market: "KRW-XRP",
          price: 3000 + i,
          volume: 10 + i,
          side: i % 2 ? "ASK" : "BID",
        })
          .sequentialId,
      );
    }
    const one = (await get(sim, "/v1/trades/ticks?market=KRW-XRP")).body as Row[];
    assert.equal(one.length, 1, "count defaults to 1");
    assert.equal(BigInt(one[0]!.sequential_id as string), ids[11]);
    assert.equal(one[0]!.trade_price, 3011);
    assert.equal(one[0]!.ask_bid, "ASK");
    assert.match(String(one[0]!.trade_date_utc), /^\d{4}-\d{2}-\d{2}$/);
    assert.match(String(one[0]!.trade_time_utc), /^\d{2}:\d{2}:\d{2}$/);
    for (const key of ["timestamp", "trade_volume", "prev_closing_price", "change_price"]) {
      assert.equal(typeof one[0]![key], "number");
    }
    const page1 = (await get(sim, "/v1/trades/ticks?market=KRW-XRP&count=5")).body as Row[];
    const sid = (t: Row) => BigInt(t.sequential_id as string);
    assert.deepEqual(page1.map(sid), ids.slice(7).reverse());
    const cursor = page1[4]!.sequential_id;
    const page2 = (await get(sim, `/v1/trades/ticks?market=KRW-XRP&count=5&cursor=${cursor}`))
      .body as Row[];
    assert.deepEqual(page2.map(sid), ids.slice(2, 7).reverse());
    const page3 = (await get(sim, `/v1/trades/ticks?market=KRW-XRP&count=5&cursor=${ids[2]}`))
      .body as Row[];
    assert.deepEqual(page3.map(sid), ids.slice(0, 2).reverse());
  });
});

Deno.test("GET /v1/orderbook honours count and matches the last trade", async () => {
  await withSim(async (sim) => {
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "ASK" });
    const [book] = (await get(sim, "/v1/orderbook?markets=KRW-BTC&count=5")).body as Row[];
    const units = book!.orderbook_units as Row[];
    assert.equal(units.length, 5);
    assert.equal(units[0]!.bid_price, 140_000_000);
    assert.equal(units[0]!.ask_price, 140_001_000);
    assert.equal(units[4]!.bid_price, 139_996_000);
    assert.equal(book!.level, 0);
    const total = units.reduce((s, u) => s + Number(u.ask_size), 0);
    assert.ok(Math.abs(total - Number(book!.total_ask_size)) < 1e-6);
    const full = (await get(sim, "/v1/orderbook?markets=KRW-BTC,KRW-ETH")).body as Row[];
    assert.equal(full.length, 2);
    assert.equal((full[0]!.orderbook_units as Row[]).length, 30);
    assert.deepEqual((await get(sim, "/v1/orderbook?markets=KRW-BTC&level=10000")).body, []);
  });
});

Deno.test("GET /v1/orderbook/instruments gives the §8.3 tick size as a string", async () => {
  await withSim(async (sim) => {
    const rows = (await get(sim, "/v1/orderbook/instruments?markets=KRW-BTC,KRW-XRP,KRW-BTT"))
      .body as Row[];
    assert.deepEqual(rows.map((r) => r.tick_size), ["1000", "1", "0.000001"]);
    assert.equal(rows[0]!.quote_currency, "KRW");
  });
});

Deno.test("GET /v1/candles/seconds and /minutes/{unit} aggregate trades, newest first, with to", async () => {
  await withSim(async (sim) => {
    const base = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    const put = (offsetMs: number, price: number, volume: number) =>
      sim.injectTrade({
        market: "KRW-SOL",
        price,
        volume,
        side: "BID",
        timestampMs: base + offsetMs,
      });
    put(0, 250_000, 1);
    put(500, 250_100, 1);
    put(2_000, 249_900, 2);
    put(61_000, 250_500, 1);
    put(5 * 60_000, 251_000, 1);
    const secs = (await get(sim, "/v1/candles/seconds?market=KRW-SOL&count=10")).body as Row[];
    assert.equal(secs.length, 4);
    const first = secs[3]!;
    assert.equal(first.opening_price, 250_000);
    assert.equal(first.high_price, 250_100);
    assert.equal(first.trade_price, 250_100);
    assert.equal(first.candle_acc_trade_volume, 2);
    assert.equal(first.candle_acc_trade_price, 500_100);
    assert.equal(first.candle_date_time_utc, new Date(base).toISOString().slice(0, 19));
    assert.equal(
      first.candle_date_time_kst,
      new Date(base + 9 * 3_600_000).toISOString().slice(0, 19),
    );
    assert.equal(first.timestamp, base + 500);
    const mins = (await get(sim, "/v1/candles/minutes/1?market=KRW-SOL&count=200")).body as Row[];
    assert.deepEqual(mins.map((c) => c.trade_price), [251_000, 250_500, 249_900]);
    assert.equal(mins[0]!.unit, 1);
    const fives = (await get(sim, "/v1/candles/minutes/5?market=KRW-SOL&count=3")).body as Row[];
    assert.equal(
      fives.length,
      // One candle per distinct 5-minute block among the three trade times.
      new Set([0, 61_000, 5 * 60_000].map((o) => Math.floor((base + o) / 300_000))).size,
    );
    const to = new Date(base + 60_000).toISOString().slice(0, 19); // no offset = UTC
    const before = (await get(sim, `/v1/candles/minutes/1?market=KRW-SOL&count=10&to=${to}`))
      .body as Row[];
    assert.deepEqual(before.map((c) => c.trade_price), [249_900]);
    const toKst = new Date(base + 60_000 + 9 * 3_600_000).toISOString().slice(0, 19) + "+09:00";
    const sameBound = (await get(
      sim,
      `/v1/candles/minutes/1?market=KRW-SOL&count=10&to=${encodeURIComponent(toKst)}`,
    )).body as Row[];
    assert.deepEqual(sameBound, before);
  });
});

Deno.test("quotation errors use the numeric-name envelope of §5.1", async () => {
  await withSim(async (sim) => {
    const cases: [string, number, string][] = [
      ["/v1/ticker?markets=KRW-NOPE", 404, "Code not found"],
      ["/v1/ticker", 400, "Missing request parameter error. Check the required parameters!"],
      [
        "/v1/trades/ticks?market=KRW-BTC&count=501",
        400,
        "Invalid parameter. Check the given value!",
      ],
      [
        "/v1/trades/ticks?market=KRW-BTC&count=abc",
        400,
        "Type mismatch error. Check the parameters type!",
      ],
      ["/v1/candles/minutes/7?market=KRW-BTC", 400, "Invalid parameter. Check the given value!"],
      [
        "/v1/candles/seconds?market=KRW-BTC&count=201",
        400,
        "Invalid parameter. Check the given value!",
      ],
      [
        "/v1/candles/seconds?market=KRW-BTC&to=yesterday",
        400,
        "Invalid parameter. Check the given value!",
      ],
      ["/v1/orderbook?markets=KRW-BTC&count=31", 400, "Invalid parameter. Check the given value!"],
    ];
    for (const [path, status, message] of cases) {
      const r = await get(sim, path);
      assert.equal(r.status, status, path);
      assert.deepEqual(r.body, { error: { name: status, message } }, path);
    }
  });
});
