/**
 * @module Trading state: reduce-only entry halts, global or per market, and flatten requests,
 * stored in the database so they survive restarts.
 *
 * A halt stops new entries only; exits, cancels and reconciliation go on (NautilusTrader's
 * REDUCING). `entryHaltReason` is what the executor asks before it sends an entry. Every change is
 * also appended to `trading_state_history` (who, what, why, when), which is never rewritten.
 *
 * Who writes here: the `deno task halt/resume/flatten` commands (through the running upbot's
 * control directory, by = "cli"), the Supervisor when a critical actor fails for good
 * (by = "supervisor"), and the executor (identifier conflicts, completed flattens).
 */
import { atomically, type Sql } from "../db/connect.ts";

/** "global" or a market code such as "KRW-BTC". */
export type TradingScope = string;

/** The scope that halts every market at once. */
export const GLOBAL_SCOPE = "global";

/** Market codes as Upbit writes them: quote, dash, base ("KRW-BTC"). */
const MARKET_CODE = /^[A-Z0-9]+-[A-Z0-9]+$/;

/** One stored scope: halted or (after a resume) not, and who set it when. */
export interface TradingStateRow {
  scope: string;
  halted: boolean;
  /** Why it is halted; null once resumed. */
  reason: string | null;
  by: string;
  /** When the current state (halted or resumed) began. */
  since: Date;
}

/** One appended change of the trading state. */
export interface TradingStateHistoryRow {
  id: number;
  at: Date;
  scope: string;
  action: "halt" | "resume" | "flatten_requested" | "flatten_completed";
  reason: string | null;
  by: string;
  flatten_id: number | null;
}

/** A flatten request not yet completed. */
export interface PendingFlatten {
  id: number;
  requested_at: Date;
  reason: string;
}

/**
 * Checks a scope: "global" or a market code.
 *
 * @throws {Error} `trading scope "…" is neither "global" nor a market code such as KRW-BTC`.
 */
export function assertTradingScope(scope: string): void {
  if (scope !== GLOBAL_SCOPE && !MARKET_CODE.test(scope)) {
    throw new Error(
      `trading scope ${
        JSON.stringify(scope)
      } is neither "global" nor a market code such as KRW-BTC`,
    );
  }
}

/**
 * Thrown when the trading state forbids a change (a resume while a flatten is pending); the
 * message is the sentence to show. Nothing was changed.
 */
export class TradingStateRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TradingStateRefusedError";
  }
}

function assertText(what: string, value: string): void {
  if (value.trim() === "") throw new Error(`${what} must not be empty`);
}

async function appendHistory(
  sql: Sql,
  h: { scope: string; action: TradingStateHistoryRow["action"]; reason: string | null; by: string },
  flattenId: number | null = null,
): Promise<void> {
  await sql`
    insert into trading_state_history (scope, action, reason, changed_by, flatten_id)
    values (${h.scope}, ${h.action}, ${h.reason}, ${h.by}, ${flattenId})`;
}

async function writeHalt(sql: Sql, o: { scope: string; reason: string; by: string }) {
  // Halting a halted scope again keeps its `since` (it has been halted since then) but records
  // the newest reason and author.
  await sql`
    insert into trading_state (scope, halted, reason, changed_by, since)
    values (${o.scope}, true, ${o.reason}, ${o.by}, now())
    on conflict (scope) do update set
      halted = true,
      reason = excluded.reason,
      changed_by = excluded.changed_by,
      since = case when trading_state.halted then trading_state.since else excluded.since end`;
  await appendHistory(sql, { scope: o.scope, action: "halt", reason: o.reason, by: o.by });
}

/**
 * Halts new entries on `scope` ("global": every market). Exits go on. Idempotent: halting a halted
 * scope updates its reason and is recorded again in the history.
 *
 * @example
 * ```ts ignore
 * await haltEntries(sql, { scope: "KRW-BTC", reason: "exchange notice", by: "cli" });
 * ```
 * @throws {Error} for a scope that is neither "global" nor a market code, or an empty reason.
 */
export async function haltEntries(
  sql: Sql,
  o: { scope: TradingScope; reason: string; by: string },
): Promise<void> {
  assertTradingScope(o.scope);
  assertText("a halt's reason", o.reason);
  assertText("who halts", o.by);
  await atomically(sql, (tx) => writeHalt(tx, o));
}

