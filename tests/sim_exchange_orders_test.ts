import assert from "node:assert/strict";
import { Client, limitBid, makeExchange } from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

function setup(krw?: number) {
  const { exchange, market, faults } = makeExchange({ krw });
  market.setBook("KRW-BTC", [[155_800_000, 1], [155_900_000, 2]], [[155_700_000, 1]]);
  return { exchange, market, faults, client: new Client(exchange) };
}

Deno.test("§4.5 vector: limit bid 0.0001 @ 155,772,000 reserves 7.7886 fee and locks 15584.9886", async () => {
  const { exchange, client } = setup();
  const [status, created] = await client.postJson("/v1/orders", limitBid("155772000", "0.0001"));
  assert.equal(status, 201);
  assert.equal(created.state, "wait");
  assert.equal(created.reserved_fee, "7.7886");
  assert.equal(created.remaining_fee, "7.7886");
  assert.equal(created.locked, "15584.9886");
  assert.equal(created.paid_fee, "0");
  assert.equal(created.executed_volume, "0");
  assert.equal(created.remaining_volume, "0.0001");
  assert.equal(created.trades_count, 0);
  assert.match(created.created_at as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00$/);
  assert.deepEqual(await client.account("KRW"), {
    balance: "9984415.0114",
    locked: "15584.9886",
    avg: "0",
  });
  exchange.close();
});

Deno.test("§4.5 vector: market buy of 6000 KRW @ 160,594,000 ends in cancel with dust", async () => {
  const { exchange, market, client } = setup();
  market.setBook("KRW-BTC", [[160_594_000, 1], [160_595_000, 1]], [[160_593_000, 1]]);
  const [status, created] = await client.postJson("/v1/orders", {
    market: "KRW-BTC",
    side: "bid",
    price: "6000",
    ord_type: "price",
  });
  assert.equal(status, 201);
  assert.equal(created.state, "wait");
  assert.equal(created.volume, null);
  const [, order] = await client.getJson("/v1/order", [["uuid", created.uuid as string]]);
  assert.equal(order.state, "cancel");
  assert.equal(order.price, "6000");
  assert.equal(order.executed_volume, "0.00003736");
  assert.equal((await client.listed(order.uuid)).executed_funds, "5999.79184");
  assert.equal(order.reserved_fee, "3");
  assert.equal(order.paid_fee, "2.99989592");
  assert.equal(order.remaining_fee, "0.00010408");
  assert.equal(order.locked, "0.20826408");
  assert.equal(order.trades_count, 1);
  const trades = order.trades as Json[];
  assert.equal(trades.length, 1);
  assert.equal(trades[0]!.price, "160594000");
  assert.equal(trades[0]!.volume, "0.00003736");
  assert.equal(trades[0]!.funds, "5999.79184");
  assert.equal(trades[0]!.side, "bid");
  assert.equal(trades[0]!.trend, "up");
  assert.match(trades[0]!.created_at as string, /\.\d{6}\+09:00$/);
  assert.deepEqual(await client.account("KRW"), {
    balance: "9993997.20826408",
    locked: "0",
    avg: "0",
  });
  assert.deepEqual(await client.account("BTC"), {
    balance: "0.00003736",
    locked: "0",
    avg: "160594000",
  });
  exchange.close();
});

Deno.test("§4.5 vector: market sell 5.377594 @ 1375 pays 3.697095875 fee, reserves 0, ends done", async () => {
  const { exchange, market, client } = setup();
  market.setBook("KRW-USDT", [[1375, 100]], [[1375, 100]]);
  const [, buy] = await client.postJson("/v1/orders", {
    market: "KRW-USDT",
    side: "bid",
    volume: "5.377594",
    price: "1375",
    ord_type: "limit",
  });
  const [, bought] = await client.getJson("/v1/order", [["uuid", buy.uuid as string]]);
  assert.equal(bought.state, "done");
  assert.equal((await client.account("USDT")).balance, "5.377594");
  const [status, sell] = await client.postJson("/v1/orders", {
    market: "KRW-USDT",
    side: "ask",
    volume: "5.377594",
    ord_type: "market",
  });
  assert.equal(status, 201);
  assert.equal("price" in sell, false);
  assert.equal(sell.reserved_fee, "0");
  const [, sold] = await client.getJson("/v1/order", [["uuid", sell.uuid as string]]);
  assert.equal(sold.state, "done");
  assert.equal((await client.listed(sold.uuid)).executed_funds, "7394.19175");
  assert.equal(sold.paid_fee, "3.697095875");
  assert.equal(sold.reserved_fee, "0");
  assert.equal(sold.remaining_fee, "0");
  assert.equal(sold.locked, "0");
  // 10,000,000 - (7394.19175 + 3.697095875) + (7394.19175 - 3.697095875)
  assert.deepEqual(await client.account("KRW"), {
    balance: "9999992.60580825",
    locked: "0",
    avg: "0",
  });
  assert.deepEqual(await client.account("USDT"), { balance: "0", locked: "0", avg: "0" });
  exchange.close();
});

