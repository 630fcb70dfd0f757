/**
 * @module `upbit_order_attempts`, `upbit_order_identifiers`, `installation` and
 * `upbit_order_snapshots`: every order the executor decided on, every identifier it ever used at
 * Upbit, and every observed state of a live order. The attempt row is written before any request.
 * Every state write goes through {@linkcode transitionAttempt}: the move is checked against the
 * state machine (`lib/execution/order_state.ts`) and guarded by `where state = from`, so two
 * writers can never both move one attempt. The writes that lead to an order (a new attempt, a move
 * to `sent`) of a lease holder's client also check its lease in the same transaction
 * (`lib/db/lease.ts`): an upbot that lost the lease writes, and so sends, nothing more.
 */
import { z } from "zod";
import { atomically, type Sql } from "../db/connect.ts";
import { assertLeaseHeld, fencedInsert, leaseFenceOf } from "../db/lease.ts";
import { OrderSide, OrdType, type PaperAction, type TradeMode } from "../domain.ts";
import { INITIAL_STATES, type OrderState, transition } from "../execution/order_state.ts";

/** An attempt row. Amounts are decimal strings. */
export interface AttemptRow {
  id: number;
  ts: Date;
  symbol: string;
  action: AttemptAction;
  mode: TradeMode;
  side: OrderSide;
  ord_type: "price" | "market" | "limit" | "best";
  price: string | null;
  volume: string | null;
  paper_trade_id: number | null;
  response_json: unknown;
  state: OrderState;
  /** The seed's status, derived from `state` by the database on every write. */
  status: string;
  /** Why the attempt is in its state: a code, never parsed from `error_msg`. */
  reason: string | null;
  /** For people: the last error's text. */
  error_msg: string | null;
  uuid: string | null;
  /** The identifier in use now (earlier ones stay in `upbit_order_identifiers`). */
  identifier: string;
  identifier_seq: number;
  request_json: Record<string, string> | null;
  http_status: number | null;
  latency_ms: number | null;
  remaining_req: string | null;
  retry_count: number;
  retry_at: Date | null;
  cancel_requested_at: Date | null;
  final_state: "done" | "cancel" | "prevented" | null;
  executed_volume: string | null;
  paid_fee: string | null;
  avg_price: string | null;
  poll_count: number;
  updated_at: Date;
}

/** What an attempt does: a paper trade's entry or exit, or a close decided from the ledger. */
export type AttemptAction = PaperAction | "CLOSE";

/** Fields of a new attempt. */
export interface NewAttempt {
  symbol: string;
  action: AttemptAction;
  mode: TradeMode;
  side: OrderSide;
  ord_type: "price" | "market";
  price: string | null;
  volume: string | null;
  paper_trade_id: number | null;
  identifier: string;
  /** One of the initial states: pending, skipped, logged. */
  state: OrderState;
  reason?: string | null;
  /** The order body exactly as sent (never auth material). */
  request_json: Record<string, string>;
  error_msg?: string | null;
}

/** Fields a write may set besides the state. */
export type AttemptPatch =
  & Partial<
    Pick<
      AttemptRow,
      | "reason"
      | "error_msg"
      | "uuid"
      | "http_status"
      | "latency_ms"
      | "remaining_req"
      | "retry_count"
      | "retry_at"
      | "cancel_requested_at"
      | "final_state"
      | "executed_volume"
      | "paid_fee"
      | "avg_price"
      | "poll_count"
      | "request_json"
    >
  >
  & { response_json?: unknown };

/** `request_json` as stored: the order body, every value a string (never auth material). */
const RequestJson = z.record(z.string(), z.string()).nullable();

/** The order body of an attempt that is sent to Upbit (`POST /v1/orders`), checked on read. */
const SentOrderBody = z.object({
  market: z.string(),
  side: OrderSide,
  ord_type: OrdType,
  volume: z.string().optional(),
  price: z.string().optional(),
  time_in_force: z.enum(["ioc", "fok", "post_only"]).optional(),
  smp_type: z.enum(["none", "cancel_maker", "cancel_taker", "reduce"]).optional(),
  identifier: z.string(),
});

