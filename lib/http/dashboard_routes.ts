/**
 * @module Dashboard JSON: `/api/status`, `/api/account`, `/api/attempts`, `/api/snapshots`,
 * `/api/paper-trades` and `/api/bars`. Flat arrays or objects, `ts` in Unix milliseconds, so
 * Grafana's Infinity data source reads them without set-up. Lists are newest first and page back
 * with `before` (an id); `/api/attempts` with a time range is newest first by time, read along its
 * `ts` index (see {@linkcode attemptsQuery}). Amounts are sent as JSON numbers for display; the database keeps them
 * exact (NUMERIC).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { ActorStatus } from "../actors/supervisor.ts";
import type { Sql } from "../db/connect.ts";
import { TradeMode } from "../domain.ts";
import type { GuardDecision } from "../execution/guard.ts";
import { ledgerPositions } from "../execution/position_ledger.ts";
import { reconciliationStatus } from "../execution/reconcile.ts";
import { redact } from "../log.ts";
import { parseQuery } from "./errors.ts";
import type { Role } from "./health.ts";
import { MarketCode, paging, queryInt, timeRange } from "./query_schemas.ts";
import { alarmViews, tradingStateViews } from "./trading_views.ts";

/** upbot's release, reported by `/api/status`. */
export const UPBOT_VERSION = "0.1.0";

/** What the dashboard routes read. */
export interface DashboardDeps {
  sql: Sql;
  /** The guard's decision (mode and conditions; keys only as set / not set). */
  guard: GuardDecision;
  markets: readonly string[];
  actors: () => ActorStatus[];
  /**
   * The supervisor's own halt (a critical actor failed for good), shown next to the stored
   * trading state when set.
   */
  supervisorHalt: () => string | null;
  startedAt: number;
  /** This upbot's role in a hot-standby pair (`lib/db/lease.ts`). @default {() => "leader"} */
  role?: () => Role;
}

/** A live ledger position as shown by `/api/account` (before its unrealised pnl is added). */
export interface PositionView {
  market: string;
  qty: number;
  /** Cost basis per coin (buy fees included); null when the ledger has none. */
  avg_price: number | null;
  ts: number | null;
  [field: string]: unknown;
}

/**
 * The reconciliation gate (open, or closed with its reason and since when: no live order of any
 * kind goes out while it is closed) and the newest completed reconciliation with its findings.
 */
async function reconciliationView(sql: Sql) {
  const r = await reconciliationStatus(sql);
  return {
    gate: {
      open: r.gate.open,
      reason: r.gate.reason === null ? null : redact(r.gate.reason),
      since: r.gate.since?.getTime() ?? null,
    },
    last_completed: r.lastCompleted && {
      id: r.lastCompleted.id,
      ts: r.lastCompleted.completedAt.getTime(),
      findings: r.lastCompleted.findings,
    },
    findings: r.findings.map((f) => ({
      id: f.id,
      ts: f.at.getTime(),
      kind: f.kind,
      market: f.market,
      identifier: f.identifier,
      uuid: f.uuid,
      details: f.details,
    })),
  };
}

/** Unix ms of a timestamptz column, as a float8 (postgres.js returns int8 as a string). */
const ms = (column: string) => `(extract(epoch from ${column}) * 1000)::float8`;

/**
 * The fields `/api/attempts` serves, with the column each reads. Only columns present in the
 * table are selected (the attempts table gains columns as the executor evolves); a missing one is
 * served as null. The list lives here and nowhere else.
 */
