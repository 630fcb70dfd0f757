/**
 * @module Feed ingest benchmark: simulator WebSocket -> feed actor (its own Worker, as in upbot) ->
 * 1-second bars -> database, for 10 markets at rising trade rates, next to a bare client that only
 * receives and parses the same frames from the same simulator at the same rate.
 *
 * At each rate: the bare client counts trades for `seconds` (again when it got less than 95% of
 * the rate asked, the higher count kept); then the feed runs against the same
 * simulator for as long, and its rate is what it stored for those whole seconds (the sum of
 * `trade_count` of their bars, by trade time). A rate is sustained when the feed
 * dropped no late trade, saw no duplicate, had no write error, its newest final bar is no older
 * than the lateness window plus 2.5 s at the end, and once the simulator stops every trade it
 * received is in `market_1s` (sum of `trade_count`).
 *
 * Usage: deno run -A --unstable-worker-options bench/feed_ingest.ts [pglite|postgres] [seconds]
 *   (postgres needs BENCH_DATABASE_URL or TEST_DATABASE_URL: a fresh database is created on it)
 */
import postgres from "postgres";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";
import { parseConfig } from "../lib/config.ts";
import { configureLogging } from "../lib/log.ts";
import { type Database, openDatabase } from "../lib/db/connect.ts";
import { migrate } from "../lib/db/migrate.ts";
import { pipelineActorSpecs } from "../lib/pipeline/actor_specs.ts";
import {
  benchDatabaseUrl,
  type BenchRow,
  fmt,
  out,
  sleep,
  startSimProcess,
  TEN_MARKETS,
} from "./_harness.ts";

/**
 * How much older than the lateness window the newest final bar may be: a bar is final once the
 * window has passed its end, written within a flush interval (250 ms) and reported at the next
 * heartbeat (1 s), plus a second of slack.
 */
const LAG_SLACK_MS = 2_500;

/** The bare client counts again when it got less than this share of the rate asked. */
const BARE_RECOUNT_BELOW = 0.95;

/** The rates tried, trades per second over all 10 markets. */
export const RATES = [5_000, 10_000, 20_000, 30_000, 40_000, 60_000];

/** One rate's result. */
export interface IngestStep {
  rate: number;
  bareRate: number;
  feedRate: number;
  lateDropped: number;
  duplicates: number;
  writeErrors: number;
  /** Trades the feed received minus trades stored in bars (after the simulator stopped). */
  lost: number;
  /** Age of the newest final bar at the end of the window, ms. */
  lagMs: number;
  sustained: boolean;
}

async function bareClientRate(wsUrl: string, seconds: number): Promise<number> {
  const ws = new WebSocket(wsUrl);
  ws.binaryType = "arraybuffer";
  await new Promise((r, j) => {
    ws.onopen = r;
    ws.onerror = j;
  });
  let trades = 0;
  const decoder = new TextDecoder();
  ws.onmessage = (ev) => {
    const text = typeof ev.data === "string" ? ev.data : decoder.decode(ev.data as ArrayBuffer);
    const parsed = JSON.parse(text);
    trades += Array.isArray(parsed) ? parsed.length : 1;
  };
  ws.send(JSON.stringify([{ ticket: "bench" }, {
    type: "trade",
    codes: TEN_MARKETS,
    is_only_realtime: true,
  }]));
  await sleep(1000);
  const start = trades;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const got = trades - start;
  const elapsed = (performance.now() - t0) / 1000;
  const closed = new Promise((r) => (ws.onclose = r));
  ws.close();
  await closed;
  return got / elapsed;
}

type FeedMetrics = Record<string, number | string | boolean | null>;

