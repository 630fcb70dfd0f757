/**
 * @module Second orders: an order of upbot's found under an identifier an attempt used earlier,
 * while Upbit answered the attempt's create under its current identifier with another uuid. Such
 * an order is a create that landed after upbot had given its identifier up and sent the attempt
 * again under a fresh one: two orders for one attempt. It is never adopted as the attempt's (its
 * own order would then be left out of the ledger); it is reported (an alarm, entries on its market
 * halted once per order) for a person to settle. One rule here, for the executor's look-up, the lost-order
 * check and reconciliation.
 */
import { haltEntries } from "../control/trading_state.ts";
import { atomically, type Sql } from "../db/connect.ts";
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
 * counts up) and, the first time this order is told, entries on that market halted
 * ({@linkcode raiseAndHaltOnce}). Its fills are not in the ledger: a person settles it.
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
  await raiseAndHaltOnce(
    sql,
    {
      code: "identifier_second_order",
      market: attempt.symbol,
      message,
      details: { identifier: attempt.identifier, uuid: order.uuid, attempt_uuid: attempt.uuid },
    },
    order.uuid,
    { scope: attempt.symbol, reason: message, by },
  );
}

/**
 * Raises alarm `a` and halts `halt`'s scope, in one transaction, the halt only the first time
 * `incident` (e.g. the order's uuid) is told while the alarm stays active: a check that comes back
 * every minute does not overrule a person who resumed, and another incident under the same alarm
 * halts again.
 */
export async function raiseAndHaltOnce(
  sql: Sql,
  a: { code: string; market: string; message: string; details: Record<string, unknown> },
  incident: string,
  halt: { scope: string; reason: string; by: string },
): Promise<void> {
  await atomically(sql, async (tx) => {
    const [told] = await tx<{ incident: string | null }[]>`
      select details ->> 'incident' as incident from alarms
      where code = ${a.code} and coalesce(market, '') = ${a.market} and cleared_at is null
      for update`;
    await raiseAlarm(tx, { ...a, details: { ...a.details, incident } });
    if (told?.incident !== incident) await haltEntries(tx, halt);
  });
}