export const ATTEMPT_FIELDS: readonly { field: string; column: string; expr: string }[] = [
  { field: "id", column: "id", expr: "id::float8" },
  { field: "ts", column: "ts", expr: ms("ts") },
  { field: "market", column: "symbol", expr: "symbol" },
  { field: "action", column: "action", expr: "action" },
  { field: "mode", column: "mode", expr: "mode" },
  { field: "side", column: "side", expr: "side" },
  { field: "ord_type", column: "ord_type", expr: "ord_type" },
  { field: "price", column: "price", expr: "price::float8" },
  { field: "volume", column: "volume", expr: "volume::float8" },
  { field: "paper_trade_id", column: "paper_trade_id", expr: "paper_trade_id::float8" },
  { field: "uuid", column: "uuid", expr: "uuid" },
  { field: "identifier", column: "identifier", expr: "identifier" },
  { field: "status", column: "status", expr: "status" },
  { field: "state", column: "state", expr: "state" },
  { field: "reason", column: "reason", expr: "reason" },
  { field: "error_msg", column: "error_msg", expr: "error_msg" },
  { field: "http_status", column: "http_status", expr: "http_status" },
  { field: "latency_ms", column: "latency_ms", expr: "latency_ms" },
  { field: "remaining_req", column: "remaining_req", expr: "remaining_req" },
  { field: "retry_count", column: "retry_count", expr: "retry_count" },
  { field: "final_state", column: "final_state", expr: "final_state" },
  { field: "executed_volume", column: "executed_volume", expr: "executed_volume::float8" },
  { field: "paid_fee", column: "paid_fee", expr: "paid_fee::float8" },
  { field: "avg_price", column: "avg_price", expr: "avg_price::float8" },
];

/** Columns of `table` in the current schema. */
export async function tableColumns(sql: Sql, table: string): Promise<Set<string>> {
  const rows = await sql<{ column_name: string }[]>`
    select column_name from information_schema.columns
    where table_schema = current_schema() and table_name = ${table}`;
  return new Set(rows.map((r) => r.column_name));
}

const AttemptsQuery = z.strictObject({
  ...paging(50, 1000),
  ...timeRange,
  market: MarketCode.optional(),
  mode: TradeMode.optional(),
  status: z.string().regex(/^[a-z_]{1,32}$/, "must be a status such as done or error")
    .optional(),
});

/**
 * The query of `/api/attempts` (`select` the served fields), read through an index whatever the
 * filters: newest first by id, or with a time range (`from`, `to`), newest first by time (then id)
 * along the `ts` index, so that a range far back reads its own rows rather than every newer one.
 * `before` pages back from the row with that id (within a range: from its time and id; an id no
 * row has counts as the row just below it). Exported for its test, which explains its plan.
 */
export function attemptsQuery(
  select: string,
  q: z.output<typeof AttemptsQuery>,
): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const where: string[] = [];
  if (q.market !== undefined) where.push(`symbol = ${p(q.market)}`);
  if (q.mode !== undefined) where.push(`mode = ${p(q.mode)}`);
  if (q.status !== undefined) where.push(`status = ${p(q.status)}`);
  const ranged = q.from !== undefined || q.to !== undefined;
  if (q.from !== undefined) where.push(`ts >= to_timestamp(${p(q.from)}::float8 / 1000)`);
  if (q.to !== undefined) where.push(`ts <= to_timestamp(${p(q.to)}::float8 / 1000)`);
  if (q.before !== undefined) {
    const before = p(q.before);
    where.push(
      ranged
        // After the row `before` in (ts, id) order; `ts <=` keeps it on the index.
        ? `ts <= (select ts from upbit_order_attempts where id <= ${before}::int8
                  order by id desc limit 1)
           and (ts < (select ts from upbit_order_attempts where id <= ${before}::int8
                      order by id desc limit 1)
                or id < ${before}::int8)`
        : `id < ${before}::int8`,
    );
  }
  // Ordered by the table's columns (`a.`), not the served fields of the same name (float8
  // expressions, which no index has: every row would be sorted).
  const text = `select ${select} from upbit_order_attempts a
    ${where.length > 0 ? `where ${where.join(" and ")}` : ""}
    order by ${ranged ? "a.ts desc, a.id desc" : "a.id desc"} limit ${p(q.limit)}`;
  return { text, params };
}

const ListQuery = z.strictObject({
  ...paging(50, 1000),
  ...timeRange,
  market: MarketCode.optional(),
});