function feedMetrics(supervisor: UpbotSupervisor): FeedMetrics {
  return supervisor.status().find((a) => a.name === "feed")?.metrics ?? {};
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function feedStep(
  db: Database,
  rate: number,
  seconds: number,
): Promise<IngestStep> {
  await db.sql`truncate market_1s`;
  const sim = await startSimProcess({ rate });
  let simOpen = true;
  // A bare count well short of the rate asked is the machine's hiccup, not the ceiling (the
  // simulator or the bare client itself fell behind): counted once more, the higher kept.
  let bareRate = await bareClientRate(sim.wsUrl, seconds);
  if (bareRate < BARE_RECOUNT_BELOW * rate) {
    bareRate = Math.max(bareRate, await bareClientRate(sim.wsUrl, seconds));
  }
  const config = parseConfig({
    MARKETS: TEN_MARKETS.join(","),
    UPBIT_REST_URL: sim.restUrl,
    UPBIT_WS_URL: sim.wsUrl,
  });
  const feedSpec = pipelineActorSpecs(config, db.connection).filter((s) => s.name === "feed");
  const supervisor = new UpbotSupervisor({
    actors: feedSpec,
    log: { level: "error", format: "json" },
    statusLogIntervalMs: 0,
  });
  try {
    await supervisor.start();
    await waitFor(
      () =>
        feedMetrics(supervisor).connected === true && feedMetrics(supervisor).backfillDone === true,
      30_000,
      "the feed to connect",
    );
    await sleep(1500); // heartbeats carry metrics once a second
    const windowStart = Math.ceil(Date.now() / 1000) * 1000;
    await sleep(seconds * 1000 + (windowStart - Date.now()));
    await sleep(1100 - (Date.now() % 1000)); // let a heartbeat with this second's metrics land
    const m1 = feedMetrics(supervisor);
    const windowEnd = Math.floor(Date.now() / 1000) * 1000 - 1000;
    const lagMs = m1.lastFinalBarEndMs == null
      ? Infinity
      : Date.now() - Number(m1.lastFinalBarEndMs);
    // Stop the market, let every open second become final and be written, then count.
    await sim.close();
    simOpen = false;
    await sleep(Number(m1.allowedLatenessMs ?? 2000) + 2500);
    const m2 = feedMetrics(supervisor);
    // The rate the feed stored, by trade time: every trade of the window's whole seconds.
    const [inWindow] = await db.sql<{ n: string | null }[]>`
      select sum(trade_count)::text as n from market_1s
      where ts >= ${new Date(windowStart)} and ts < ${new Date(windowEnd)}`;
    const feedRate = Number(inWindow?.n ?? 0) / ((windowEnd - windowStart) / 1000);
    const [stored] = await db.sql<{ n: string | null }[]>`
      select sum(trade_count)::text as n from market_1s`;
    const received = Number(m2.trades) - Number(m2.duplicates) - Number(m2.lateDropped);
    const lost = received - Number(stored?.n ?? 0);
    const step: IngestStep = {
      rate,
      bareRate,
      feedRate,
      lateDropped: Number(m2.lateDropped),
      duplicates: Number(m2.duplicates),
      writeErrors: Number(m2.writeErrors),
      lost,
      lagMs,
      sustained: false,
    };
    step.sustained = step.lateDropped === 0 && step.duplicates === 0 && step.writeErrors === 0 &&
      lost === 0 && lagMs <= Number(m1.allowedLatenessMs ?? 2000) + LAG_SLACK_MS;
    return step;
  } finally {
    await supervisor.stop("bench done");
    if (simOpen) await sim.close();
  }
}

/** A fresh database on `backend` (PGlite in a temporary directory, or a new PostgreSQL database). */
export async function freshDatabase(
  backend: "pglite" | "postgres",
): Promise<{ db: Database; dispose(): Promise<void> }> {
  if (backend === "pglite") {
    const dir = await Deno.makeTempDir({ prefix: "upbot_bench_" });
    const db = await openDatabase({ DATABASE_URL: undefined, DATA_DIR: dir });
    await migrate(db.sql);
    return {
      db,
      async dispose() {
        await db.close();
        await Deno.remove(dir, { recursive: true });
      },
    };
  }
  const adminUrl = benchDatabaseUrl();
  if (!adminUrl) throw new Error("set BENCH_DATABASE_URL (or TEST_DATABASE_URL) for postgres");
  const name = `upbot_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await openDatabase({ DATABASE_URL: url.toString(), DATA_DIR: "" });
  await migrate(db.sql);
  return {
    db,
    async dispose() {
      await db.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 5 });
    },
  };
}

/** Runs every rate on `backend`, stopping after the first rate the feed does not sustain. */
export async function benchFeedIngest(
  backend: "pglite" | "postgres",
  seconds = 5,
  rates = RATES,
): Promise<IngestStep[]> {
  const { db, dispose } = await freshDatabase(backend);
  const steps: IngestStep[] = [];
  try {
    for (const rate of rates) {
      const step = await feedStep(db, rate, seconds);
      steps.push(step);
      if (!step.sustained) break;
    }
  } finally {
    await dispose();
  }
  return steps;
}

/** The suite's row for one backend. */
export function ingestRow(backend: string, steps: IngestStep[]): BenchRow {
  const sustained = steps.filter((s) => s.sustained);
  const best = sustained.at(-1);
  const ceiling = Math.max(...steps.map((s) => s.bareRate));
  const feed = best?.feedRate ?? 0;
  const ratio = feed / ceiling;
  return {
    part: `feed ingest (${backend})`,
    measure: "highest sustained trades/s, 10 markets",
    upbot: best ? `${fmt(feed)} (at rate ${fmt(best.rate)})` : "none sustained",
    reference: `bare client ${fmt(ceiling)}`,
    ratio: `${fmt(ratio * 100, 1)}%`,
    target: ">= 95%",
    met: ratio >= 0.95 ? "yes" : "no",
  };
}

/** One line per step, for the doc. */
export function describeStep(s: IngestStep): string {
  return `rate ${fmt(s.rate)}: bare ${fmt(s.bareRate)}/s, feed ${fmt(s.feedRate)}/s (${
    fmt((s.feedRate / s.bareRate) * 100, 1)
  }%), late ${s.lateDropped}, duplicates ${s.duplicates}, write errors ${s.writeErrors}, lost ${s.lost}, lag ${
    Number.isFinite(s.lagMs) ? fmt(s.lagMs) + " ms" : "no final bar"
  } -> ${s.sustained ? "sustained" : "NOT sustained"}`;
}

if (import.meta.main) {
  configureLogging({ level: "error" });
  const backend = (Deno.args[0] ?? "pglite") as "pglite" | "postgres";
  const steps = await benchFeedIngest(backend, Number(Deno.args[1] ?? 5));
  for (const s of steps) out(describeStep(s));
  out(JSON.stringify(ingestRow(backend, steps)));
}
