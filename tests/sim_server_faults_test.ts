import assert from "node:assert/strict";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { signedPost, signedQuery } from "./_sim_auth.ts";

async function withSim(
  fn: (sim: Simulator) => Promise<void>,
  options: SimulatorOptions = {},
): Promise<void> {
  const sim = await startSimulator({ rate: 0, seed: 4, ...options });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

const keysOf = (sim: Simulator) => ({ accessKey: sim.accessKey, secretKey: sim.secretKey });

const ORDER = {
  market: "KRW-BTC",
  side: "bid",
  volume: "0.0001",
  price: "100000000",
  ord_type: "limit",
};

async function postFaults(sim: Simulator, body: unknown): Promise<Response> {
  return await fetch(`${sim.restUrl}/_sim/faults`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

Deno.test("GET /_sim/faults shows the settings; POST merges partial updates and validates", async () => {
  await withSim(async (sim) => {
    const initial = await (await fetch(`${sim.restUrl}/_sim/faults`)).json();
    assert.deepEqual(initial, {
      latency_ms: 0,
      error_rate: 0,
      server_error_after_create_rate: 0,
      server_error_burn_rate: 0,
      lost_response_rate: 0,
      create_delay_ms: 0,
      ws_disconnect_every_sec: 0,
      malformed_frame_rate: 0,
      rate_limit_factor: 1,
      offline_markets: [],
      bookless_markets: [],
      remaining_req_group_names: "documented",
      private_ws_auth_refusal: "upgrade",
      private_ws_max_connections: 0,
      my_asset_first_lag_ms: 0,
      smp_rest_state: "cancel",
      duplicated_identifier_name: "duplicated_identifier",
      market_fill_delay_ms: 0,
      rate_refusal_format: "text",
    });
    const res = await postFaults(sim, { latency_ms: 5, offline_markets: ["KRW-ETH"] });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).latency_ms, 5);
    const merged = await postFaults(sim, { error_rate: 0.25 });
    const body = await merged.json();
    assert.equal(body.latency_ms, 5, "fields not given keep their value");
    assert.equal(body.error_rate, 0.25);
    assert.deepEqual(body.offline_markets, ["KRW-ETH"]);
    for (const bad of ["{", { error_rate: 2 }, { surprise: 1 }, { latency_ms: "10" }, [1]]) {
      const r = await postFaults(sim, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(typeof (await r.json()).error, "string");
    }
    assert.deepEqual(sim.faults(), body, "bad updates change nothing");
    sim.setFaults({ error_rate: 0 });
    assert.equal((await (await fetch(`${sim.restUrl}/_sim/faults`)).json()).error_rate, 0);
    assert.throws(() => sim.setFaults({ error_rate: -1 }), RangeError);
  });
});

Deno.test("startSimulator takes initial faults and refuses invalid ones", async () => {
  await withSim((sim) => {
    assert.equal(sim.faults().latency_ms, 3);
    assert.equal(sim.faults().rate_limit_factor, 1);
    return Promise.resolve();
  }, { faults: { latency_ms: 3 } });
  await assert.rejects(() => startSimulator({ rate: 0, faults: { error_rate: 5 } }), RangeError);
});

Deno.test("error_rate answers 5xx server_error before the exchange sees the request", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ error_rate: 1 });
    const q = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
    assert.equal(q.status, 500);
    assert.equal((await q.json()).error.name, "server_error");
    assert.match(q.headers.get("remaining-req") ?? "", /^group=ticker/);
    const o = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "e1",
    });
    assert.equal(o.status, 500);
    await o.body?.cancel();
    assert.deepEqual(sim.orders(), [], "no order was created");
    // Admin endpoints are never faulted.
    assert.equal((await fetch(`${sim.restUrl}/_sim/orders`)).status, 200);
  });
});

async function getJson(sim: Simulator, path: string, query: string) {
  const res = await signedQuery(sim.restUrl, "GET", path, keysOf(sim), query);
  return { status: res.status, body: await res.json() };
}

