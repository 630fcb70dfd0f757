/**
 * A widely used third-party Upbit client (ccxt) against the simulator, unchanged except for its base
 * URL: public market data, then signed account and order calls (ccxt signs its own JWTs).
 */
import assert from "node:assert/strict";
// Pinned inline on purpose: ccxt is used by this one test only, not by upbot itself.
// deno-lint-ignore no-import-prefix
import ccxt from "npm:ccxt@4.5.84";
import { startSimulator } from "../sim/mod.ts";

Deno.test("ccxt's upbit class works against the simulator with only urls.api changed", async () => {
  const sim = await startSimulator({ rate: 0, seed: 8 });
  try {
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "BID" });
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.02, side: "ASK" });
    const exchange = new ccxt.upbit({ apiKey: sim.accessKey, secret: sim.secretKey });
    exchange.urls.api = { public: sim.restUrl, private: sim.restUrl };

    const markets = await exchange.loadMarkets();
    assert.ok(markets["BTC/KRW"], "BTC/KRW is listed");
    assert.equal(Object.keys(markets).length, 12);

    const ticker = await exchange.fetchTicker("BTC/KRW");
    assert.equal(ticker.last, 140_000_000);

    const book = await exchange.fetchOrderBook("BTC/KRW");
    assert.equal(book.bids[0]?.[0], 140_000_000);
    assert.equal(book.asks[0]?.[0], 140_001_000);

    const trades = await exchange.fetchTrades("BTC/KRW", undefined, 5);
    assert.equal(trades.length, 2);
    assert.deepEqual(trades.map((t) => t.amount).sort(), [0.01, 0.02]);

    const candles = await exchange.fetchOHLCV("BTC/KRW", "1m", undefined, 5);
    assert.equal(candles.length, 1);
    assert.equal(candles[0]?.[4], 140_000_000);

    const balance = await exchange.fetchBalance();
    assert.equal(balance["KRW"]?.free, 10_000_000);

    const order = await exchange.createOrder("BTC/KRW", "limit", "buy", 0.0001, 100_000_000);
    assert.ok(order.id);
    const fetched = await exchange.fetchOrder(order.id, "BTC/KRW");
    assert.equal(fetched.status, "open");
    assert.equal(fetched.price, 100_000_000);
    const open = await exchange.fetchOpenOrders("BTC/KRW");
    assert.deepEqual(open.map((o) => o.id), [order.id]);
    await exchange.cancelOrder(order.id, "BTC/KRW");
    assert.equal(sim.orders().length, 1);
    assert.equal(sim.orders()[0]?.uuid, order.id);
  } finally {
    await sim.close();
  }
});
