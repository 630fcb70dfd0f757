import assert from "node:assert/strict";
import { startSimulator } from "../sim/mod.ts";
import { Client, signJwt, Socket } from "./_sim_exchange_fixture.ts";

type Json = Record<string, unknown>;

Deno.test("startSimulator: exchange REST over HTTP rests, fills on an injected trade, lists in /_sim/orders", async () => {
  const sim = await startSimulator({ rate: 0, markets: ["KRW-BTC", "KRW-ETH"], seed: 7 });
  try {
    const client = new Client(sim.restUrl, { accessKey: sim.accessKey, secretKey: sim.secretKey });
    const accountsRes = await client.query("GET", "/v1/accounts");
    assert.equal(accountsRes.status, 200);
    assert.match(
      accountsRes.headers.get("remaining-req") ?? "",
      /^group=default; min=\d+; sec=\d+$/,
    );
    const accounts = await accountsRes.json() as Json[];
    assert.equal(accounts[0]!.balance, "10000000");

    const [, chance] = await client.getJson("/v1/orders/chance", [["market", "KRW-BTC"]]);
    assert.equal((chance.market as Json).id, "KRW-BTC");

    const book = await (await fetch(`${sim.restUrl}/v1/orderbook?markets=KRW-BTC`)).json() as {
      orderbook_units: { bid_price: number }[];
    }[];
    const bestBid = book[0]!.orderbook_units[0]!.bid_price;
    // A bid well below the market, on the 1,000-KRW grid.
    const price = Math.floor((bestBid * 0.9) / 1000) * 1000;
    const [status, created] = await client.postJson("/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      volume: "0.001",
      price: String(price),
      ord_type: "limit",
      identifier: "e2e-1",
    });
    assert.equal(status, 201, JSON.stringify(created));
    const [, resting] = await client.getJson("/v1/order", [["uuid", created.uuid as string]]);
    assert.equal(resting.state, "wait");

    const privateWs = new Socket(
      `${sim.wsUrl}/private`,
      await signJwt({
        access_key: sim.accessKey,
        nonce: crypto.randomUUID(),
      }, { secret: sim.secretKey }),
    );
    await privateWs.opened();
    await privateWs.subscribe([{ ticket: "e2e" }, { type: "myOrder" }]);

    sim.injectTrade({ market: "KRW-BTC", price, volume: 0.5, side: "ASK" });
    const [, filled] = await client.getJson("/v1/order", [["identifier", "e2e-1"]]);
    assert.equal(filled.state, "done");
    assert.equal(filled.executed_volume, "0.001");
    assert.equal((filled.trades as Json[]).length, 1);
    const trade = await privateWs.next();
    assert.equal(trade.state, "trade");
    assert.equal(trade.uuid, created.uuid);
    assert.equal((await privateWs.next()).state, "done");
    await privateWs.close();

    const listed = await (await fetch(`${sim.restUrl}/_sim/orders`)).json() as Json[];
    assert.deepEqual(listed, [{
      uuid: created.uuid,
      identifier: "e2e-1",
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      state: "done",
      executed_volume: "0.001",
    }]);

    sim.setFaults({ offline_markets: ["KRW-ETH"] });
    const [offline, offlineBody] = await client.postJson<{ error: Json }>("/v1/orders", {
      market: "KRW-ETH",
      side: "bid",
      price: "10000",
      ord_type: "price",
    });
    assert.equal(offline, 403);
    assert.equal(offlineBody.error.name, "market_offline");
  } finally {
    await sim.close();
  }
});
