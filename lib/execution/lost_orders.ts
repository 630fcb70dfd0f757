/**
 * @module Orders whose outcome is unknown after the poll limit. The order-poller moves an order
 * Upbit stops returning to `unknown`; the executor looks it up by identifier and, when Upbit knows
 * it by neither, gives it up as `failed` / `order_lost` (never re-sent: it was created once). Such
 * an order may still exist, so it is never forgotten: {@linkcode recheckLostOrders} asks Upbit
 * about it again at a slow rate until Upbit answers, and until then {@linkcode unresolvedOrders}
 * names it, the risk gate holds new entries on its market and the closer holds its side. Found
 * again and final, its fills are adopted into the ledger. A person who sees the order on Upbit's
 * site can give its uuid (`deno task lost-order`, `lib/control/lost_order_hint.ts`): it is then
 * asked for too, and adopted under the same rules and more.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { raiseAlarm } from "../store/alarms.ts";
import {
  attemptById,
  type AttemptPatch,
  type AttemptRow,
  identifiersOf,
  patchAttempt,
  sentOrderBody,
} from "../store/order_attempts.ts";
import { UpbitApiError } from "../upbit/errors.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import type { Order } from "../upbit/schemas.ts";
import { averagePrice, orderMismatch } from "./exchange_order.ts";
import { raiseAndHaltOnce, reportSecondOrder, secondOrder } from "./second_orders.ts";

/** How often a lost order is asked about again (ms). */
export const LOST_ORDER_RECHECK_MS = 60_000;

/**
 * Identifiers of live orders of `market` whose outcome is open: `unknown` (being resolved by the
 * executor) or lost and not found again yet. Entries on that market wait for them.
 */
export async function unresolvedOrders(sql: Sql, market: string): Promise<string[]> {
  const rows = await sql<{ identifier: string }[]>`
    select a.identifier from upbit_order_attempts a
    left join lost_order_checks c on c.attempt_id = a.id
    where a.mode = 'live' and a.symbol = ${market}
      and (a.state = 'unknown'
           or (a.state = 'failed' and a.reason = 'order_lost' and c.resolved_at is null))
    order by a.id`;
  return rows.map((r) => r.identifier);
}

/** What one {@linkcode recheckLostOrders} did. */
export interface RecheckSummary {
  /** Lost orders asked about in this pass. */
  checked: number;
  /** Of those, found at Upbit (no longer blocking). */
  found: number;
}

/**
 * Asks Upbit again about every lost order whose last check is older than `intervalMs`, or that a
 * person gave a uuid since its last check (first; by uuid, then by each identifier it used, then
 * by the person's uuid). One still missing is checked again later. One found is
 * adopted only if it is the order the attempt asked for ({@linkcode orderMismatch}) and final: its
 * fills are written on the attempt, so the position ledger counts them (a lost buy that filled is
 * then an obligation the closer works on; a lost sell that filled is not sold again), and it is
 * resolved with an alarm. One found still open at Upbit stays unresolved (its market held) until
 * it is final. One that is not the order asked for is never adopted: an `identifier_conflict`
 * alarm, entries halted, the market held, as the executor does for an unknown order. An order
 * found only by a person's uuid must also carry one of the attempt's identifiers and be no other
 * attempt's order; one that is not the order asked for is refused ({@linkcode refuseHint}:
 * an alarm, no halt) and that uuid is not asked for again. A failed read ends the pass; the next
 * pass tries again.
 */
