/**
 * @module A Grafana data source under `/grafana`, following the simPod `grafana-json-datasource`
 * contract (`GET /`, `POST /metrics`, `/metric-payload-options`, `/query`, `/variable`,
 * `/tag-keys`, `/tag-values`). Time series are downsampled in SQL with `date_bin` to the larger of
 * `intervalMs` and `(to - from) / maxDataPoints` (at least 1 s), so no more than about
 * `maxDataPoints` points per series leave the database.
 *
 * The work of one `/query` is bounded (on the embedded database a query holds up every write,
 * exits included): `maxDataPoints` at most {@linkcode MAX_POINTS_PER_SERIES}, each series asked
 * once, and at most {@linkcode MAX_POINTS_PER_QUERY} points in all (series x points per series,
 * table rows counted as points), else a 400 saying how to ask for less. Grafana asks for about the
 * panel's width in points, far below.
 *
 * Series (`target`): `close` and `volume` per market, `paper_pnl` (cumulative, net of fees),
 * `live_realised_pnl` (cumulative, from filled live exits against their entries),
 * `order_latency_ms` (average and maximum per mode), `attempts` (count per mode and status),
 * `remaining_req` (Upbit's `Remaining-Req` seconds budget per group, as last answered), and the
 * sampled `actor_restarts`, `actor_heartbeat_age_ms`, `actor_heap_used_bytes`, `alarms_active`.
 * Tables: `attempts_table`, `paper_trades_table`. A `market` payload field (string or list) or
 * an ad hoc filter `market = …` narrows the per-market series.
 *
 * Backtests (`deno task backtest`): `backtest_equity` (a run's cumulative pnl, filled, paper and
 * paper at the spread, by exit time), `backtest_trades_table` (its round trips) and
 * `backtest_runs_table` (the stored runs and their windows). The run is the payload's `run` (an
 * id, as the `backtests` variable answers it; the newest run when absent); like every series they
 * show what falls in the dashboard's time range, so set the range to the run's window.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { Sql } from "../db/connect.ts";
import { RUN_COLUMNS } from "./backtest_routes.ts";
import { ApiError, parseJsonBody } from "./errors.ts";
import { MarketCode } from "./query_schemas.ts";

/** A Grafana time series. */
export interface TimeSeries {
  target: string;
  /** `[value, unix_ms]`, oldest first. */
  datapoints: [number, number][];
}

/** A Grafana table. */
export interface Table {
  type: "table";
  columns: { text: string; type: "time" | "string" | "number" }[];
  rows: (string | number | null)[][];
}

/** What a series query needs. */
interface SeriesContext {
  sql: Sql;
  fromMs: number;
  toMs: number;
  /** Bin width in whole seconds. */
  binSec: number;
  /** Markets the query is narrowed to (all configured markets by default). */
  markets: string[];
  /** Row limit for tables. */
  maxRows: number;
  /** The backtest run a `run` series shows (its id). */
  run: number;
}

interface SeriesDef {
  kind: "timeseries" | "table";
  label: string;
  /** Shows one backtest run, chosen by the payload's `run`. */
  perRun?: boolean;
  /**
   * How the query's markets narrow it: `series`, one series per market (its cost grows with the
   * markets); `filter`, one series of the markets together. Absent: markets play no part.
   */
  markets?: "series" | "filter";
  run: (ctx: SeriesContext) => Promise<(TimeSeries | Table)[]>;
}

/** Unix ms of the bin start of `column`; `$3` is the bin width in seconds. */
const bin = (column: string) =>
  `(extract(epoch from date_bin(make_interval(secs => $3::int), ${column},
     timestamptz 'epoch')) * 1000)::float8`;
/**
 * `column` within `[$1, $2]` (Unix ms). On `market_1m` a minute counts when it starts in the range
 * or holds its start (its first seconds may lie before it: the price of reading 60 times fewer rows).
 */
