import assert from "node:assert/strict";
import {
  ACCESS_KEY,
  Client,
  FakeMarket,
  makeExchange,
  signJwt,
  Socket,
} from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

/** KRW-BTC book: asks 100.1M / 100.2M / 100.3M, bids 100.0M / 99.9M / 99.8M; 0.1 BTC held. */
function setup() {
  const market = new FakeMarket();
  market.setBook(
    "KRW-BTC",
    [[100_100_000, 0.01], [100_200_000, 0.02], [100_300_000, 1]],
    [[100_000_000, 0.01], [99_900_000, 0.02], [99_800_000, 1]],
  );
  const { exchange, faults } = makeExchange({ market, balances: { "KRW-BTC": "0.1" } });
  return { exchange, market, faults, client: new Client(exchange) };
}

async function place(client: Client, body: Json): Promise<Json> {
  const [status, o] = await client.postJson("/v1/orders", body);
  assert.equal(status, 201, JSON.stringify(o));
  return o;
}

async function order(client: Client, uuid: unknown): Promise<Json> {
  const [, o] = await client.getJson("/v1/order", [["uuid", uuid as string]]);
  return o;
}

const ownAsk = (price: string, volume = "0.01") => ({
  market: "KRW-BTC",
  side: "ask",
  ord_type: "limit",
  price,
  volume,
});

Deno.test("smp_type: absent means cancel_maker (shown in every answer), none is valid, post_only only with none or nothing", async () => {
  const { client } = setup();
  const plain = await place(client, ownAsk("101000000"));
  assert.equal(plain.smp_type, "cancel_maker");
  assert.equal((await order(client, plain.uuid)).smp_type, "cancel_maker");
  const [, open] = await client.getJson<Json[]>("/v1/orders/open");
  assert.equal(open[0]!.smp_type, "cancel_maker");
  assert.equal(open[0]!.prevented_volume, "0");
  assert.equal(open[0]!.prevented_locked, "0");
  const none = await place(client, { ...ownAsk("101000000"), smp_type: "none" });
  assert.equal(none.smp_type, "none");
  const postNone = await place(client, {
    ...ownAsk("101000000"),
    time_in_force: "post_only",
    smp_type: "none",
  });
  assert.equal(postNone.time_in_force, "post_only");
  assert.equal(postNone.smp_type, "none");
  const postPlain = await place(client, { ...ownAsk("101000000"), time_in_force: "post_only" });
  assert.equal(postPlain.smp_type, "cancel_maker");
  for (const smp of ["cancel_maker", "cancel_taker", "reduce"]) {
    const [status, body] = await client.postJson<{ error: Json }>("/v1/orders", {
      ...ownAsk("101000000"),
      time_in_force: "post_only",
      smp_type: smp,
    });
    assert.equal(status, 400, smp);
    assert.equal(body.error.name, "invalid_parameter", smp);
  }
  const [status, body] = await client.postJson<{ error: Json }>("/v1/orders", {
    ...ownAsk("101000000"),
    smp_type: "cancel_both",
  });
  assert.equal(status, 400);
  assert.equal(body.error.name, "validation_error");
  // The dry run validates the same way.
  const [testStatus] = await client.postJson("/v1/orders/test", {
    ...ownAsk("101000000"),
    time_in_force: "post_only",
    smp_type: "reduce",
  });
  assert.equal(testStatus, 400);
});

Deno.test("cancel_maker (the default): a market buy cancels the account's own resting ask it meets", async () => {
  const { client, faults } = setup();
  faults.smp_rest_state = "prevented";
  const maker = await place(client, ownAsk("100050000"));
  assert.deepEqual(await client.account("BTC"), {
    balance: "0.09",
    locked: "0.01",
    avg: "100000000",
  });
  const taker = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "price",
    price: "1001000",
  });
  const m = await order(client, maker.uuid);
  assert.equal(m.state, "prevented");
  assert.equal(m.executed_volume, "0");
  assert.equal(m.prevented_volume, "0.01");
  assert.equal(m.prevented_locked, "0.01");
  assert.equal(m.remaining_volume, "0");
  assert.equal(m.locked, "0");
  const t = await order(client, taker.uuid);
  assert.equal(t.state, "done");
  assert.equal(t.prevented_volume, "0");
  assert.deepEqual((t.trades as Json[]).map((x) => [x.price, x.volume]), [["100100000", "0.01"]]);
  // The owner's coins are back, plus what the buy took from the book.
  assert.deepEqual((await client.account("BTC")).balance, "0.11");
  assert.equal((await client.account("BTC")).locked, "0");
  // Closed lists show it only when asked for (§4.9 documents done / cancel).
  const [, closed] = await client.getJson<Json[]>("/v1/orders/closed");
  assert.deepEqual(closed.map((o) => o.uuid), [taker.uuid]);
  const [, prevented] = await client.getJson<Json[]>("/v1/orders/closed", [[
    "state",
    "prevented",
  ]]);
  assert.deepEqual(prevented.map((o) => o.uuid), [maker.uuid]);
  // A prevented order is final: it cannot be cancelled.
  const [status, body] = await client.deleteJson<{ error: Json }>("/v1/order", [[
    "uuid",
    maker.uuid as string,
  ]]);
  assert.equal(status, 400);
  assert.equal(body.error.name, "canceled_order");
});

