/**
 * @module Second orders: an order of upbot's found under an identifier an attempt used earlier,
 * while Upbit answered the attempt's create under its current identifier with another uuid. Such
 * an order is a create that landed after upbot had given its identifier up and sent the attempt
 * again under a fresh one: two orders for one attempt. It is never adopted as the attempt's (its
 * own order would then be left out of the ledger); it is reported (an alarm, entries on its market
 * halted once) for a person to settle. One rule here, for the executor's look-up, the lost-order
 * check and reconciliation.
 */
import { haltEntries } from "../control/trading_state.ts";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { raiseAlarm } from "../store/alarms.ts";
import type { Order } from "../upbit/schemas.ts";

/** What the rule reads of an attempt. */
export interface AttemptRef {
  identifier: string;
  uuid: string | null;
  symbol: string;
}

/**
 * Why `order`, found under `foundUnder` (one of `attempt`'s identifiers; null: found by uuid), is
 * a second order and not the attempt's own, or null when it may be the attempt's (then
 * `orderMismatch` judges it). The attempt's uuid is Upbit's answer to the create under its
 * current identifier (identifiers rotate only while no uuid is known), so an order under an
 * earlier identifier with another uuid is another create.
 *
 * @example
 * ```ts ignore
 * const why = secondOrder(attempt, order, "paper-abcdefgh-12-EXIT_LONG");
 * if (why) await reportSecondOrder(sql, log, attempt, order, why, "executor");
 * ```
 */
export function secondOrder(
  attempt: Pick<AttemptRef, "identifier" | "uuid">,
  order: Pick<Order, "uuid">,
  foundUnder: string | null,
): string | null {
  if (attempt.uuid === null || order.uuid === attempt.uuid) return null;
  if (foundUnder === null || foundUnder === attempt.identifier) return null;
  return `order ${order.uuid} under ${foundUnder} is not the attempt's ${attempt.uuid} (${attempt.identifier}): a second order, a create that landed after its identifier was given up`;
}

/**
 * Reports a second order: the alarm `identifier_second_order` on its market (raised again, it
 * counts up) and, the first time only, entries on that market halted (a person who resumed is
 * not overruled at the next look-up). Its fills are not in the ledger: a person settles it.
 */
export async function reportSecondOrder(
  sql: Sql,
  log: Logger,
  attempt: AttemptRef,
  order: Pick<Order, "uuid" | "side" | "state" | "executed_volume">,
  why: string,
  by: string,
): Promise<void> {
  const message =
    `${why}; ${order.side} ${order.state}, executed ${order.executed_volume}: not in the ledger and never adopted, entries on ${attempt.symbol} halted, check it in Upbit's order history`;
  log.error(message, { market: attempt.symbol, uuid: order.uuid });
  const alarm = await raiseAlarm(sql, {
    code: "identifier_second_order",
    market: attempt.symbol,
    message,
    details: { identifier: attempt.identifier, uuid: order.uuid, attempt_uuid: attempt.uuid },
  });
  if (alarm.count === 1) {
    await haltEntries(sql, { scope: attempt.symbol, reason: message, by });
  }
}