Deno.test("server_error_after_create_rate: a 500 answers a create whose order exists", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ server_error_after_create_rate: 1 });
    const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "after-1",
    });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).error.name, "server_error");
    const found = await getJson(sim, "/v1/order", "identifier=after-1");
    assert.equal(found.status, 200);
    assert.equal(found.body.state, "wait");
    const accounts = await getJson(sim, "/v1/accounts", "");
    const krw = accounts.body.find((a: { currency: string }) => a.currency === "KRW");
    // 0.0001 × 100,000,000 = 10,000 KRW + 5 KRW fee locked.
    assert.equal(krw.locked, "10005");
    assert.equal(krw.balance, "9989995");
    // Dry runs are not real creates: never faulted this way.
    const test = await signedPost(sim.restUrl, "/v1/orders/test", keysOf(sim), ORDER);
    assert.equal(test.status, 201);
    await test.body?.cancel();
    // A refused create is answered as it is (nothing was created, so no 500 stands in).
    const refused = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "after-1",
    });
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.name, "duplicated_identifier");
    // cancel_and_new: the old order is cancelled and the new one placed, the answer is a 500.
    const replaced = await signedPost(
      sim.restUrl,
      "/v1/orders/cancel_and_new",
      keysOf(sim),
      {
        prev_order_identifier: "after-1",
        new_ord_type: "limit",
        new_price: "99000000",
        new_volume: "0.0001",
        new_identifier: "after-2",
      },
    );
    assert.equal(replaced.status, 500);
    await replaced.body?.cancel();
    assert.equal((await getJson(sim, "/v1/order", "identifier=after-1")).body.state, "cancel");
    assert.equal((await getJson(sim, "/v1/order", "identifier=after-2")).body.state, "wait");
  });
});

Deno.test("server_error_burn_rate: a 500, nothing created, and the identifier is used up", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ server_error_burn_rate: 1 });
    const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "burn-1",
    });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).error.name, "server_error");
    assert.deepEqual(sim.orders(), []);
    const lookup = await getJson(sim, "/v1/order", "identifier=burn-1");
    assert.equal(lookup.status, 404);
    assert.equal(lookup.body.error.name, "order_not_found");
    const accounts = await getJson(sim, "/v1/accounts", "");
    assert.equal(accounts.body[0].locked, "0", "nothing was locked");
    // Bad credentials are still refused as such, and burn nothing.
    const forged = await signedPost(
      sim.restUrl,
      "/v1/orders",
      { accessKey: sim.accessKey, secretKey: "wrong" },
      { ...ORDER, identifier: "burn-2" },
    );
    assert.equal(forged.status, 401);
    await forged.body?.cancel();
    sim.setFaults({ server_error_burn_rate: 0 });
    const retry = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "burn-1",
    });
    assert.equal(retry.status, 400);
    assert.equal((await retry.json()).error.name, "duplicated_identifier");
    const fresh = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "burn-2",
    });
    assert.equal(fresh.status, 201, "the refused forged request burnt nothing");
    await fresh.body?.cancel();
    // cancel_and_new: the old order stays, the new identifier is used up.
    sim.setFaults({ server_error_burn_rate: 1 });
    const replaced = await signedPost(
      sim.restUrl,
      "/v1/orders/cancel_and_new",
      keysOf(sim),
      {
        prev_order_identifier: "burn-2",
        new_ord_type: "limit",
        new_price: "99000000",
        new_volume: "0.0001",
        new_identifier: "burn-3",
      },
    );
    assert.equal(replaced.status, 500);
    await replaced.body?.cancel();
    sim.setFaults({ server_error_burn_rate: 0 });
    assert.equal((await getJson(sim, "/v1/order", "identifier=burn-2")).body.state, "wait");
    assert.equal((await getJson(sim, "/v1/order", "identifier=burn-3")).status, 404);
    const again = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "burn-3",
    });
    assert.equal((await again.json()).error.name, "duplicated_identifier");
  });
});

Deno.test("latency_ms delays every /v1 answer by at least that long", async () => {
  await withSim(async (sim) => {
    const started = performance.now();
    const res = await fetch(`${sim.restUrl}/v1/market/all`);
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.ok(performance.now() - started >= 150, "not faster than the injected latency");
  }, { faults: { latency_ms: 160 } });
});

Deno.test("lost_response_rate: the order exists but the client only sees a timeout", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ lost_response_rate: 1 });
    await assert.rejects(
      () =>
        signedPost(sim.restUrl, "/v1/orders", keysOf(sim), { ...ORDER, identifier: "lost-1" }, {
          signal: AbortSignal.timeout(300),
        }),
      (err: Error) => err.name === "TimeoutError",
    );
    const listed = await (await fetch(`${sim.restUrl}/_sim/orders`)).json();
    assert.equal(listed.length, 1);
    assert.equal(listed[0].identifier, "lost-1");
    assert.equal(listed[0].state, "wait");
    // The order can be found by its identifier, which is how a client resolves the ambiguity.
    const found = await signedQuery(
      sim.restUrl,
      "GET",
      "/v1/order",
      keysOf(sim),
      "identifier=lost-1",
    );
    assert.equal(found.status, 200);
    assert.equal((await found.json()).identifier, "lost-1");
    // Other calls are answered normally.
    const chance = await signedQuery(
      sim.restUrl,
      "GET",
      "/v1/orders/chance",
      keysOf(sim),
      "market=KRW-BTC",
    );
    assert.equal(chance.status, 200);
    await chance.body?.cancel();
  });
});

