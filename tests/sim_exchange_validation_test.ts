import assert from "node:assert/strict";
import { parseDec } from "../sim/_decimal.ts";
import { isOnTickGrid, tickSize } from "../sim/_price_rules.ts";
import { Client, limitBid, makeExchange } from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

function setup(krw?: number) {
  const { exchange, market, faults } = makeExchange({ krw });
  market.setBook("KRW-BTC", [[160_000_000, 1]], [[159_000_000, 1]]);
  market.setBook("KRW-XRP", [[3_001, 1000]], [[3_000, 1000]]);
  return { exchange, market, faults, client: new Client(exchange) };
}

async function errorOf(res: Promise<[number, Json]>): Promise<[number, string]> {
  const [status, body] = await res;
  return [status, (body.error as Json | undefined)?.name as string];
}

/** Posts each body to `path` in turn; each must be refused with its status and error name. */
async function assertRefused(
  client: Client,
  cases: [body: Json, status: number, name: string][],
  path = "/v1/orders",
): Promise<void> {
  for (const [body, status, name] of cases) {
    assert.deepEqual(
      await errorOf(client.postJson(path, body)),
      [status, name],
      JSON.stringify(body),
    );
  }
}

Deno.test("tickSize follows the KRW table in force since 2025-07-31 (§8.3)", () => {
  const cases: [string, string][] = [
    ["2500000", "1000"],
    ["1500000", "1000"],
    ["700000", "500"],
    ["150000", "100"],
    ["70000", "50"],
    ["20000", "10"],
    ["7000", "5"],
    ["3000", "1"],
    ["500", "1"],
    ["50", "0.1"],
    ["5", "0.01"],
    ["0.5", "0.001"],
    ["0.05", "0.0001"],
    ["0.005", "0.00001"],
    ["0.0005", "0.000001"],
    ["0.00005", "0.0000001"],
    ["0.000005", "0.00000001"],
  ];
  for (const [price, tick] of cases) {
    assert.equal(tickSize("KRW", parseDec(price)!), parseDec(tick), `tick of ${price}`);
  }
  assert.equal(isOnTickGrid("KRW", parseDec("155772000")!), true);
  assert.equal(isOnTickGrid("KRW", parseDec("155772500")!), false);
  assert.equal(isOnTickGrid("KRW", parseDec("7005")!), true);
  assert.equal(isOnTickGrid("KRW", parseDec("7003")!), false);
  assert.equal(isOnTickGrid("KRW", parseDec("12.3")!), true);
  assert.equal(isOnTickGrid("KRW", parseDec("12.34")!), false);
});

Deno.test("POST /v1/orders refuses prices off the tick grid with invalid_price_bid/ask", async () => {
  const { exchange, client } = setup();
  await assertRefused(client, [
    [limitBid("150000500", "0.001"), 400, "invalid_price_bid"],
    [{ ...limitBid("150000500", "0.001"), side: "ask" }, 400, "invalid_price_ask"],
  ]);
  exchange.close();
});

Deno.test("POST /v1/orders enforces the 5,000 KRW minimum and the 1,000,000,000 KRW maximum", async () => {
  const { exchange, client } = setup(2_000_000_000);
  await assertRefused(client, [[limitBid("150000000", "0.00003"), 400, "under_min_total_bid"]]);
  const [ok] = await client.postJson("/v1/orders", limitBid("150000000", "0.0000334"));
  assert.equal(ok, 201, "5010 KRW is above the minimum");
  await assertRefused(client, [
    [
      { market: "KRW-BTC", side: "bid", price: "4999", ord_type: "price" },
      400,
      "under_min_total_bid",
    ],
    [limitBid("150000000", "7"), 400, "over_krw_funds_bid"],
    [{ ...limitBid("150000000", "7"), side: "ask" }, 400, "over_krw_funds_ask"],
    [
      { market: "KRW-BTC", side: "ask", volume: "0.00003", ord_type: "market" },
      400,
      "under_min_total_ask",
    ],
  ]);
  exchange.close();
});

Deno.test("POST /v1/orders refuses what the balance cannot cover (insufficient_funds_*)", async () => {
  const { exchange, client } = setup(100_000);
  await assertRefused(client, [
    [limitBid("150000000", "0.001"), 400, "insufficient_funds_bid"],
    [{ ...limitBid("150000000", "0.001"), side: "ask" }, 400, "insufficient_funds_ask"],
  ]);
  // The fee is reserved on top: 99,950 KRW of funds needs 99,999.975 KRW.
  const { exchange: tight } = makeExchange({ krw: 99_999 });
  await assertRefused(new Client(tight), [
    [
      { market: "KRW-XRP", side: "bid", volume: "50", price: "1999", ord_type: "limit" },
      400,
      "insufficient_funds_bid",
    ],
  ]);
  tight.close();
  exchange.close();
});

