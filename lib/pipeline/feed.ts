/**
 * @module The feed's logic: Upbit trades -> 1-second bars -> `market_1s` (upserted in batches),
 * final bars reported to the caller (the feed actor publishes them to the evaluator).
 *
 * A bar is final only once the event-time watermark has passed it (see `lib/strategy/bars.ts`),
 * never because the stream stalled. On start the feed backfills over REST from the last final bar
 * in the database, so a restart loses no trade; the WebSocket client backfills gaps after its own
 * reconnects; both page across 00:00 UTC. Trades are deduplicated by the client (`sequential_id`, a
 * bigint kept exact) and again by the aggregator.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { type Bar, BarAggregator, type BarBatch, type Trade } from "../strategy/bars.ts";
import { upsertBars } from "../store/market_1s.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { type TradeEvent, UpbitPublicWs } from "../upbit/ws_public.ts";
import { tradesSince } from "../upbit/trade_backfill.ts";

/** Options of {@linkcode Feed}. */
export interface FeedOptions {
  sql: Sql;
  markets: readonly string[];
  wsUrl: string;
  /** Public REST client (no keys needed) for backfill. */
  rest: UpbitRest;
  log: Logger;
  /** Receives bars as they become final (after they are stored). */
  onFinalBars: (bars: Bar[]) => void;
  /** How often pending bars are written. @default {250} */
  flushIntervalMs?: number;
  /** Lateness allowed before a second is final. @default {2000} */
  allowedLatenessMs?: number;
  /** Backfill on start only when the last final bar is at most this old. @default {600000} */
  maxStartBackfillMs?: number;
  /** Options passed to the WebSocket client (tests shorten timings). */
  ws?: Partial<ConstructorParameters<typeof UpbitPublicWs>[0]>;
  /** Sees every trade received (stream and backfills) before aggregation: the trade recorder. */
  onTrades?: (trades: readonly Trade[]) => void;
  /** The wall clock, epoch ms (tests). @default {Date.now} */
  now?: () => number;
}

/** Counters for status and metrics. */
export interface FeedStats {
  trades: number;
  barsFinal: number;
  lateDropped: number;
  /**
   * Subscription snapshots older than the watermark: a SNAPSHOT repeats the market's last trade
   * from before the subscription, whose second this feed (its backfill) or the run before a
   * restart already wrote final. Not lost trades, so not in `lateDropped`.
   */
  lateSnapshots: number;
  /**
   * Trades stamped more than a minute ahead of the wall clock: rejected, so that one bad
   * timestamp cannot move the shared watermark into the future and make every later trade late.
   */
  futureRejected: number;
  duplicates: number;
  writeErrors: number;
  startBackfilled: number;
  connected: boolean;
  /** Reconnects of the public WebSocket since start. */
  reconnects: number;
}

