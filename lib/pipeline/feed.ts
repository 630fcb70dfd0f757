/**
 * @module The feed's logic: Upbit trades -> 1-second bars -> `market_1s` (upserted in batches),
 * final bars reported to the caller (the feed actor publishes them to the evaluator).
 *
 * A bar is final once the event-time watermark has passed it (see `lib/strategy/bars.ts`), or the
 * clock has while the stream is known complete (see {@linkcode Feed.flush}); never because the
 * stream stalled. On start the feed catches up from the newest final bar in the
 * database (of any market: up to there the run before saw every market's trades), so a restart
 * loses no trade: the WebSocket client fetches the catch-up over REST once its first subscription
 * is live, as it fills gaps after its reconnects, paging across 00:00 UTC, and delivers the fetched
 * and the held live trades of every market merged in time order. Trades are deduplicated by the
 * client (`sequential_id`, a bigint kept exact) and again by the aggregator.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { type Bar, BarAggregator, type BarBatch, type Trade } from "../strategy/bars.ts";
import { upsertBars } from "../store/market_1s.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { type TradeEvent, UpbitPublicWs } from "../upbit/ws_public.ts";

/**
 * Margin beyond the lateness when bars are finalised by the clock (see {@linkcode Feed.flush}):
 * for the host's clock running ahead of the exchange's, and a trade slower than the fastest.
 */
const CLOCK_MARGIN_MS = 1000;

