/**
 * @module `GET /metrics` in the Prometheus text format (version 0.0.4). Facts kept in the
 * database (paper trades, order attempts and their latency, Upbit answers, trading state, alarms)
 * are counted there at scrape time, so they survive restarts; facts kept in memory (actor
 * restarts, heartbeats, the feed's counters) come from the supervisor and the actors' heartbeats
 * (an actor's own counters start again from zero when it restarts, which Prometheus treats as a
 * counter reset).
 */
import { Hono } from "hono";
import type { ActorStatus } from "../actors/supervisor.ts";
import type { Sql } from "../db/connect.ts";
import { PaperAction } from "../domain.ts";
import {
  REST_CALLS_KEY,
  REST_RATE_LIMITED_KEY,
  REST_REMAINING_REQ_KEY,
} from "../upbit/rest_stats.ts";
import { readiness } from "./health.ts";

/** Upper bounds (seconds) of the order-latency histogram's buckets. */
export const LATENCY_BUCKETS_SEC = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = Record<string, string>;

/** Builds one exposition: families in order, each with HELP and TYPE once. */
export class Exposition {
  #lines: string[] = [];

  /** Adds a family with its samples (`[labels, value]` or `[suffix, labels, value]`). */
  family(
    name: string,
    type: "counter" | "gauge" | "histogram",
    help: string,
    samples: ([Labels, number] | [string, Labels, number])[],
  ): this {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
    for (const s of samples) {
      const [suffix, labels, value] = s.length === 3 ? s : ["", s[0], s[1]];
      this.#lines.push(`${name}${suffix}${formatLabels(labels)} ${formatValue(value)}`);
    }
    return this;
  }