/** Trades in, bars out. */
export class Feed {
  #options: FeedOptions;
  #now: () => number;
  #agg: BarAggregator;
  #ws: UpbitPublicWs | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Latest version of each changed open bar, by market and ts. */
  #openBars = new Map<string, Bar>();
  #finalBars: Bar[] = [];
  #flushing: Promise<void> | null = null;
  /** Live trades held while the start-up backfill runs; null otherwise. */
  #heldLive: Trade[] | null = null;
  #stats: FeedStats = {
    trades: 0,
    barsFinal: 0,
    lateDropped: 0,
    lateSnapshots: 0,
    futureRejected: 0,
    duplicates: 0,
    writeErrors: 0,
    startBackfilled: 0,
    connected: false,
    reconnects: 0,
  };

  constructor(options: FeedOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#agg = new BarAggregator({ allowedLatenessMs: options.allowedLatenessMs ?? 2000 });
  }

  /** Counters. */
  stats(): FeedStats {
    return { ...this.#stats, reconnects: this.#ws?.stats().reconnects ?? 0 };
  }

  /**
   * Backfills from the last stored final bar, then streams. `signal` (the actor stopping) ends the
   * backfill early: what was fetched is kept, the rest is not asked for.
   */
  async start(signal?: AbortSignal): Promise<void> {
    this.#ws = new UpbitPublicWs({
      url: this.#options.wsUrl,
      trades: this.#options.markets,
      rest: this.#options.rest,
      logger: this.#options.log,
      batchMs: 20,
      // A TradeEvent is a Trade (plus its stream type): passed on as it is, not copied.
      onTrades: (events) => {
        if (this.#heldLive) { for (const t of events) this.#heldLive.push(t); }
        else this.ingest(events);
      },
      onConnection: (connected) => {
        this.#stats.connected = connected;
      },
      ...this.#options.ws,
    });
    // Subscribe first so nothing falls between the backfill and the live stream, but hold the
    // live trades back until the backfill is in: they would move the watermark past the
    // backfilled seconds and make those trades late. The aggregator drops the overlap as
    // duplicates.
    this.#heldLive = [];
    this.#ws.start();
    try {
      await this.#backfillFromDatabase(signal);
    } finally {
      const held = this.#heldLive;
      this.#heldLive = null;
      this.ingest(held);
    }
    this.#timer = setInterval(() => void this.flush(), this.#options.flushIntervalMs ?? 250);
  }

  /** Adds trades (from the stream or a backfill). */
  ingest(trades: Trade[]): void {
    this.#stats.trades += trades.length;
    this.#options.onTrades?.(trades);
    // The clock arms the aggregator's guard against future-dated trades (`maxFutureMs`).
    this.#collect(this.#agg.ingest(trades, this.#now()));
  }

  #collect(batch: BarBatch): void {
    this.#stats.duplicates += batch.duplicates;
    const late = batch.late.filter((t) => !isSnapshot(t));
    this.#stats.lateSnapshots += batch.late.length - late.length;
    if (batch.future.length > 0) {
      this.#stats.futureRejected += batch.future.length;
      this.#options.log.warn(`Rejected ${batch.future.length} trades stamped in the future`, {
        first: batch.future[0],
      });
    }
    if (late.length > 0) {
      this.#stats.lateDropped += late.length;
      this.#options.log.warn(`Dropped ${late.length} trades later than the watermark`, {
        first: late[0],
      });
    }
    for (const b of batch.open) this.#openBars.set(`${b.market}|${b.ts}`, b);
    for (const b of batch.final) {
      this.#openBars.delete(`${b.market}|${b.ts}`);
      this.#finalBars.push(b);
    }
  }

  /** Writes pending bars (open ones as not final, then the final ones), then reports the final. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    const open = [...this.#openBars.values()];
    const final = this.#finalBars;
    if (open.length === 0 && final.length === 0) return;
    this.#openBars = new Map();
    this.#finalBars = [];
    try {
      await upsertBars(this.#options.sql, open, false);
      await upsertBars(this.#options.sql, final, true);
    } catch (err) {
      // Keep them for the next flush; a newer open version wins over the one we failed to write.
      this.#stats.writeErrors++;
      for (const b of open) {
        const k = `${b.market}|${b.ts}`;
        if (!this.#openBars.has(k)) this.#openBars.set(k, b);
      }
      this.#finalBars = [...final, ...this.#finalBars];
      this.#options.log.error("Writing bars failed; will retry", { error: (err as Error).message });
      return;
    }
    if (final.length > 0) {
      this.#stats.barsFinal += final.length;
      this.#options.onFinalBars(final);
    }
  }

  async #backfillFromDatabase(signal: AbortSignal | undefined): Promise<void> {
    const maxAge = this.#options.maxStartBackfillMs ?? 600_000;
    const backfilled: Trade[] = [];
    for (const market of this.#options.markets) {
      if (signal?.aborted) break;
      const [row] = await this.#options.sql<{ ts: Date }[]>`
        select max(ts) as ts from market_1s where symbol = ${market} and is_final`;
      const lastFinal = row?.ts ? row.ts.getTime() : null;
      if (lastFinal === null || Date.now() - lastFinal > maxAge) continue;
      // A failed request keeps the trades fetched before it (and is logged).
      const trades = await this.#tradesSince(market, lastFinal + 1000, signal);
      this.#stats.startBackfilled += trades.length;
      backfilled.push(...trades);
      this.#options.log.info(
        `Backfilled ${trades.length} trades of ${market} since the last final bar`,
      );
    }
    // All markets at once, in time order: the shared watermark must not pass one market's
    // backfill because another market's came first.
    backfilled.sort((a, b) => a.timestampMs - b.timestampMs);
    this.ingest(backfilled);
  }

  /**
   * Trades of `market` at or after `sinceMs`, oldest first: pages back with `cursor`, and across
   * 00:00 UTC with `days_ago`.
   */
  async #tradesSince(
    market: string,
    sinceMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Trade[]> {
    const { trades, complete, error } = await tradesSince(this.#options.rest, market, sinceMs, {
      maxPages: 50,
      signal,
    });
    // A stop cuts the paging short: not a failure worth a warning.
    const stopped = signal?.aborted === true;
    if (error !== undefined && !stopped) {
      this.#options.log.warn(`Backfill of ${market} failed; continuing with the live stream`, {
        error: error instanceof Error ? error.message : String(error),
        fetched: trades.length,
      });
    } else if (!complete && !stopped) {
      this.#options.log.warn(
        `Backfill of ${market} stopped at its page limit; older trades are missing`,
        {
          since_ms: sinceMs,
          fetched: trades.length,
        },
      );
    }
    return trades
      .map((t): Trade => ({
        market,
        price: t.trade_price,
        volume: t.trade_volume,
        side: t.ask_bid,
        timestampMs: t.timestamp,
        sequentialId: t.sequential_id,
      }))
      .sort((a, b) =>
        a.timestampMs - b.timestampMs ||
        (a.sequentialId < b.sequentialId ? -1 : a.sequentialId > b.sequentialId ? 1 : 0)
      );
  }

  /** Stops the stream and writes what is pending (open bars stay not final). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#ws?.close();
    await this.flush();
  }
}

/** Whether `trade` came as a subscription's snapshot (trades from REST carry no stream type). */
function isSnapshot(trade: Trade): boolean {
  return (trade as Partial<TradeEvent>).streamType === "SNAPSHOT";
}
