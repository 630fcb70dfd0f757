import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { DEFAULT_SMP_TYPE, UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { signedPost } from "./_sim_auth.ts";

Deno.test("upbot's market buy meeting the owner's resting sell: the owner's order survives, upbot's ends prevented", async () => {
  const restoreLog = setLogSink(() => {});
  const sim = await startSimulator({
    rate: 0,
    markets: ["KRW-BTC"],
    krw: 20_000_000,
    balances: { "KRW-BTC": "0.05" },
  });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  try {
    assert.equal(DEFAULT_SMP_TYPE, "cancel_taker");
    const [book] = await (await fetch(`${sim.restUrl}/v1/orderbook?markets=KRW-BTC`)).json();
    const [first, second] = book.orderbook_units;
    // The owner (not upbot) rests a sell at the second ask level, without smp_type.
    const owner = await signedPost(sim.restUrl, "/v1/orders", {
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
    }, {
      market: "KRW-BTC",
      side: "ask",
      ord_type: "limit",
      price: String(second.ask_price),
      volume: "0.01",
      identifier: "owner-sell",
    });
    assert.equal(owner.status, 201);
    const ownerOrder = await owner.json();
    assert.equal(ownerOrder.smp_type, "cancel_maker");

    // upbot's buy is worth more than the first ask level: it reaches the owner's order.
    const funds = Math.floor(first.ask_price * first.ask_size) + 1_000_000;
    const placed = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: String(funds),
      identifier: "upbot-buy-1",
    });
    assert.equal(placed.kind, "accepted");
    assert.equal(placed.kind === "accepted" && placed.order.smp_type, "cancel_taker");

    const { data: mine } = await rest.getOrder({ identifier: "upbot-buy-1" });
    // REST says `cancel` (smp_rest_state's default, §4.5's documented states) with the prevented
    // volume set; with the fault set to `prevented` it says so.
    assert.equal(mine.state, "cancel");
    assert.ok(Number(mine.prevented_volume) > 0);
    assert.equal(mine.executed_volume, String(first.ask_size), "the first level was bought");
    assert.ok(Number(mine.prevented_locked) > 0, "the rest of the funds was released");
    assert.equal(mine.locked, "0");
    assert.ok((mine.trades ?? []).every((t) => Number(t.price) === first.ask_price));
    sim.setFaults({ smp_rest_state: "prevented" });
    assert.equal((await rest.getOrder({ identifier: "upbot-buy-1" })).data.state, "prevented");
    sim.setFaults({ smp_rest_state: "cancel" });

    const { data: theirs } = await rest.getOrder({ identifier: "owner-sell" });
    assert.equal(theirs.state, "wait");
    assert.equal(theirs.remaining_volume, "0.01");
    assert.equal(theirs.prevented_volume, "0");

    // post_only goes without smp_type (Upbit refuses it with any but none); an explicit one stays.
    const postOnly = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: String(first.bid_price),
      volume: "0.001",
      time_in_force: "post_only",
      identifier: "upbot-post-only",
    });
    assert.equal(postOnly.kind, "accepted");
    const explicit = await rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: String(first.bid_price),
      volume: "0.001",
      smp_type: "reduce",
      identifier: "upbot-explicit",
    });
    assert.equal(explicit.kind === "accepted" && explicit.order.smp_type, "reduce");
  } finally {
    rest.close();
    await sim.close();
    restoreLog();
  }
});