/**
 * Allows new entries on `scope` again. Resuming one scope leaves the others as they are: resuming
 * "global" does not resume a market halted on its own, and resuming a market does not lift a
 * global halt. Resuming a scope that is not halted is recorded too (harmless).
 *
 * Refused while a flatten is pending with a live position left to close (every resume path comes
 * here: the tools, HTTP); a pending flatten with nothing left to close is completed first.
 *
 * @returns the halts of the scope it lifted (every one since its last resume), oldest first.
 * @throws {TradingStateRefusedError} while a flatten is pending and a live position is left to
 *   close (nothing changed).
 * @throws {Error} for a scope that is neither "global" nor a market code.
 */
export async function resumeEntries(
  sql: Sql,
  o: { scope: TradingScope; by: string },
): Promise<LiftedHalt[]> {
  assertTradingScope(o.scope);
  assertText("who resumes", o.by);
  return await atomically(sql, async (tx) => {
    // The scope's row locked first: a halt committed while this resume runs would otherwise be
    // lifted without being named (halts update this row, so they wait for the lock).
    await tx`select 1 from trading_state where scope = ${o.scope} for update`;
    await refuseDuringFlatten(tx, o.by);
    // Every halt of the scope since its last resume: one row holds only the newest reason, and a
    // person resuming after their own halt lifts an earlier one (the executor's, the supervisor's)
    // as well; the caller says which.
    const lifted = await tx<LiftedHalt[]>`
      select h.at, h.reason, h.changed_by as by from trading_state_history h
      where h.scope = ${o.scope} and h.action = 'halt'
        and h.id > coalesce((select max(id) from trading_state_history
          where scope = ${o.scope} and action = 'resume'), 0)
        and exists (select 1 from trading_state where scope = ${o.scope} and halted)
      order by h.id`;
    await tx`
      insert into trading_state (scope, halted, reason, changed_by, since)
      values (${o.scope}, false, null, ${o.by}, now())
      on conflict (scope) do update set
        halted = false,
        reason = null,
        changed_by = excluded.changed_by,
        since = case when trading_state.halted then excluded.since else trading_state.since end`;
    await appendHistory(tx, { scope: o.scope, action: "resume", reason: null, by: o.by });
    return [...lifted];
  });
}

/**
 * Refuses a resume while a flatten is pending and something is left to close: entries would buy
 * while the closer sells (fees, churn) and the flatten would never complete. A pending flatten
 * with nothing left to close is completed here, as the closer would, so that a flatten in shadow
 * or test mode (where no closer runs) never blocks resuming.
 */
async function refuseDuringFlatten(tx: Sql, by: string): Promise<void> {
  const [flatten] = await tx<{ id: number; requested_at: Date; reason: string; by: string }[]>`
    select id, requested_at, reason, requested_by as by from flatten_requests
    where completed_at is null order by id desc limit 1`;
  if (!flatten) return;
  const left = await marketsLeftToClose(tx);
  if (left.length === 0) {
    await markFlattensCompleted(tx, flatten.id, by);
    return;
  }
  throw new TradingStateRefusedError(
    `resume refused: flatten #${flatten.id} (requested by ${flatten.by} at ${flatten.requested_at.toISOString()}: ${flatten.reason}) is still pending, closing ${
      left.join(", ")
    }; it completes once every live position is closed, then entries can be resumed`,
  );
}

/**
 * What a flatten still has to close, by market: a live position the ledger holds open, or a live
 * buy whose outcome is not final (it may still fill: the flatten is done only when nothing more
 * can be bought). Views of migrations 003 and 015.
 */
async function marketsLeftToClose(tx: Sql): Promise<string[]> {
  const rows = await tx<{ symbol: string }[]>`
    select symbol from position_ledger where open_volume > 0
    union
    select symbol from live_orders_unsettled where side = 'bid'
    order by symbol`;
  return rows.map((r) => r.symbol);
}

/** Marks flatten request `id` and every older pending one completed, each in the history. */
async function markFlattensCompleted(tx: Sql, id: number, by: string): Promise<void> {
  const done = await tx<{ id: number; reason: string }[]>`
    update flatten_requests set completed_at = now()
    where id <= ${id} and completed_at is null
    returning id, reason`;
  for (const r of done.sort((a, b) => a.id - b.id)) {
    await appendHistory(
      tx,
      { scope: GLOBAL_SCOPE, action: "flatten_completed", reason: r.reason, by },
      r.id,
    );
  }
}