  /** The text, ending with a newline. */
  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** What the exposition reads besides the database. */
export interface MetricsSources {
  sql: Sql;
  actors: () => ActorStatus[];
  supervisorHalted: () => boolean;
  /** Readiness problems found outside the actors (as `/readyz` uses them). */
  readinessProblems?: () => Promise<string[]>;
}

/**
 * The REST counters every actor publishes from its Upbit client (`lib/upbit/rest_stats.ts`):
 * calls by group and status, 429 / 418 answers and the latest Remaining-Req sec per group.
 */
function restSamples(actors: readonly ActorStatus[]): {
  calls: [Labels, number][];
  rateLimited: [Labels, number][];
  remaining: [Labels, number][];
} {
  const calls: [Labels, number][] = [];
  const rateLimited: [Labels, number][] = [];
  const remaining: [Labels, number][] = [];
  for (const a of actors) {
    if (a.state !== "running") continue;
    for (const [key, value] of Object.entries(a.metrics)) {
      if (typeof value !== "number") continue;
      const [kind, first, second] = key.split(":");
      if (kind === REST_CALLS_KEY && first && second) {
        calls.push([{ actor: a.name, group: first, status: second }, value]);
      } else if (kind === REST_RATE_LIMITED_KEY && first) {
        rateLimited.push([{ actor: a.name, code: first }, value]);
      } else if (kind === REST_REMAINING_REQ_KEY && first) {
        remaining.push([{ actor: a.name, group: first }, value]);
      }
    }
  }
  return { calls, rateLimited, remaining };
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

/** Builds the whole exposition (one scrape). */
export async function scrape(src: MetricsSources): Promise<string> {
  const { sql } = src;
  const e = new Exposition();
  const t0 = performance.now();
  await sql`select 1`;
  const pingSec = (performance.now() - t0) / 1000;
  const actors = src.actors();
  const now = Date.now();

  e.family(
    "upbot_actor_up",
    "gauge",
    "1 when the actor is running.",
    actors.map((a) => [
      { actor: a.name },
      a.state === "running" ? 1 : 0,
    ]),
  );
  e.family(
    "upbot_actor_restarts_total",
    "counter",
    "Restarts of the actor since upbot started.",
    actors.map((a) => [{ actor: a.name }, a.restarts]),
  );
  e.family(
    "upbot_actor_heartbeat_age_seconds",
    "gauge",
    "Time since the actor last answered a heartbeat.",
    actors.filter((a) => a.lastHeartbeatAgeMs !== null).map((
      a,
    ) => [{ actor: a.name }, a.lastHeartbeatAgeMs! / 1000]),
  );
  const heaps = actors.flatMap((a) => a.memory === null ? [] : [{ actor: a.name, ...a.memory }]);
  e.family(
    "upbot_actor_heap_used_bytes",
    "gauge",
    "V8 heap in use by the actor's own worker isolate, at its last heartbeat.",
    heaps.map((h) => [{ actor: h.actor }, h.heapUsed]),
  );
  e.family(
    "upbot_actor_heap_total_bytes",
    "gauge",
    "V8 heap reserved by the actor's own worker isolate, at its last heartbeat.",
    heaps.map((h) => [{ actor: h.actor }, h.heapTotal]),
  );
  e.family(
    "upbot_actor_external_memory_bytes",
    "gauge",
    "Memory outside the V8 heap held by the actor's isolate (buffers), at its last heartbeat.",
    heaps.map((h) => [{ actor: h.actor }, h.external]),
  );
  e.family(
    "upbot_ready",
    "gauge",
    "1 when /readyz answers 200 (this instance trades).",
    [[
      {},
      readiness(actors, { now, extraProblems: await src.readinessProblems?.() }).ready ? 1 : 0,
    ]],
  );

  const feed = actors.find((a) => a.name === "feed");
  const fm = feed?.state === "running" ? feed.metrics : {};
  e.family("upbot_feed_trades_received_total", "counter", "Trades the feed received.", [[
    {},
    num(fm.trades),
  ]]);
  e.family("upbot_feed_bars_finalised_total", "counter", "1-second bars the feed made final.", [[
    {},
    num(fm.barsFinal),
  ]]);
  e.family(
    "upbot_feed_late_trades_total",
    "counter",
    "Trades dropped because their second was already final.",
    [[{}, num(fm.lateDropped)]],
  );
  e.family(
    "upbot_feed_late_snapshots_total",
    "counter",
    "Subscription snapshots repeating a trade of a second already final (not lost trades).",
    [[{}, num(fm.lateSnapshots)]],
  );
  e.family("upbot_feed_duplicate_trades_total", "counter", "Trades dropped as duplicates.", [[
    {},
    num(fm.duplicates),
  ]]);
  e.family(
    "upbot_feed_connected",
    "gauge",
    "1 when the feed's WebSocket is connected.",
    [[{}, fm.connected === true ? 1 : 0]],
  );
  e.family(
    "upbot_feed_ws_reconnects_total",
    "counter",
    "Reconnects of the feed's public WebSocket since the feed started.",
    [[{}, num(fm.reconnects)]],
  );
  const account = actors.find((a) => a.name === "account");
  e.family(
    "upbot_private_ws_reconnects_total",
    "counter",
    "Reconnects of the account actor's private WebSocket since it started.",
    account?.state === "running" && typeof account.metrics.private_ws_reconnects === "number"
      ? [[{}, account.metrics.private_ws_reconnects]]
      : [],
  );
  const rest = restSamples(actors);
  e.family(
    "upbot_upbit_rest_calls_total",
    "counter",
    "REST calls each actor's Upbit client made (retries included), by rate-limit group and HTTP status (error: no answer).",
    rest.calls,
  );
  e.family(
    "upbot_upbit_rest_rate_limited_total",
    "counter",
    "REST answers 429 (too many requests) and 418 (banned) each actor's Upbit client got.",
    rest.rateLimited,
  );
  e.family(
    "upbot_upbit_rest_remaining_req",
    "gauge",
    "Requests left in the current second per group, as last answered to each actor's Upbit client.",
    rest.remaining,
  );
  e.family(
    "upbot_feed_last_final_bar_age_seconds",
    "gauge",
    "Time since the end of the newest final bar (as of the feed's last heartbeat).",
    typeof fm.lastFinalBarEndMs === "number"
      ? [[{}, (now - (feed?.lastHeartbeatAgeMs ?? 0) - fm.lastFinalBarEndMs) / 1000]]
      : [],
  );

  const paper = await sql<{ action: string; n: number }[]>`
    select action, count(*)::float8 as n from paper_trades group by action order by action`;
  e.family(
    "upbot_paper_trades_total",
    "counter",
    "Paper trades recorded, by action.",
    PaperAction.options.map((action) => [
      { action },
      paper.find((p) => p.action === action)?.n ?? 0,
    ]),
  );

  const attempts = await sql<{ mode: string; status: string; n: number }[]>`
    select mode, status, count(*)::float8 as n from upbit_order_attempts
    group by mode, status order by mode, status`;
  e.family(
    "upbot_order_attempts",
    "gauge",
    "Order attempts by mode and current status.",
    attempts.map((r) => [{ mode: r.mode, status: r.status }, r.n]),
  );

  const latencyTotals = await sql<{ mode: string; n: number; sum: number }[]>`
    select mode, count(*)::float8 as n, (sum(latency_ms) / 1000.0)::float8 as sum
    from upbit_order_attempts where latency_ms is not null group by mode order by mode`;
  const latencyBuckets = await sql<{ mode: string; le: number; n: number }[]>`
    select a.mode, b.le, (count(*) filter (where a.latency_ms <= b.le * 1000))::float8 as n
    from upbit_order_attempts a cross join unnest(${LATENCY_BUCKETS_SEC}::float8[]) as b(le)
    where a.latency_ms is not null group by a.mode, b.le order by a.mode, b.le`;
  type Sample = [string, Labels, number];
  e.family(
    "upbot_order_latency_seconds",
    "histogram",
    "Latency of order requests to Upbit (test and live), from the recorded attempts.",
    latencyTotals.flatMap((r): Sample[] => [
      ...LATENCY_BUCKETS_SEC.map((le): Sample => [
        "_bucket",
        { mode: r.mode, le: String(le) },
        latencyBuckets.find((b) => b.mode === r.mode && b.le === le)?.n ?? 0,
      ]),
      ["_bucket", { mode: r.mode, le: "+Inf" }, r.n],
      ["_sum", { mode: r.mode }, r.sum],
      ["_count", { mode: r.mode }, r.n],
    ]),
  );

  const responses = await sql<{ grp: string; code: string; n: number }[]>`
    select coalesce(substring(remaining_req from 'group=([A-Za-z0-9_-]+)'), 'unknown') as grp,
           http_status::text as code, count(*)::float8 as n
    from upbit_order_attempts where http_status is not null
    group by 1, 2 order by 1, 2`;
  e.family(
    "upbot_upbit_order_responses_total",
    "counter",
    "Answers to the executor's order requests, by Upbit rate-limit group and HTTP status.",
    responses.map((r) => [{ group: r.grp, code: r.code }, r.n]),
  );
  e.family(
    "upbot_upbit_rate_limited_total",
    "counter",
    "Order requests answered 429 (too many requests) or 418 (banned).",
    ["418", "429"].map((code) => [
      { code },
      responses.filter((r) => r.code === code).reduce((s, r) => s + r.n, 0),
    ]),
  );
  const remaining = await sql<{ grp: string; sec: number }[]>`
    select distinct on (grp) grp, sec from (
      select substring(remaining_req from 'group=([A-Za-z0-9_-]+)') as grp,
             substring(remaining_req from 'sec=([0-9]+)')::float8 as sec, updated_at
      from upbit_order_attempts
      where remaining_req ~ 'group=[A-Za-z0-9_-]+' and remaining_req ~ 'sec=[0-9]+') r
    order by grp, updated_at desc`;
  e.family(
    "upbot_upbit_remaining_req",
    "gauge",
    "Requests left in the current second per Upbit group, as last answered (Remaining-Req sec).",
    remaining.map((r) => [{ group: r.grp }, r.sec]),
  );

  const halts = await sql<{ scope: string; halted: boolean }[]>`
    select scope, halted from trading_state order by scope`;
  const globalHalted = halts.some((h) => h.scope === "global" && h.halted);
  e.family(
    "upbot_trading_halted",
    "gauge",
    "1 when new entries are halted on the scope (global or a market).",
    [
      [{ scope: "global" }, globalHalted ? 1 : 0],
      ...halts.filter((h) => h.scope !== "global").map((h) =>
        [{ scope: h.scope }, h.halted ? 1 : 0] as [Labels, number]
      ),
    ],
  );
  e.family(
    "upbot_supervisor_halted",
    "gauge",
    "1 when the supervisor halted trading (a critical actor failed for good).",
    [[{}, src.supervisorHalted() ? 1 : 0]],
  );
  const alarms = await sql<{ code: string; n: number }[]>`
    select code, count(*)::float8 as n from alarms where cleared_at is null
    group by code order by code`;
  e.family("upbot_alarms_active", "gauge", "Active alarms, by code.", [
    [{ code: "all" }, alarms.reduce((s, a) => s + a.n, 0)],
    ...alarms.map((a) => [{ code: a.code }, a.n] as [Labels, number]),
  ]);
  e.family(
    "upbot_db_ping_seconds",
    "gauge",
    "Round trip of select 1 from the main thread at this scrape.",
    [[{}, pingSec]],
  );
  e.family(
    "upbot_scrape_db_seconds",
    "gauge",
    "Time the database spent answering this scrape's queries.",
    [[{}, (performance.now() - t0) / 1000]],
  );
  return e.toString();
}

/** `GET /metrics`. */
export function prometheusRoute(src: MetricsSources): Hono {
  const routes = new Hono();
  routes.get("/metrics", async (c) => {
    const text = await scrape(src);
    return c.body(text, 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  return routes;
}
