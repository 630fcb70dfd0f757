import assert from "node:assert/strict";
import { Client, makeExchange } from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

function setup() {
  const { exchange, market } = makeExchange();
  market.setBook(
    "KRW-BTC",
    [[100_100_000, 0.01], [100_200_000, 0.02], [100_300_000, 1]],
    [[100_000_000, 0.01], [99_900_000, 0.02], [99_800_000, 1]],
  );
  return { exchange, market, client: new Client(exchange) };
}

async function order(client: Client, uuid: unknown): Promise<Json> {
  const [, o] = await client.getJson("/v1/order", [["uuid", uuid as string]]);
  return o;
}

async function place(client: Client, body: Json): Promise<Json> {
  const [status, o] = await client.postJson("/v1/orders", body);
  assert.equal(status, 201, JSON.stringify(o));
  return o;
}

Deno.test("a resting limit bid fills at its own price when trades print at or below it", async () => {
  const { exchange, market, client } = setup();
  const created = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.03",
    price: "99950000",
    ord_type: "limit",
  });
  assert.equal((await order(client, created.uuid)).state, "wait");
  market.print("KRW-BTC", 99_960_000, 5); // above the limit: no fill
  assert.equal((await order(client, created.uuid)).executed_volume, "0");
  market.print("KRW-BTC", 99_950_000, 0.01); // at the limit: fills 0.01 (the trade's volume)
  let o = await order(client, created.uuid);
  assert.equal(o.state, "wait");
  assert.equal(o.executed_volume, "0.01");
  assert.equal(o.remaining_volume, "0.02");
  assert.equal(o.paid_fee, "499.75");
  assert.equal(o.remaining_fee, "999.5");
  assert.equal(o.locked, "1999999.5"); // 0.02 × 99,950,000 + remaining fee
  assert.deepEqual(await client.account("KRW"), {
    balance: "7000000.75",
    locked: "1999999.5",
    avg: "0",
  });
  market.print("KRW-BTC", 99_000_000, 1); // well below: fills the rest at the limit price
  o = await order(client, created.uuid);
  assert.equal(o.state, "done");
  assert.equal(o.executed_volume, "0.03");
  assert.equal((await client.listed(o.uuid)).executed_funds, "2998500");
  assert.equal(o.paid_fee, "1499.25");
  assert.equal(o.locked, "0");
  assert.equal(o.trades_count, 2);
  const trades = o.trades as Json[];
  assert.equal(trades[1]!.price, "99950000");
  assert.equal(trades[1]!.trend, "down", "a sell order took our resting bid");
  assert.deepEqual(await client.account("KRW"), {
    balance: "7000000.75",
    locked: "0",
    avg: "0",
  });
  assert.deepEqual(await client.account("BTC"), { balance: "0.03", locked: "0", avg: "99950000" });
  exchange.close();
});

Deno.test("a trade's volume is shared among resting orders best price first, then oldest", async () => {
  const { exchange, market, client } = setup();
  const low = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "99500000",
    ord_type: "limit",
  });
  const highOld = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "99600000",
    ord_type: "limit",
  });
  const highNew = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "99600000",
    ord_type: "limit",
  });
  market.print("KRW-BTC", 99_400_000, 0.015);
  assert.equal((await order(client, highOld.uuid)).executed_volume, "0.01");
  assert.equal((await order(client, highNew.uuid)).executed_volume, "0.005");
  assert.equal((await order(client, low.uuid)).executed_volume, "0");
  exchange.close();
});

