import assert from "node:assert/strict";
import type { ExchangeHandler } from "../sim/contract.ts";
import {
  ACCESS_KEY,
  Client,
  limitBid,
  makeExchange,
  signJwt,
  Socket,
} from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

/** Serves only the private WebSocket of `exchange` on an ephemeral port. */
function serve(exchange: ExchangeHandler) {
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    (req) => exchange.handlePrivateWebSocket(req),
  );
  return { server, url: `ws://127.0.0.1:${server.addr.port}/websocket/v1/private` };
}

const token = () => signJwt({ access_key: ACCESS_KEY, nonce: crypto.randomUUID() });

Deno.test("private WS refuses a missing or bad token at the upgrade with HTTP 401", async () => {
  const { exchange } = makeExchange();
  const { server, url } = serve(exchange);
  for (
    const bad of [undefined, await signJwt({ access_key: ACCESS_KEY, nonce: "n" }, { secret: "x" })]
  ) {
    const res = await fetch(url.replace("ws:", "http:"), {
      headers: {
        ...(bad ? { Authorization: `Bearer ${bad}` } : {}),
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.error.name, bad ? "jwt_verification" : "no_authorization_token");
  }
  exchange.close();
  await server.shutdown();
});

Deno.test("private WS refuses a token of an expired key: 401 expired_access_key, or INVALID_AUTH in band", async () => {
  for (const refusal of ["upgrade", "in_band"] as const) {
    const { exchange } = makeExchange({
      apiKeyExpireAtMs: Date.now() - 1,
      faults: { private_ws_auth_refusal: refusal },
    });
    const { server, url } = serve(exchange);
    if (refusal === "upgrade") {
      const res = await fetch(url.replace("ws:", "http:"), {
        headers: {
          Authorization: `Bearer ${await token()}`,
          Connection: "Upgrade",
          Upgrade: "websocket",
          "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
      });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error.name, "expired_access_key");
    } else {
      const socket = new Socket(url, await token());
      assert.equal(((await socket.next()).error as Json).name, "INVALID_AUTH");
      await socket.closed;
    }
    exchange.close();
    await server.shutdown();
  }
});

Deno.test("private WS in_band refusal: INVALID_AUTH frame, then close", async () => {
  const { exchange } = makeExchange({ faults: { private_ws_auth_refusal: "in_band" } });
  const { server, url } = serve(exchange);
  for (
    const bad of [undefined, await signJwt({ access_key: ACCESS_KEY, nonce: "n" }, { secret: "x" })]
  ) {
    const socket = new Socket(url, bad);
    const frame = await socket.next();
    assert.equal((frame.error as Json).name, "INVALID_AUTH");
    await socket.closed;
  }
  exchange.close();
  await server.shutdown();
});

Deno.test("private WS streams myOrder (wait, trade, done, cancel) and myAsset as numbers", async () => {
  const { exchange, market } = makeExchange();
  market.setBook("KRW-BTC", [[101_000_000, 1]], [[100_000_000, 1]]);
  const client = new Client(exchange);
  const { server, url } = serve(exchange);
  const socket = new Socket(url, await token());
  await socket.opened();
  await socket.subscribe([{ ticket: "t1" }, { type: "myOrder", codes: ["KRW-BTC"] }, {
    type: "myAsset",
  }]);

  const [, created] = await client.postJson(
    "/v1/orders",
    limitBid("99000000", "0.002", { identifier: "ws-1" }),
  );
  const wait = await socket.next();
  assert.equal(wait.type, "myOrder");
  assert.equal(wait.code, "KRW-BTC");
  assert.equal(wait.uuid, created.uuid);
  assert.equal(wait.ask_bid, "BID");
  assert.equal(wait.order_type, "limit");
  assert.equal(wait.state, "wait");
  assert.equal(wait.price, 99_000_000);
  assert.equal(wait.volume, 0.002);
  assert.equal(wait.reserved_fee, 99);
  assert.equal(wait.locked, 198_099);
  assert.equal(wait.identifier, "ws-1");
  assert.equal(wait.trade_fee, null);
  assert.equal(wait.stream_type, "REALTIME");
  const lockAsset = await socket.next();
  assert.equal(lockAsset.type, "myAsset");
  assert.deepEqual(lockAsset.assets, [{ currency: "KRW", balance: 9_801_901, locked: 198_099 }]);

  market.print("KRW-BTC", 99_000_000, 0.001);
  const trade = await socket.next();
  assert.equal(trade.state, "trade");
  assert.equal(trade.volume, 0.001);
  assert.equal(trade.price, 99_000_000);
  assert.equal(trade.executed_volume, 0.001);
  assert.equal(trade.remaining_volume, 0.001);
  assert.equal(trade.trade_fee, 49.5);
  assert.equal(trade.is_maker, true);
  assert.equal(typeof trade.trade_uuid, "string");
  assert.equal(trade.avg_price, 99_000_000);
  const fillAsset = await socket.next();
  assert.deepEqual(fillAsset.assets, [
    { currency: "KRW", balance: 9_801_901, locked: 99_049.5 },
    { currency: "BTC", balance: 0.001, locked: 0 },
  ]);

  await client.deleteJson("/v1/order", [["uuid", created.uuid as string]]);
  const cancel = await socket.next();
  assert.equal(cancel.state, "cancel");
  assert.equal(cancel.executed_volume, 0.001);
  const releaseAsset = await socket.next();
  assert.deepEqual(releaseAsset.assets, [{ currency: "KRW", balance: 9_900_950.5, locked: 0 }]);

  await client.postJson("/v1/orders", {
    market: "KRW-BTC",
    side: "bid",
    price: "10100",
    ord_type: "price",
  });
  // 10,100 KRW buys exactly 0.0001 BTC: nothing is left to release, so no third myAsset.
  const kinds: unknown[] = [];
  for (let i = 0; i < 5; i++) {
    const frame = await socket.next();
    kinds.push(frame.type === "myOrder" ? frame.state : frame.type);
  }
  assert.deepEqual(kinds, ["wait", "myAsset", "trade", "myAsset", "done"]);

  await socket.close();
  exchange.close();
  await server.shutdown();
});

Deno.test("private WS filters myOrder by codes and speaks SIMPLE keys", async () => {
  const { exchange, market } = makeExchange();
  market.setBook("KRW-BTC", [[101_000_000, 1]], [[100_000_000, 1]]);
  market.setBook("KRW-ETH", [[5_001_000, 1]], [[5_000_000, 1]]);
  const client = new Client(exchange);
  const { server, url } = serve(exchange);
  const socket = new Socket(url, await token());
  await socket.opened();
  await socket.subscribe([{ ticket: "t2" }, { type: "myOrder", codes: ["KRW-ETH"] }, {
    format: "SIMPLE",
  }]);
  await client.postJson("/v1/orders", limitBid("99000000", "0.001"));
  const [, eth] = await client.postJson("/v1/orders", {
    market: "KRW-ETH",
    side: "bid",
    volume: "0.01",
    price: "4000000",
    ord_type: "limit",
  });
  const frame = await socket.next();
  assert.equal(frame.ty, "myOrder");
  assert.equal(frame.cd, "KRW-ETH");
  assert.equal(frame.uid, eth.uuid);
  assert.equal(frame.ab, "BID");
  assert.equal(frame.s, "wait");
  assert.equal(frame.l, 40_020);
  assert.equal(frame.st, "REALTIME");
  await socket.close();
  exchange.close();
  await server.shutdown();
});

Deno.test("private WS answers bad requests with WRONG_FORMAT / NO_TICKET / NO_TYPE", async () => {
  const { exchange } = makeExchange();
  const { server, url } = serve(exchange);
  const socket = new Socket(url, await token());
  await socket.opened();
  const cases: [unknown, string][] = [
    [[{ ticket: "t" }, { type: "myAsset", codes: ["KRW-BTC"] }], "WRONG_FORMAT"],
    [[{ type: "myOrder" }], "NO_TICKET"],
    [[{ ticket: "t" }], "NO_TYPE"],
    [{ ticket: "t" }, "WRONG_FORMAT"],
  ];
  for (const [request, name] of cases) {
    socket.ws.send(JSON.stringify(request));
    const frame = await socket.next();
    assert.equal((frame.error as Json).name, name, JSON.stringify(request));
  }
  await socket.close();
  exchange.close();
  await server.shutdown();
});

Deno.test("dropWebSockets closes every private connection", async () => {
  const { exchange } = makeExchange();
  const { server, url } = serve(exchange);
  const socket = new Socket(url, await token());
  await socket.opened();
  await socket.subscribe([{ ticket: "t" }, { type: "myAsset" }]);
  exchange.dropWebSockets();
  await socket.closed;
  exchange.close();
  await server.shutdown();
});

Deno.test("private WS sends malformed frames at the malformed_frame_rate fault", async () => {
  const { exchange, market, faults } = makeExchange();
  market.setBook("KRW-BTC", [[101_000_000, 1]], [[100_000_000, 1]]);
  const client = new Client(exchange);
  const { server, url } = serve(exchange);
  const socket = new Socket(url, await token());
  await socket.opened();
  await socket.subscribe([{ ticket: "t" }, { type: "myAsset" }]);
  const raw = new Promise<string>((resolve) => {
    socket.ws.onmessage = (event) => resolve(new TextDecoder().decode(event.data as ArrayBuffer));
  });
  faults.malformed_frame_rate = 1;
  await client.postJson("/v1/orders", limitBid("99000000", "0.001"));
  const text = await raw;
  assert.ok(text.startsWith('{"type":"myAsset"'));
  assert.throws(() => JSON.parse(text), SyntaxError);
  await socket.close();
  exchange.close();
  await server.shutdown();
});

Deno.test("my_asset_first_lag_ms: no myAsset frames for that long after a connection's first myAsset subscription, then changes flow", async () => {
  const LAG_MS = 1000;
  const { exchange, market } = makeExchange({ faults: { my_asset_first_lag_ms: LAG_MS } });
  market.setBook("KRW-BTC", [[101_000_000, 1]], [[100_000_000, 1]]);
  const client = new Client(exchange);
  const { server, url } = serve(exchange);
  const kinds = async (socket: Socket, n: number) => {
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const frame = await socket.next();
      out.push(frame.type === "myOrder" ? frame.state : frame.type ?? frame.status);
    }
    return out;
  };
  const a = new Socket(url, await token());
  await a.opened();
  const request = [{ ticket: "a" }, { type: "myOrder" }, { type: "myAsset" }];
  await a.subscribe(request);
  const subscribedAt = Date.now();
  const [, created] = await client.postJson("/v1/orders", limitBid("99000000", "0.002"));
  a.ws.send("PING");
  assert.deepEqual(await kinds(a, 2), ["wait", "UP"], "the lock's myAsset is not sent");
  // A second request on the connection, half a lag later, does not start the lag again (a
  // restarted lag would still hide the change sent after the first one ends).
  await new Promise((resolve) => setTimeout(resolve, LAG_MS / 2));
  await a.subscribe(request);
  await new Promise((resolve) => setTimeout(resolve, subscribedAt + LAG_MS + 50 - Date.now()));
  assert.ok(Date.now() - subscribedAt < 2 * LAG_MS, "test too slow to tell the lags apart");
  // A connection whose first subscription is now lags from now, whatever the first one's state.
  const b = new Socket(url, await token());
  await b.opened();
  await b.subscribe([{ ticket: "b" }, { type: "myOrder" }, { type: "myAsset" }]);
  await client.deleteJson("/v1/order", [["uuid", created.uuid as string]]);
  assert.equal((await a.next()).state, "cancel");
  const release = await a.next();
  assert.equal(release.type, "myAsset", "after the lag the next change is sent");
  assert.deepEqual(release.assets, [{ currency: "KRW", balance: 10_000_000, locked: 0 }]);
  b.ws.send("PING");
  assert.deepEqual(await kinds(b, 2), ["cancel", "UP"], "b is within its own first lag");
  await a.close();
  await b.close();
  exchange.close();
  await server.shutdown();
});