export async function recheckLostOrders(
  sql: Sql,
  rest: UpbitRest,
  log: Logger,
  o: { intervalMs?: number; nowMs?: number } = {},
): Promise<RecheckSummary> {
  const now = new Date(o.nowMs ?? Date.now());
  const due = new Date(now.getTime() - (o.intervalMs ?? LOST_ORDER_RECHECK_MS));
  const lost = await sql<{ id: string; hint: string | null }[]>`
    select a.id, case when c.operator_hint_refused is null then c.operator_uuid end as hint
    from upbit_order_attempts a
    left join lost_order_checks c on c.attempt_id = a.id
    where a.mode = 'live' and a.state = 'failed' and a.reason = 'order_lost'
      and c.resolved_at is null
      and (c.last_checked_at is null or c.last_checked_at <= ${due})
    order by coalesce(c.last_checked_at, '-infinity'), a.id`;
  const summary: RecheckSummary = { checked: 0, found: 0 };
  for (const { id: idText, hint } of lost) {
    const id = Number(idText);
    const a = await attemptById(sql, id);
    if (!a) continue;
    const identifiers = await identifiersOf(sql, id);
    // An order under an earlier identifier that is not this one's (a second order) is reported,
    // never adopted, and the look-up goes on to the attempt's own identifier.
    const seconds: { order: Order; why: string }[] = [];
    let order = await lookUp(rest, a.uuid, identifiers, (found, under) => {
      const why = secondOrder(a, found, under);
      if (why) seconds.push({ order: found, why });
      return why === null;
    });
    for (const s of seconds) await reportSecondOrder(sql, log, a, s.order, s.why, "order_poller");
    // The person's uuid is asked for only when Upbit shows nothing under upbot's own references:
    // those are upbot's own evidence, the hint is a person's reading of a web page.
    const byHint = order === null && hint !== null && hint !== a.uuid;
    if (byHint) {
      try {
        order = await lookUp(rest, hint, []);
      } catch (err) {
        // A uuid Upbit refuses to look up (400) would fail every pass, and the other lost orders
        // queued behind this one would never be checked: refused like a wrong order.
        if (!(err instanceof UpbitApiError && err.httpStatus === 400)) throw err;
        summary.checked++;
        await recordCheck(sql, id, now, null);
        await refuseHint(sql, log, a, hint, `Upbit refused to look it up: ${err.code}`);
        continue;
      }
      if (!order) {
        log.warn(
          `Lost order ${a.identifier}: Upbit knows no order ${hint} (the uuid a person gave); asked again at the next check`,
          { market: a.symbol },
        );
      }
    }
    summary.checked++;
    const mismatch = order
      ? joinMismatches(
        orderMismatch(sentOrderBody(a), order, a.ts),
        byHint ? await hintMismatch(sql, a, identifiers, order) : null,
      )
      : null;
    if (!order || mismatch !== null || !FINAL_EXCHANGE_STATES.has(order.state)) {
      await recordCheck(sql, id, now, null);
      if (order && mismatch !== null) {
        if (byHint) await refuseHint(sql, log, a, order.uuid, mismatch);
        else await refuseForeignOrder(sql, log, a, order, mismatch);
      } else if (order) {
        log.warn(
          `Lost order ${a.identifier} found at Upbit still ${order.state} (uuid=${order.uuid}); its market stays held until it is final`,
          { market: a.symbol },
        );
      }
      continue;
    }
    summary.found++;
    // Fills first, then resolved: a crash between the two finds it again and writes the same.
    await patchAttempt(sql, id, adoptedOrderPatch(order));
    await recordCheck(sql, id, now, order);
    const message = `Lost order ${a.identifier} found at Upbit again${
      byHint ? " by the uuid a person gave" : ""
    } (uuid=${order.uuid}, ${order.state}, executed ${order.executed_volume}); its fills are now in the position ledger`;
    log.error(message, { market: a.symbol });
    await raiseAlarm(sql, {
      code: "lost_order_found",
      market: a.symbol,
      message,
      details: {
        identifier: a.identifier,
        uuid: order.uuid,
        state: order.state,
        executed_volume: order.executed_volume,
      },
    });
  }
  return summary;
}

/**
 * What adopting `order` (final) writes on its attempt: its uuid and fills, which the position
 * ledger counts whatever the attempt's state.
 */
export function adoptedOrderPatch(order: Order): AttemptPatch {
  return {
    uuid: order.uuid,
    final_state: order.state as "done" | "cancel" | "prevented",
    executed_volume: order.executed_volume,
    paid_fee: order.paid_fee,
    avg_price: averagePrice(order),
    response_json: order,
  };
}

/** Upbit order states after which nothing more fills (§4.5). */
export const FINAL_EXCHANGE_STATES: ReadonlySet<string> = new Set(["done", "cancel", "prevented"]);

/** Both mismatch texts as one, or null when neither says anything. */
function joinMismatches(...texts: (string | null)[]): string | null {
  const all = texts.filter((t): t is string => t !== null);
  return all.length > 0 ? all.join(", ") : null;
}

/**
 * What else an order adopted on a person's word must be, beyond {@linkcode orderMismatch} (an
 * order found only by a person's uuid here; a conflict sell judged ours in `conflict_orders.ts`):
 * one of upbot's orders carries the identifier it was sent with (an order without one was made by
 * hand, on the site or by another program), and it is no other attempt's order (adopting that
 * would count its fills twice).
 */
