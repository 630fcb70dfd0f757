/**
 * @module Retention: the tables that grow with every second (`market_1s`, `barrier_labels`,
 * `predictions`, `upbit_order_snapshots`, `upbit_account_snapshots`) are pruned past a configured
 * age, in small batches spaced by a pause, so the feed's writes never wait long behind a delete.
 *
 * `paper_trades` and `upbit_order_attempts` are never pruned: they are the trading record (and an
 * order's identifier must stay unique forever). `obs_samples` is pruned by the sampler itself.
 * Rows that running code still reads are kept whatever their age: each market's newest bar (last
 * close for valuations, the feed's and evaluator's resume point), each order's newest snapshot and
 * each currency's newest balance snapshot.
 *
 * It runs in the main thread: it needs no keys and little CPU (a few statements a minute), and a
 * worker of its own would cost a whole isolate's memory for that.
 */
import type { Config } from "../config.ts";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";

/** The tables retention prunes. */
export const PRUNED_TABLES = [
  "market_1s",
  "barrier_labels",
  "predictions",
  "upbit_order_snapshots",
  "upbit_account_snapshots",
] as const;

/** One of {@linkcode PRUNED_TABLES}. */
export type PrunedTable = (typeof PRUNED_TABLES)[number];

/** How long each table's rows are kept, in days (0: forever), and the batch size. */
export interface RetentionPolicy {
  days: Record<PrunedTable, number>;
  /** Most rows one delete statement removes. */
  batchRows: number;
}

/** The policy of a configuration (`RETENTION_*` settings). */
export function retentionPolicy(config: Config): RetentionPolicy {
  return {
    days: {
      market_1s: config.RETENTION_MARKET_BARS_DAYS,
      barrier_labels: config.RETENTION_LABELS_DAYS,
      predictions: config.RETENTION_PREDICTIONS_DAYS,
      upbit_order_snapshots: config.RETENTION_ORDER_SNAPSHOTS_DAYS,
      upbit_account_snapshots: config.RETENTION_ACCOUNT_SNAPSHOTS_DAYS,
    },
    batchRows: config.RETENTION_BATCH_ROWS,
  };
}

/** The column each table is pruned by, one value at a time (the leading column of an index). */
const PARTITION: Record<PrunedTable, "symbol" | "currency"> = {
  market_1s: "symbol",
  barrier_labels: "symbol",
  predictions: "symbol",
  upbit_order_snapshots: "symbol",
  upbit_account_snapshots: "currency",
};

/** Every distinct value of the partition column, read by skipping through its index. */
async function partitions(sql: Sql, table: PrunedTable): Promise<string[]> {
  const col = sql(PARTITION[table]);
  const t = sql(table);
  const rows = await sql<{ v: string | null }[]>`
    with recursive p as (
      (select ${col} as v from ${t} order by ${col} limit 1)
      union all
      select (select ${col} from ${t} where ${col} > p.v order by ${col} limit 1) from p
      where p.v is not null
    )
    select v from p where v is not null`;
  return rows.map((r) => r.v!);
}

/**
 * Deletes at most `limit` rows of one partition older than `cutoff`; returns how many. The rows
 * are picked through the partition's index and deleted by their physical address (`ctid`), so a
 * statement touches those rows only: a delete joined back on `(symbol, ts)` scanned the whole
 * market (114 ms for 100,000 bars on PostgreSQL against 2.4 ms this way).
 */