Deno.test("cancel_taker: the new order's remainder ends prevented; what it executed stays; the own order survives", async () => {
  const { client, faults } = setup();
  faults.smp_rest_state = "prevented";
  // At the second ask level's price: the own order comes first there.
  const maker = await place(client, ownAsk("100200000"));
  const taker = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "price",
    price: "2000000",
    smp_type: "cancel_taker",
  });
  const t = await order(client, taker.uuid);
  assert.equal(t.state, "prevented");
  assert.equal(t.smp_type, "cancel_taker");
  assert.equal(t.executed_volume, "0.01");
  assert.equal((await client.listed(t.uuid)).executed_funds, "1001000");
  assert.equal(t.paid_fee, "500.5");
  // 999,000 KRW left = 0.00997005 BTC at 100,200,000 (8 dp, truncated).
  assert.equal(t.prevented_volume, "0.00997005");
  assert.equal(t.prevented_locked, "999000");
  assert.equal(t.locked, "0");
  assert.equal(t.remaining_fee, "0");
  const m = await order(client, maker.uuid);
  assert.equal(m.state, "wait");
  assert.equal(m.remaining_volume, "0.01");
  assert.equal(m.prevented_volume, "0");
  // 10,000,000 − 1,001,000 − 500.5 fee; nothing left locked by the buy.
  assert.deepEqual(await client.account("KRW"), {
    balance: "8998499.5",
    locked: "0",
    avg: "0",
  });
  // A limit order (the book is not depleted by takes: it takes the first level again), then
  // its whole remainder is released, price improvement included: 0.02 × 100.2M − 1,001,000.
  const limit = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    price: "100200000",
    volume: "0.02",
    smp_type: "cancel_taker",
  });
  const l = await order(client, limit.uuid);
  assert.equal(l.state, "prevented");
  assert.equal(l.executed_volume, "0.01");
  assert.equal(l.prevented_volume, "0.01");
  assert.equal(l.prevented_locked, "1003000");
  assert.equal(l.remaining_volume, "0");
  assert.equal(l.locked, "0");
  assert.equal((await order(client, maker.uuid)).state, "wait");
  assert.equal((await client.account("KRW")).locked, "0");
});

Deno.test("reduce: the overlap comes off both orders; none trades with the own order", async () => {
  const { client, faults } = setup();
  faults.smp_rest_state = "prevented";
  const bid = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    price: "100050000",
    volume: "0.03",
  });
  const sell = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    ord_type: "limit",
    price: "100000000",
    volume: "0.01",
    smp_type: "reduce",
  });
  const s = await order(client, sell.uuid);
  assert.equal(s.state, "prevented");
  assert.equal(s.executed_volume, "0");
  assert.equal(s.prevented_volume, "0.01");
  assert.equal(s.prevented_locked, "0.01");
  const b = await order(client, bid.uuid);
  assert.equal(b.state, "wait");
  assert.equal(b.remaining_volume, "0.02");
  assert.equal(b.prevented_volume, "0.01");
  assert.equal(b.prevented_locked, "1000500");
  // 0.02 × 100,050,000 + its fee.
  assert.equal(b.locked, "2002000.5");
  assert.deepEqual(await client.account("KRW"), {
    balance: "7997999.5",
    locked: "2002000.5",
    avg: "0",
  });
  assert.deepEqual(await client.account("BTC"), { balance: "0.1", locked: "0", avg: "100000000" });

  const cross = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    ord_type: "limit",
    price: "100050000",
    volume: "0.02",
    smp_type: "none",
  });
  assert.equal((await order(client, cross.uuid)).state, "done");
  const traded = await order(client, bid.uuid);
  assert.equal(traded.state, "done");
  assert.equal(traded.executed_volume, "0.02");
  assert.equal((traded.trades as Json[])[0]!.price, "100050000");
  // Bought and sold 0.02 to itself: only the two fees (1000.5 each) are gone.
  assert.deepEqual(await client.account("KRW"), {
    balance: "9997999",
    locked: "0",
    avg: "0",
  });
  assert.equal((await client.account("BTC")).balance, "0.1");
});