const inRange = (column: string, table?: string) =>
  table === "market_1m"
    ? `${column} >= date_trunc('minute', to_timestamp($1::float8 / 1000))
       and ${column} <= to_timestamp($2::float8 / 1000)`
    : `${column} >= to_timestamp($1::float8 / 1000) and ${column} <= to_timestamp($2::float8 / 1000)`;

/**
 * The `close` series' query on `table`: `$1`/`$2` the range (Unix ms), `$3` the bin (s), `$4`
 * the markets. Exported for the benchmark, which runs it directly next to the endpoint.
 */
export function closeSql(table: "market_1s" | "market_1m"): string {
  const last = table === "market_1m" ? "last_ts" : "ts";
  const t = bin("ts");
  return `select symbol as k, ${t} as t, (array_agg(close order by ${last} desc))[1]::float8 as v
   from ${table} where symbol = any($4::text[]) and ${inRange("ts", table)}
   group by 1, 2 order by 1, 2`;
}

/** The rollup to read for a bin: whole minutes from `market_1m`, anything finer from `market_1s`. */
export function barsTable(binSec: number): "market_1s" | "market_1m" {
  return binSec >= 60 && binSec % 60 === 0 ? "market_1m" : "market_1s";
}

/** Groups rows `{k, t, v}` (ordered by k, t) into one series per `k`, named by `name(k)`. */
function toSeries(
  rows: readonly Record<string, unknown>[],
  name: (key: string) => string,
): TimeSeries[] {
  const byKey = new Map<string, [number, number][]>();
  for (const r of rows) {
    const key = String(r.k);
    let points = byKey.get(key);
    if (!points) byKey.set(key, points = []);
    if (r.v !== null) points.push([Number(r.v), Number(r.t)]);
  }
  return [...byKey].map(([key, datapoints]) => ({ target: name(key), datapoints }));
}

async function series(
  ctx: SeriesContext,
  text: string,
  name: (key: string) => string,
  extra: unknown[] = [],
): Promise<TimeSeries[]> {
  const rows = await ctx.sql.unsafe(text, [ctx.fromMs, ctx.toMs, ctx.binSec, ...extra] as never[]);
  return toSeries(rows, name);
}

