/**
 * orderMismatch(): the one check before an order found under our identifier is adopted, on orders
 * the simulator made.
 */
import assert from "node:assert/strict";
import { ORDER_CLOCK_SKEW_MS, orderMismatch } from "../lib/execution/exchange_order.ts";
import type { Order } from "../lib/upbit/schemas.ts";
import { startSim } from "./_live_orders.ts";

/** The entry an attempt asked for, as sent. */
const request = {
  market: "KRW-BTC",
  side: "bid",
  ord_type: "price",
  price: "10000",
  identifier: "paper-abcdefgh-1-ENTER_LONG",
} as const;

/** The order the simulator made for `request`, as its create answered. */
async function orderFor(): Promise<Order> {
  const h = await startSim({ markets: ["KRW-BTC"] });
  try {
    const r = await h.rest.postOrder(request);
    return r.kind === "accepted" ? r.order : assert.fail(`not accepted: ${r.kind}`);
  } finally {
    await h.close();
  }
}

Deno.test("orderMismatch(): the order asked for matches; another amount, side or market does not", async () => {
  const order = await orderFor();
  assert.equal(orderMismatch(request, order), null);
  assert.equal(orderMismatch({ ...request, price: "20000" }, order), "price 10000 != 20000");
  assert.equal(
    orderMismatch({ ...request, side: "ask", market: "KRW-ETH" }, order),
    "market KRW-BTC != KRW-ETH, side bid != ask",
  );
});

Deno.test("orderMismatch(): an order made before the attempt existed is not its order, however alike", async () => {
  const order = await orderFor();
  const created = Date.parse(order.created_at);
  assert.ok(Number.isFinite(created), order.created_at);
  // Made after the attempt, or earlier within the two clocks' allowance: the attempt's order.
  assert.equal(orderMismatch(request, order, new Date(created - 1000)), null);
  assert.equal(orderMismatch(request, order, new Date(created + ORDER_CLOCK_SKEW_MS - 1000)), null);
  // Made well before the attempt was written (a restored backup reusing the identifier): not it.
  const later = new Date(created + ORDER_CLOCK_SKEW_MS + 60_000);
  assert.equal(
    orderMismatch(request, order, later),
    `created ${order.created_at}, before the attempt (${later.toISOString()})`,
  );
  // A creation time that cannot be read proves nothing: not adopted.
  assert.match(orderMismatch(request, { ...order, created_at: "?" }, later)!, /^created \?/);
});
