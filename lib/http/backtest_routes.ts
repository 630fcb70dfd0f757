/**
 * @module Backtest runs as dashboard JSON: `/api/backtests` (runs, newest first, with the headline
 * numbers of their reports), `/api/backtests/:id` (one run with its report) and
 * `/api/backtests/:id/trades` (its round trips). Runs are written by `deno task backtest`
 * (`lib/backtest/store.ts`). As in `dashboard_routes.ts`: `ts` in Unix ms, lists newest first,
 * paging back with `before`, amounts as JSON numbers for display (stored exact as NUMERIC).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { Sql } from "../db/connect.ts";
import { ApiError, parseQuery } from "./errors.ts";
import { MarketCode, paging } from "./query_schemas.ts";

/** Unix ms of a timestamptz column, as a float8. */
const ms = (column: string) => `(extract(epoch from ${column}) * 1000)::float8`;

/** A number of the report's total section (`section` paper, paperAtSpread or filled). */
const total = (section: string, field: string) =>
  `(r.report -> 'total' -> '${section}' ->> '${field}')::float8`;

/**
 * The columns of a run as listed and as shown alone: its window, parameters, versions and the
 * headline numbers of its report's total (null where a report lacks them).
 */
export const RUN_COLUMNS = `r.id::float8 as id, ${ms("r.created_at")} as ts, r.markets,
  ${ms("r.from_ts")} as "from", ${ms("r.to_ts")} as "to", r.source,
  r.parameters ->> 'profile' as profile, r.parameters, r.code_version, r.app_version,
  ${total("paper", "trades")} as trades, ${total("paper", "winRate")} as win_rate,
  ${total("paper", "totalPnl")} as paper_pnl,
  ${total("paperAtSpread", "totalPnl")} as spread_pnl,
  ${total("filled", "trades")} as filled_trades, ${total("filled", "winRate")} as filled_win_rate,
  ${total("filled", "totalPnl")} as filled_pnl,
  ${total("paper", "maxDrawdown")} as paper_max_drawdown,
  ${total("filled", "maxDrawdown")} as filled_max_drawdown`;

const RunsQuery = z.strictObject({
  ...paging(50, 1000),
  market: MarketCode.optional(),
});

const TradesQuery = z.strictObject({
  ...paging(1000, 10_000),
  market: MarketCode.optional(),
});

/** A run id in a path: a whole number from 1. */
const RunId = z.string().regex(/^\d{1,15}$/, "must be a run id (a whole number)")
  .transform(Number).pipe(z.number().int().min(1, "must be a run id (a whole number)"));

/**
 * Parses the `:id` of the path.
 *
 * @throws {ApiError} 400 `{"error":"invalid path","field":"id",…}` when it is not a run id.
 */
export function parseRunId(raw: string): number {
  const result = RunId.safeParse(raw);
  if (!result.success) {
    throw new ApiError(400, {
      error: "invalid path",
      field: "id",
      message: result.error.issues[0]?.message ?? "invalid",
    });
  }
  return result.data;
}

/** The 404 for a run id that is not stored. */
export function runNotFound(id: number): ApiError {
  return new ApiError(404, { error: "backtest run not found", id });
}

/**
 * Routes of the backtest JSON, to mount at the root.
 *
 * @example Usage
 * ```ts ignore
 * createApp({ liveness, readiness, routes: [backtestRoutes({ sql })] });
 * ```
 */
export function backtestRoutes(deps: { sql: Sql }): Hono {
  const { sql } = deps;
  const routes = new Hono();

  routes.get("/api/backtests", async (c) => {
    const q = parseQuery(c, RunsQuery);
    const rows = await sql.unsafe(
      `select ${RUN_COLUMNS} from backtest_runs r
       where ($1::int8 is null or r.id < $1) and ($2::text is null or $2 = any(r.markets))
       order by r.id desc limit $3`,
      [q.before ?? null, q.market ?? null, q.limit],
    );
    return c.json(rows.map((r) => ({ ...r })));
  });

  routes.get("/api/backtests/:id", async (c) => {
    parseQuery(c, z.strictObject({}));
    const id = parseRunId(c.req.param("id"));
    // The trade list is served by /trades (paged); the report keeps everything else.
    const [row] = await sql.unsafe(
      `select ${RUN_COLUMNS}, r.report - 'trades' as report from backtest_runs r where r.id = $1`,
      [id],
    );
    if (!row) throw runNotFound(id);
    return c.json({ ...row });
  });

  routes.get("/api/backtests/:id/trades", async (c) => {
    const id = parseRunId(c.req.param("id"));
    const q = parseQuery(c, TradesQuery);
    const [run] = await sql`select 1 from backtest_runs where id = ${id}`;
    if (!run) throw runNotFound(id);
    const rows = await sql.unsafe(
      `select seq as id, ${ms("exit_ts")} as ts, symbol as market, ${ms("entry_ts")} as entry_ts,
              ${ms("exit_ts")} as exit_ts, exit_reason, hold_sec, qty::float8 as qty,
              paper_entry::float8 as paper_entry, paper_exit::float8 as paper_exit,
              paper_fees::float8 as paper_fees, paper_pnl::float8 as paper_pnl,
              spread_entry::float8 as spread_entry, spread_exit::float8 as spread_exit,
              spread_pnl::float8 as spread_pnl,
              ${ms("fill_entry_ts")} as fill_entry_ts, ${ms("fill_exit_ts")} as fill_exit_ts,
              fill_entry::float8 as fill_entry, fill_exit::float8 as fill_exit,
              fill_qty::float8 as fill_qty, fill_fees::float8 as fill_fees,
              fill_pnl::float8 as fill_pnl
       from backtest_trades
       where run_id = $1 and ($2::int8 is null or seq < $2) and ($3::text is null or symbol = $3)
       order by seq desc limit $4`,
      [id, q.before ?? null, q.market ?? null, q.limit],
    );
    return c.json(rows.map((r) => ({ ...r })));
  });

  return routes;
}
