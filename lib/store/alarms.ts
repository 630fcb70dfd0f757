/**
 * @module `alarms`: conditions a person must see and act on (an exit that keeps failing, an
 * identifier conflict, a position sold by hand). At most one alarm per (code, market) is active;
 * raising it again counts it up. Cleared alarms stay in the table as the record.
 *
 * These functions only store: the caller logs (at the level it judges) and the status JSON reads
 * `activeAlarms`.
 */
import type { Sql } from "../db/connect.ts";

/** One alarm, active (`cleared_at` null) or cleared. */
export interface AlarmRow {
  id: number;
  /** Machine-readable kind, e.g. "exit_failing", "identifier_conflict". */
  code: string;
  /** The market it concerns, or null for the whole installation. */
  market: string | null;
  /** The newest human sentence. */
  message: string;
  /** The newest structured details (JSON), or null. */
  details: unknown;
  /** How many times it was raised while active. */
  count: number;
  first_at: Date;
  last_at: Date;
  cleared_at: Date | null;
}

/**
 * Raises (or re-raises: count+1, last_at, message updated) the active alarm (code, market); logs
 * nothing itself.
 *
 * @example
 * ```ts ignore
 * await raiseAlarm(sql, { code: "exit_failing", market: "KRW-BTC", message: "sell refused" });
 * ```
 * @throws {Error} for an empty code or message.
 */
export async function raiseAlarm(
  sql: Sql,
  a: { code: string; market?: string | null; message: string; details?: unknown },
): Promise<AlarmRow> {
  if (a.code.trim() === "") throw new Error("an alarm's code must not be empty");
  if (a.message.trim() === "") throw new Error("an alarm's message must not be empty");
  const details = a.details === undefined || a.details === null
    ? null
    : sql.json(a.details as never);
  const [row] = await sql<AlarmRow[]>`
    insert into alarms (code, market, message, details)
    values (${a.code}, ${a.market ?? null}, ${a.message}, ${details})
    on conflict (code, (coalesce(market, ''))) where cleared_at is null do update set
      count = alarms.count + 1,
      last_at = now(),
      message = excluded.message,
      details = excluded.details
    returning *`;
  return row!;
}

/** Clears the active alarm (code, market), if any, and returns how many it cleared (0 or 1); the row stays as the record. */
export async function clearAlarm(
  sql: Sql,
  code: string,
  market?: string | null,
): Promise<number> {
  const rows = await sql`
    update alarms set cleared_at = now()
    where cleared_at is null and code = ${code}
      and coalesce(market, '') = ${market ?? ""}
    returning id`;
  return rows.length;
}

/** Every active alarm, oldest first. */
export async function activeAlarms(sql: Sql): Promise<AlarmRow[]> {
  const rows = await sql<AlarmRow[]>`
    select * from alarms where cleared_at is null order by first_at, id`;
  return [...rows];
}