/** Every series and table the data source serves, by `target`. */
export const GRAFANA_SERIES: Record<string, SeriesDef> = {
  close: {
    kind: "timeseries",
    markets: "series",
    label: "Close per market (last in each bin)",
    run: (ctx) => series(ctx, closeSql(barsTable(ctx.binSec)), (m) => `close ${m}`, [ctx.markets]),
  },
  volume: {
    kind: "timeseries",
    markets: "series",
    label: "Traded volume per market (sum in each bin)",
    run: (ctx) =>
      series(
        ctx,
        `select symbol as k, ${bin("ts")} as t, sum(volume)::float8 as v
         from ${barsTable(ctx.binSec)}
         where symbol = any($4::text[]) and ${inRange("ts", barsTable(ctx.binSec))}
         group by 1, 2 order by 1, 2`,
        (m) => `volume ${m}`,
        [ctx.markets],
      ),
  },
  paper_pnl: {
    kind: "timeseries",
    markets: "filter",
    label: "Cumulative paper pnl (KRW, net of fees)",
    run: (ctx) =>
      series(
        ctx,
        `with bins as (
           select ${bin("ts")} as t, sum(pnl) as p from paper_trades
           where action = 'EXIT_LONG' and symbol = any($4::text[]) and ${inRange("ts")}
           group by 1),
         base as (
           select coalesce(sum(pnl), 0) as b from paper_trades
           where action = 'EXIT_LONG' and symbol = any($4::text[])
             and ts < to_timestamp($1::float8 / 1000))
         select 'paper pnl' as k, t, ((select b from base) + sum(p) over (order by t))::float8 as v
         from bins order by t`,
        (k) => k,
        [ctx.markets],
      ),
  },
  live_realised_pnl: {
    kind: "timeseries",
    markets: "filter",
    label: "Cumulative live realised pnl (KRW, filled exits against their entries, net of fees)",
    run: (ctx) =>
      series(
        ctx,
        // Each filled live exit: proceeds minus fee, minus the entry's cost of the sold volume
        // (its average price and its fee pro rata).
        `with exits as (
           select x.ts,
                  (x.executed_volume * x.avg_price - coalesce(x.paid_fee, 0))
                  - (x.executed_volume * e.avg_price
                     + coalesce(e.paid_fee, 0) * x.executed_volume / e.executed_volume) as pnl
           from upbit_order_attempts x
           join paper_trades px on px.id = x.paper_trade_id
           join upbit_order_attempts e
             on e.paper_trade_id = px.entry_id and e.action = 'ENTER_LONG' and e.mode = 'live'
           where x.mode = 'live' and x.action = 'EXIT_LONG' and x.symbol = any($4::text[])
             and x.executed_volume > 0 and x.avg_price is not null
             and e.executed_volume > 0 and e.avg_price is not null),
         bins as (select ${bin("ts")} as t, sum(pnl) as p from exits where ${inRange("ts")}
                  group by 1),
         base as (select coalesce(sum(pnl), 0) as b from exits
                  where ts < to_timestamp($1::float8 / 1000))
         select 'live realised pnl' as k, t,
                ((select b from base) + sum(p) over (order by t))::float8 as v
         from bins order by t`,
        (k) => k,
        [ctx.markets],
      ),
  },
  order_latency_ms: {
    kind: "timeseries",
    label: "Order request latency per mode (average and maximum, ms)",
    run: async (ctx) => {
      const rows = await ctx.sql.unsafe(
        `select mode, ${bin("ts")} as t, avg(latency_ms)::float8 as avg_ms,
                max(latency_ms)::float8 as max_ms
         from upbit_order_attempts where latency_ms is not null and ${inRange("ts")}
         group by 1, 2 order by 1, 2`,
        [ctx.fromMs, ctx.toMs, ctx.binSec],
      );
      return [
        ...toSeries(
          rows.map((r) => ({ k: r.mode, t: r.t, v: r.avg_ms })),
          (m) => `latency avg ${m}`,
        ),
        ...toSeries(
          rows.map((r) => ({ k: r.mode, t: r.t, v: r.max_ms })),
          (m) => `latency max ${m}`,
        ),
      ];
    },
  },
  attempts: {
    kind: "timeseries",
    label: "Order attempts per mode and status (count in each bin)",
    run: (ctx) =>
      series(
        ctx,
        `select mode || ' ' || status as k, ${bin("ts")} as t, count(*)::float8 as v
         from upbit_order_attempts where ${inRange("ts")}
         group by 1, 2 order by 1, 2`,
        (k) => `attempts ${k}`,
      ),
  },
  remaining_req: {
    kind: "timeseries",
    label: "Upbit Remaining-Req sec per group (lowest answered in each bin)",
    run: (ctx) =>
      series(
        ctx,
        `select substring(remaining_req from 'group=([A-Za-z0-9_-]+)') as k, ${bin("ts")} as t,
                min(substring(remaining_req from 'sec=([0-9]+)')::int)::float8 as v
         from upbit_order_attempts
         where remaining_req ~ 'group=[A-Za-z0-9_-]+' and remaining_req ~ 'sec=[0-9]+'
           and ${inRange("ts")}
         group by 1, 2 order by 1, 2`,
        (g) => `remaining-req ${g}`,
      ),
  },
  backtest_equity: {
    kind: "timeseries",
    label: "Backtest run: cumulative pnl, filled and paper (KRW, net of fees, by exit time)",
    perRun: true,
    run: (ctx) =>
      series(
        ctx,
        `with trades as (
           select 'paper' as k, exit_ts as ts, paper_pnl as pnl
           from backtest_trades where run_id = $4
           union all
           select 'paper at spread', exit_ts, spread_pnl from backtest_trades where run_id = $4
           union all
           select 'filled', fill_exit_ts, fill_pnl from backtest_trades
           where run_id = $4 and fill_pnl is not null),
         bins as (select k, ${bin("ts")} as t, sum(pnl) as p from trades where ${inRange("ts")}
                  group by 1, 2),
         base as (select k, sum(pnl) as b from trades where ts < to_timestamp($1::float8 / 1000)
                  group by 1)
         select bins.k, bins.t,
                (coalesce(base.b, 0) + sum(bins.p) over (partition by bins.k order by bins.t))
                  ::float8 as v
         from bins left join base on base.k = bins.k order by 1, 2`,
        (k) => `backtest ${ctx.run} ${k} pnl`,
        [ctx.run],
      ),
  },
  backtest_trades_table: {
    kind: "table",
    label: "Backtest run: round trips in the range (by exit time)",
    perRun: true,
    run: async (ctx) => {
      const rows = await ctx.sql.unsafe(
        `select (extract(epoch from exit_ts) * 1000)::float8 as t, symbol,
                (extract(epoch from entry_ts) * 1000)::float8 as entry_t, exit_reason, hold_sec,
                paper_entry::float8 as paper_entry, paper_exit::float8 as paper_exit,
                paper_pnl::float8 as paper_pnl, spread_pnl::float8 as spread_pnl,
                fill_entry::float8 as fill_entry, fill_exit::float8 as fill_exit,
                fill_pnl::float8 as fill_pnl
         from backtest_trades where run_id = $4 and ${inRange("exit_ts")} and $3::int > 0
         order by seq desc limit $5`,
        [ctx.fromMs, ctx.toMs, ctx.binSec, ctx.run, ctx.maxRows],
      );
      return [table(rows, [
        ["t", "Exit time", "time"],
        ["symbol", "Market", "string"],
        ["entry_t", "Entry time", "time"],
        ["exit_reason", "Exit reason", "string"],
        ["hold_sec", "Hold s", "number"],
        ["paper_entry", "Paper entry", "number"],
        ["paper_exit", "Paper exit", "number"],
        ["paper_pnl", "Paper pnl", "number"],
        ["spread_pnl", "Pnl at spread", "number"],
        ["fill_entry", "Fill entry", "number"],
        ["fill_exit", "Fill exit", "number"],
        ["fill_pnl", "Filled pnl", "number"],
      ])];
    },
  },
  backtest_runs_table: {
    kind: "table",
    label: "Backtest runs (newest first; their windows, whatever the range)",
    run: async (ctx) => {
      const rows = await ctx.sql.unsafe(
        `select ${RUN_COLUMNS} from backtest_runs r order by r.id desc limit $1`,
        [ctx.maxRows],
      );
      return [table(rows, [
        ["ts", "Created", "time"],
        ["id", "Run", "number"],
        ["markets", "Markets", "string"],
        ["from", "From", "time"],
        ["to", "To", "time"],
        ["profile", "Profile", "string"],
        ["trades", "Trades", "number"],
        ["win_rate", "Win rate", "number"],
        ["paper_pnl", "Paper pnl", "number"],
        ["filled_pnl", "Filled pnl", "number"],
        ["filled_max_drawdown", "Filled max drawdown", "number"],
      ])];
    },
  },
  actor_restarts: sampled("actor_restarts", "Restarts per actor (sampled every 10 s)", "restarts"),
  actor_heartbeat_age_ms: sampled(
    "actor_heartbeat_age_ms",
    "Heartbeat age per actor, ms (sampled every 10 s)",
    "heartbeat age",
  ),
  actor_heap_used_bytes: sampled(
    "actor_heap_used_bytes",
    "V8 heap used by each actor's isolate, bytes (sampled every 10 s)",
    "heap used",
  ),
  alarms_active: sampled("alarms_active", "Active alarms (sampled every 10 s)", "alarms active"),
  attempts_table: {
    kind: "table",
    label: "Latest order attempts in the range",
    run: async (ctx) => {
      const rows = await ctx.sql.unsafe(
        `select (extract(epoch from ts) * 1000)::float8 as t, symbol, mode, action, status,
                identifier, http_status, latency_ms, retry_count, final_state,
                executed_volume::float8 as executed_volume, avg_price::float8 as avg_price
         from upbit_order_attempts where ${inRange("ts")} and $3::int > 0
         order by id desc limit $4`,
        [ctx.fromMs, ctx.toMs, ctx.binSec, ctx.maxRows],
      );
      return [table(rows, [
        ["t", "Time", "time"],
        ["symbol", "Market", "string"],
        ["mode", "Mode", "string"],
        ["action", "Action", "string"],
        ["status", "Status", "string"],
        ["identifier", "Identifier", "string"],
        ["http_status", "HTTP", "number"],
        ["latency_ms", "Latency ms", "number"],
        ["retry_count", "Retries", "number"],
        ["final_state", "Final state", "string"],
        ["executed_volume", "Executed volume", "number"],
        ["avg_price", "Average price", "number"],
      ])];
    },
  },
  paper_trades_table: {
    kind: "table",
    markets: "filter",
    label: "Latest paper trades in the range",
    run: async (ctx) => {
      const rows = await ctx.sql.unsafe(
        `select (extract(epoch from ts) * 1000)::float8 as t, symbol, action,
                entry_price::float8 as entry_price, exit_price::float8 as exit_price,
                pnl::float8 as pnl, exit_reason, ev
         from paper_trades where symbol = any($4::text[]) and ${inRange("ts")} and $3::int > 0
         order by id desc limit $5`,
        [ctx.fromMs, ctx.toMs, ctx.binSec, ctx.markets, ctx.maxRows],
      );
      return [table(rows, [
        ["t", "Time", "time"],
        ["symbol", "Market", "string"],
        ["action", "Action", "string"],
        ["entry_price", "Entry price", "number"],
        ["exit_price", "Exit price", "number"],
        ["pnl", "Pnl", "number"],
        ["exit_reason", "Exit reason", "string"],
        ["ev", "EV %", "number"],
      ])];
    },
  },
};

