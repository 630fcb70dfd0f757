/**
 * The order lookups and cancels of `UpbitRest` that reconciliation relies on, against the
 * simulator: one order by uuid or identifier, lists by uuids or identifiers, open and closed lists,
 * single and batch cancels, and the balances they lock and free.
 */
import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbitApiError } from "../lib/upbit/errors.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";

async function withRest(fn: (rest: UpbitRest, sim: Simulator) => Promise<void>): Promise<void> {
  const restore = setLogSink(() => {});
  const sim = await startSimulator({ port: 0, seed: 1, rate: 0 });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  try {
    await fn(rest, sim);
  } finally {
    rest.close();
    await sim.close();
    restore();
  }
}

/** Places a bid that rests (far below any price the simulator prints) and returns its uuid. */
async function restingBid(rest: UpbitRest, identifier: string, price = "10000000") {
  const r = await rest.postOrder({
    market: "KRW-BTC",
    side: "bid",
    ord_type: "limit",
    volume: "0.001",
    price,
    identifier,
  });
  assert.equal(r.kind, "accepted");
  return r.kind === "accepted" ? r.order.uuid : "";
}

Deno.test("getOrder by uuid and by identifier; an unknown one is order_not_found", async () => {
  await withRest(async (rest) => {
    const uuid = await restingBid(rest, "get-1");
    const byUuid = await rest.getOrder({ uuid });
    const byIdentifier = await rest.getOrder({ identifier: "get-1" });
    assert.equal(byUuid.data.identifier, "get-1");
    assert.equal(byIdentifier.data.uuid, uuid);
    assert.equal(byUuid.data.state, "wait");
    assert.equal(byUuid.data.price, "10000000");
    assert.equal(byUuid.data.volume, "0.001");
    await assert.rejects(
      rest.getOrder({ identifier: "never-sent" }),
      (err) =>
        err instanceof UpbitApiError && err.httpStatus === 404 && err.code === "order_not_found",
    );
  });
});

Deno.test("getOrdersByUuids and getOrdersByIdentifiers list exactly the orders asked for", async () => {
  await withRest(async (rest) => {
    const a = await restingBid(rest, "list-a");
    const b = await restingBid(rest, "list-b", "11000000");
    await restingBid(rest, "list-c", "12000000");
    const byUuids = await rest.getOrdersByUuids({ uuids: [a, b], orderBy: "asc" });
    assert.deepEqual(byUuids.data.map((o) => o.identifier), ["list-a", "list-b"]);
    const byIds = await rest.getOrdersByIdentifiers({
      identifiers: ["list-b", "list-c", "list-unknown"],
      market: "KRW-BTC",
      orderBy: "desc",
    });
    assert.deepEqual(byIds.data.map((o) => o.identifier), ["list-c", "list-b"]);
  });
});

Deno.test("deleteOrder cancels one order: open list, closed list and the balance follow", async () => {
  await withRest(async (rest) => {
    const uuid = await restingBid(rest, "cancel-1");
    const krwLocked = (await rest.getAccounts()).data.find((a) => a.currency === "KRW")?.locked;
    assert.notEqual(krwLocked, "0", "the bid locks KRW");
    const open = await rest.getOrdersOpen({ market: "KRW-BTC" });
    assert.deepEqual(open.data.map((o) => o.uuid), [uuid]);

    const cancel = await rest.deleteOrder({ uuid });
    assert.equal(cancel.data.uuid, uuid);
    const after = await rest.getOrder({ uuid });
    assert.equal(after.data.state, "cancel");
    assert.deepEqual((await rest.getOrdersOpen({ market: "KRW-BTC" })).data, []);
    const closed = await rest.getOrdersClosed({ market: "KRW-BTC", states: ["cancel"] });
    assert.deepEqual(closed.data.map((o) => o.identifier), ["cancel-1"]);
    const done = await rest.getOrdersClosed({ market: "KRW-BTC", states: ["done"] });
    assert.deepEqual(done.data, []);
    const krw = (await rest.getAccounts()).data.find((a) => a.currency === "KRW");
    assert.equal(krw?.locked, "0");
    assert.equal(krw?.balance, "10000000");

    // A second cancel of a finished order is refused, not repeated.
    await assert.rejects(rest.deleteOrder({ identifier: "cancel-1" }), UpbitApiError);
  });
});

Deno.test("deleteOrdersByUuids and deleteOrdersByIdentifiers report which cancels succeeded", async () => {
  await withRest(async (rest) => {
    const a = await restingBid(rest, "batch-a");
    await restingBid(rest, "batch-b", "11000000");
    await restingBid(rest, "batch-c", "12000000");
    const byUuids = await rest.deleteOrdersByUuids({ uuids: [a] });
    assert.equal(byUuids.data.success.count, 1);
    assert.equal(byUuids.data.success.orders[0]?.uuid, a);
    assert.equal(byUuids.data.failed.count, 0);
    const byIds = await rest.deleteOrdersByIdentifiers({ identifiers: ["batch-b", "batch-a"] });
    assert.deepEqual(byIds.data.success.orders.map((o) => o.identifier), ["batch-b"]);
    assert.deepEqual(byIds.data.failed.orders.map((o) => o.identifier), ["batch-a"]);
    const open = await rest.getOrdersOpen({ market: "KRW-BTC" });
    assert.deepEqual(open.data.map((o) => o.identifier), ["batch-c"], "others untouched");
  });
});
