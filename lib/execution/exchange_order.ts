/**
 * @module What an order Upbit reports says about one of upbot's order attempts: whether it is the
 * order the attempt asked for ({@linkcode orderMismatch}, the one check before any order found
 * under our identifier is adopted) and its average fill price ({@linkcode averagePrice}).
 */
import type { Order } from "../upbit/schemas.ts";

/**
 * How much earlier than the attempt Upbit's clock may date one of its own orders (Upbit's
 * `created_at` against the database's `ts`, two clocks). Generous: a false "too old" leaves a real
 * fill unadopted (a conflict: alarm, entries halted), so only a clock set far wrong should reach
 * it; an older order under our identifier is one the database does not know (a restored backup
 * reusing identifiers), and reconciliation makes such reuse impossible for the orders it sees
 * (`reconcile.ts`, a new installation prefix).
 */
export const ORDER_CLOCK_SKEW_MS = 10 * 60_000;

/**
 * Why the order Upbit holds under an attempt's identifier is not the order the attempt asked for
 * (market, side, ord_type, and the amount: price for a `price` buy, volume otherwise; and, given
 * the attempt's creation time `attemptAt`, created before the attempt existed, allowing
 * {@linkcode ORDER_CLOCK_SKEW_MS}), or null when it is.
 *
 * @example
 * ```ts ignore
 * orderMismatch({ market: "KRW-BTC", side: "ask", ord_type: "market", volume: "0.1" }, order);
 * // "volume 0.2 != 0.1" when Upbit's order sells 0.2
 * ```
 */
export function orderMismatch(
  request: Record<string, string>,
  order: Order,
  attemptAt?: Date,
): string | null {
  const diffs: string[] = [];
  if (order.market !== request.market) diffs.push(`market ${order.market} != ${request.market}`);
  if (order.side !== request.side) diffs.push(`side ${order.side} != ${request.side}`);
  if (order.ord_type !== request.ord_type) {
    diffs.push(`ord_type ${order.ord_type} != ${request.ord_type}`);
  }
  const amount = request.ord_type === "price" ? "price" : "volume";
  const want = request[amount];
  const got = order[amount];
  if (want === undefined || got == null || Number(got) !== Number(want)) {
    diffs.push(`${amount} ${got ?? "none"} != ${want ?? "none"}`);
  }
  if (attemptAt !== undefined) {
    // An order made before the attempt was written cannot be its order, however alike.
    const created = Date.parse(order.created_at);
    if (!(created >= attemptAt.getTime() - ORDER_CLOCK_SKEW_MS)) {
      diffs.push(`created ${order.created_at}, before the attempt (${attemptAt.toISOString()})`);
    }
  }
  return diffs.length > 0 ? diffs.join(", ") : null;
}

/** Average fill price of `order`: executed funds / executed volume, or null with no fill. */
export function averagePrice(
  order: Pick<Order, "executed_volume" | "executed_funds" | "trades">,
): string | null {
  const volume = Number(order.executed_volume);
  if (!(volume > 0)) return null;
  let funds = order.executed_funds != null ? Number(order.executed_funds) : NaN;
  if (!Number.isFinite(funds) && order.trades) {
    funds = order.trades.reduce((sum, t) => sum + Number(t.funds), 0);
  }
  if (!Number.isFinite(funds)) return null;
  // Informational (the fills themselves are exact in executed_volume / paid_fee): 8 decimals.
  return String(Number((funds / volume).toFixed(8)));
}
