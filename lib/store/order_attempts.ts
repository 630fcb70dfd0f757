/**
 * @module `upbit_order_attempts` and `upbit_order_snapshots`: every order the executor decided on,
 * keyed by its identifier `paper-{paper_trade_id}-{action}`, and every observed state of a live
 * order. The attempt row is written before any request goes out.
 */
import type { Sql } from "../db.ts";

/** Status of an attempt. `pending` = written, no answer yet; `unknown` = the answer was lost. */
export type AttemptStatus =
  | "pending"
  | "logged"
  | "test_ok"
  | "submitted"
  | "done"
  | "error"
  | "unknown"
  | "skipped";

/** An attempt row. Amounts are decimal strings. */
export interface AttemptRow {
  id: number;
  ts: Date;
  symbol: string;
  action: "ENTER_LONG" | "EXIT_LONG";
  mode: "shadow" | "test" | "live";
  side: "bid" | "ask";
  ord_type: "price" | "market" | "limit" | "best";
  price: string | null;
  volume: string | null;
  paper_trade_id: number | null;
  response_json: unknown;
  status: AttemptStatus;
  error_msg: string | null;
  uuid: string | null;
  identifier: string;
  request_json: Record<string, string> | null;
  http_status: number | null;
  latency_ms: number | null;
  remaining_req: string | null;
  retry_count: number;
  final_state: "done" | "cancel" | null;
  executed_volume: string | null;
  paid_fee: string | null;
  avg_price: string | null;
  poll_count: number;
  updated_at: Date;
}

/** `retry_count` of an attempt that must never be sent again (int4 maximum). */
export const NEVER_RETRY = 2_147_483_647;

/** Fields of a new attempt. */
export interface NewAttempt {
  symbol: string;
  action: "ENTER_LONG" | "EXIT_LONG";
  mode: "shadow" | "test" | "live";
  side: "bid" | "ask";
  ord_type: "price" | "market";
  price: string | null;
  volume: string | null;
  paper_trade_id: number;
  identifier: string;
  status: AttemptStatus;
  /** The order body exactly as sent (never auth material). */
  request_json: Record<string, string>;
  error_msg?: string | null;
}

/** Fields an update may set. */
export type AttemptPatch =
  & Partial<
    Pick<
      AttemptRow,
      | "status"
      | "error_msg"
      | "uuid"
      | "http_status"
      | "latency_ms"
      | "remaining_req"
      | "retry_count"
      | "final_state"
      | "executed_volume"
      | "paid_fee"
      | "avg_price"
      | "poll_count"
    >
  >
  & { response_json?: unknown };

function normalise(row: AttemptRow): AttemptRow {
  return {
    ...row,
    id: Number(row.id),
    paper_trade_id: row.paper_trade_id === null ? null : Number(row.paper_trade_id),
  };
}

/** The attempt with `identifier`, or null. */
export async function attemptByIdentifier(
  sql: Sql,
  identifier: string,
): Promise<AttemptRow | null> {
  const [row] = await sql<AttemptRow[]>`
    select * from upbit_order_attempts where identifier = ${identifier}`;
  return row ? normalise(row) : null;
}

/**
 * Inserts a new attempt and returns it, or null when the identifier already exists (the unique
 * constraint is the last line of defence against two orders for one paper trade).
 */
export async function insertAttempt(sql: Sql, a: NewAttempt): Promise<AttemptRow | null> {
  const rows = await sql<AttemptRow[]>`
    insert into upbit_order_attempts (symbol, action, mode, side, ord_type, price, volume,
      paper_trade_id, identifier, status, request_json, error_msg)
    values (${a.symbol}, ${a.action}, ${a.mode}, ${a.side}, ${a.ord_type}, ${a.price},
      ${a.volume}, ${a.paper_trade_id}, ${a.identifier}, ${a.status},
      ${sql.json(a.request_json)}, ${a.error_msg ?? null})
    on conflict (identifier) do nothing
    returning *`;
  return rows[0] ? normalise(rows[0]) : null;
}

/** Updates attempt `id` with `patch` and returns the new row. */
export async function updateAttempt(
  sql: Sql,
  id: number,
  patch: AttemptPatch,
): Promise<AttemptRow> {
  const { response_json, ...rest } = patch;
  const values: Record<string, unknown> = { ...rest, updated_at: new Date() };
  if (response_json !== undefined) values.response_json = sql.json(response_json as never);
  const [row] = await sql<AttemptRow[]>`
    update upbit_order_attempts set ${sql(values)} where id = ${id} returning *`;
  if (!row) throw new Error(`attempt ${id} does not exist`);
  return normalise(row);
}

/** Attempts of `mode` whose outcome must be found out (`pending` or `unknown`), oldest first. */
export async function unresolvedAttempts(sql: Sql, mode: string): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select * from upbit_order_attempts
    where mode = ${mode} and status in ('pending', 'unknown') order by id`;
  return rows.map(normalise);
}

/** Attempts of `mode` that ended in error and may be retried, oldest first. */
export async function retriableAttempts(
  sql: Sql,
  mode: string,
  maxRetries: number,
): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select * from upbit_order_attempts
    where mode = ${mode} and status = 'error' and retry_count < ${maxRetries} order by id`;
  return rows.map(normalise);
}

/** Live attempts submitted to Upbit and not final yet: what the order-poller tracks. */
export async function openLiveAttempts(sql: Sql): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select * from upbit_order_attempts
    where mode = 'live' and status = 'submitted' and final_state is null and uuid is not null
    order by id`;
  return rows.map(normalise);
}

/**
 * How many exchange orders (test or live) were first attempted since `since`. Counted by creation
 * time: the order-poller's updates of open orders must not eat the executor's budget.
 */
export async function exchangeAttemptsSince(sql: Sql, since: Date): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n from upbit_order_attempts
    where mode in ('test', 'live') and status not in ('skipped', 'logged') and ts > ${since}`;
  return row?.n ?? 0;
}

/** One observed state of a live order. */
export interface OrderSnapshot {
  ts: Date;
  symbol: string;
  uuid: string;
  state: string;
  side: string;
  ord_type: string;
  price: string | null;
  volume: string | null;
  remaining_volume: string | null;
  executed_volume: string | null;
  paid_fee: string | null;
  raw_json: unknown;
}

/** Stores a snapshot; a second one for the same (uuid, ts) is ignored. */
export async function insertSnapshot(sql: Sql, s: OrderSnapshot): Promise<void> {
  await sql`
    insert into upbit_order_snapshots (ts, symbol, uuid, state, side, ord_type, price, volume,
      remaining_volume, executed_volume, paid_fee, raw_json)
    values (${s.ts}, ${s.symbol}, ${s.uuid}, ${s.state}, ${s.side}, ${s.ord_type}, ${s.price},
      ${s.volume}, ${s.remaining_volume}, ${s.executed_volume}, ${s.paid_fee},
      ${sql.json(s.raw_json as never)})
    on conflict (uuid, ts) do nothing`;
}

/**
 * Live entries that bought something and have no live exit attempt yet: positions upbot opened
 * on the exchange that only a live executor will close.
 */
export async function liveEntriesWithoutExit(sql: Sql): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select e.* from upbit_order_attempts e
    join paper_trades pe on pe.id = e.paper_trade_id
    where e.mode = 'live' and e.action = 'ENTER_LONG' and e.executed_volume > 0
      and not exists (
        select 1 from paper_trades px
        join upbit_order_attempts x on x.paper_trade_id = px.id
        where px.entry_id = pe.id and x.mode = 'live' and x.status in ('submitted', 'done')
      )
    order by e.id`;
  return rows.map(normalise);
}