/** A halt a resume lifted: when, why and by whom it was set. */
export interface LiftedHalt {
  at: Date;
  reason: string | null;
  by: string;
}

/** null when new entries on `market` are allowed; else why not (the global halt or the market's). */
export async function entryHaltReason(sql: Sql, market: string): Promise<string | null> {
  const rows = await sql<TradingStateRow[]>`
    select scope, halted, reason, changed_by as by, since from trading_state
    where halted and scope in (${GLOBAL_SCOPE}, ${market})`;
  // The global halt is named first: it is the one a person must lift to trade anything.
  const global = rows.find((r) => r.scope === GLOBAL_SCOPE);
  if (global) {
    return `entries halted globally by ${global.by} since ${global.since.toISOString()}: ${global.reason}`;
  }
  const own = rows.find((r) => r.scope === market);
  if (own) {
    return `entries on ${market} halted by ${own.by} since ${own.since.toISOString()}: ${own.reason}`;
  }
  return null;
}

/** Every stored scope, halted or resumed: "global" first, then markets by name. */
export async function tradingStates(sql: Sql): Promise<TradingStateRow[]> {
  const rows = await sql<TradingStateRow[]>`
    select scope, halted, reason, changed_by as by, since from trading_state
    order by scope <> ${GLOBAL_SCOPE}, scope`;
  return [...rows];
}

/** The newest `limit` changes of the trading state, newest first. */
export async function tradingStateHistory(
  sql: Sql,
  limit = 100,
): Promise<TradingStateHistoryRow[]> {
  const rows = await sql<(TradingStateHistoryRow & { id: string })[]>`
    select id, at, scope, action, reason, changed_by as by, flatten_id
    from trading_state_history order by id desc limit ${limit}`;
  return rows.map((r) => ({ ...r, id: Number(r.id) }));
}

/**
 * Halts entries globally and records a flatten request (close every ledger position now). The
 * global halt stays after the flatten completes, until a person resumes.
 *
 * @returns the request's id.
 * @throws {Error} for an empty reason.
 */
export async function requestFlatten(
  sql: Sql,
  o: { reason: string; by: string },
): Promise<number> {
  assertText("a flatten's reason", o.reason);
  assertText("who flattens", o.by);
  return await atomically(sql, async (tx) => {
    await writeHalt(tx, { scope: GLOBAL_SCOPE, reason: `flatten: ${o.reason}`, by: o.by });
    const [row] = await tx<{ id: number }[]>`
      insert into flatten_requests (reason, requested_by) values (${o.reason}, ${o.by})
      returning id`;
    const id = row!.id;
    await appendHistory(
      tx,
      { scope: GLOBAL_SCOPE, action: "flatten_requested", reason: o.reason, by: o.by },
      id,
    );
    return id;
  });
}

/**
 * The newest flatten request not yet completed, or null. Completing it completes every older
 * pending request too (one flatten begun after them serves them all); a request made after the
 * executor read this one stays pending.
 */
export async function pendingFlatten(sql: Sql): Promise<PendingFlatten | null> {
  const [row] = await sql<PendingFlatten[]>`
    select id, requested_at, reason from flatten_requests
    where completed_at is null order by id desc limit 1`;
  return row ?? null;
}

/**
 * Completes flatten request `id`, and every older pending one, once nothing is left to close (no
 * live position the ledger holds open, no live buy whose outcome is not final); checked and
 * written in one transaction. Completing an already completed request does nothing.
 *
 * @returns the markets still left to close, sorted (nothing was completed then); empty once
 *   completed.
 * @throws {Error} `flatten request N does not exist` for an unknown id.
 */
export async function completeFlatten(sql: Sql, id: number): Promise<string[]> {
  return await atomically(sql, async (tx) => {
    const [known] = await tx`select 1 from flatten_requests where id = ${id}`;
    if (!known) throw new Error(`flatten request ${id} does not exist`);
    const left = await marketsLeftToClose(tx);
    if (left.length === 0) await markFlattensCompleted(tx, id, "executor");
    return left;
  });
}