Deno.test("a resting limit ask fills when trades print at or above it and credits proceeds minus fee", async () => {
  const { exchange, market, client } = setup();
  await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "100100000",
    ord_type: "limit",
  });
  const ask = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    volume: "0.01",
    price: "101000000",
    ord_type: "limit",
  });
  assert.equal(ask.reserved_fee, "505");
  assert.equal(ask.locked, "0.01");
  assert.deepEqual(await client.account("BTC"), { balance: "0", locked: "0.01", avg: "100100000" });
  market.print("KRW-BTC", 100_900_000, 1);
  assert.equal((await order(client, ask.uuid)).state, "wait");
  market.print("KRW-BTC", 101_000_000, 1, "BID");
  const done = await order(client, ask.uuid);
  assert.equal(done.state, "done");
  assert.equal(done.paid_fee, "505");
  assert.equal(done.remaining_fee, "0");
  assert.equal(done.locked, "0");
  assert.equal((done.trades as Json[])[0]!.trend, "up");
  // 10,000,000 − 1,001,000 − 500.5 + 1,010,000 − 505
  assert.deepEqual(await client.account("KRW"), { balance: "10007994.5", locked: "0", avg: "0" });
  assert.deepEqual(await client.account("BTC"), { balance: "0", locked: "0", avg: "0" });
  exchange.close();
});

Deno.test("a crossing limit bid takes the book at the resting prices and rests the remainder", async () => {
  const { exchange, market, client } = setup();
  const created = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.05",
    price: "100200000",
    ord_type: "limit",
  });
  let o = await order(client, created.uuid);
  assert.equal(o.state, "wait");
  assert.equal(o.executed_volume, "0.03");
  // 0.01 @ 100,100,000 + 0.02 @ 100,200,000: price improvement on the first level
  assert.equal((await client.listed(o.uuid)).executed_funds, "3005000");
  assert.equal(o.paid_fee, "1502.5");
  assert.equal(o.remaining_volume, "0.02");
  // reserved 5,010,000 + 2,505 fee; spent 3,005,000 + 1,502.5
  assert.equal(o.locked, "2006002.5");
  assert.deepEqual((o.trades as Json[]).map((t) => t.price), ["100100000", "100200000"]);
  assert.equal((await client.account("KRW")).locked, "2006002.5");
  const btc = await client.account("BTC");
  assert.equal(btc.balance, "0.03");
  assert.equal(btc.avg, "100166666.66666666");
  market.print("KRW-BTC", 100_200_000, 1);
  o = await order(client, created.uuid);
  assert.equal(o.state, "done");
  // Done: the order still reports the price improvement (1,000 KRW + 0.5 KRW of fee) as locked,
  // but the account got it back.
  assert.equal(o.locked, "1000.5");
  assert.deepEqual(await client.account("KRW"), { balance: "4988495.5", locked: "0", avg: "0" });
  exchange.close();
});

Deno.test("limit ioc fills what crosses and cancels the rest", async () => {
  const { exchange, client } = setup();
  const created = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.05",
    price: "100100000",
    ord_type: "limit",
    time_in_force: "ioc",
  });
  assert.equal(created.time_in_force, "ioc");
  const o = await order(client, created.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0.01");
  assert.deepEqual(await client.account("KRW"), {
    balance: "8998499.5",
    locked: "0",
    avg: "0",
  });
  exchange.close();
});

Deno.test("limit fok fills completely or not at all", async () => {
  const { exchange, client } = setup();
  const tooBig = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.05",
    price: "100200000",
    ord_type: "limit",
    time_in_force: "fok",
  });
  let o = await order(client, tooBig.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0");
  assert.equal(o.trades_count, 0);
  assert.deepEqual(await client.account("KRW"), { balance: "10000000", locked: "0", avg: "0" });
  const fits = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.03",
    price: "100200000",
    ord_type: "limit",
    time_in_force: "fok",
  });
  o = await order(client, fits.uuid);
  assert.equal(o.state, "done");
  assert.equal(o.executed_volume, "0.03");
  exchange.close();
});

Deno.test("post_only is cancelled when it would cross and rests when it would not", async () => {
  const { exchange, client } = setup();
  const crossing = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "100100000",
    ord_type: "limit",
    time_in_force: "post_only",
  });
  let o = await order(client, crossing.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0");
  const maker = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "100000000",
    ord_type: "limit",
    time_in_force: "post_only",
  });
  o = await order(client, maker.uuid);
  assert.equal(o.state, "wait");
  assert.deepEqual(await client.account("KRW"), {
    balance: "8999500",
    locked: "1000500",
    avg: "0",
  });
  exchange.close();
});