/** Options of {@linkcode Feed}. */
export interface FeedOptions {
  sql: Sql;
  markets: readonly string[];
  wsUrl: string;
  /** Public REST client (no keys needed) for the catch-up and gap backfills. */
  rest: UpbitRest;
  log: Logger;
  /** Receives bars as they become final (after they are stored). */
  onFinalBars: (bars: Bar[]) => void;
  /** How often pending bars are written (and finalised by the wall clock). @default {250} */
  flushIntervalMs?: number;
  /** Lateness allowed before a second is final. @default {2000} */
  allowedLatenessMs?: number;
  /**
   * Catch up on start only when the newest final bar (of any market: how long the feed was down)
   * is at most this old; otherwise the feed starts from the time it starts. @default {600000}
   */
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
  /** Trades only the start-up catch-up supplied (the stream did not deliver them). */
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
  /**
   * Largest `timestampMs - performance.now()` of the trades ingested (not rejected as future):
   * the exchange's clock as the stream shows it, at most the fastest trade's delay behind.
   */
  #exchangeOffsetMs = -Infinity;
  /** Ends `start`'s wait for the catch-up (stop). */
  #stopped = Promise.withResolvers<void>();
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
    this.#agg = new BarAggregator({ allowedLatenessMs: options.allowedLatenessMs });
  }

  /** Counters. */
  stats(): FeedStats {
    return { ...this.#stats, reconnects: this.#ws?.stats().reconnects ?? 0 };
  }

  /**
   * Streams, catching up from the newest stored final bar first; resolves once the catch-up is in
   * (the WebSocket client fetches it when its first subscription is live) or `signal` (the actor
   * stopping) or `stop` ends the wait. A stop cancels the catch-up: what was fetched is kept.
   */
  async start(signal?: AbortSignal): Promise<void> {
    const newestFinal = await this.#newestFinalBar();
    const now = this.#now();
    // Never beyond the clock: a bar stored ahead of it must not make every live trade late.
    const resumeMs = newestFinal === null ? null : Math.min(newestFinal + 1000, now);
    if (resumeMs !== null) {
      // Up to that second the run before saw every market's trades (one shared watermark) and
      // wrote them final: a trade of it now (a subscription's snapshot, a live straggler) is late,
      // never a second version of a bar the evaluator already had.
      this.#collect(this.#agg.flushBefore(resumeMs));
    }
    const maxAge = this.#options.maxStartBackfillMs ?? 600_000;
    // Down longer than that: start from now (the first subscription's gap is still filled).
    const sinceMs = newestFinal !== null && resumeMs !== null && now - newestFinal <= maxAge
      ? resumeMs
      : now;
    const caughtUp = Promise.withResolvers<void>();
    this.#ws = new UpbitPublicWs({
      url: this.#options.wsUrl,
      trades: this.#options.markets,
      rest: this.#options.rest,
      logger: this.#options.log,
      batchMs: 20,
      // Ten minutes of a busy market (the start-up catch-up) take more than the default.
      backfillMaxPages: 50,
      // Each PING is answered at once: in a quiet spell the last frame, up to which bars may be
      // finalised by the clock (see `flush`), stays this fresh. 30 a minute, within the
      // websocket-message limit (100 a minute) even if they counted.
      keepaliveMs: 2000,
      sinceMs,
      // A TradeEvent is a Trade (plus its stream type): passed on as it is, not copied.
      onTrades: (events) => this.ingest(events),
      onCaughtUp: (backfilled) => {
        this.#stats.startBackfilled = backfilled;
        this.#options.log.info(
          `Caught up with ${backfilled} trades since ${new Date(sinceMs).toISOString()}`,
        );
        caughtUp.resolve();
      },
      onConnection: (connected) => {
        this.#stats.connected = connected;
      },
      ...this.#options.ws,
    });
    this.#ws.start();
    this.#timer = setInterval(() => void this.flush(), this.#options.flushIntervalMs ?? 250);
    const aborted = Promise.withResolvers<void>();
    const onAbort = () => aborted.resolve();
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([caughtUp.promise, aborted.promise, this.#stopped.promise]);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Start (epoch ms) of the newest final bar of any of the feed's markets; null when none. */
  async #newestFinalBar(): Promise<number | null> {
    if (this.#options.markets.length === 0) return null;
    const sql = this.#options.sql;
    const [row] = await sql<{ ts: Date | null }[]>`
      select max(ts) as ts from market_1s
      where symbol in ${sql(this.#options.markets)} and is_final`;
    return row?.ts ? row.ts.getTime() : null;
  }

  /** Adds trades (from the stream or a backfill). */
  ingest(trades: Trade[]): void {
    this.#stats.trades += trades.length;
    this.#options.onTrades?.(trades);
    // The clock arms the aggregator's guard against future-dated trades (`maxFutureMs`).
    const batch = this.#agg.ingest(trades, this.#now());
    const at = performance.now();
    const rejected = batch.future.length > 0 ? new Set(batch.future) : null;
    let offset = this.#exchangeOffsetMs;
    for (const t of trades) {
      if (t.timestampMs - at > offset && !rejected?.has(t)) offset = t.timestampMs - at;
    }
    this.#exchangeOffsetMs = offset;
    this.#collect(batch);
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

  /**
   * Finalises the bars the clock has passed, then writes pending bars (open ones as not final,
   * then the final ones) and reports the final ones.
   *
   * Clock: a bar is final once the event-time watermark passes it, and after the last trade
   * before a quiet spell nothing moves the watermark, so that bar (stop-loss and take-profit act
   * on it) would stay open until the next trade. So every second ending before the time the last
   * frame was received, less the lateness and {@linkcode CLOCK_MARGIN_MS}, is final too, but only
   * while the stream is complete up to that frame (`UpbitPublicWs.lastFrameAgeMs`: connected,
   * caught up, no gap being filled): trades still to come from a backfill would be late, and a
   * silent connection moves nothing. That time is the earlier of the wall clock's and the
   * exchange's as the trades show it (their timestamps against a monotonic clock), so a host clock
   * ahead of the exchange's or stepped forward does not make live trades late. A trade that
   * arrives for such a second anyway is late like any other: counted, never applied.
   */
  flush(): Promise<void> {
    this.#finaliseByClock();
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  #finaliseByClock(): void {
    const age = this.#ws?.lastFrameAgeMs() ?? null;
    if (age === null || this.#exchangeOffsetMs === -Infinity) return;
    const frameAt = Math.min(
      this.#now() - age,
      performance.now() - age + this.#exchangeOffsetMs,
    );
    this.#collect(
      this.#agg.flushBefore(frameAt - this.#agg.allowedLatenessMs - CLOCK_MARGIN_MS),
    );
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

  /** Stops the stream and writes what is pending (open bars stay not final). */
  async stop(): Promise<void> {
    this.#stopped.resolve();
    clearInterval(this.#timer);
    await this.#ws?.close();
    await this.flush();
  }
}

/** Whether `trade` came as a subscription's snapshot (trades from REST carry no stream type). */
function isSnapshot(trade: Trade): boolean {
  return (trade as Partial<TradeEvent>).streamType === "SNAPSHOT";
}
