/**
 * @module Live sells in conflict that a person judged ours (`deno task conflict-order --ours`,
 * `lib/control/conflict_verdict.ts`): the order the executor found under the sell's identifier is
 * the sell itself, judged foreign by a check that erred (a database clock ahead of Upbit's). The
 * order-poller reads that order from Upbit by the uuid recorded when the conflict was judged and,
 * once it is final, writes its fills on the attempt, so the position ledger counts the sale and
 * the market's sells are released (view `live_orders_unsettled`). Even on a person's word the
 * order must be of the attempt's market, a sell, carry one of the attempt's identifiers and be no
 * other attempt's order; otherwise it is refused and the market stays held.
 */
import { atomically, type Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { foundOrderUuid } from "../control/conflict_verdict.ts";
import { raiseAlarm } from "../store/alarms.ts";
import {
  attemptById,
  type AttemptRow,
  identifiersOf,
  patchAttempt,
} from "../store/order_attempts.ts";
import { UpbitApiError } from "../upbit/errors.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import type { Order } from "../upbit/schemas.ts";
import {
  adoptedOrderPatch,
  FINAL_EXCHANGE_STATES,
  hintMismatch,
  LOST_ORDER_RECHECK_MS,
} from "./lost_orders.ts";

/** What one {@linkcode adoptConflictSells} did. */
export interface ConflictAdoptSummary {
  /** Verdicts whose order was asked for at Upbit in this pass. */
  checked: number;
  /** Of those, adopted (fills written, hold released). */
  adopted: number;
  /** Of those, refused (the order failed the minimal checks). */
  refused: number;
}

/**
 * Reads from Upbit the order of every conflict sell judged ours, not adopted nor refused yet,
 * first asked now or last asked `intervalMs` ago (one still open at Upbit is asked again then),
 * and adopts it once final ({@linkcode refuseVerdict} when it fails the minimal checks).
 * A failed read ends the pass; the next pass tries again.
 */
export async function adoptConflictSells(
  sql: Sql,
  rest: UpbitRest,
  log: Logger,
  o: { intervalMs?: number; nowMs?: number } = {},
): Promise<ConflictAdoptSummary> {
  const now = new Date(o.nowMs ?? Date.now());
  const due = new Date(now.getTime() - (o.intervalMs ?? LOST_ORDER_RECHECK_MS));
  const rows = await sql<{ id: string }[]>`
    select a.id from upbit_order_attempts a
    join conflict_verdicts v on v.attempt_id = a.id
    where a.mode = 'live' and a.state = 'conflict' and a.side = 'ask'
      and v.verdict = 'ours' and v.refused is null and v.adopted_at is null
      and (v.last_checked_at is null or v.last_checked_at <= ${due})
    order by coalesce(v.last_checked_at, '-infinity'), a.id`;
  const summary: ConflictAdoptSummary = { checked: 0, adopted: 0, refused: 0 };
  for (const { id: idText } of rows) {
    const a = await attemptById(sql, Number(idText));
    if (!a) continue;
    const uuid = foundOrderUuid(a);
    if (uuid === null) {
      summary.checked++;
      summary.refused++;
      await refuseVerdict(sql, log, a, null, "no order found under it is recorded");
      continue;
    }
    let order: Order | null;
    try {
      order = (await rest.getOrder({ uuid })).data;
    } catch (err) {
      if (!(err instanceof UpbitApiError)) throw err;
      // A uuid Upbit refuses to look up (400) would fail every pass: refused, like a wrong order.
      if (err.httpStatus === 400) {
        summary.checked++;
        summary.refused++;
        await refuseVerdict(sql, log, a, uuid, `Upbit refused to look it up: ${err.code}`);
        continue;
      }
      if (err.code !== "order_not_found") throw err;
      order = null;
    }
    summary.checked++;
    await sql`update conflict_verdicts set last_checked_at = ${now} where attempt_id = ${a.id}`;
    if (order === null) {
      log.warn(
        `Conflict sell ${a.identifier}: Upbit knows no order ${uuid} now; asked again at the next check, its market's sells stay held`,
        { market: a.symbol },
      );
      continue;
    }
    const mismatch = await minimalMismatch(sql, a, order);
    if (mismatch !== null) {
      summary.refused++;
      await refuseVerdict(sql, log, a, order.uuid, mismatch);
      continue;
    }
    if (!FINAL_EXCHANGE_STATES.has(order.state)) {
      log.warn(
        `Conflict sell ${a.identifier} judged ours: Upbit's order ${order.uuid} is still ${order.state}; its market's sells stay held until it is final`,
        { market: a.symbol },
      );
      continue;
    }
    // The fills and the release in one transaction: the hold is lifted only with the sale counted.
    const adopted = await atomically(sql, async (tx) => {
      const [v] = await tx`
        update conflict_verdicts set adopted_at = ${now}
        where attempt_id = ${a.id} and verdict = 'ours' and refused is null
          and adopted_at is null
        returning attempt_id`;
      if (!v) return false; // replaced or adopted meanwhile
      await patchAttempt(tx, a.id, adoptedOrderPatch(order));
      return true;
    });
    if (!adopted) continue;
    summary.adopted++;
    const message =
      `Conflict sell ${a.identifier} adopted on a person's word (uuid=${order.uuid}, ${order.state}, executed ${order.executed_volume}); its fills are now in the position ledger and ${a.symbol}'s sells are no longer held; entries stay halted until deno task resume`;
    log.warn(message, { market: a.symbol });
    await raiseAlarm(sql, {
      code: "conflict_resolved",
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
 * What an order judged ours must be even so: of the attempt's market, a sell, carrying one of its
 * identifiers, no other attempt's order. Its type, amount and creation time are not checked: one
 * of them is what made the check judge it foreign, and the person looked.
 */
async function minimalMismatch(sql: Sql, a: AttemptRow, order: Order): Promise<string | null> {
  const diffs: string[] = [];
  if (order.market !== a.symbol) diffs.push(`market ${order.market} != ${a.symbol}`);
  if (order.side !== "ask") diffs.push(`side ${order.side} != ask`);
  const more = await hintMismatch(sql, a, await identifiersOf(sql, a.id), order);
  if (more !== null) diffs.push(more);
  return diffs.length > 0 ? diffs.join(", ") : null;
}

/**
 * A conflict sell judged ours whose order is not adopted all the same: the verdict is marked
 * refused (not asked about again; a new verdict replaces it), an alarm, and the market's sells
 * stay held. No halt: the conflict already halted entries.
 */
async function refuseVerdict(
  sql: Sql,
  log: Logger,
  a: AttemptRow,
  uuid: string | null,
  why: string,
): Promise<void> {
  await sql`
    update conflict_verdicts set refused = ${why}
    where attempt_id = ${a.id} and verdict = 'ours' and adopted_at is null`;
  const message = `Conflict sell ${a.identifier} judged ours, but Upbit's order ${
    uuid ?? "(none)"
  } is not adopted (${why}); ${a.symbol}'s sells stay held: check the order at Upbit and give a verdict again`;
  log.error(message, { market: a.symbol, attempt: a.id });
  await raiseAlarm(sql, {
    code: "conflict_verdict_refused",
    market: a.symbol,
    message,
    details: { identifier: a.identifier, uuid, refused: why },
  });
}