function sampled(metric: string, label: string, prefix: string): SeriesDef {
  return {
    kind: "timeseries",
    label,
    run: (ctx) =>
      series(
        ctx,
        `select label as k, ${bin("ts")} as t, max(value)::float8 as v
         from obs_samples where metric = $4 and ${inRange("ts")}
         group by 1, 2 order by 1, 2`,
        (k) => (k === "" ? prefix : `${prefix} ${k}`),
        [metric],
      ),
  };
}

function table(
  rows: readonly Record<string, unknown>[],
  columns: [key: string, text: string, type: "time" | "string" | "number"][],
): Table {
  return {
    type: "table",
    columns: columns.map(([, text, type]) => ({ text, type })),
    rows: rows.map((r) =>
      columns.map(([key]) => {
        const v = r[key];
        if (v === null || v === undefined) return null;
        return typeof v === "number" ? v : Array.isArray(v) ? v.join(",") : String(v);
      })
    ),
  };
}

/** Points one series may ask for (`maxDataPoints`); Grafana asks for the panel's width. */
export const MAX_POINTS_PER_SERIES = 10_000;
/**
 * Points (series x points per series, table rows counted as points) one `/query` may answer:
 * the work of one request stays bounded, since on the embedded database it holds up every write.
 */
export const MAX_POINTS_PER_QUERY = 200_000;

