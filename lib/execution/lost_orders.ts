/**
 * @module Orders whose outcome is unknown after the poll limit. The order-poller moves an order
 * Upbit stops returning to `unknown`; the executor looks it up by identifier and, when Upbit knows
 * it by neither, gives it up as `failed` / `order_lost` (never re-sent: it was created once). Such
 * an order may still exist, so it is never forgotten: {@linkcode recheckLostOrders} asks Upbit
 * about it again at a slow rate until Upbit answers, and until then {@linkcode unresolvedOrders}
 * names it and the risk gate holds new entries on its market.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { raiseAlarm } from "../store/alarms.ts";
import { identifiersOf } from "../store/order_attempts.ts";
import { UpbitApiError } from "../upbit/errors.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import type { Order } from "../upbit/schemas.ts";

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
 * Asks Upbit again about every lost order whose last check is older than `intervalMs` (by uuid,
 * then by each identifier it used). One found is recorded with Upbit's view of it and an alarm
 * (its fills, if any, are not in the ledger: a person decides); one still missing is checked again
 * later. A failed read ends the pass; the next pass tries again.
 */
export async function recheckLostOrders(
  sql: Sql,
  rest: UpbitRest,
  log: Logger,
  o: { intervalMs?: number; nowMs?: number } = {},
): Promise<RecheckSummary> {
  const now = new Date(o.nowMs ?? Date.now());
  const due = new Date(now.getTime() - (o.intervalMs ?? LOST_ORDER_RECHECK_MS));
  const lost = await sql<{ id: string; identifier: string; uuid: string | null; symbol: string }[]>`
    select a.id, a.identifier, a.uuid, a.symbol from upbit_order_attempts a
    left join lost_order_checks c on c.attempt_id = a.id
    where a.mode = 'live' and a.state = 'failed' and a.reason = 'order_lost'
      and c.resolved_at is null and (c.last_checked_at is null or c.last_checked_at <= ${due})
    order by coalesce(c.last_checked_at, '-infinity'), a.id`;
  const summary: RecheckSummary = { checked: 0, found: 0 };
  for (const a of lost) {
    const id = Number(a.id);
    const order = await lookUp(rest, a.uuid, await identifiersOf(sql, id));
    summary.checked++;
    if (!order) {
      await sql`
        insert into lost_order_checks (attempt_id, checks, last_checked_at)
        values (${id}, 1, ${now})
        on conflict (attempt_id) do update set checks = lost_order_checks.checks + 1,
          last_checked_at = excluded.last_checked_at`;
      continue;
    }
    summary.found++;
    await sql`
      insert into lost_order_checks (attempt_id, checks, last_checked_at, resolved_at,
        exchange_state, details)
      values (${id}, 1, ${now}, ${now}, ${order.state}, ${sql.json(order as never)})
      on conflict (attempt_id) do update set checks = lost_order_checks.checks + 1,
        last_checked_at = excluded.last_checked_at, resolved_at = excluded.resolved_at,
        exchange_state = excluded.exchange_state, details = excluded.details`;
    const message =
      `Lost order ${a.identifier} found at Upbit again (uuid=${order.uuid}, ${order.state}, executed ${order.executed_volume}); its fills are not in the ledger: check the account`;
    log.error(message, { market: a.symbol });
    await raiseAlarm(sql, {
      code: "lost_order_found",
      market: a.symbol,
      message,
      details: { identifier: a.identifier, uuid: order.uuid, state: order.state },
    });
  }
  return summary;
}

/** The order by uuid, else by any of its identifiers, or null when Upbit knows none of them. */
async function lookUp(
  rest: UpbitRest,
  uuid: string | null,
  identifiers: string[],
): Promise<Order | null> {
  const refs = [
    ...(uuid ? [{ uuid }] : []),
    ...identifiers.map((identifier) => ({ identifier })),
  ];
  for (const ref of refs) {
    try {
      return (await rest.getOrder(ref)).data;
    } catch (err) {
      if (!(err instanceof UpbitApiError && err.code === "order_not_found")) throw err;
    }
  }
  return null;
}
