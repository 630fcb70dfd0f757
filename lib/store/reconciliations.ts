/**
 * @module `reconciliations` and `reconciliation_findings`: every comparison of the database with
 * the exchange (when, how far back, what it saw) and what it found that a person must see.
 */
import type { Sql } from "../db/connect.ts";

/** What a finding is about (the table's CHECK lists the same). */
export type FindingKind =
  | "own_order_unrecorded"
  | "identifier_second_order"
  | "foreign_installation_order"
  | "balance_below_ledger"
  | "attempt_unresolved"
  | "closed_window_truncated";

/** One finding. */
export interface Finding {
  kind: FindingKind;
  market: string | null;
  identifier: string | null;
  uuid: string | null;
  details: Record<string, unknown>;
}

/** A stored finding. */
export interface FindingRow extends Finding {
  id: number;
  reconciliation_id: number;
  at: Date;
}

/** A reconciliation run. */
export interface ReconciliationRow {
  id: number;
  started_at: Date;
  completed_at: Date | null;
  closed_from: Date;
  closed_until: Date;
  open_orders: number;
  closed_orders: number;
  findings_count: number;
  error_msg: string | null;
}

function normalise<T extends { id: number | string }>(row: T): T {
  return { ...row, id: Number(row.id) };
}

/** Starts a run (completed_at null) and returns it. */
export async function startReconciliation(
  sql: Sql,
  o: { startedAt: Date; closedFrom: Date; closedUntil: Date },
): Promise<ReconciliationRow & { databaseStartedAt: Date }> {
  const [row] = await sql<(ReconciliationRow & { database_now: Date })[]>`
    insert into reconciliations (started_at, closed_from, closed_until)
    values (${o.startedAt}, ${o.closedFrom}, ${o.closedUntil})
    returning *, clock_timestamp() as database_now`;
  const { database_now, ...run } = row!;
  return { ...normalise(run), databaseStartedAt: database_now };
}

/** Marks run `id` completed with its counts. */
export async function completeReconciliation(
  sql: Sql,
  id: number,
  o: { openOrders: number; closedOrders: number; findings: number },
): Promise<ReconciliationRow> {
  const [row] = await sql<ReconciliationRow[]>`
    update reconciliations set completed_at = clock_timestamp(), open_orders = ${o.openOrders},
      closed_orders = ${o.closedOrders}, findings_count = ${o.findings}
    where id = ${id} returning *`;
  return normalise(row!);
}

/** Records why run `id` did not complete. */
export async function failReconciliation(sql: Sql, id: number, message: string): Promise<void> {
  await sql`update reconciliations set error_msg = ${message} where id = ${id}`;
}

/** The newest completed run, or null. */
export async function lastCompletedReconciliation(sql: Sql): Promise<ReconciliationRow | null> {
  const [row] = await sql<ReconciliationRow[]>`
    select * from reconciliations where completed_at is not null
    order by completed_at desc, id desc limit 1`;
  return row ? normalise(row) : null;
}

/** Stores `finding` under run `reconciliationId`. */
export async function insertFinding(
  sql: Sql,
  reconciliationId: number,
  finding: Finding,
): Promise<void> {
  await sql`
    insert into reconciliation_findings (reconciliation_id, kind, market, identifier, uuid, details)
    values (${reconciliationId}, ${finding.kind}, ${finding.market}, ${finding.identifier},
      ${finding.uuid}, ${sql.json(finding.details as never)})`;
}

/** The findings of run `reconciliationId` (every run when omitted), oldest first. */
export async function findingsOf(sql: Sql, reconciliationId?: number): Promise<FindingRow[]> {
  const rows = await sql<FindingRow[]>`
    select * from reconciliation_findings
    ${reconciliationId === undefined ? sql`` : sql`where reconciliation_id = ${reconciliationId}`}
    order by id`;
  return rows.map((r) => ({ ...normalise(r), reconciliation_id: Number(r.reconciliation_id) }));
}