Deno.test("lost responses still pending are released when the simulator closes", async () => {
  const sim = await startSimulator({ rate: 0, faults: { lost_response_rate: 1 } });
  const pending = signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
    ...ORDER,
    identifier: "held",
  });
  // Wait until the order exists (the answer is being held).
  while (sim.orders().length === 0) await new Promise((r) => setTimeout(r, 10));
  await sim.close();
  const res = await pending;
  assert.equal(res.status, 504);
  assert.equal((await res.json()).error.name, "gateway_timeout");
});

Deno.test("offline_markets makes the exchange answer market_offline", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ offline_markets: ["KRW-BTC"] });
    const res = await signedPost(sim.restUrl, "/v1/orders/test", keysOf(sim), ORDER);
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error.name, "market_offline");
    // Quotation keeps answering.
    const q = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
    assert.equal(q.status, 200);
    await q.body?.cancel();
  });
});

Deno.test("bookless_markets: the orderbook shows no bids and a market sell is refused as beyond the book, until lifted", async () => {
  await withSim(async (sim) => {
    type Unit = { ask_price: number; bid_price: number; ask_size: number; bid_size: number };
    type Book = { market: string; total_ask_size: number; total_bid_size: number };
    const books = async () => {
      const res = await fetch(`${sim.restUrl}/v1/orderbook?markets=KRW-BTC,KRW-ETH`);
      assert.equal(res.status, 200);
      return await res.json() as (Book & { orderbook_units: Unit[] })[];
    };
    const sell = (volume: string, extra: Record<string, string> = {}) =>
      signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
        market: "KRW-BTC",
        side: "ask",
        volume,
        ord_type: "market",
        ...extra,
      });
    const bad = await postFaults(sim, { bookless_markets: ["btc"] });
    assert.equal(bad.status, 400, "market codes are validated");
    await bad.body?.cancel();
    const set = await postFaults(sim, { bookless_markets: ["KRW-BTC"] });
    assert.deepEqual((await set.json()).bookless_markets, ["KRW-BTC"]);

    // Trade messages of the market show no best bid either.
    const ws = await openSocket(sim.wsUrl);
    const live = new Promise<{ best_bid_price: number; best_bid_size: number }>((resolve) => {
      ws.onmessage = (ev) => {
        const m = JSON.parse(new TextDecoder().decode(ev.data as ArrayBuffer));
        if (m.type === "trade" && m.stream_type === "REALTIME") resolve(m);
      };
    });
    ws.send(JSON.stringify([{ ticket: "bookless" }, { type: "trade", codes: ["KRW-BTC"] }]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    sim.injectTrade({ market: "KRW-BTC", price: 100_000_000, volume: 0.001, side: "BID" });
    const trade = await live;
    ws.close();
    assert.deepEqual([trade.best_bid_price, trade.best_bid_size], [0, 0]);

    const [btc, eth] = await books();
    assert.equal(btc!.market, "KRW-BTC");
    assert.equal(btc!.orderbook_units.length, 30, "the asks keep their units");
    assert.ok(btc!.orderbook_units.every((u) => u.bid_price === 0 && u.bid_size === 0));
    assert.ok(btc!.orderbook_units.every((u) => u.ask_price > 0 && u.ask_size > 0));
    assert.equal(btc!.total_bid_size, 0);
    assert.ok(btc!.total_ask_size > 0);
    assert.ok(eth!.orderbook_units.every((u) => u.bid_price > 0), "other markets keep their bids");

    const refused = await sell("0.001", { identifier: "bookless-1" });
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.name, "insufficient_liquidity_ask");
    const [account] = await (await signedQuery(sim.restUrl, "GET", "/v1/accounts", keysOf(sim)))
      .json().then((all: { currency: string; locked: string }[]) =>
        all.filter((a) => a.currency === "BTC")
      );
    assert.equal(Number(account!.locked), 0, "nothing locked");
    // A limit sell far below the market, which a book with bids would fill at once, rests.
    const limit = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      market: "KRW-BTC",
      side: "ask",
      volume: "0.001",
      price: "100000000",
      ord_type: "limit",
    });
    const resting = await limit.json();
    assert.equal(limit.status, 201, JSON.stringify(resting));
    const looked = await signedQuery(
      sim.restUrl,
      "GET",
      "/v1/order",
      keysOf(sim),
      `uuid=${resting.uuid}`,
    );
    const now = await looked.json();
    assert.equal(now.state, "wait", JSON.stringify(now));
    assert.equal(Number(now.executed_volume), 0);
    const cancel = await signedQuery(
      sim.restUrl,
      "DELETE",
      "/v1/order",
      keysOf(sim),
      `uuid=${resting.uuid}`,
    );
    assert.equal(cancel.status, 200);
    await cancel.body?.cancel();

    sim.setFaults({ bookless_markets: [] });
    const [lifted] = await books();
    assert.ok(lifted!.orderbook_units.every((u) => u.bid_price > 0 && u.bid_size > 0));
    const sold = await sell("0.001");
    const order = await sold.json();
    assert.equal(sold.status, 201, JSON.stringify(order));
    assert.equal(Number(order.executed_volume) + Number(order.remaining_volume), 0.001);
  }, { balances: { "KRW-BTC": "0.01" } });
});