/** The 400 of a query asking for more than {@linkcode MAX_POINTS_PER_QUERY} points. */
function tooManyPoints(points: number): ApiError {
  return new ApiError(400, {
    error: "invalid body",
    field: "targets",
    message: `asks for ${points} points or more, over the limit of ${MAX_POINTS_PER_QUERY} ` +
      `points per query (series x points per series): ask for a shorter range, fewer points ` +
      `per series (maxDataPoints) or fewer series (targets or markets)`,
  });
}

const IsoTime = z.string().refine((s) => Number.isFinite(Date.parse(s)), "must be an ISO time")
  .transform((s) => Date.parse(s));

/** `payload` as the plugin sends it: an object, or JSON text typed into the payload field. */
const Payload = z.union([z.record(z.string(), z.unknown()), z.string()]).optional()
  .transform((p, ctx) => {
    if (p === undefined || p === "") return {};
    if (typeof p !== "string") return p;
    try {
      const parsed = JSON.parse(p);
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
        return parsed as Record<string, unknown>;
      }
    } catch { /* reported below */ }
    ctx.addIssue({ code: "custom", message: "must be a JSON object" });
    return z.NEVER;
  });

const QueryBody = z.object({
  range: z.object({ from: IsoTime, to: IsoTime }),
  intervalMs: z.number().positive().max(366 * 86_400_000).optional(),
  maxDataPoints: z.number().int().positive()
    .max(MAX_POINTS_PER_SERIES, `must be at most ${MAX_POINTS_PER_SERIES} (points per series)`)
    .optional(),
  targets: z.array(z.object({
    target: z.string().max(100).optional(),
    refId: z.string().max(100).optional(),
    hide: z.boolean().optional(),
    payload: Payload,
  })).max(50),
  adhocFilters: z.array(z.object({
    key: z.string(),
    operator: z.string(),
    value: z.string(),
  })).max(20).optional(),
});