/** An order body read back from `request_json`. */
export type SentOrderBody = z.infer<typeof SentOrderBody>;

/**
 * The order body an attempt sends, parsed from its `request_json` (a JSONB column: checked here,
 * at the store boundary, rather than cast where it is used).
 *
 * @throws {Error} naming the attempt when the stored body is not an order body.
 */
export function sentOrderBody(row: AttemptRow): SentOrderBody {
  const parsed = SentOrderBody.safeParse(row.request_json);
  if (parsed.success) return parsed.data;
  throw new Error(
    `Attempt ${row.id} (${row.identifier}) has no valid order body in request_json: ${
      parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")
    }`,
  );
}

function normalise(row: AttemptRow): AttemptRow {
  return {
    ...row,
    id: Number(row.id),
    paper_trade_id: row.paper_trade_id === null ? null : Number(row.paper_trade_id),
    request_json: requestJsonOf(row),
  };
}

/** A JSONB column is whatever was written: its shape is checked where it enters the program. */
function requestJsonOf(row: AttemptRow): Record<string, string> | null {
  const parsed = RequestJson.safeParse(row.request_json);
  if (parsed.success) return parsed.data;
  throw new Error(
    `Attempt ${row.id} (${row.identifier}) has a request_json that is not an object of strings`,
  );
}

/** This installation's id (8 base32 characters, made by migration 002). */
export async function installationId(sql: Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`select id from installation`;
  if (!row) throw new Error("installation id missing: run the migrations");
  return row.id;
}

/**
 * Gives this installation a new id and returns it: every identifier made from now on carries the
 * new prefix, so none can be one an order at Upbit already holds under the old prefix. Attempts
 * keep the identifiers they have (found by identifier, not by prefix).
 */
export async function renewInstallationId(sql: Sql): Promise<string> {
  const old = await installationId(sql);
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let id = old;
  while (id === old) {
    // A byte modulo 32 is uniform (256 = 8 x 32), as in migration 002.
    id = [...crypto.getRandomValues(new Uint8Array(8))].map((b) => alphabet[b % 32]).join("");
  }
  await sql`update installation set id = ${id}`;
  return id;
}

/** The attempt that ever used `identifier` (current or earlier), or null. */
export async function attemptByIdentifier(
  sql: Sql,
  identifier: string,
): Promise<AttemptRow | null> {
  const [row] = await sql<AttemptRow[]>`
    select a.* from upbit_order_attempts a
    where a.identifier = ${identifier}
      or a.id = (select attempt_id from upbit_order_identifiers where identifier = ${identifier})
    limit 1`;
  return row ? normalise(row) : null;
}

/** The attempt of paper trade `paperTradeId` (one per paper trade, any mode), or null. */
export async function attemptForPaperTrade(
  sql: Sql,
  paperTradeId: number,
): Promise<AttemptRow | null> {
  const [row] = await sql<AttemptRow[]>`
    select * from upbit_order_attempts where paper_trade_id = ${paperTradeId}
    order by id limit 1`;
  return row ? normalise(row) : null;
}

/** The attempt with id `id`, or null. */
export async function attemptById(sql: Sql, id: number): Promise<AttemptRow | null> {
  const [row] = await sql<AttemptRow[]>`select * from upbit_order_attempts where id = ${id}`;
  return row ? normalise(row) : null;
}

/** Every identifier attempt `id` ever used, oldest first. */
export async function identifiersOf(sql: Sql, id: number): Promise<string[]> {
  const rows = await sql<{ identifier: string }[]>`
    select identifier from upbit_order_identifiers where attempt_id = ${id}
    order by created_at, identifier`;
  return rows.map((r) => r.identifier);
}

/**
 * Inserts a new attempt (and its identifier into the history) and returns it, or null when the
 * identifier or the paper trade already has one (the last line of defence against two orders for
 * one paper trade).
 *
 * @throws {Error} for a state that is not initial.
 * @throws {LeaseLostError} when `sql` writes under a lease another upbot took (nothing inserted).
 */
