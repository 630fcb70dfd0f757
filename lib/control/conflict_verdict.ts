/**
 * @module `deno task conflict-order`: a person's verdict on a live sell in conflict (an order
 * Upbit holds under its identifier failed `orderMismatch`, `identifier_conflict`). Such a sell
 * holds its market's sells (view `live_orders_unsettled`) because the order found may be the sell
 * itself. After checking Upbit, a person says which it is:
 *
 * - `not-ours`: the order is not the sell (it never executed; the coins are still on the account):
 *   the hold is released now and the closer sells the position again, under a new identifier.
 * - `ours`: the order is the sell: the order-poller reads it from Upbit and adopts its fills once
 *   final, after the minimal checks (`lib/execution/conflict_orders.ts`); the hold is released
 *   only then. Nothing is adopted here.
 *
 * Neither lifts the halt the conflict stored: a person resumes entries on their own.
 */
import { z } from "zod";
import type { Sql } from "../db/connect.ts";
import { attemptNamed, type NamedAttempt, ORDER_UUID } from "./lost_order_hint.ts";

/** What a person found at Upbit: the order under the identifier is the sell, or is not. */
export type ConflictVerdict = "ours" | "not-ours";

/** The verdicts, as the command and the table `conflict_verdicts` spell them. */
export const CONFLICT_VERDICTS = ["ours", "not-ours"] as const satisfies readonly ConflictVerdict[];

/** Thrown when a verdict names no undecided live sell in conflict; the message is the sentence. */
export class ConflictVerdictRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConflictVerdictRefusedError";
  }
}

/** What {@linkcode recordConflictVerdict} stored. */
export interface StoredConflictVerdict {
  attemptId: number;
  market: string;
  /** The attempt's identifier now (the one given may be an earlier one of the same attempt). */
  identifier: string;
  verdict: ConflictVerdict;
  /** The uuid of the order found under the identifier (the attempt's `response_json`), if any. */
  foundUuid: string | null;
}

/**
 * Stores `verdict` by `by` for the live sell in conflict that used `identifier`. A verdict whose
 * `ours` was refused by the order-poller may be replaced; any other is final.
 *
 * @throws {ConflictVerdictRefusedError} when `identifier` names no order, not a live one, not a
 *   sell, not one in conflict, or one already decided (nothing stored).
 */
export async function recordConflictVerdict(
  sql: Sql,
  o: { identifier: string; verdict: ConflictVerdict; by: string; now?: Date },
): Promise<StoredConflictVerdict> {
  const refuse = (why: string) => new ConflictVerdictRefusedError(`conflict-order refused: ${why}`);
  const a = await attemptNamed(sql, o.identifier);
  if (!a) throw refuse(`upbot has no order with the identifier ${o.identifier}`);
  if (a.mode !== "live") {
    throw refuse(`${o.identifier} is a ${a.mode} order, never sent to Upbit as a real order`);
  }
  if (a.side !== "ask") {
    throw refuse(
      `${o.identifier} is a buy; only a sell in conflict holds its market and takes a verdict`,
    );
  }
  if (a.state !== "conflict") {
    throw refuse(
      `${o.identifier} is not in conflict (its state is ${a.state}${
        a.reason ? ` / ${a.reason}` : ""
      }); only a sell upbot judged an identifier conflict takes a verdict`,
    );
  }
  const now = o.now ?? new Date();
  // Only a refused `ours` is replaced: a stored verdict has been acted on (a released hold may
  // have been sold again; an `ours` may be adopted at any pass).
  const [stored] = await sql<{ attempt_id: string }[]>`
    insert into conflict_verdicts (attempt_id, verdict, decided_by, decided_at)
    values (${a.id}, ${o.verdict}, ${o.by}, ${now})
    on conflict (attempt_id) do update set verdict = excluded.verdict,
      decided_by = excluded.decided_by, decided_at = excluded.decided_at, last_checked_at = null,
      refused = null
    where conflict_verdicts.refused is not null
    returning attempt_id`;
  if (!stored) {
    const [v] = await sql<{ verdict: string; decided_by: string; decided_at: Date }[]>`
      select verdict, decided_by, decided_at from conflict_verdicts where attempt_id = ${a.id}`;
    throw refuse(
      `${o.identifier} was already decided ${v?.verdict} by ${v?.decided_by} at ${v?.decided_at.toISOString()}; nothing to do`,
    );
  }
  return {
    attemptId: a.id,
    market: a.symbol,
    identifier: a.identifier,
    verdict: o.verdict,
    foundUuid: foundOrderUuid(a),
  };
}

/** The part of the order found under a conflict's identifier that a verdict needs. */
const FoundOrder = z.object({ uuid: z.string().regex(ORDER_UUID) });

/**
 * The uuid of the order the executor found under a conflict's identifier (stored in the attempt's
 * `response_json` when it judged the conflict), or null when none is recorded.
 */
export function foundOrderUuid(a: Pick<NamedAttempt, "response_json">): string | null {
  let json = a.response_json;
  if (typeof json === "string") {
    try {
      json = JSON.parse(json);
    } catch {
      return null;
    }
  }
  const parsed = FoundOrder.safeParse(json);
  return parsed.success ? parsed.data.uuid : null;
}