Deno.test("POST /_sim/markets market_state DELISTED makes the exchange answer market_offline", async () => {
  await withSim(async (sim) => {
    const set = await fetch(`${sim.restUrl}/_sim/markets`, {
      method: "POST",
      body: JSON.stringify({ market: "KRW-BTC", market_state: "DELISTED" }),
    });
    assert.equal(set.status, 200, await set.text());
    const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), ORDER);
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error.name, "market_offline");
    const chance = await signedQuery(
      sim.restUrl,
      "GET",
      "/v1/orders/chance",
      keysOf(sim),
      "market=KRW-BTC",
    );
    assert.equal((await chance.json()).market.state, "delisted");
  });
});

function openSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("websocket error"));
  });
}

Deno.test("ws_disconnect_every_sec closes public sockets periodically", async () => {
  await withSim(async (sim) => {
    const ws = await openSocket(sim.wsUrl);
    const closed = new Promise<CloseEvent>((resolve) => (ws.onclose = resolve));
    sim.setFaults({ ws_disconnect_every_sec: 0.1 });
    assert.equal((await closed).code, 4000);
  });
});

Deno.test("malformed_frame_rate corrupts outgoing public frames", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ malformed_frame_rate: 1 });
    const ws = await openSocket(sim.wsUrl);
    const frames: ArrayBuffer[] = [];
    const got = new Promise<void>((resolve) => {
      ws.onmessage = (ev) => {
        frames.push(ev.data as ArrayBuffer);
        if (frames.length === 3) resolve();
      };
    });
    ws.send(
      JSON.stringify([{ ticket: "m" }, {
        type: "trade",
        codes: ["KRW-BTC"],
        is_only_realtime: true,
      }]),
    );
    ws.send("PING");
    await new Promise<void>((resolve) => {
      // PING answers are never corrupted; once it arrives the subscription is in place.
      const check = setInterval(() => {
        if (frames.length >= 1) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.1, side: "BID" });
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.1, side: "BID" });
    await got;
    assert.deepEqual(JSON.parse(new TextDecoder().decode(frames[0])), { status: "UP" });
    for (const frame of frames.slice(1)) {
      assert.throws(() => JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame)));
    }
    const closed = new Promise((resolve) => (ws.onclose = resolve));
    ws.close();
    await closed;
  });
});

Deno.test("GET /_sim/receipts: when each create arrived, first arrival per identifier, on /_sim/clock's clock", async () => {
  await withSim(async (sim) => {
    const clock = async () =>
      ((await (await fetch(`${sim.restUrl}/_sim/clock`)).json()) as { now_ms: number }).now_ms;
    const before = await clock();
    const statuses: number[] = [];
    for (const id of ["r-1", "r-2", "r-1"]) {
      const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
        ...ORDER,
        identifier: id,
      });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    // The repeated identifier is refused; its first arrival stays listed once.
    assert.deepEqual(statuses, [201, 201, 400]);
    // A test order and an order without identifier leave no receipt.
    const test = await signedPost(sim.restUrl, "/v1/orders/test", keysOf(sim), {
      ...ORDER,
      identifier: "t-1",
    });
    await test.body?.cancel();
    const after = await clock();
    const listed = await (await fetch(`${sim.restUrl}/_sim/receipts`)).json() as {
      identifier: string;
      received_at_ms: number;
    }[];
    assert.deepEqual(listed.map((r) => r.identifier), ["r-1", "r-2"]);
    const [first, second] = listed;
    assert.ok(before <= first!.received_at_ms, "received after the clock read before");
    assert.ok(first!.received_at_ms <= second!.received_at_ms, "in arrival order");
    assert.ok(second!.received_at_ms <= after, "received before the clock read after");
  });
});

