/**
 * @module Benchmark of the HTTP API: requests per second and p50/p99 latency of `GET /api/status`
 * and of a Grafana `POST /grafana/query` (series `close`, 10 markets, 24 h of 1-second bars =
 * 864,000 rows, `maxDataPoints` 1000), each next to the same SQL run directly, on PGlite and (when
 * `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` is set) on PostgreSQL. Requests go over a real socket
 * to `Deno.serve` on port 0, one at a time. Prints the numbers; asserts nothing.
 *
 * Usage: deno run -A bench/http_grafana_status.ts [requests]
 */
import postgres from "postgres";
import { type Client, connect, type DbConnection } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { parseConfig } from "../lib/config.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { createApp } from "../lib/http/app.ts";
import { dashboardRoutes } from "../lib/http/dashboard_routes.ts";
import { barsTable, binSeconds, closeSql, grafanaRoutes } from "../lib/http/grafana_routes.ts";
import { migrate } from "../lib/db/migrate.ts";

const REQUESTS = Number(Deno.args[0] ?? 200);
const MARKETS = Array.from({ length: 10 }, (_, i) => `KRW-M${i}`);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));

interface Backend {
  name: string;
  sql: Client;
  close(): Promise<void>;
}

async function pglite(): Promise<Backend> {
  const embedded = await startEmbeddedDatabase({ dataDir: null });
  const connection: DbConnection = { kind: "embedded", ...embedded.endpoint };
  const sql = connect(connection);
  return {
    name: "PGlite",
    sql,
    async close() {
      await sql.end({ timeout: 5 });
      await embedded.close();
    },
  };
}

async function postgresServer(adminUrl: string): Promise<Backend> {
  const name = `upbot_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = connect({ kind: "url", url: url.toString() });
  return {
    name: "PostgreSQL",
    sql,
    async close() {
      await sql.end({ timeout: 5 });
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 5 });
    },
  };
}

/** 24 h of 1-second bars ending now for each market (a random walk per market). */
async function fill(sql: Client, endMs: number): Promise<number> {
  const t0 = performance.now();
  for (const [i, market] of MARKETS.entries()) {
    await sql.unsafe(
      `insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume,
                              trade_count, buy_volume, sell_volume, is_final)
       select $1, to_timestamp(($2::float8 - 86400000) / 1000) + make_interval(secs => s),
              p, p + 10, p - 10, p, 0.01, p * 0.01, 3, 0.005, 0.005, true
       from (select s, (100000 * ($3 + 1) + 1000 * sin(s / 600.0))::numeric as p
             from generate_series(0, 86399) as s) g`,
      [market, endMs, i],
    );
  }
  await sql`analyze market_1s`;
  return (performance.now() - t0) / 1000;
}

function stats(samplesMs: number[]): string {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  const total = samplesMs.reduce((s, v) => s + v, 0) / 1000;
  return `${(samplesMs.length / total).toFixed(1).padStart(7)} req/s  p50 ${
    pct(0.5).toFixed(2).padStart(7)
  } ms  p99 ${pct(0.99).toFixed(2).padStart(7)} ms`;
}

async function measure(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(5, n); i++) await fn(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return samples;
}

async function run(backend: Backend): Promise<void> {
  const { sql } = backend;
  await migrate(sql);
  const endMs = Math.floor(Date.now() / 1000) * 1000;
  const fillSec = await fill(sql, endMs);
  const [count] = await sql<{ n: number }[]>`select count(*)::int as n from market_1s`;
  const n = count!.n;
  out(`\n${backend.name}: ${n.toLocaleString("en")} bars loaded in ${fillSec.toFixed(1)} s`);

  const config = parseConfig({ MARKETS: MARKETS.join(",") });
  const app = createApp({
    liveness: () => ({ ok: true, db: "ok", uptime_sec: 0 }),
    readiness: () => ({ ready: true, problems: [] }),
    routes: [
      dashboardRoutes({
        sql,
        guard: decideTradeMode(config),
        markets: MARKETS,
        actors: () => [],
        supervisorHalt: () => null,
        startedAt: Date.now(),
      }),
      grafanaRoutes({ sql, markets: MARKETS }),
    ],
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const fromMs = endMs - 86_400_000;
    const body = JSON.stringify({
      range: { from: new Date(fromMs).toISOString(), to: new Date(endMs).toISOString() },
      intervalMs: 1000,
      maxDataPoints: 1000,
      targets: [{ target: "close", refId: "A" }],
    });
    const binSec = binSeconds(fromMs, endMs, 1000, 1000);
    let points = 0;
    const grafana = await measure(Math.max(20, Math.floor(REQUESTS / 4)), async () => {
      const res = await fetch(`${base}/grafana/query`, { method: "POST", body });
      const series = await res.json() as { datapoints: unknown[] }[];
      points = series.reduce((s, x) => s + x.datapoints.length, 0);
    });
    const direct = await measure(
      Math.max(20, Math.floor(REQUESTS / 4)),
      () => sql.unsafe(closeSql(barsTable(binSec)), [fromMs, endMs, binSec, MARKETS] as never[]),
    );
    out(`  grafana /query close (10 markets, 24 h, ${points} points): ${stats(grafana)}`);
    out(`  same SQL directly:                               ${stats(direct)}`);
    const status = await measure(REQUESTS, async () => {
      const res = await fetch(`${base}/api/status`);
      await res.arrayBuffer();
    });
    const statusSql = await measure(REQUESTS, () =>
      Promise.all([
        sql`select scope, halted, reason, changed_by as by, since from trading_state`,
        sql`select * from alarms where cleared_at is null order by first_at, id`,
      ]));
    out(`  GET /api/status:                                 ${stats(status)}`);
    out(`  its two queries directly:                        ${stats(statusSql)}`);
  } finally {
    await server.shutdown();
  }
}

const pg = Deno.env.get("BENCH_DATABASE_URL") ?? Deno.env.get("TEST_DATABASE_URL");
out(
  `upbot HTTP benchmark: ${REQUESTS} status requests, ${
    Math.max(20, Math.floor(REQUESTS / 4))
  } Grafana queries per backend`,
);
for (const open of [pglite, ...(pg ? [() => postgresServer(pg)] : [])]) {
  const backend = await open();
  try {
    await run(backend);
  } finally {
    await backend.close();
  }
}
