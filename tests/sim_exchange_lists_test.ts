import assert from "node:assert/strict";
import { Client, makeExchange } from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

/** Three resting bids on BTC (a, b, c) and one on ETH (e), plus one done ETH order (d). */
async function setup() {
  const { exchange, market } = makeExchange();
  market.setBook("KRW-BTC", [[101_000_000, 1]], [[100_000_000, 1]]);
  market.setBook("KRW-ETH", [[5_001_000, 1]], [[5_000_000, 1]]);
  const client = new Client(exchange);
  const uuids: Record<string, string> = {};
  const place = async (identifier: string, body: Json) => {
    const [status, o] = await client.postJson("/v1/orders", { ...body, identifier });
    assert.equal(status, 201, JSON.stringify(o));
    uuids[identifier] = o.uuid as string;
  };
  const btcBid = (price: string) => ({
    market: "KRW-BTC",
    side: "bid",
    volume: "0.001",
    price,
    ord_type: "limit",
  });
  await place("a", btcBid("99000000"));
  await place("b", btcBid("98000000"));
  await place("c", btcBid("97000000"));
  await place("d", { market: "KRW-ETH", side: "bid", price: "10000", ord_type: "price" });
  await place("e", {
    market: "KRW-ETH",
    side: "bid",
    volume: "0.01",
    price: "4000000",
    ord_type: "limit",
  });
  return { exchange, market, client, uuids };
}

const ids = (list: Json[]) => list.map((o) => o.identifier);

Deno.test("GET /v1/orders/uuids returns orders by uuids[] or identifiers[], desc by default", async () => {
  const { exchange, client, uuids } = await setup();
  const [status, byUuid] = await client.getJson<Json[]>("/v1/orders/uuids", [
    ["uuids[]", uuids.a!],
    ["uuids[]", uuids.c!],
    ["uuids[]", "00000000-0000-4000-8000-000000000000"],
  ]);
  assert.equal(status, 200);
  assert.deepEqual(ids(byUuid), ["c", "a"]);
  assert.equal("trades" in byUuid[0]!, false);
  const [, byIdentifier] = await client.getJson<Json[]>("/v1/orders/uuids", [
    ["identifiers[]", "a"],
    ["identifiers[]", "e"],
    ["order_by", "asc"],
  ]);
  assert.deepEqual(ids(byIdentifier), ["a", "e"]);
  const [, filtered] = await client.getJson<Json[]>("/v1/orders/uuids", [
    ["identifiers[]", "a"],
    ["identifiers[]", "e"],
    ["market", "KRW-ETH"],
  ]);
  assert.deepEqual(ids(filtered), ["e"]);
  const [both] = await client.getJson("/v1/orders/uuids", [
    ["uuids[]", uuids.a!],
    ["identifiers[]", "a"],
  ]);
  assert.equal(both, 400);
  const [none] = await client.getJson("/v1/orders/uuids");
  assert.equal(none, 400);
  exchange.close();
});

Deno.test("GET /v1/orders/open lists wait orders with market, paging and order_by", async () => {
  const { exchange, client } = await setup();
  const [, all] = await client.getJson<Json[]>("/v1/orders/open");
  assert.deepEqual(ids(all), ["e", "c", "b", "a"]);
  const [, btc] = await client.getJson<Json[]>("/v1/orders/open", [
    ["market", "KRW-BTC"],
    ["order_by", "asc"],
  ]);
  assert.deepEqual(ids(btc), ["a", "b", "c"]);
  const [, page2] = await client.getJson<Json[]>("/v1/orders/open", [
    ["limit", "2"],
    ["page", "2"],
  ]);
  assert.deepEqual(ids(page2), ["b", "a"]);
  const [, watch] = await client.getJson<Json[]>("/v1/orders/open", [["state", "watch"]]);
  assert.deepEqual(watch, []);
  const [bad] = await client.getJson("/v1/orders/open", [["state", "wait"], ["states[]", "wait"]]);
  assert.equal(bad, 400);
  const [badLimit] = await client.getJson("/v1/orders/open", [["limit", "101"]]);
  assert.equal(badLimit, 400);
  exchange.close();
});

