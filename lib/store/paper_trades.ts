/**
 * @module `paper_trades`: append-only paper trade events (an ENTER_LONG row, later an EXIT_LONG
 * row pointing at it), written by the evaluator and followed by the executor with a cursor on id.
 */
import type { Sql } from "../db/connect.ts";
import type { PaperAction } from "../domain.ts";
import type { PaperEvent, PaperPosition } from "../strategy/policy.ts";

/** A paper trade row as the executor and the dashboard read it. */
export interface PaperTradeRow {
  id: number;
  ts: Date;
  symbol: string;
  action: PaperAction;
  policy_profile: string;
  entry_id: number | null;
  entry_ts: Date;
  entry_price: string;
  exit_ts: Date | null;
  exit_price: string | null;
  qty: string;
  fee: string;
  pnl: string | null;
  hold_sec: number | null;
  exit_reason: string | null;
  ev: number | null;
}

/**
 * Inserts one paper event and returns its id. An EXIT_LONG is linked to the open ENTER_LONG of
 * the same symbol.
 *
 * @throws {Error} for an EXIT_LONG with no open entry (the evaluator's state and the table
 *   disagree: never invent an entry).
 */
export async function insertPaperEvent(
  sql: Sql,
  event: PaperEvent,
  profile: string,
): Promise<number> {
  if (event.action === "ENTER_LONG") {
    const [row] = await sql<{ id: string }[]>`
      insert into paper_trades (ts, symbol, action, policy_profile, entry_ts, entry_price, qty,
                                fee, ev)
      values (${new Date(event.ts)}, ${event.market}, 'ENTER_LONG', ${profile},
              ${new Date(event.ts)}, ${String(event.price)}, ${String(event.qty)},
              ${String(event.fee)}, ${event.ev})
      returning id`;
    return Number(row!.id);
  }
  const entry = await openEntry(sql, event.market);
  if (!entry) throw new Error(`EXIT_LONG for ${event.market} without an open ENTER_LONG`);
  const [row] = await sql<{ id: string }[]>`
    insert into paper_trades (ts, symbol, action, policy_profile, entry_id, entry_ts, entry_price,
                              exit_ts, exit_price, qty, fee, pnl, hold_sec, exit_reason, ev)
    values (${new Date(event.ts)}, ${event.market}, 'EXIT_LONG', ${profile}, ${entry.id},
            ${entry.entry_ts}, ${entry.entry_price}, ${new Date(event.ts)}, ${String(event.price)},
            ${entry.qty}, ${String(event.fee)}, ${String(event.pnl)}, ${event.holdSec},
            ${event.reason}, ${event.ev})
    returning id`;
  return Number(row!.id);
}

/** The open ENTER_LONG of `symbol` (no EXIT_LONG points at it), or null. */
export async function openEntry(sql: Sql, symbol: string): Promise<PaperTradeRow | null> {
  const [row] = await sql<PaperTradeRow[]>`
    select e.* from paper_trades e
    where e.symbol = ${symbol} and e.action = 'ENTER_LONG'
      and not exists (select 1 from paper_trades x where x.entry_id = e.id)
    order by e.id desc limit 1`;
  return row ? normalise(row) : null;
}

/** The open position of `symbol` in the strategy's terms, for restoring the evaluator. */
export async function openPosition(sql: Sql, symbol: string): Promise<PaperPosition | null> {
  const e = await openEntry(sql, symbol);
  if (!e) return null;
  return {
    market: e.symbol,
    entryTs: e.entry_ts.getTime(),
    entryPrice: Number(e.entry_price),
    qty: Number(e.qty),
    entryFee: Number(e.fee),
  };
}

/** Paper trades with id greater than `afterId`, oldest first. */
export async function paperTradesAfter(
  sql: Sql,
  afterId: number,
  limit = 100,
): Promise<PaperTradeRow[]> {
  const rows = await sql<PaperTradeRow[]>`
    select * from paper_trades where id > ${afterId} order by id limit ${limit}`;
  return rows.map(normalise);
}

/** A paper trade with the identifier of its order attempt (null: none written yet). */
export type PaperTradeWithAttempt = PaperTradeRow & { attempt_identifier: string | null };

/**
 * What a reader following paper trades by id has read already and need not read again: every
 * trade with id at most `through`, except, for each market of `heldFrom`, its trades from that id
 * on (they wait to be handled).
 */
export interface ReadPast {
  through: number;
  /** Market -> id of its first trade at most `through` still to be read again. */
  heldFrom: ReadonlyMap<string, number>;
}

/**
 * {@linkcode paperTradesAfter}, each with the identifier of its first order attempt: the executor
 * learns which trades it handled already in the same round trip. With `readPast`, the trades it
 * names are left out; both halves are index range scans (the primary key, and
 * `paper_trades_symbol_id` of migration 017), so a market that waits for long does not make every
 * read scan the other markets' trades since.
 */
export async function paperTradesWithAttemptAfter(
  sql: Sql,
  afterId: number,
  limit = 100,
  readPast: ReadPast = { through: 0, heldFrom: new Map() },
): Promise<PaperTradeWithAttempt[]> {
  const held = [...readPast.heldFrom];
  const rows = await sql<PaperTradeWithAttempt[]>`
    select p.*, (select a.identifier from upbit_order_attempts a
                 where a.paper_trade_id = p.id order by a.id limit 1) as attempt_identifier
    from (
      (select * from paper_trades
       where id > greatest(${afterId}::int8, ${readPast.through}::int8) order by id limit ${limit})
      union all
      (select t.* from unnest(${held.map(([symbol]) => symbol)}::text[],
                              ${held.map(([, from]) => from)}::int8[]) as h(symbol, from_id)
       cross join lateral (
         -- The market and the ids as row comparisons only (together: this market, ids in the
         -- range), which only paper_trades_symbol_id serves whole. Given the market as an
         -- equality, or the ids as plain bounds, the planner, not knowing the market, may scan
         -- all its trades ever (paper_trades_symbol_ts) or every market's since the wait began
         -- (the primary key).
         select * from paper_trades q
         where (q.symbol, q.id) > (h.symbol, greatest(h.from_id - 1, ${afterId}::int8))
           and (q.symbol, q.id) <= (h.symbol, ${readPast.through}::int8)
         order by q.symbol, q.id limit ${limit}) t)
    ) p
    order by p.id limit ${limit}`;
  return rows.map((r) => ({ ...normalise(r), attempt_identifier: r.attempt_identifier }));
}

/** One paper trade by id. */
export async function paperTradeById(sql: Sql, id: number): Promise<PaperTradeRow | null> {
  const [row] = await sql<PaperTradeRow[]>`select * from paper_trades where id = ${id}`;
  return row ? normalise(row) : null;
}

function normalise(row: PaperTradeRow): PaperTradeRow {
  // BIGINT comes back as a string; ids stay far below 2^53.
  return {
    ...row,
    id: Number(row.id),
    entry_id: row.entry_id === null ? null : Number(row.entry_id),
  };
}
