/**
 * @module `deno task lost-order`: a person tells upbot the uuid of a lost order (one upbot gave up
 * as `failed` / `order_lost`) that they saw on Upbit's site. The hint is only stored, and the lost
 * order made due for its next check: the slow re-check (`lib/execution/lost_orders.ts`) asks
 * Upbit for that uuid and adopts the order only when it is the order upbot asked for and final.
 * Nothing is adopted here.
 */
import type { Sql } from "../db/connect.ts";

/**
 * An identifier as upbot makes them (`lib/execution/identifiers.ts`):
 * `paper-{installation}-{paper_trade_id}-{action}` or `paper-{installation}-close-{n}`, with
 * `-r{n}` after a fresh identifier.
 */
export const UPBOT_IDENTIFIER = /^paper-[a-z0-9]+-(?:\d+-[A-Z][A-Z_]*|close-\d+)(?:-r\d+)?$/;

/** An order uuid as Upbit writes them (lowercase hex, 8-4-4-4-12). */
export const ORDER_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a control command reads of the order attempt it names. */
export interface NamedAttempt {
  id: number;
  symbol: string;
  mode: string;
  side: string;
  state: string;
  reason: string | null;
  uuid: string | null;
  /** The identifier in use now. */
  identifier: string;
  /** Upbit's answer, or the order found under its identifier (a conflict's). */
  response_json: unknown;
}

/**
 * The attempt that ever used `identifier` (current or earlier), or null. Read here rather than
 * through `lib/store/` (control sits beside the store, not above it: docs/architecture.md).
 */
export async function attemptNamed(sql: Sql, identifier: string): Promise<NamedAttempt | null> {
  const [row] = await sql<NamedAttempt[]>`
    select a.id, a.symbol, a.mode, a.side, a.state, a.reason, a.uuid, a.identifier,
      a.response_json
    from upbit_order_attempts a
    left join upbit_order_identifiers i on i.attempt_id = a.id and i.identifier = ${identifier}
    where a.identifier = ${identifier} or i.identifier is not null
    limit 1`;
  return row ? { ...row, id: Number(row.id) } : null;
}

/** Thrown when a hint names no lost, unresolved live order; the message is the sentence to show. */
export class LostOrderHintRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LostOrderHintRefusedError";
  }
}

/** What {@linkcode recordLostOrderHint} stored. */
export interface LostOrderHint {
  attemptId: number;
  market: string;
  side: string;
  /** The attempt's identifier now (the one given may be an earlier one of the same attempt). */
  identifier: string;
  uuid: string;
}

/**
 * Stores `uuid` as a person's hint for the lost order that used `identifier` and makes it due for
 * a check now (the order-poller's next pass). A newer hint replaces an older one, and clears the
 * older one's refusal.
 *
 * @throws {LostOrderHintRefusedError} when `identifier` names no live order, one that is not lost,
 *   one already found again, or when `uuid` is already another order's (nothing stored).
 */
export async function recordLostOrderHint(
  sql: Sql,
  o: { identifier: string; uuid: string; now?: Date },
): Promise<LostOrderHint> {
  const a = await attemptNamed(sql, o.identifier);
  if (!a) {
    throw new LostOrderHintRefusedError(
      `lost-order refused: upbot has no order with the identifier ${o.identifier}`,
    );
  }
  if (a.mode !== "live") {
    throw new LostOrderHintRefusedError(
      `lost-order refused: ${o.identifier} is a ${a.mode} order, never sent to Upbit as a real order`,
    );
  }
  if (!(a.state === "failed" && a.reason === "order_lost")) {
    throw new LostOrderHintRefusedError(
      `lost-order refused: ${o.identifier} is not a lost order (its state is ${a.state}${
        a.reason ? ` / ${a.reason}` : ""
      }); only an order upbot gave up as failed / order_lost takes a uuid`,
    );
  }
  const [check] = await sql<{ resolved_at: Date | null }[]>`
    select resolved_at from lost_order_checks where attempt_id = ${a.id} for update`;
  if (check?.resolved_at) {
    throw new LostOrderHintRefusedError(
      `lost-order refused: ${o.identifier} was already found at Upbit (uuid=${a.uuid}) at ${check.resolved_at.toISOString()}; nothing to do`,
    );
  }
  if (a.uuid !== null && a.uuid !== o.uuid) {
    // Upbit's own answer gave this order its uuid: another uuid is another order.
    throw new LostOrderHintRefusedError(
      `lost-order refused: Upbit gave ${o.identifier} the uuid ${a.uuid} when it was created; ${o.uuid} is another order`,
    );
  }
  const [other] = await sql<{ identifier: string }[]>`
    select identifier from upbit_order_attempts where uuid = ${o.uuid} and id <> ${a.id} limit 1`;
  if (other) {
    throw new LostOrderHintRefusedError(
      `lost-order refused: ${o.uuid} is the uuid of upbot's order ${other.identifier}, not of ${o.identifier}`,
    );
  }
  const now = o.now ?? new Date();
  // No last check: due at the order-poller's next pass, first in line, whatever the clocks of the
  // process that checks and of this one say.
  await sql`
    insert into lost_order_checks (attempt_id, operator_uuid, operator_hint_at)
    values (${a.id}, ${o.uuid}, ${now})
    on conflict (attempt_id) do update set operator_uuid = excluded.operator_uuid,
      operator_hint_at = excluded.operator_hint_at, operator_hint_refused = null,
      last_checked_at = null`;
  return {
    attemptId: a.id,
    market: a.symbol,
    side: a.side,
    identifier: a.identifier,
    uuid: o.uuid,
  };
}