Deno.test("POST /v1/orders checks ord_type, side and time_in_force combinations", async () => {
  const { exchange, client } = setup();
  const cases: [Json, number, string][] = [
    [
      { side: "bid", ord_type: "limit", price: "150000000", volume: "0.001" },
      400,
      "validation_error",
    ],
    [{ market: "KRW-NOPE", side: "bid", ord_type: "price", price: "10000" }, 400, "notfoundmarket"],
    [
      { market: "KRW-BTC", side: "buy", ord_type: "price", price: "10000" },
      400,
      "validation_error",
    ],
    [{ market: "KRW-BTC", side: "bid", ord_type: "stop", price: "10000" }, 400, "validation_error"],
    [
      { market: "KRW-BTC", side: "ask", ord_type: "price", price: "10000" },
      400,
      "create_ask_error",
    ],
    [
      { market: "KRW-BTC", side: "bid", ord_type: "price", price: "10000", volume: "1" },
      400,
      "create_bid_error",
    ],
    [
      { market: "KRW-BTC", side: "ask", ord_type: "market", volume: "0.1", price: "1" },
      400,
      "create_ask_error",
    ],
    [
      { market: "KRW-BTC", side: "bid", ord_type: "price", price: "10000", time_in_force: "ioc" },
      400,
      "invalid_time_in_force",
    ],
    [
      { market: "KRW-BTC", side: "bid", ord_type: "best", price: "10000" },
      400,
      "invalid_time_in_force",
    ],
    [
      {
        market: "KRW-BTC",
        side: "bid",
        ord_type: "best",
        price: "10000",
        time_in_force: "post_only",
      },
      400,
      "invalid_time_in_force",
    ],
    [
      { ...limitBid("150000000", "0.001"), time_in_force: "post_only", smp_type: "cancel_maker" },
      400,
      "invalid_parameter",
    ],
    [limitBid("150000000", "0.000000001"), 400, "invalid_volume_bid"],
    [limitBid("abc", "0.001"), 400, "invalid_parameter"],
    [
      { market: "KRW-BTC", side: "bid", ord_type: "limit", price: "150000000" },
      400,
      "validation_error",
    ],
  ];
  await assertRefused(client, cases);
  exchange.close();
});

Deno.test("POST /v1/orders answers 403 market_offline for markets the faults take offline", async () => {
  const { exchange, client, faults } = setup();
  faults.offline_markets = ["KRW-BTC"];
  for (const path of ["/v1/orders", "/v1/orders/test"]) {
    await assertRefused(client, [[limitBid("150000000", "0.001"), 403, "market_offline"]], path);
  }
  exchange.close();
});

Deno.test("a market whose listing state is not ACTIVE refuses orders and cancels with 403 market_offline", async () => {
  const { exchange, market, client } = setup();
  const [placed, resting] = await client.postJson("/v1/orders", limitBid("150000000", "0.001"));
  assert.equal(placed, 201);
  for (const state of ["DELISTED", "PREVIEW"] as const) {
    market.states.set("KRW-BTC", state);
    for (const path of ["/v1/orders", "/v1/orders/test"]) {
      await assertRefused(client, [[limitBid("150000000", "0.001"), 403, "market_offline"]], path);
    }
    assert.deepEqual(
      await errorOf(client.deleteJson("/v1/order", [["uuid", resting.uuid as string]])),
      [403, "market_offline"],
    );
    const [, chance] = await client.getJson("/v1/orders/chance", [["market", "KRW-BTC"]]);
    assert.equal((chance.market as Json).state, state.toLowerCase());
  }
  // Another market trades on; the market trades again once ACTIVE.
  const [xrp] = await client.postJson("/v1/orders", {
    market: "KRW-XRP",
    side: "bid",
    volume: "10",
    price: "2000",
    ord_type: "limit",
  });
  assert.equal(xrp, 201);
  market.states.set("KRW-BTC", "ACTIVE");
  const [cancel] = await client.deleteJson("/v1/order", [["uuid", resting.uuid as string]]);
  assert.equal(cancel, 200);
  exchange.close();
});

