import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import {
  UpbitApiError,
  UpbitBanActiveError,
  UpbitBanResponseError,
  UpbitRateLimitError,
  UpbitTransportError,
} from "../lib/upbit/errors.ts";
import { parseJsonExactIds, TradeTick } from "../lib/upbit/schemas.ts";
import { type PostOrderResult, UpbitRest, type UpbitRestOptions } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";

const quiet = () => setLogSink(() => {});

async function withSim(
  fn: (sim: Simulator, client: (o?: UpbitRestOptions) => UpbitRest) => Promise<void>,
): Promise<void> {
  const restore = quiet();
  const sim = await startSimulator({ port: 0, seed: 1, rate: 0 });
  const clients: UpbitRest[] = [];
  const client = (o: UpbitRestOptions = {}) => {
    const c = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
      backoff: { baseMs: 20, maxMs: 200 },
      ...o,
    });
    clients.push(c);
    return c;
  };
  try {
    await fn(sim, client);
  } finally {
    for (const c of clients) c.close();
    await sim.close();
    restore();
  }
}

const ident = () => `t-${crypto.randomUUID()}`;

/** A fetch that counts the requests it passes to the real fetch. */
function countingFetch(): { fetch: typeof fetch; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    fetch: (input, init) => {
      calls.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname}`);
      return fetch(input, init);
    },
  };
}

Deno.test("UpbitRest reads quotation endpoints and keeps sequential_id exact", async () => {
  await withSim(async (sim, client) => {
    const rest = client({ accessKey: undefined, secretKey: undefined });
    const t = sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "BID" });
    const ticks = await rest.getTradesTicks({ market: "KRW-BTC", count: 5 });
    assert.equal(ticks.meta.http_status, 200);
    assert.match(ticks.meta.remaining_req ?? "", /^group=trade; min=\d+; sec=\d+$/);
    assert.equal(typeof ticks.meta.latency_ms, "number");
    assert.equal(ticks.data[0]?.sequential_id, BigInt(t.sequentialId));
    assert.equal(ticks.data[0]?.trade_price, 140_000_000);
    const [ticker] = (await rest.getTicker({ markets: ["KRW-BTC"] })).data;
    assert.equal(ticker?.trade_price, 140_000_000);
    const [book] = (await rest.getOrderbook({ markets: ["KRW-BTC"] })).data;
    assert.ok((book?.orderbook_units.length ?? 0) > 0);
    const markets = (await rest.getMarkets()).data.map((m) => m.market);
    assert.ok(markets.includes("KRW-BTC"));
    const candles = (await rest.getCandlesSeconds({ market: "KRW-BTC", count: 1 })).data;
    assert.equal(candles[0]?.trade_price, 140_000_000);
    // Two trades of one millisecond: ids n and n + 1, apart only past a double's precision.
    const u = sim.injectTrade({ market: "KRW-BTC", price: 140_001_000, volume: 0.01, side: "BID" });
    const v = sim.injectTrade({ market: "KRW-BTC", price: 140_001_000, volume: 0.01, side: "BID" });
    const pair = (await rest.getTradesTicks({ market: "KRW-BTC", count: 2 })).data;
    assert.deepEqual(pair.map((x) => x.sequential_id), [v.sequentialId, u.sequentialId]);
    const older =
      (await rest.getTradesTicks({ market: "KRW-BTC", count: 1, cursor: u.sequentialId }))
        .data;
    assert.equal(older[0]?.sequential_id, t.sequentialId, "cursor pages by the exact id");
    const [day] = (await rest.getCandlesDays({
      market: "KRW-BTC",
      count: 1,
      convertingPriceUnit: "KRW",
    })).data;
    assert.equal(day?.trade_price, 140_001_000);
    assert.equal(day?.converted_trade_price, 140_001_000);
    assert.equal(typeof day?.prev_closing_price, "number");
    for (const period of ["weeks", "months"] as const) {
      const [c] = (await rest.getCandlesPeriod({ period, market: "KRW-BTC", count: 1 })).data;
      assert.equal(c?.trade_price, 140_001_000, period);
      assert.match(c?.first_day_of_period ?? "", /^\d{4}-\d{2}-\d{2}$/, period);
    }
    await assert.rejects(rest.getAccounts(), {
      name: "TypeError",
      message: "Cannot call GET /v1/accounts as UpbitRest has no accessKey/secretKey",
    });
  });
});

Deno.test("UpbitRest signs exchange calls: accounts, chance, open orders with states[]", async () => {
  await withSim(async (_sim, client) => {
    const rest = client();
    const accounts = await rest.getAccounts();
    assert.equal(accounts.data.find((a) => a.currency === "KRW")?.balance, "10000000");
    assert.match(accounts.meta.remaining_req ?? "", /^group=default;/);
    const chance = await rest.getOrdersChance({ market: "KRW-BTC" });
    assert.equal(chance.data.bid_fee, "0.0005");
    const open = await rest.getOrdersOpen({ market: "KRW-BTC", states: ["wait", "watch"] });
    assert.deepEqual(open.data, []);
  });
});

Deno.test("UpbitRest maps each exchange error name into UpbitApiError", async () => {
  await withSim(async (sim, client) => {
    const rest = client();
    const refusal = async (p: Promise<PostOrderResult>) => {
      const r = await p;
      assert.equal(r.kind, "rejected", JSON.stringify(r));
      const e = r.kind === "rejected" ? r.error : undefined;
      assert.ok(e instanceof UpbitApiError);
      return [e.httpStatus, e.code];
    };
    const buy = { market: "KRW-BTC", side: "bid", ord_type: "limit" } as const;
    assert.deepEqual(
      await refusal(
        rest.postOrder({ ...buy, volume: "0.00001", price: "1000", identifier: ident() }),
      ),
      [400, "under_min_total_bid"],
    );
    assert.deepEqual(
      await refusal(
        rest.postOrder({ ...buy, volume: "1", price: "100000001", identifier: ident() }),
      ),
      [400, "invalid_price_bid"],
    );
    assert.deepEqual(
      await refusal(
        rest.postOrder({ ...buy, volume: "1", price: "100000000", identifier: ident() }),
      ),
      [400, "insufficient_funds_bid"],
    );
    assert.deepEqual(
      await refusal(
        rest.postOrder({
          ...buy,
          market: "KRW-NOPE",
          volume: "1",
          price: "1000",
          identifier: ident(),
        }),
      ),
      [400, "notfoundmarket"],
    );
    const sell = { market: "KRW-BTC", side: "ask", ord_type: "market", volume: "1" } as const;
    assert.deepEqual(
      await refusal(rest.postOrder({ ...sell, identifier: ident() })),
      [400, "insufficient_funds_ask"],
    );
    const id = ident();
    assert.equal(
      (await rest.postOrder({ ...buy, volume: "0.001", price: "10000000", identifier: id })).kind,
      "accepted",
    );
    assert.deepEqual(
      await refusal(rest.postOrder({ ...buy, volume: "0.001", price: "10000000", identifier: id })),
      [400, "duplicated_identifier"],
    );
    sim.setFaults({ offline_markets: ["KRW-ETH"] });
    assert.deepEqual(
      await refusal(
        rest.postOrder({
          ...buy,
          market: "KRW-ETH",
          volume: "1",
          price: "10000",
          identifier: ident(),
        }),
      ),
      [403, "market_offline"],
    );
    sim.setFaults({ offline_markets: [] });

    const notFound = await rest.getOrder({ uuid: crypto.randomUUID() }).catch((e) => e);
    assert.ok(notFound instanceof UpbitApiError);
    assert.equal(notFound.httpStatus, 404);
    assert.equal(notFound.code, "order_not_found");
    assert.match(notFound.remainingReq ?? "", /^group=default;/);

    const wrongSecret = client({ secretKey: "not-the-secret" });
    const e1 = await wrongSecret.getAccounts().catch((e) => e);
    assert.deepEqual([e1.httpStatus, e1.code], [401, "jwt_verification"]);
    const wrongKey = client({ accessKey: "unknown-key" });
    const e2 = await wrongKey.getAccounts().catch((e) => e);
    assert.deepEqual([e2.httpStatus, e2.code], [401, "invalid_access_key"]);

    const quotation = await rest.getTicker({ markets: ["KRW-NOPE"] }).catch((e) => e);
    assert.ok(quotation instanceof UpbitApiError);
    assert.equal(quotation.httpStatus, 404);
    assert.equal(quotation.code, "404", "quotation errors carry numeric names, kept as text");
  });
});

Deno.test("UpbitRest.postOrderTest marks results as test and creates nothing", async () => {
  await withSim(async (sim, client) => {
    const rest = client();
    const id = ident();
    const r = await rest.postOrderTest({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "5000",
      identifier: id,
    });
    assert.equal(r.kind, "accepted");
    assert.equal(r.test, true);
    assert.equal(r.meta?.http_status, 201);
    assert.match(r.meta?.remaining_req ?? "", /^group=order-test;/);
    assert.equal(sim.orders().length, 0);
    assert.equal((await rest.resolveUnknownOrder(id)).kind, "not_found");
  });
});

Deno.test("UpbitRest retries a read 3 times on 5xx, never an order creation", async () => {
  await withSim(async (sim, client) => {
    const counter = countingFetch();
    const rest = client({ fetch: counter.fetch });
    sim.setFaults({ error_rate: 1 });
    const err = await rest.getAccounts().catch((e) => e);
    assert.ok(err instanceof UpbitApiError);
    assert.deepEqual([err.httpStatus, err.code], [500, "server_error"]);
    assert.deepEqual(counter.calls, ["GET /v1/accounts", "GET /v1/accounts", "GET /v1/accounts"]);

    counter.calls.length = 0;
    const id = ident();
    const r = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "5000",
      identifier: id,
    });
    assert.equal(r.kind, "unknown");
    assert.equal(r.kind === "unknown" && r.reason, "server_error");
    assert.equal(r.kind === "unknown" && r.identifier, id);
    assert.deepEqual(counter.calls, ["POST /v1/orders"]);
    sim.setFaults({ error_rate: 0 });
    assert.equal((await rest.resolveUnknownOrder(id)).kind, "not_found");
    assert.equal(sim.orders().length, 0);
  });
});

Deno.test("UpbitRest reports a lost create as unknown, resolved by identifier: exactly one order", async () => {
  await withSim(async (sim, client) => {
    const rest = client({ timeoutMs: 300 });
    sim.setFaults({ lost_response_rate: 1 });
    const id = ident();
    const r = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      volume: "0.001",
      price: "10000000",
      identifier: id,
    });
    assert.equal(r.kind, "unknown");
    if (r.kind !== "unknown") return;
    assert.equal(r.reason, "timeout");
    assert.equal(r.test, false);
    assert.ok(r.error instanceof UpbitTransportError);
    assert.equal(r.meta?.http_status, null);
    sim.setFaults({ lost_response_rate: 0 });
    const resolved = await rest.resolveUnknownOrder(id);
    assert.equal(resolved.kind, "found");
    assert.equal(resolved.kind === "found" && resolved.order.identifier, id);
    assert.equal(resolved.kind === "found" && resolved.order.state, "wait");
    assert.equal(sim.orders().filter((o) => o.identifier === id).length, 1);
    assert.equal(sim.orders().length, 1);
  });
});

Deno.test("UpbitRest times out slow reads, retries them, and reports the timeout", async () => {
  await withSim(async (sim, client) => {
    const counter = countingFetch();
    const rest = client({ timeoutMs: 100, fetch: counter.fetch });
    sim.setFaults({ latency_ms: 400 });
    const err = await rest.getTradesTicks({ market: "KRW-BTC" }).catch((e) => e);
    assert.ok(err instanceof UpbitTransportError);
    assert.equal(err.kind, "timeout");
    assert.equal(counter.calls.length, 3);
    sim.setFaults({ latency_ms: 0 });
    const ok = await rest.getTradesTicks({ market: "KRW-BTC" });
    assert.equal(ok.meta.attempts, 1);
  });
});

Deno.test("UpbitRest times out a body that stalls after the headers, and a caller's abort is 'aborted'", async () => {
  const restore = quiet();
  // Headers at once, then the body never ends: the timeout covers the body too.
  const stalled: ReadableStreamDefaultController<Uint8Array>[] = [];
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode("["));
            stalled.push(controller);
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
  );
  const rest = new UpbitRest({
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    accessKey: "a",
    secretKey: "b",
    timeoutMs: 150,
    maxAttempts: 1,
  });
  try {
    const timedOut = await rest.getAccounts().catch((e) => e);
    assert.ok(timedOut instanceof UpbitTransportError);
    assert.equal(timedOut.kind, "timeout");
    assert.equal(timedOut.message, "GET /v1/accounts timed out after 150 ms");
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    const aborted = await rest.getAccounts({ signal: controller.signal }).catch((e) => e);
    assert.ok(aborted instanceof UpbitTransportError);
    assert.equal(aborted.kind, "aborted");
    const lost = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      volume: "0.001",
      price: "10000000",
      identifier: ident(),
    });
    assert.equal(lost.kind, "unknown");
    assert.equal(lost.kind === "unknown" && lost.reason, "timeout");
  } finally {
    rest.close();
    for (const c of stalled) {
      try {
        c.close();
      } catch { /* already cancelled by the client's abort */ }
    }
    await server.shutdown();
    restore();
  }
});

Deno.test("UpbitRest fires 10x the trade-group limit concurrently without a 418, all succeed", async () => {
  await withSim(async (_sim, client) => {
    const counter = countingFetch();
    const rest = client({ fetch: counter.fetch });
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, () => rest.getTradesTicks({ market: "KRW-BTC", count: 1 })),
    );
    const failed = results.filter((r) => r.status === "rejected");
    assert.deepEqual(failed, []);
    const stats = rest.rateLimiter.stats();
    assert.equal(stats.bans, 0);
    assert.equal(stats.rateLimited, 0);
    assert.equal(counter.calls.length, 100);
  });
});

Deno.test("UpbitRest backs off on 429s from a squeezed limit without a 418", async () => {
  await withSim(async (sim, client) => {
    sim.setFaults({ rate_limit_factor: 0.8 }); // order-test: 8/s -> 6/s; we budget 8
    const rest = client();
    const results = await Promise.all(
      Array.from(
        { length: 30 },
        () =>
          rest.postOrderTest({ market: "KRW-BTC", side: "bid", ord_type: "price", price: "5000" }),
      ),
    );
    assert.equal(rest.rateLimiter.stats().bans, 0);
    const kinds = results.map((r) => r.kind === "rejected" ? r.error.name : r.kind);
    assert.ok(kinds.every((k) => k === "accepted" || k === "UpbitRateLimitError"), kinds.join());
    assert.ok(rest.rateLimiter.stats().rateLimited > 0);
    assert.ok(rest.rateLimiter.limitOf("order-test") < 8);
  });
});

/** A fetch answering from a script, for bodies the simulator does not produce. */
function scriptedFetch(responses: (() => Response)[]): { fetch: typeof fetch; calls: number } {
  const state = { calls: 0, fetch: (() => Promise.resolve(new Response("{}"))) as typeof fetch };
  state.fetch = () => {
    const next = responses[state.calls++];
    return Promise.resolve(next ? next() : new Response("[]", { status: 200 }));
  };
  return state;
}

Deno.test("UpbitRest reads a plain-text 429, waits and retries the read", async () => {
  const restore = quiet();
  const script = scriptedFetch([
    () =>
      new Response("Too many API requests.", {
        status: 429,
        headers: { "Remaining-Req": "group=default; min=1800; sec=0" },
      }),
    () =>
      Response.json([], {
        status: 200,
        headers: { "Remaining-Req": "group=default; min=1800; sec=29" },
      }),
  ]);
  const rest = new UpbitRest({
    accessKey: "a",
    secretKey: "b",
    fetch: script.fetch,
    backoff: { baseMs: 10 },
  });
  try {
    const r = await rest.getAccounts();
    assert.equal(r.meta.attempts, 2);
    assert.equal(rest.rateLimiter.stats().rateLimited, 1);
  } finally {
    rest.close();
    restore();
  }
});

Deno.test("UpbitRest stops every call of the client during a 418 ban", async () => {
  const restore = quiet();
  const script = scriptedFetch([
    () =>
      Response.json(
        { error: { name: "too_many_requests_banned", message: "blocked for 30 s." } },
        { status: 418, headers: { "Retry-After": "30" } },
      ),
  ]);
  const rest = new UpbitRest({ accessKey: "a", secretKey: "b", fetch: script.fetch });
  try {
    const err = await rest.getAccounts().catch((e) => e);
    assert.ok(err instanceof UpbitBanResponseError);
    assert.equal(err.banMs, 30_000);
    assert.equal(err.code, "too_many_requests_banned");
    assert.equal(script.calls, 1, "a ban is not retried");
    const later = await rest.getTicker({ markets: ["KRW-BTC"] }).catch((e) => e);
    assert.ok(later instanceof UpbitBanActiveError);
    const order = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "5000",
      identifier: "x",
    });
    assert.equal(order.kind, "rejected");
    assert.ok(order.kind === "rejected" && order.error instanceof UpbitBanActiveError);
    assert.equal(script.calls, 1, "nothing is sent during the ban");
  } finally {
    rest.close();
    restore();
  }
});

Deno.test("UpbitRest rejects bad options and invalid orders with std-style messages", () => {
  assert.throws(() => new UpbitRest({ timeoutMs: -1 }), {
    name: "RangeError",
    message: "Cannot create UpbitRest as 'timeoutMs' must be > 0: current value is -1",
  });
  assert.throws(() => new UpbitRest({ baseUrl: "ftp://x" }), {
    name: "TypeError",
    message:
      `Cannot create UpbitRest as 'baseUrl' must be an http(s) URL: current value is "ftp://x"`,
  });
  assert.throws(() => new UpbitRest({ accessKey: "a" }), {
    message: "Cannot create UpbitRest as 'accessKey' and 'secretKey' must be given together",
  });
  const rest = new UpbitRest({ accessKey: "a", secretKey: "b" });
  assert.throws(
    () =>
      rest.postOrder({
        market: "KRW-BTC",
        side: "bid",
        ord_type: "price",
        volume: "1",
        price: "5000",
        identifier: "x",
      }),
    {
      name: "TypeError",
      message: "Cannot call postOrder as the order is invalid: 'volume' must not be set for price",
    },
  );
  rest.close();
});

Deno.test("UpbitRateLimitError is an UpbitApiError", () => {
  const meta = { http_status: 429, remaining_req: null, latency_ms: 1 };
  const e = new UpbitRateLimitError({
    httpStatus: 429,
    code: "",
    message: "x",
    remainingReq: null,
    meta,
  });
  assert.ok(e instanceof UpbitApiError);
  assert.equal(e.name, "UpbitRateLimitError");
});

Deno.test("TradeTick refuses a sequential_id that JSON.parse has already rounded", () => {
  const tick = {
    market: "KRW-BTC",
    trade_date_utc: "2026-03-04",
    trade_time_utc: "00:00:01",
    timestamp: 1_772_582_401_000,
    trade_price: 1,
    trade_volume: 1,
    ask_bid: "BID",
  };
  const text = `{"sequential_id":17725824010000001}`;
  const rounded = { ...tick, ...(JSON.parse(text) as object) };
  assert.equal(TradeTick.safeParse(rounded).success, false, "above 2^53 as a number");
  const exact = TradeTick.parse({ ...tick, ...(parseJsonExactIds(text) as object) });
  assert.equal(exact.sequential_id, 17_725_824_010_000_001n);
  assert.equal(TradeTick.parse({ ...tick, sequential_id: 12 }).sequential_id, 12n);
});