async function deleteBatch(
  sql: Sql,
  table: PrunedTable,
  key: string,
  cutoff: Date,
  limit: number,
): Promise<number> {
  switch (table) {
    case "market_1s":
      return (await sql`
        delete from market_1s where ctid = any(array(
          select ctid from market_1s
          where symbol = ${key} and ts < ${cutoff}
            and ts < (select max(ts) from market_1s where symbol = ${key})
          order by ts limit ${limit}))`).count;
    case "barrier_labels":
    case "predictions":
      return (await sql`
        delete from ${sql(table)} where ctid = any(array(
          select ctid from ${sql(table)} where symbol = ${key} and ts < ${cutoff}
          order by ts limit ${limit}))`).count;
    case "upbit_order_snapshots":
      return (await sql`
        delete from upbit_order_snapshots where ctid = any(array(
          select o.ctid from upbit_order_snapshots o
          where o.symbol = ${key} and o.ts < ${cutoff}
            and exists (
              select 1 from upbit_order_snapshots n where n.uuid = o.uuid and n.ts > o.ts)
          order by o.ts limit ${limit}))`).count;
    case "upbit_account_snapshots":
      return (await sql`
        delete from upbit_account_snapshots where ctid = any(array(
          select ctid from upbit_account_snapshots
          where currency = ${key} and ts < ${cutoff}
            and ts < (select max(ts) from upbit_account_snapshots where currency = ${key})
          order by ts limit ${limit}))`).count;
  }
}

/** Options of {@linkcode pruneOnce}. */
export interface PruneOptions {
  /** The time ages are measured from. @default {new Date()} */
  now?: Date;
  /** Pause after each delete statement, in ms, so other writers go first. @default {200} */
  pauseMs?: number;
  /** Stops between statements (the run returns what it deleted so far). */
  signal?: AbortSignal;
  /** Called after each delete statement (tests, logs). */
  onBatch?: (table: PrunedTable, deleted: number) => void;
}

/** Rows deleted per table by one run. */
export type PruneResult = Record<PrunedTable, number>;

/**
 * Deletes every row past its table's age, at most `policy.batchRows` per statement, pausing
 * after each statement. Returns the rows deleted per table.
 */
export async function pruneOnce(
  sql: Sql,
  policy: RetentionPolicy,
  options: PruneOptions = {},
): Promise<PruneResult> {
  const now = options.now ?? new Date();
  const pauseMs = options.pauseMs ?? 200;
  const result = Object.fromEntries(PRUNED_TABLES.map((t) => [t, 0])) as PruneResult;
  for (const table of PRUNED_TABLES) {
    const days = policy.days[table];
    if (days <= 0) continue;
    const cutoff = new Date(now.getTime() - days * 86_400_000);
    for (const key of await partitions(sql, table)) {
      for (;;) {
        if (options.signal?.aborted) return result;
        const deleted = await deleteBatch(sql, table, key, cutoff, policy.batchRows);
        result[table] += deleted;
        options.onBatch?.(table, deleted);
        if (deleted > 0 && pauseMs > 0) await pause(pauseMs, options.signal);
        if (deleted < policy.batchRows) break;
      }
    }
  }
  return result;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Options of {@linkcode startRetention}. */
export interface RetentionLoopOptions {
  /** Between the end of one run and the start of the next. */
  intervalMs: number;
  /** Before the first run (start-up goes first). @default {60_000} */
  firstDelayMs?: number;
  /** See {@linkcode PruneOptions.pauseMs}. */
  pauseMs?: number;
}

/**
 * Prunes now and then until the returned function is called; that function stops the loop
 * (between two statements) and resolves once the run under way has ended. A failed run is logged
 * and the next one tries again.
 */
export function startRetention(
  sql: Sql,
  policy: RetentionPolicy,
  log: Logger,
  options: RetentionLoopOptions,
): () => Promise<void> {
  const stop = new AbortController();
  const loop = (async () => {
    let wait = options.firstDelayMs ?? 60_000;
    while (!stop.signal.aborted) {
      await pause(wait, stop.signal);
      if (stop.signal.aborted) break;
      wait = options.intervalMs;
      const started = Date.now();
      try {
        const result = await pruneOnce(sql, policy, {
          pauseMs: options.pauseMs,
          signal: stop.signal,
        });
        const total = Object.values(result).reduce((a, b) => a + b, 0);
        if (total > 0) {
          log.info("Retention pruned old rows", { ...result, ms: Date.now() - started });
        }
      } catch (err) {
        if (!stop.signal.aborted) {
          log.warn("Retention run failed; retrying at the next interval", {
            error: (err as Error).message,
          });
        }
      }
    }
  })();
  return async () => {
    stop.abort();
    await loop;
  };
}