const BarsQuery = z.strictObject({
  market: MarketCode,
  ...timeRange,
  limit: queryInt(1, 86_400).default(3_600),
});

/** Strings out of the database pass through the log's secret mask (defence in depth). */
function masked<T extends Record<string, unknown>>(row: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = typeof v === "string" ? redact(v) : v;
  return out as T;
}

/**
 * Routes of the dashboard JSON, to mount at the root.
 *
 * @example Usage
 * ```ts ignore
 * createApp({ liveness, readiness, routes: [dashboardRoutes(deps)] });
 * ```
 */
export function dashboardRoutes(deps: DashboardDeps): Hono {
  const { sql } = deps;
  const routes = new Hono();
  let attemptColumns: Promise<Set<string>> | null = null;

  routes.get("/api/status", async (c) => {
    parseQuery(c, z.strictObject({}));
    const [trading, alarms, reconciliation] = await Promise.all([
      tradingStateViews(sql),
      alarmViews(sql),
      reconciliationView(sql),
    ]);
    const now = Date.now();
    const supervisorHalt = deps.supervisorHalt();
    return c.json({
      ts: now,
      version: UPBOT_VERSION,
      role: deps.role?.() ?? "leader",
      uptime_sec: Math.round((now - deps.startedAt) / 1000),
      markets: deps.markets,
      mode: {
        requested: deps.guard.requested,
        effective: deps.guard.effective,
        downgrade_reasons: deps.guard.downgradeReasons,
      },
      guard: deps.guard.conditions,
      trading,
      supervisor_halt: supervisorHalt === null ? null : redact(supervisorHalt),
      reconciliation,
      alarms,
      actors: deps.actors().map((a) => ({
        name: a.name,
        state: a.state,
        critical: a.critical,
        restarts: a.restarts,
        heartbeat_age_ms: a.lastHeartbeatAgeMs,
        uptime_ms: a.uptimeMs,
        last_error: a.lastError, // secrets masked by the supervisor
        last_error_ts: a.lastErrorAt === null ? null : Date.parse(a.lastErrorAt),
      })),
    });
  });

  routes.get("/api/account", async (c) => {
    parseQuery(c, z.strictObject({}));
    const balances = await sql.unsafe(`
      select currency, balance::float8 as balance, locked::float8 as locked,
             avg_buy_price::float8 as avg_buy_price, unit_currency, ${ms("ts")} as ts
      from upbit_account_snapshots
      where ts = (select max(ts) from upbit_account_snapshots)
      order by currency`);
    const positions = await ledgerOpenPositions(sql);
    const closes = await lastCloses(sql, positions.map((p) => p.market));
    return c.json({
      ts: Date.now(),
      balances: balances.map((r) => ({ ...r })),
      positions: positions.map((p) => {
        const last = closes.get(p.market) ?? null;
        return {
          ...p,
          last_close: last?.close ?? null,
          last_close_ts: last?.ts ?? null,
          unrealised_pnl: last === null || p.avg_price === null
            ? null
            : (last.close - p.avg_price) * p.qty,
        };
      }),
    });
  });

  routes.get("/api/attempts", async (c) => {
    const q = parseQuery(c, AttemptsQuery);
    attemptColumns ??= tableColumns(sql, "upbit_order_attempts");
    const present = await attemptColumns;
    const select = ATTEMPT_FIELDS.map((f) =>
      `${present.has(f.column) ? f.expr : "null"} as ${f.field}`
    ).join(", ");
    const { text, params } = attemptsQuery(select, q);
    const rows = await sql.unsafe(text, params as never[]);
    return c.json(rows.map((r) => masked({ ...r })));
  });

  routes.get("/api/snapshots", async (c) => {
    const q = parseQuery(c, ListQuery);
    const rows = await sql.unsafe(
      `select id::float8 as id, ${ms("ts")} as ts, symbol as market, uuid, state, side, ord_type,
              price::float8 as price, volume::float8 as volume,
              remaining_volume::float8 as remaining_volume,
              executed_volume::float8 as executed_volume, paid_fee::float8 as paid_fee
       from upbit_order_snapshots s
       where ($1::int8 is null or id < $1) and ($2::text is null or symbol = $2)
         and ($3::float8 is null or ts >= to_timestamp($3 / 1000.0))
         and ($4::float8 is null or ts <= to_timestamp($4 / 1000.0))
       order by s.id desc limit $5`,
      [q.before ?? null, q.market ?? null, q.from ?? null, q.to ?? null, q.limit],
    );
    return c.json(rows.map((r) => masked({ ...r })));
  });

  routes.get("/api/paper-trades", async (c) => {
    const q = parseQuery(c, ListQuery);
    const rows = await sql.unsafe(
      `select id::float8 as id, ${ms("ts")} as ts, symbol as market, action, policy_profile,
              entry_id::float8 as entry_id, ${ms("entry_ts")} as entry_ts,
              entry_price::float8 as entry_price, ${ms("exit_ts")} as exit_ts,
              exit_price::float8 as exit_price, qty::float8 as qty, fee::float8 as fee,
              pnl::float8 as pnl, hold_sec, exit_reason, ev
       from paper_trades p
       where ($1::int8 is null or id < $1) and ($2::text is null or symbol = $2)
         and ($3::float8 is null or ts >= to_timestamp($3 / 1000.0))
         and ($4::float8 is null or ts <= to_timestamp($4 / 1000.0))
       order by p.id desc limit $5`,
      [q.before ?? null, q.market ?? null, q.from ?? null, q.to ?? null, q.limit],
    );
    return c.json(rows.map((r) => ({ ...r })));
  });

  routes.get("/api/bars", async (c) => {
    const q = parseQuery(c, BarsQuery);
    const to = q.to ?? Date.now();
    const from = q.from ?? to - 3_600_000;
    // The newest `limit` bars of the range, served oldest first (what a chart draws). Lists order
    // by the table's columns (`b.ts`, `s.id`, …), which an index has, not by the served float8
    // fields of the same name, which would sort every row of the range.
    const rows = await sql.unsafe(
      `select * from (
         select ${ms("ts")} as ts, open::float8 as open, high::float8 as high,
                low::float8 as low, close::float8 as close, volume::float8 as volume,
                trade_count, is_final
         from market_1s b
         where symbol = $1 and ts >= to_timestamp($2 / 1000.0) and ts <= to_timestamp($3 / 1000.0)
         order by b.ts desc limit $4) newest
       order by ts`,
      [q.market, from, to, q.limit],
    );
    return c.json(rows.map((r) => ({ ...r })));
  });

  return routes;
}

/**
 * Open positions of the live ledger (what upbot's own live fills left it owning, per market);
 * markets it holds nothing of are left out.
 */
async function ledgerOpenPositions(sql: Sql): Promise<PositionView[]> {
  return (await ledgerPositions(sql))
    .filter((p) => Number(p.openVolume) !== 0)
    .map((p) => ({
      market: p.symbol,
      qty: Number(p.openVolume),
      avg_price: p.avgEntryPrice === null ? null : Number(p.avgEntryPrice),
      realised_pnl: Number(p.realisedPnl),
      fees: Number(p.fees),
      ts: p.lastTs.getTime(),
    }));
}

/** The last close (and its time) of each market. */
async function lastCloses(
  sql: Sql,
  markets: string[],
): Promise<Map<string, { close: number; ts: number }>> {
  if (markets.length === 0) return new Map();
  const rows = await sql.unsafe(
    `select m.symbol, last.close::float8 as close, ${ms("last.ts")} as ts
     from unnest($1::text[]) as m(symbol)
     join lateral (select close, ts from market_1s where symbol = m.symbol
                   order by ts desc limit 1) last on true`,
    [markets],
  );
  return new Map(rows.map((r) => [r.symbol as string, { close: r.close, ts: r.ts }]));
}