Deno.test("GET /v1/orders/closed lists done and cancelled orders within the time window", async () => {
  const { exchange, client } = await setup();
  await client.deleteJson("/v1/order", [["identifier", "b"]]);
  const [, closed] = await client.getJson<Json[]>("/v1/orders/closed");
  assert.deepEqual(ids(closed), ["d", "b"]);
  assert.equal(closed[0]!.state, "cancel", "the market buy ends in cancel (dust)");
  const [, cancelled] = await client.getJson<Json[]>("/v1/orders/closed", [["state", "cancel"]]);
  assert.deepEqual(ids(cancelled), ["d", "b"]);
  const [, done] = await client.getJson<Json[]>("/v1/orders/closed", [["state", "done"]]);
  assert.deepEqual(done, []);
  const [, eth] = await client.getJson<Json[]>("/v1/orders/closed", [["market", "KRW-ETH"]]);
  assert.deepEqual(ids(eth), ["d"]);
  const now = Date.now();
  const [, old] = await client.getJson<Json[]>("/v1/orders/closed", [
    ["end_time", String(now - 3_600_000)],
  ]);
  assert.deepEqual(old, []);
  const [, iso] = await client.getJson<Json[]>("/v1/orders/closed", [
    ["start_time", new Date(now - 3_600_000).toISOString().replace("Z", "+00:00")],
  ]);
  assert.deepEqual(ids(iso), ["d", "b"]);
  const [tooLong] = await client.getJson("/v1/orders/closed", [
    ["start_time", String(now - 8 * 86_400_000)],
    ["end_time", String(now)],
  ]);
  assert.equal(tooLong, 400);
  exchange.close();
});

Deno.test("DELETE /v1/orders/uuids cancels by ids and reports success and failed", async () => {
  const { exchange, client, uuids } = await setup();
  const [status, result] = await client.deleteJson<{
    success: { count: number; orders: Json[] };
    failed: { count: number; orders: Json[] };
  }>("/v1/orders/uuids", [
    ["uuids[]", uuids.a!],
    ["uuids[]", uuids.d!],
    ["uuids[]", "00000000-0000-4000-8000-000000000000"],
  ]);
  assert.equal(status, 200);
  assert.equal(result.success.count, 1);
  assert.deepEqual(result.success.orders, [{ uuid: uuids.a, market: "KRW-BTC", identifier: "a" }]);
  assert.equal(result.failed.count, 2);
  const [, a] = await client.getJson("/v1/order", [["uuid", uuids.a!]]);
  assert.equal(a.state, "cancel");
  const tooMany = Array.from(
    { length: 21 },
    (_, i) => ["identifiers[]", `x${i}`] as [string, string],
  );
  const [limit] = await client.deleteJson("/v1/orders/uuids", tooMany);
  assert.equal(limit, 400);
  exchange.close();
});

Deno.test("DELETE /v1/orders/open cancels wait orders by side, pairs, exclusions and count", async () => {
  const { exchange, client } = await setup();
  type Result = { success: { count: number; orders: Json[] } };
  const [, excluded] = await client.deleteJson<Result>("/v1/orders/open", [
    ["excluded_pairs", "KRW-BTC"],
  ]);
  assert.deepEqual(ids(excluded.success.orders), ["e"]);
  const [, asks] = await client.deleteJson<Result>("/v1/orders/open", [["cancel_side", "ask"]]);
  assert.equal(asks.success.count, 0);
  const [, two] = await client.deleteJson<Result>("/v1/orders/open", [
    ["pairs", "KRW-BTC"],
    ["count", "2"],
    ["order_by", "asc"],
  ]);
  assert.deepEqual(ids(two.success.orders), ["a", "b"]);
  const [, open] = await client.getJson<Json[]>("/v1/orders/open");
  assert.deepEqual(ids(open), ["c"]);
  const [bad] = await client.deleteJson("/v1/orders/open", [
    ["pairs", "KRW-BTC"],
    ["quote_currencies", "KRW"],
  ]);
  assert.equal(bad, 400);
  assert.deepEqual(await client.account("KRW"), {
    // 10,000,000 − (9,999.9996 + 4.9999998 for d) − 97,048.5 still locked by c
    balance: "9892946.5004002",
    locked: "97048.5",
    avg: "0",
  });
  exchange.close();
});