const MarketSelection = z.union([MarketCode, z.array(MarketCode).max(100)]).optional();

/** A run id in a payload: a whole number from 1, or its decimal text (a variable's value). */
const RunSelection = z.union([
  z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  z.string().regex(/^[1-9]\d{0,14}$/, "must be a backtest run id").transform(Number),
]).optional();

/** Runs offered to pick from (newest first). */
const MAX_RUN_CHOICES = 100;

/** The newest stored runs as `{id, text}` choices for a payload option or a variable. */
async function runChoices(sql: Sql): Promise<{ id: string; text: string }[]> {
  const rows = await sql<{ id: string; markets: string[]; from_ts: Date; to_ts: Date }[]>`
    select id::text as id, markets, from_ts, to_ts from backtest_runs
    order by id desc limit ${MAX_RUN_CHOICES}`;
  return rows.map((r) => ({
    id: r.id,
    text: `#${r.id} ${r.markets.join(",")} ${r.from_ts.toISOString()} to ${r.to_ts.toISOString()}`,
  }));
}

const VariableBody = z.object({
  payload: z.union([z.object({ target: z.string().max(100) }), z.string().max(100)]).optional(),
});

/** Longest range one query may ask for. */
const MAX_RANGE_MS = 366 * 86_400_000;
/** Rows per table at most. */
const MAX_TABLE_ROWS = 1000;

/**
 * Bin width in whole seconds for a range, Grafana's interval and its point budget; a bin of a
 * minute or more is rounded up to whole minutes so that it can read the 1-minute rollup.
 */
export function binSeconds(fromMs: number, toMs: number, intervalMs = 0, maxDataPoints = 1000) {
  const byPoints = Math.ceil((toMs - fromMs) / maxDataPoints);
  const sec = Math.max(1, Math.ceil(Math.max(intervalMs, byPoints) / 1000));
  return sec >= 60 ? Math.ceil(sec / 60) * 60 : sec;
}

/** Where the data source is served. */
export const GRAFANA_PATH = "/grafana";