Deno.test("GET /_sim/orders lists orders with identifier, state and executed volume", async () => {
  await withSim(async (sim) => {
    for (const id of ["a-1", "a-2"]) {
      const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
        ...ORDER,
        identifier: id,
      });
      assert.equal(res.status, 201);
      await res.body?.cancel();
    }
    const listed = await (await fetch(`${sim.restUrl}/_sim/orders`)).json();
    assert.deepEqual(listed.map((o: { identifier: string }) => o.identifier).sort(), [
      "a-1",
      "a-2",
    ]);
    for (const o of listed) {
      assert.equal(o.market, "KRW-BTC");
      assert.equal(o.side, "bid");
      assert.equal(o.ord_type, "limit");
      assert.equal(o.executed_volume, "0");
      assert.equal(typeof o.uuid, "string");
    }
    assert.deepEqual(sim.orders(), listed);
  });
});

Deno.test("duplicated_identifier_name names the refusal of a used identifier (§4.3 leaves the name undocumented)", async () => {
  await withSim(async (sim) => {
    const first = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      ...ORDER,
      identifier: "named-1",
    });
    assert.equal(first.status, 201);
    await first.body?.cancel();
    const again = async () => {
      const res = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
        ...ORDER,
        identifier: "named-1",
      });
      return [res.status, (await res.json()).error.name];
    };
    assert.deepEqual(await again(), [400, "duplicated_identifier"]);
    sim.setFaults({ duplicated_identifier_name: "identifier_already_used" });
    assert.deepEqual(await again(), [400, "identifier_already_used"]);
    assert.equal((await postFaults(sim, { duplicated_identifier_name: "Not A Name" })).status, 400);
    assert.equal(sim.orders().length, 1);
  });
});

Deno.test("market_fill_delay_ms: a market sell and a market buy are wait with half filled, then final after the delay; a cancel meanwhile ends one with its partial fill", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ market_fill_delay_ms: 300 });
    const sell = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      market: "KRW-BTC",
      side: "ask",
      ord_type: "market",
      volume: "0.001",
      identifier: "delayed-sell",
    });
    assert.equal(sell.status, 201);
    assert.equal((await sell.json()).state, "wait");
    const buy = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "20000",
      identifier: "delayed-buy",
    });
    assert.equal(buy.status, 201);
    const cancelled = await signedPost(sim.restUrl, "/v1/orders", keysOf(sim), {
      market: "KRW-BTC",
      side: "ask",
      ord_type: "market",
      volume: "0.0008",
      identifier: "delayed-cancelled",
    });
    assert.equal(cancelled.status, 201);
    await cancelled.body?.cancel();
    const now = async (identifier: string) =>
      (await getJson(sim, "/v1/order", `identifier=${identifier}`)).body;
    const sellNow = await now("delayed-sell");
    assert.deepEqual([sellNow.state, sellNow.executed_volume], ["wait", "0.0005"]);
    const buyNow = await now("delayed-buy");
    assert.equal(buyNow.state, "wait");
    assert.ok(Number(buyNow.executed_volume) > 0, "part of the buy filled");
    const gone = await signedQuery(
      sim.restUrl,
      "DELETE",
      "/v1/order",
      keysOf(sim),
      "identifier=delayed-cancelled",
    );
    assert.equal(gone.status, 200);
    await gone.body?.cancel();
    await new Promise((res) => setTimeout(res, 500));
    const sellDone = await now("delayed-sell");
    assert.deepEqual([sellDone.state, sellDone.executed_volume], ["done", "0.001"]);
    const buyDone = await now("delayed-buy");
    assert.ok(["done", "cancel"].includes(buyDone.state), buyDone.state);
    assert.ok(Number(buyDone.executed_volume) > Number(buyNow.executed_volume));
    const cancelledDone = await now("delayed-cancelled");
    assert.deepEqual([cancelledDone.state, cancelledDone.executed_volume], ["cancel", "0.0004"]);
  }, { balances: { "KRW-BTC": "0.01" } });
});