Deno.test("identifier is unique forever, also after a failed create", async () => {
  const { exchange, client } = setup();
  const [first] = await client.postJson(
    "/v1/orders",
    limitBid("150000000", "0.001", { identifier: "a" }),
  );
  assert.equal(first, 201);
  await assertRefused(client, [
    [limitBid("150000000", "0.001", { identifier: "a" }), 400, "duplicated_identifier"],
    // A create that fails (off-grid price) still burns its identifier.
    [limitBid("150000001", "0.001", { identifier: "b" }), 400, "invalid_price_bid"],
    [limitBid("150000000", "0.001", { identifier: "b" }), 400, "duplicated_identifier"],
  ]);
  // Cancelling does not free it either.
  const [, order] = await client.getJson("/v1/order", [["identifier", "a"]]);
  await client.deleteJson("/v1/order", [["uuid", order.uuid as string]]);
  await assertRefused(client, [
    [limitBid("150000000", "0.001", { identifier: "a" }), 400, "duplicated_identifier"],
    [limitBid("1", "1", { identifier: "x".repeat(65) }), 400, "invalid_parameter"],
  ]);
  exchange.close();
});

Deno.test("POST /v1/orders/test validates like a real order and creates, locks and fills nothing", async () => {
  const { exchange, client } = setup();
  const [status, answer] = await client.postJson("/v1/orders/test", {
    market: "KRW-BTC",
    side: "bid",
    price: "100000",
    ord_type: "price",
    identifier: "dry",
  });
  assert.equal(status, 201);
  assert.equal(answer.state, "wait");
  assert.equal(answer.reserved_fee, "50");
  assert.equal(answer.identifier, "dry");
  assert.deepEqual(await client.account("KRW"), { balance: "10000000", locked: "0", avg: "0" });
  assert.deepEqual(await client.account("BTC"), { balance: "0", locked: "0", avg: "0" });
  const [lookup] = await client.getJson("/v1/order", [["uuid", answer.uuid as string]]);
  assert.equal(lookup, 404);
  const [cancel] = await client.deleteJson("/v1/order", [["uuid", answer.uuid as string]]);
  assert.equal(cancel, 404);
  assert.deepEqual(exchange.orders(), []);
  await assertRefused(
    client,
    [[limitBid("150000001", "0.001"), 400, "invalid_price_bid"]],
    "/v1/orders/test",
  );
  // A test call burns its identifier (undocumented, §4.4 [?]: the least kind reading), also when
  // it is refused; a real order and another test call under it are refused.
  await assertRefused(client, [
    [limitBid("150000000", "0.001", { identifier: "dry" }), 400, "duplicated_identifier"],
  ]);
  await assertRefused(
    client,
    [
      [limitBid("150000000", "0.001", { identifier: "dry" }), 400, "duplicated_identifier"],
      [limitBid("150000001", "0.001", { identifier: "dry-refused" }), 400, "invalid_price_bid"],
    ],
    "/v1/orders/test",
  );
  await assertRefused(client, [
    [limitBid("150000000", "0.001", { identifier: "dry-refused" }), 400, "duplicated_identifier"],
  ]);
  assert.deepEqual(exchange.orders(), []);
  exchange.close();
});

Deno.test("GET /v1/orders/chance returns fees, constraints and the two accounts", async () => {
  const { exchange, client } = setup();
  const [status, chance] = await client.getJson("/v1/orders/chance", [["market", "KRW-BTC"]]);
  assert.equal(status, 200);
  assert.equal(chance.bid_fee, "0.0005");
  assert.equal(chance.maker_ask_fee, "0.0005");
  const market = chance.market as Json;
  assert.equal(market.id, "KRW-BTC");
  assert.deepEqual(market.bid, { currency: "KRW", min_total: "5000" });
  assert.deepEqual(market.ask, { currency: "BTC", min_total: "5000" });
  assert.equal(market.max_total, "1000000000");
  assert.equal(market.state, "active");
  assert.equal((chance.bid_account as Json).balance, "10000000");
  assert.equal((chance.ask_account as Json).currency, "BTC");
  assert.deepEqual(await errorOf(client.getJson("/v1/orders/chance", [["market", "KRW-NOPE"]])), [
    400,
    "notfoundmarket",
  ]);
  assert.deepEqual(await errorOf(client.getJson("/v1/orders/chance")), [400, "validation_error"]);
  exchange.close();
});