Deno.test("best ioc / fok take only the best opposite level", async () => {
  const { exchange, client } = setup();
  const bestBid = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    price: "2000000",
    ord_type: "best",
    time_in_force: "ioc",
  });
  let o = await order(client, bestBid.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0.01", "only the 0.01 at 100,100,000");
  assert.equal((await client.listed(o.uuid)).executed_funds, "1001000");
  const bestFok = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    price: "2000000",
    ord_type: "best",
    time_in_force: "fok",
  });
  o = await order(client, bestFok.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0");
  const bestAsk = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    volume: "0.01",
    ord_type: "best",
    time_in_force: "fok",
  });
  o = await order(client, bestAsk.uuid);
  assert.equal(o.state, "done");
  assert.equal((await client.listed(o.uuid)).executed_funds, "1000000");
  assert.equal(o.paid_fee, "500");
  exchange.close();
});

Deno.test("market orders larger than the visible book are refused, not partly filled (§8.2)", async () => {
  const { exchange, market, client } = setup();
  // Thin book: asks 0.01 @ 100.1M + 0.02 @ 100.2M (3,005,000 KRW); bids 0.01 + 0.02 BTC.
  market.setBook(
    "KRW-BTC",
    [[100_100_000, 0.01], [100_200_000, 0.02]],
    [[100_000_000, 0.01], [99_900_000, 0.02]],
  );
  await place(client, { market: "KRW-BTC", side: "bid", price: "3005000", ord_type: "price" });
  const btc = await client.account("BTC");
  const krw = await client.account("KRW");
  assert.equal(btc.balance, "0.03", "a buy of exactly the book's notional fills");
  for (
    const [body, name] of [
      [
        { market: "KRW-BTC", side: "bid", price: "3005001", ord_type: "price", identifier: "b1" },
        "insufficient_liquidity_bid",
      ],
      [
        {
          market: "KRW-BTC",
          side: "ask",
          volume: "0.03000001",
          ord_type: "market",
          identifier: "a1",
        },
        "insufficient_liquidity_ask",
      ],
    ] as const
  ) {
    const [status, answer] = await client.postJson("/v1/orders", body);
    assert.equal(status, 400, JSON.stringify(answer));
    assert.equal((answer.error as Json).name, name);
    // Nothing locked, nothing created, and the identifier is burnt.
    assert.deepEqual(await client.account("BTC"), btc);
    assert.deepEqual(await client.account("KRW"), krw);
    const [reuse, again] = await client.postJson("/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      price: "10000",
      ord_type: "price",
      identifier: body.identifier,
    });
    assert.equal(reuse, 400);
    assert.equal((again.error as Json).name, "duplicated_identifier");
  }
  assert.equal(exchange.orders().length, 1);
  // The test endpoint validates the same way.
  const [test, testAnswer] = await client.postJson("/v1/orders/test", {
    market: "KRW-BTC",
    side: "ask",
    volume: "0.031",
    ord_type: "market",
  });
  assert.deepEqual([test, (testAnswer.error as Json).name], [400, "insufficient_liquidity_ask"]);
  // A sell just inside the bids' size fills whole.
  const sell = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    volume: "0.03",
    ord_type: "market",
  });
  const o = await order(client, sell.uuid);
  assert.equal(o.state, "done");
  assert.equal(o.executed_volume, "0.03");
  assert.equal((await client.listed(o.uuid)).executed_funds, "2998000");
  exchange.close();
});

Deno.test("a cancelled resting order no longer fills", async () => {
  const { exchange, market, client } = setup();
  const created = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.01",
    price: "99000000",
    ord_type: "limit",
  });
  await client.deleteJson("/v1/order", [["uuid", created.uuid as string]]);
  market.print("KRW-BTC", 98_000_000, 1);
  const o = await order(client, created.uuid);
  assert.equal(o.state, "cancel");
  assert.equal(o.executed_volume, "0");
  exchange.close();
});
