/**
 * @module Wire shapes of the simulated exchange's REST answers: the §4.5 order object (decimal
 * strings, KST `created_at`), its `trades[]`, and the §4.1 account entries.
 */
import { type Dec, divTrunc, formatDec, ZERO } from "./_decimal.ts";
import {
  type Account,
  type Fill,
  lockedOf,
  type Order,
  preventedLocked,
  remainingFee,
  remainingVolume,
} from "./_engine.ts";

const KST_OFFSET_MS = 9 * 3600 * 1000;

/** `yyyy-MM-ddTHH:mm:ss+09:00` (or with microseconds: `.SSS000`). */
export function kstTime(ms: number, micros = false): string {
  const iso = new Date(ms + KST_OFFSET_MS).toISOString();
  const seconds = iso.slice(0, 19);
  return (micros ? `${seconds}.${iso.slice(20, 23)}000` : seconds) + "+09:00";
}

function fillJson(order: Order, fill: Fill): Record<string, unknown> {
  // trend: "up" when a buy order took liquidity, "down" when a sell order did.
  const takerSide = fill.isMaker ? (order.side === "bid" ? "ask" : "bid") : order.side;
  return {
    market: order.market,
    uuid: fill.uuid,
    price: formatDec(fill.price),
    volume: formatDec(fill.volume),
    funds: formatDec(fill.funds),
    trend: takerSide === "bid" ? "up" : "down",
    created_at: kstTime(fill.timestampMs, true),
    side: order.side,
  };
}

/**
 * Which answer an order object is for (§4.5): `list` (the list endpoints) carries
 * `executed_funds`; `single` (create, test create, cancel, cancel_and_new) does not; `detail`
 * (`GET /v1/order`) does not either and adds `trades[]`.
 */
export type OrderJsonShape = "list" | "single" | "detail";

/**
 * The §4.5 order object in `shape`. `executed_funds` is only in list answers: §4.5 has it in the
 * list endpoints and WebSocket but not in the newest create/get schema [C-ish], so a client must
 * not count on it there (the least kind reading).
 */
export function orderJson(
  order: Order,
  shape: OrderJsonShape,
  smpRestState: "cancel" | "prevented",
): Record<string, unknown> {
  const volumeOrder = order.volume !== null;
  const json: Record<string, unknown> = {
    uuid: order.uuid,
    side: order.side,
    ord_type: order.ordType,
  };
  if (order.price !== null) json.price = formatDec(order.price);
  Object.assign(json, {
    state: restState(order, smpRestState),
    market: order.market,
    created_at: kstTime(order.createdAtMs),
    volume: volumeOrder ? formatDec(order.volume!) : null,
    remaining_volume: volumeOrder ? formatDec(remainingVolume(order)) : null,
    reserved_fee: formatDec(order.reservedFee),
    remaining_fee: formatDec(remainingFee(order)),
    paid_fee: formatDec(order.paidFee),
    locked: formatDec(lockedOf(order)),
    executed_volume: formatDec(order.executedVolume),
    ...(shape === "list" ? { executed_funds: formatDec(order.executedFunds) } : {}),
    trades_count: order.fills.length,
    prevented_volume: formatDec(order.preventedVolume),
    prevented_locked: formatDec(preventedLocked(order)),
  });
  if (order.timeInForce !== null) json.time_in_force = order.timeInForce;
  if (order.smpType !== null) json.smp_type = order.smpType;
  if (order.identifier !== null) json.identifier = order.identifier;
  if (shape === "detail") json.trades = order.fills.map((fill) => fillJson(order, fill));
  return json;
}

/**
 * The state a REST answer gives `order`: its own, except that an order self-trade prevention
 * ended reads `cancel` when `smpRestState` (the `smp_rest_state` fault) says so.
 */
export function restState(
  order: Order,
  smpRestState: "cancel" | "prevented",
): Order["state"] {
  return order.state === "prevented" && smpRestState === "cancel" ? "cancel" : order.state;
}

/** One §4.1 account entry. */
export function accountJson(account: Account): Record<string, unknown> {
  return {
    currency: account.currency,
    balance: formatDec(account.balance),
    locked: formatDec(account.locked),
    avg_buy_price: formatDec(account.avgBuyPrice),
    avg_buy_price_modified: false,
    unit_currency: "KRW",
  };
}

/** Average fill price of an order (0 before any fill), truncated to 12 dp. */
export function avgPrice(order: Order): Dec {
  if (order.executedVolume === ZERO) return ZERO;
  return divTrunc(order.executedFunds, order.executedVolume, 12);
}