Deno.test("GET /v1/order finds by identifier and answers 404 order_not_found", async () => {
  const { exchange, client } = setup();
  const [, created] = await client.postJson(
    "/v1/orders",
    limitBid("150000000", "0.001", { identifier: "my-1" }),
  );
  const [status, byId] = await client.getJson("/v1/order", [["identifier", "my-1"]]);
  assert.equal(status, 200);
  assert.equal(byId.uuid, created.uuid);
  assert.equal(byId.identifier, "my-1");
  assert.deepEqual(byId.trades, []);
  const [missingStatus, missing] = await client.getJson<{ error: Json }>("/v1/order", [[
    "uuid",
    "00000000-0000-4000-8000-000000000000",
  ]]);
  assert.equal(missingStatus, 404);
  assert.deepEqual(missing.error.name, "order_not_found");
  const [noParamStatus] = await client.getJson("/v1/order");
  assert.equal(noParamStatus, 400);
  exchange.close();
});

Deno.test("DELETE /v1/order answers the order as it was, then cancels and unlocks", async () => {
  const { exchange, client } = setup();
  const [, created] = await client.postJson("/v1/orders", limitBid("150000000", "0.001"));
  assert.equal((await client.account("KRW")).locked, "150075");
  const [status, answer] = await client.deleteJson("/v1/order", [["uuid", created.uuid as string]]);
  assert.equal(status, 200);
  assert.equal(answer.state, "wait");
  assert.equal(answer.uuid, created.uuid);
  const [, after] = await client.getJson("/v1/order", [["uuid", created.uuid as string]]);
  assert.equal(after.state, "cancel");
  assert.deepEqual(await client.account("KRW"), { balance: "10000000", locked: "0", avg: "0" });
  const [againStatus, again] = await client.deleteJson<{ error: Json }>("/v1/order", [[
    "uuid",
    created.uuid as string,
  ]]);
  assert.equal(againStatus, 400);
  assert.equal(again.error.name, "canceled_order");
  exchange.close();
});

Deno.test("DELETE with a body is refused with QUERY_PARAMETER_NOT_SUPPORTED", async () => {
  const { exchange, client } = setup();
  const token = await client.token(null);
  const res = await exchange.handle(
    new Request("http://sim.test/v1/order", {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ uuid: "x" }),
    }),
  );
  assert.equal(res.status, 400);
  assert.equal((await res.json() as { error: Json }).error.name, "QUERY_PARAMETER_NOT_SUPPORTED");
  exchange.close();
});

Deno.test("POST with a form-encoded body is refused with 400", async () => {
  const { exchange, client } = setup();
  const token = await client.token("market=KRW-BTC&side=bid");
  const res = await exchange.handle(
    new Request("http://sim.test/v1/orders", {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "market=KRW-BTC&side=bid",
    }),
  );
  assert.equal(res.status, 400);
  assert.equal((await res.json() as { error: Json }).error.name, "invalid_parameter");
  exchange.close();
});

Deno.test("executed_funds is only in list answers, not in create, test, get, cancel or cancel_and_new (§4.5)", async () => {
  const { exchange, client } = setup();
  const [, test] = await client.postJson("/v1/orders/test", limitBid("155800000", "0.0001"));
  const [, taker] = await client.postJson("/v1/orders", limitBid("155800000", "0.0001"));
  const [, resting] = await client.postJson("/v1/orders", limitBid("150000000", "0.0001"));
  const [, single] = await client.getJson("/v1/order", [["uuid", taker.uuid as string]]);
  const [, replaced] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_uuid: resting.uuid,
    new_ord_type: "limit",
    new_volume: "0.0001",
    new_price: "151000000",
  });
  const [, open] = await client.getJson<Json[]>("/v1/orders/open");
  const [, cancelled] = await client.deleteJson("/v1/order", [["uuid", open[0]!.uuid as string]]);
  for (const [name, answer] of Object.entries({ test, taker, single, replaced, cancelled })) {
    assert.equal(answer.uuid !== undefined, true, name);
    assert.equal("executed_funds" in answer, false, name);
  }
  assert.equal(single.executed_volume, "0.0001", "the taker filled at 155,800,000");
  assert.equal((await client.listed(taker.uuid)).executed_funds, "15580");
  assert.equal(open[0]!.executed_funds, "0");
  const [, closed] = await client.getJson<Json[]>("/v1/orders/closed");
  assert.deepEqual(closed.map((o) => o.executed_funds), ["0", "0", "15580"]);
  exchange.close();
});