/** Routes of the Grafana data source, under {@linkcode GRAFANA_PATH}; mount at the root. */
export function grafanaRoutes(deps: { sql: Sql; markets: readonly string[] }): Hono {
  const routes = new Hono().basePath(GRAFANA_PATH);
  // Grafana tests the connection with `GET <url>/`; answer with and without the slash.
  routes.get("/", (c) => c.json({ ok: true, name: "upbot" }));
  routes.get("/*", (c) => {
    if (c.req.path !== `${GRAFANA_PATH}/`) throw new ApiError(404, { error: "not found" });
    return c.json({ ok: true, name: "upbot" });
  });
  routes.post("/metrics", async (c) => {
    await parseJsonBody(c, z.object({ metric: z.string().optional() }));
    const runs = await runChoices(deps.sql);
    return c.json(
      Object.entries(GRAFANA_SERIES).map(([value, def]) => ({
        label: def.label,
        value,
        payloads: def.perRun
          ? [{
            label: "Run",
            name: "run",
            type: "select",
            placeholder: "newest run",
            options: runs.map((r) => ({ label: r.text, value: r.id })),
          }]
          : value.startsWith("backtest_")
          ? []
          : def.kind === "timeseries" || value === "paper_trades_table"
          ? [{
            label: "Market",
            name: "market",
            type: "multi-select",
            placeholder: "all markets",
            options: deps.markets.map((m) => ({ label: m, value: m })),
          }]
          : [],
      })),
    );
  });
  routes.post("/metric-payload-options", async (c) => {
    const body = await parseJsonBody(c, z.object({ name: z.string().optional() }));
    if (body.name === "run") {
      return c.json((await runChoices(deps.sql)).map((r) => ({ label: r.text, value: r.id })));
    }
    return c.json(
      body.name === "market" ? deps.markets.map((m) => ({ label: m, value: m })) : [],
    );
  });
  routes.post("/variable", async (c) => {
    const body = await parseJsonBody(c, VariableBody);
    const target = typeof body.payload === "string"
      ? variableTarget(body.payload)
      : body.payload?.target;
    if (target === "markets" || target === "market") {
      return c.json(deps.markets.map((m) => ({ __text: m, __value: m })));
    }
    if (target === "backtests" || target === "runs") {
      return c.json((await runChoices(deps.sql)).map((r) => ({ __text: r.text, __value: r.id })));
    }
    if (target === "series" || target === "metrics") {
      return c.json(Object.keys(GRAFANA_SERIES).map((s) => ({ __text: s, __value: s })));
    }
    throw new ApiError(400, {
      error: "invalid body",
      field: "payload.target",
      message: "must be markets, series or backtests",
    });
  });
  routes.post("/tag-keys", (c) => c.json([{ type: "string", text: "market" }]));
  routes.post("/tag-values", async (c) => {
    const body = await parseJsonBody(c, z.object({ key: z.string() }));
    return c.json(body.key === "market" ? deps.markets.map((m) => ({ text: m })) : []);
  });
  routes.post("/query", async (c) => {
    const q = await parseJsonBody(c, QueryBody);
    const { from: fromMs, to: toMs } = q.range;
    if (!(toMs > fromMs) || toMs - fromMs > MAX_RANGE_MS) {
      throw new ApiError(400, {
        error: "invalid body",
        field: "range",
        message: "to must be after from, at most 366 days apart",
      });
    }
    const binSec = binSeconds(fromMs, toMs, q.intervalMs, q.maxDataPoints);
    // Bins a series may have over the range (the range's ends may fall in partial bins).
    const pointsPerSeries = Math.ceil((toMs - fromMs) / (binSec * 1000)) + 1;
    const adhoc = (q.adhocFilters ?? []).filter((f) => f.key === "market" && f.operator === "=");
    // Every target checked before any is run: what each asks for, and its points at least.
    const planned: { def: SeriesDef; markets: string[]; run: number }[] = [];
    const seen = new Map<string, number>();
    let points = 0;
    for (const [i, t] of q.targets.entries()) {
      if (t.hide || !t.target) continue;
      const def = Object.hasOwn(GRAFANA_SERIES, t.target) ? GRAFANA_SERIES[t.target] : undefined;
      if (!def) {
        throw new ApiError(400, {
          error: "invalid body",
          field: `targets.${i}.target`,
          message: `unknown series; one of ${Object.keys(GRAFANA_SERIES).join(", ")}`,
        });
      }
      const picked = MarketSelection.safeParse(t.payload.market);
      if (!picked.success) {
        throw new ApiError(400, {
          error: "invalid body",
          field: `targets.${i}.payload.market`,
          message: picked.error.issues[0]?.message ?? "invalid",
        });
      }
      let markets = picked.data === undefined
        ? [...deps.markets]
        : typeof picked.data === "string"
        ? [picked.data]
        : [...new Set(picked.data)];
      for (const f of adhoc) markets = markets.filter((m) => m === f.value);
      let run = 0;
      if (def.perRun) {
        const found = await pickRun(deps.sql, t.payload.run, `targets.${i}.payload.run`);
        if (found === null) continue; // no run stored yet: nothing to draw
        run = found;
      }
      // The same series asked twice is refused: it would only double the work.
      const key = JSON.stringify([
        t.target,
        def.markets ? [...markets].sort() : null,
        def.perRun ? run : null,
      ]);
      const first = seen.get(key);
      if (first !== undefined) {
        throw new ApiError(400, {
          error: "invalid body",
          field: `targets.${i}.target`,
          message: `the same series as targets.${first}: ask for each series once`,
        });
      }
      seen.set(key, i);
      points += def.kind === "table"
        ? MAX_TABLE_ROWS
        : (def.markets === "series" ? markets.length : 1) * pointsPerSeries;
      planned.push({ def, markets, run });
    }
    if (points > MAX_POINTS_PER_QUERY) throw tooManyPoints(points);
    // Series per target are known only once read (modes, statuses, actors): count what is
    // answered, and stop once past the limit.
    let answered = 0;
    const out: (TimeSeries | Table)[] = [];
    for (const { def, markets, run } of planned) {
      const frames = await def.run({
        sql: deps.sql,
        fromMs,
        toMs,
        binSec,
        markets,
        maxRows: MAX_TABLE_ROWS,
        run,
      });
      for (const f of frames) answered += "rows" in f ? f.rows.length : f.datapoints.length;
      if (answered > MAX_POINTS_PER_QUERY) throw tooManyPoints(answered);
      out.push(...frames);
    }
    return c.json(out);
  });
  return routes;
}