export async function hintMismatch(
  sql: Sql,
  a: AttemptRow,
  identifiers: readonly string[],
  order: Order,
): Promise<string | null> {
  const diffs: string[] = [];
  const own = new Set([...identifiers, a.identifier]);
  if (!order.identifier) diffs.push("identifier none, not one of upbot's");
  else if (!own.has(order.identifier)) {
    diffs.push(`identifier ${order.identifier} != ${[...own].join(" or ")}`);
  }
  const [other] = await sql<{ identifier: string }[]>`
    select identifier from upbit_order_attempts where uuid = ${order.uuid} and id <> ${a.id}
    limit 1`;
  if (other) diffs.push(`uuid ${order.uuid} is upbot's order ${other.identifier}`);
  return diffs.length > 0 ? diffs.join(", ") : null;
}

/** Counts one check of lost attempt `id`; `found` (a final order adopted) resolves it. */
async function recordCheck(sql: Sql, id: number, now: Date, found: Order | null): Promise<void> {
  const resolvedAt = found ? now : null;
  const state = found?.state ?? null;
  const details = found ? sql.json(found as never) : null;
  await sql`
    insert into lost_order_checks (attempt_id, checks, last_checked_at, resolved_at,
      exchange_state, details)
    values (${id}, 1, ${now}, ${resolvedAt}, ${state}, ${details})
    on conflict (attempt_id) do update set checks = lost_order_checks.checks + 1,
      last_checked_at = excluded.last_checked_at, resolved_at = excluded.resolved_at,
      exchange_state = excluded.exchange_state, details = excluded.details`;
}

/** An order under a lost attempt's uuid or identifier that it did not ask for: never adopted. */
async function refuseForeignOrder(
  sql: Sql,
  log: Logger,
  a: AttemptRow,
  order: Order,
  mismatch: string,
): Promise<void> {
  const message =
    `Lost order ${a.identifier}: Upbit's order ${order.uuid} under it is not the one upbot asked for (${mismatch}); not adopted, its market stays held and entries are halted`;
  log.error(message, { market: a.symbol, attempt: a.id });
  // Halted once per order: the check comes back every minute, and a person who resumed has seen it.
  await raiseAndHaltOnce(
    sql,
    {
      code: "identifier_conflict",
      market: a.symbol,
      message,
      details: { identifier: a.identifier, uuid: order.uuid, mismatch },
    },
    order.uuid,
    { scope: "global", reason: `identifier conflict on ${a.identifier}`, by: "order_poller" },
  );
}

/**
 * A person's uuid that names an order other than the lost one (or that Upbit refuses to look up):
 * never adopted, an alarm, and that uuid is not asked for again (what it names cannot change; a
 * new hint replaces it). No halt: the
 * lost order already holds its market (entries wait, the closer holds its side) until the right
 * order is found, and a mistyped or misread uuid says nothing about anyone else using upbot's
 * identifiers, so halting every market (as a conflict under upbot's own identifier does) would
 * stop trading where nothing is wrong.
 */
async function refuseHint(
  sql: Sql,
  log: Logger,
  a: AttemptRow,
  uuid: string,
  mismatch: string,
): Promise<void> {
  // Only the hint that was checked: a newer one given meanwhile is checked on its own.
  await sql`
    update lost_order_checks set operator_hint_refused = ${mismatch}
    where attempt_id = ${a.id} and operator_uuid = ${uuid}`;
  const message =
    `Lost order ${a.identifier}: the uuid a person gave, ${uuid}, is not the order upbot asked for (${mismatch}); not adopted, its market stays held until the lost order is found`;
  log.error(message, { market: a.symbol, attempt: a.id });
  await raiseAlarm(sql, {
    code: "lost_order_hint_refused",
    market: a.symbol,
    message,
    details: { identifier: a.identifier, uuid, mismatch },
  });
}

/**
 * The order by uuid, else by any of its identifiers, or null when Upbit knows none of them. An
 * order found under an identifier that `accept` turns down is passed over (the next reference is
 * asked).
 */
async function lookUp(
  rest: UpbitRest,
  uuid: string | null,
  identifiers: string[],
  accept: (order: Order, foundUnder: string | null) => boolean = () => true,
): Promise<Order | null> {
  const refs: ({ uuid: string } | { identifier: string })[] = [
    ...(uuid ? [{ uuid }] : []),
    ...identifiers.map((identifier) => ({ identifier })),
  ];
  for (const ref of refs) {
    try {
      const order = (await rest.getOrder(ref)).data;
      if (accept(order, "identifier" in ref ? ref.identifier : null)) return order;
    } catch (err) {
      if (!(err instanceof UpbitApiError && err.code === "order_not_found")) throw err;
    }
  }
  return null;
}