export async function insertAttempt(sql: Sql, a: NewAttempt): Promise<AttemptRow | null> {
  if (!INITIAL_STATES.has(a.state)) {
    throw new Error(`Cannot create an order attempt in state ${a.state}`);
  }
  // One statement: the checks (no attempt for this paper trade, the identifier never used), the
  // row and its identifier's record; under a lease, the fence check too (its row lock holds a
  // takeover back until the statement commits; a lost lease inserts nothing). Atomic on its own.
  const f = fencedInsert(sql);
  const rows = await sql<AttemptRow[]>`
    with ${f.withFence}
    candidate as (
      select ${a.symbol}::text as symbol, ${a.action}::text as action, ${a.mode}::text as mode,
        ${a.side}::text as side, ${a.ord_type}::text as ord_type, ${a.price}::numeric as price,
        ${a.volume}::numeric as volume, ${a.paper_trade_id}::bigint as paper_trade_id,
        ${a.identifier}::text as identifier, ${a.state}::text as state,
        ${a.reason ?? null}::text as reason, ${sql.json(a.request_json)}::jsonb as request_json,
        ${a.error_msg ?? null}::text as error_msg
      where not exists (
          select 1 from upbit_order_attempts
          where paper_trade_id = ${a.paper_trade_id}::bigint)
        and not exists (
          select 1 from upbit_order_identifiers where identifier = ${a.identifier}::text)
        ${f.ifHeld}
    ), inserted as (
      insert into upbit_order_attempts (symbol, action, mode, side, ord_type, price, volume,
        paper_trade_id, identifier, state, reason, request_json, error_msg)
      select * from candidate
      on conflict (identifier) do nothing
      returning *
    ), recorded as (
      insert into upbit_order_identifiers (identifier, attempt_id)
      select identifier, id from inserted
    )
    ${f.answer}`;
  const row = f.inserted(rows);
  if (!row) return null;
  return normalise(row);
}

function patchValues(sql: Sql, patch: AttemptPatch): Record<string, unknown> {
  const { response_json, request_json, ...rest } = patch;
  const values: Record<string, unknown> = { ...rest, updated_at: new Date() };
  for (const [k, v] of Object.entries(values)) if (v === undefined) delete values[k];
  if (response_json !== undefined) values.response_json = sql.json(response_json as never);
  if (request_json !== undefined) values.request_json = sql.json(request_json as never);
  return values;
}

/**
 * Moves attempt `id` from `from` to `to` (checked by the state machine) and writes `patch` in the
 * same statement. Returns the new row, or null when the attempt is no longer in `from` (another
 * writer moved it first: the caller must not act on its stale view).
 *
 * @throws {IllegalTransitionError} for a move the state machine does not allow.
 * @throws {LeaseLostError} for a move to `sent` under a lease another upbot took (not moved).
 */
export async function transitionAttempt(
  sql: Sql,
  id: number,
  from: OrderState,
  to: OrderState,
  patch: AttemptPatch = {},
): Promise<AttemptRow | null> {
  transition(from, to);
  const fence = to === "sent" ? leaseFenceOf(sql) : undefined;
  if (fence) {
    return await atomically(sql, async (tx) => {
      await assertLeaseHeld(tx, fence);
      return await transitionAttempt(tx, id, from, to, patch);
    });
  }
  const values = { ...patchValues(sql, patch), state: to };
  const [row] = await sql<AttemptRow[]>`
    update upbit_order_attempts set ${sql(values)}
    where id = ${id} and state = ${from} returning *`;
  return row ? normalise(row) : null;
}

/** Writes `patch` (never the state) on attempt `id` and returns the new row. */
export async function patchAttempt(
  sql: Sql,
  id: number,
  patch: AttemptPatch,
): Promise<AttemptRow> {
  const [row] = await sql<AttemptRow[]>`
    update upbit_order_attempts set ${sql(patchValues(sql, patch))}
    where id = ${id} returning *`;
  if (!row) throw new Error(`attempt ${id} does not exist`);
  return normalise(row);
}