/**
 * The run a per-run target shows: the payload's `run`, or the newest run when absent (null when
 * none is stored).
 *
 * @throws {ApiError} 400 naming `field` when `raw` is not a run id or names no stored run.
 */
async function pickRun(sql: Sql, raw: unknown, field: string): Promise<number | null> {
  const picked = RunSelection.safeParse(raw === "" ? undefined : raw);
  if (!picked.success) {
    throw new ApiError(400, {
      error: "invalid body",
      field,
      message: picked.error.issues[0]?.message ?? "invalid",
    });
  }
  const [row] = picked.data === undefined
    ? await sql<{ id: string }[]>`select max(id)::text as id from backtest_runs`
    : await sql<
      { id: string }[]
    >`select id::text as id from backtest_runs where id = ${picked.data}`;
  if (picked.data !== undefined && !row) {
    throw new ApiError(400, {
      error: "invalid body",
      field,
      message: `no backtest run ${picked.data}`,
    });
  }
  return row?.id == null ? null : Number(row.id);
}

/** A variable's payload text: a target name, or JSON text `{"target": …}` as the plugin may send. */
function variableTarget(text: string): string {
  if (!text.trimStart().startsWith("{")) return text;
  try {
    const parsed = JSON.parse(text);
    return typeof parsed?.target === "string" ? parsed.target : text;
  } catch {
    return text;
  }
}