Deno.test("POST /v1/orders/cancel_and_new cancels the old order, then places the new one", async () => {
  const { exchange, client, uuids } = await setup();
  const [status, answer] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_uuid: uuids.a,
    new_ord_type: "limit",
    new_price: "99500000",
    new_volume: "remain_only",
    new_identifier: "a2",
  });
  assert.equal(status, 201);
  assert.equal(answer.uuid, uuids.a);
  assert.equal(answer.state, "wait");
  assert.equal(answer.new_order_identifier, "a2");
  const [, old] = await client.getJson("/v1/order", [["uuid", uuids.a!]]);
  assert.equal(old.state, "cancel");
  const [, replacement] = await client.getJson("/v1/order", [["identifier", "a2"]]);
  assert.equal(replacement.uuid, answer.new_order_uuid);
  assert.equal(replacement.state, "wait");
  assert.equal(replacement.price, "99500000");
  assert.equal(replacement.volume, "0.001");
  assert.equal(replacement.side, "bid");
  const [reuse] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_identifier: "a2",
    new_ord_type: "limit",
    new_price: "99400000",
    new_volume: "0.001",
    new_identifier: "a2",
  });
  assert.equal(reuse, 400);
  const [cancelled] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_uuid: uuids.a,
    new_ord_type: "limit",
    new_price: "99400000",
    new_volume: "0.001",
  });
  assert.equal(cancelled, 400, "the old order is already cancelled");
  const [offGrid] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_uuid: uuids.b,
    new_ord_type: "limit",
    new_price: "99400001",
    new_volume: "0.001",
  });
  assert.equal(offGrid, 400);
  const [, b] = await client.getJson("/v1/order", [["uuid", uuids.b!]]);
  assert.equal(b.state, "wait", "a refused replacement leaves the old order alone");
  exchange.close();
});

Deno.test("POST /v1/orders/cancel_and_new uses up new_identifier even when refused early (§4.3)", async () => {
  const { exchange, client } = await setup();
  const [unknown] = await client.postJson("/v1/orders/cancel_and_new", {
    prev_order_uuid: "no-such-order",
    new_ord_type: "limit",
    new_price: "99400000",
    new_volume: "0.001",
    new_identifier: "burnt-by-refusal",
  });
  assert.equal(unknown, 404);
  const [again, answer] = await client.postJson("/v1/orders", {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    price: "99400000",
    volume: "0.001",
    identifier: "burnt-by-refusal",
  });
  assert.equal(again, 400);
  assert.equal((answer.error as { name: string }).name, "duplicated_identifier");
  exchange.close();
});

Deno.test("orders() lists every real order for /_sim/orders", async () => {
  const { exchange, client } = await setup();
  await client.postJson("/v1/orders/test", {
    market: "KRW-BTC",
    side: "bid",
    price: "10000",
    ord_type: "price",
  });
  const summaries = exchange.orders();
  assert.deepEqual(summaries.map((s) => s.identifier), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(summaries[3], {
    uuid: summaries[3]!.uuid,
    identifier: "d",
    market: "KRW-ETH",
    side: "bid",
    ord_type: "price",
    state: "cancel",
    executed_volume: "0.0019996", // 10,000 / 5,001,000 truncated to 8 dp
  });
  exchange.close();
});

Deno.test("uuids are deterministic under a seed", async () => {
  const first = await setup();
  const second = await setup();
  assert.deepEqual(first.uuids, second.uuids);
  assert.match(
    first.uuids.a!,
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  first.exchange.close();
  second.exchange.close();
});