/**
 * Gives `unknown` attempt `id` the fresh identifier `identifier` (number `seq`), records it in the
 * history and moves it back to `pending`, in one transaction. Only for an identifier Upbit
 * refused as already used while no order exists under it.
 */
export async function rotateIdentifier(
  sql: Sql,
  attempt: AttemptRow,
  identifier: string,
  seq: number,
): Promise<AttemptRow | null> {
  transition(attempt.state, "pending");
  return await atomically(sql, async (tx): Promise<AttemptRow | null> => {
    await tx`insert into upbit_order_identifiers (identifier, attempt_id)
      values (${identifier}, ${attempt.id})`;
    const request = { ...(attempt.request_json ?? {}), identifier };
    const [row] = await tx<AttemptRow[]>`
      update upbit_order_attempts set state = 'pending', identifier = ${identifier},
        identifier_seq = ${seq}, reason = 'identifier_rotated', request_json = ${tx.json(request)},
        updated_at = now()
      where id = ${attempt.id} and state = ${attempt.state} returning *`;
    if (!row) throw new Error(`attempt ${attempt.id} moved while its identifier was rotated`);
    return normalise(row);
  }).catch((err) => {
    if (String((err as Error).message).includes("moved while")) return null;
    throw err;
  });
}

/**
 * Attempts of `mode` whose outcome must be found out or that wait to be sent (pending, sent,
 * unknown), whose `retry_at` has passed, oldest first.
 */
export async function unresolvedAttempts(
  sql: Sql,
  mode: string,
  now: Date = new Date(),
): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select * from upbit_order_attempts
    where mode = ${mode} and state in ('pending', 'sent', 'unknown')
      and (retry_at is null or retry_at <= ${now})
    order by id`;
  return rows.map(normalise);
}

/** Live attempts Upbit holds and that are not final yet: what the order-poller tracks. */
export async function openLiveAttempts(sql: Sql): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select * from upbit_order_attempts
    where mode = 'live' and state in ('open', 'partially_filled') and uuid is not null
    order by id`;
  return rows.map(normalise);
}

/**
 * Live sells of `market` whose outcome is not final: unsent, unresolved, open at Upbit, or lost
 * and not found again (it may have filled). The view `live_orders_unsettled` is the one
 * definition, so an exit and a reconciliation wait for exactly what the closer waits for: an
 * exit that judged a lost close as settled would sell its coins a second time, the owner's.
 */
export async function unfinishedLiveSells(sql: Sql, market?: string): Promise<AttemptRow[]> {
  const rows = await sql<AttemptRow[]>`
    select a.* from upbit_order_attempts a
    join live_orders_unsettled u on u.id = a.id
    where u.side = 'ask' ${market === undefined ? sql`` : sql`and u.symbol = ${market}`}
    order by a.id`;
  return rows.map(normalise);
}

/**
 * How many exchange orders (test or live) were first attempted in the last minute. Counted by
 * creation time (`ts`, the database's clock, and so is the minute: a process clock ahead of the
 * database's would shrink the window and let more orders through): the order-poller's updates of
 * open orders must not eat the executor's budget.
 */
export async function exchangeAttemptsInLastMinute(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n from upbit_order_attempts
    where mode in ('test', 'live') and state not in ('skipped', 'logged')
      and ts > now() - interval '1 minute'`;
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

/** Whether upbot ever wrote a live attempt on this database (it may own coins on the exchange). */
export async function hasLiveAttempts(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    select exists (select 1 from upbit_order_attempts where mode = 'live') as found`;
  return row!.found;
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
        where px.entry_id = pe.id and x.mode = 'live'
          and x.state in ('open', 'partially_filled', 'filled', 'cancelled', 'prevented')
      )
    order by e.id`;
  return rows.map(normalise);
}