Deno.test("post_only never meets an own order: it is cancelled like any crossing post_only", async () => {
  const { client } = setup();
  const maker = await place(client, ownAsk("100050000"));
  const post = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    price: "100050000",
    volume: "0.01",
    time_in_force: "post_only",
  });
  const p = await order(client, post.uuid);
  assert.equal(p.state, "cancel");
  assert.equal(p.prevented_volume, "0");
  assert.equal((await order(client, maker.uuid)).state, "wait");
});

Deno.test("private WS: a prevented order's myOrder event carries state prevented and the prevented fields", async () => {
  const { exchange, client } = setup();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    (req) => exchange.handlePrivateWebSocket(req),
  );
  const socket = new Socket(
    `ws://127.0.0.1:${server.addr.port}/websocket/v1/private`,
    await signJwt({ access_key: ACCESS_KEY, nonce: crypto.randomUUID() }),
  );
  try {
    await socket.opened();
    await socket.subscribe([{ ticket: "smp" }, { type: "myOrder", codes: ["KRW-BTC"] }]);
    const maker = await place(client, ownAsk("100050000"));
    await place(client, { market: "KRW-BTC", side: "bid", ord_type: "price", price: "1001000" });
    let event: Json;
    do event = await socket.next(); while (!(event.uuid === maker.uuid && event.state !== "wait"));
    assert.equal(event.state, "prevented");
    assert.equal(event.smp_type, "cancel_maker");
    assert.equal(event.prevented_volume, 0.01);
    assert.equal(event.prevented_locked, 0.01);
    assert.equal(event.remaining_volume, 0);
  } finally {
    socket.ws.close();
    await socket.closed;
    exchange.close();
    await server.shutdown();
  }
});

Deno.test("own orders beyond the visible book are not met by an order that empties the book", async () => {
  const market = new FakeMarket();
  market.setBook("KRW-BTC", [[100_100_000, 1]], [[100_000_000, 0.01], [99_900_000, 0.02]]);
  const { exchange } = makeExchange({ market, balances: { "KRW-BTC": "2" } });
  const client = new Client(exchange);
  const far = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    price: "99000000",
    volume: "0.01",
  });
  // A limit ioc (a market order this large would be refused, §8.2) that crosses every level.
  const sell = await place(client, {
    market: "KRW-BTC",
    side: "ask",
    ord_type: "limit",
    price: "98000000",
    volume: "0.5",
    time_in_force: "ioc",
  });
  const s = await order(client, sell.uuid);
  assert.equal(s.state, "cancel");
  assert.equal(s.executed_volume, "0.03");
  assert.equal(s.prevented_volume, "0");
  assert.equal((await order(client, far.uuid)).state, "wait");
});

Deno.test("smp_rest_state cancel (the default): REST shows a prevented order as cancel with prevented_volume, and lists and filters it as cancel", async () => {
  // (The private WS still says `prevented`: the test of its myOrder event runs on the default.)
  const { client } = setup();
  const maker = await place(client, ownAsk("100050000"));
  const taker = await place(client, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "price",
    price: "1001000",
  });
  const m = await order(client, maker.uuid);
  assert.equal(m.state, "cancel");
  assert.equal(m.prevented_volume, "0.01");
  assert.equal(m.executed_volume, "0");
  assert.equal((await client.listed(maker.uuid)).state, "cancel");
  const [, closed] = await client.getJson<Json[]>("/v1/orders/closed");
  assert.deepEqual(
    closed.map((o) => `${o.uuid} ${o.state}`).sort(),
    [`${maker.uuid} cancel`, `${taker.uuid} done`].sort(),
  );
  const [, cancelled] = await client.getJson<Json[]>("/v1/orders/closed", [["state", "cancel"]]);
  assert.deepEqual(cancelled.map((o) => o.uuid), [maker.uuid]);
  const [status] = await client.getJson("/v1/orders/closed", [["state", "prevented"]]);
  assert.equal(status, 400, "prevented is no REST state under this setting");
});
