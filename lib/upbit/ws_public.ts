/**
 * @module `UpbitPublicWs`: Upbit's public market-data stream (§7) on one connection — `trade` for
 * many markets, and `ticker`, `orderbook`, `candle.1s` .. `candle.240m` on request — turned into
 * typed events.
 *
 * Trades are deduplicated by `sequential_id` (a bigint: Upbit's ids exceed 2^53) with bounded
 * memory and, after a reconnect, the gap is backfilled from `GET /v1/trades/ticks` (paging with
 * `cursor`, and across 00:00 UTC with `days_ago`) while every live trade is held back; the
 * backfilled and held trades are then delivered merged in time order, so consumers see every trade
 * once and in order. With `sinceMs` the first connection is treated the same way: a consumer's
 * start-up catch-up, filled once the subscription is live. Malformed frames are counted and skipped.
 * Delivery is by callbacks; trades come in batches (`batchMs`) for throughput.
 */
import { z } from "zod";
import { createLogger, type Logger } from "../log.ts";
import { ReconnectingSocket } from "./_ws_base.ts";
import type { BackoffOptions } from "../backoff.ts";
import type { UpbitRest } from "./rest.ts";
import { UpbitRequestBudget } from "./rate_limiter.ts";
import { OrderbookUnit, parseJsonExactIds, type TradeTick } from "./schemas.ts";
import { tradesSince } from "./trade_backfill.ts";

/** Where an event came from: Upbit's `stream_type`, or our REST gap backfill. */
export type StreamType = "SNAPSHOT" | "REALTIME" | "BACKFILL";

/** One trade (§7.5). Prices and volumes are JSON numbers on the wire and stay numbers. */
export interface TradeEvent {
  readonly type: "trade";
  readonly market: string;
  readonly price: number;
  readonly volume: number;
  /** `BID`: a buy order lifted an ask; `ASK`: a sell order hit a bid. */
  readonly side: "ASK" | "BID";
  /** Trade time (`trade_timestamp`), epoch ms. */
  readonly timestampMs: number;
  /** Unique per trade; exceeds 2^53, hence bigint. */
  readonly sequentialId: bigint;
  readonly streamType: StreamType;
}

/** A ticker update (§7.4), main fields. */
export interface TickerEvent {
  readonly type: "ticker";
  readonly market: string;
  readonly price: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly prevClosingPrice: number;
  readonly change: "RISE" | "EVEN" | "FALL";
  readonly signedChangeRate: number;
  readonly accTradePrice24h: number;
  readonly accTradeVolume24h: number;
  readonly timestampMs: number;
  readonly streamType: StreamType;
}

/** A full top-N book (§7.6: every message is a snapshot, not a delta). */
export interface OrderbookEvent {
  readonly type: "orderbook";
  readonly market: string;
  readonly totalAskSize: number;
  readonly totalBidSize: number;
  /** Best level first. */
  readonly units: readonly {
    askPrice: number;
    bidPrice: number;
    askSize: number;
    bidSize: number;
  }[];
  readonly timestampMs: number;
  readonly streamType: StreamType;
}

/** Units of the `candle.{unit}` streams (§7.7). */
export const CANDLE_UNITS = ["1s", "1m", "3m", "5m", "10m", "15m", "30m", "60m", "240m"] as const;
/** One of {@linkcode CANDLE_UNITS}. */
export type CandleUnit = (typeof CANDLE_UNITS)[number];

/** A candle (§7.7), the current one of its unit; the same `candleDateTimeUtc` repeats (last wins). */
export interface CandleEvent {
  readonly type: "candle";
  readonly unit: CandleUnit;
  readonly market: string;
  readonly candleDateTimeUtc: string;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
  readonly volume: number;
  readonly value: number;
  readonly timestampMs: number;
  readonly streamType: StreamType;
}

const Stream = z.enum(["SNAPSHOT", "REALTIME"]);
/** Exact: a digit string from `parseJsonExactIds`, or a number only while it is a safe integer. */
const SeqId = z.union([
  z.string().regex(/^\d+$/),
  z.number().int().nonnegative().refine(Number.isSafeInteger),
]);

/** `trade` frame, DEFAULT format (exported for the test that holds {@linkcode isTradeFrame} to it). */
export const TradeFrame = z.object({
  type: z.literal("trade"),
  code: z.string(),
  trade_price: z.number(),
  trade_volume: z.number(),
  ask_bid: z.enum(["ASK", "BID"]),
  trade_timestamp: z.number(),
  sequential_id: SeqId,
  stream_type: Stream,
});

const DIGITS = /^\d+$/;

function isFiniteNumber(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

/**
 * True only for records {@linkcode TradeFrame} accepts, checked without zod: a trade arrives tens
 * of thousands of times a second and zod's walk cost as much as the JSON parse. It never accepts
 * more than the schema (`tests/upbit_ws_parse_test.ts` checks that); anything it refuses goes
 * through the schema, which decides.
 */
export function isTradeFrame(r: Record<string, unknown>): boolean {
  const seq = r.sequential_id;
  return r.type === "trade" && typeof r.code === "string" && isFiniteNumber(r.trade_price) &&
    isFiniteNumber(r.trade_volume) && (r.ask_bid === "ASK" || r.ask_bid === "BID") &&
    isFiniteNumber(r.trade_timestamp) &&
    (r.stream_type === "REALTIME" || r.stream_type === "SNAPSHOT") &&
    (typeof seq === "string"
      ? DIGITS.test(seq)
      : Number.isSafeInteger(seq) && (seq as number) >= 0);
}

/** What a trade event is made from: the fields of a {@linkcode TradeFrame}. */
type TradeFields = z.output<typeof TradeFrame>;

/** `ticker` frame, DEFAULT format. */
const TickerFrame = z.object({
  type: z.literal("ticker"),
  code: z.string(),
  trade_price: z.number(),
  opening_price: z.number(),
  high_price: z.number(),
  low_price: z.number(),
  prev_closing_price: z.number(),
  change: z.enum(["RISE", "EVEN", "FALL"]),
  signed_change_rate: z.number(),
  acc_trade_price_24h: z.number(),
  acc_trade_volume_24h: z.number(),
  timestamp: z.number(),
  stream_type: Stream,
});

/** `orderbook` frame, DEFAULT format. */
const OrderbookFrame = z.object({
  type: z.literal("orderbook"),
  code: z.string(),
  total_ask_size: z.number(),
  total_bid_size: z.number(),
  orderbook_units: z.array(OrderbookUnit),
  timestamp: z.number(),
  stream_type: Stream,
});

/** `candle.{unit}` frame, DEFAULT format. */
const CandleFrame = z.object({
  type: z.enum(CANDLE_UNITS.map((u) => `candle.${u}` as const)),
  code: z.string(),
  candle_date_time_utc: z.string(),
  opening_price: z.number(),
  high_price: z.number(),
  low_price: z.number(),
  trade_price: z.number(),
  candle_acc_trade_volume: z.number(),
  candle_acc_trade_price: z.number(),
  timestamp: z.number(),
  stream_type: Stream,
});

/** Options of {@linkcode UpbitPublicWs}. */
export interface UpbitPublicWsOptions {
  /** e.g. `wss://api.upbit.com/websocket/v1` */
  url: string;
  /** Markets whose trades to stream. */
  trades?: readonly string[];
  tickers?: readonly string[];
  orderbooks?: readonly string[];
  candles1s?: readonly string[];
  /** Markets per candle unit (e.g. `{ "5m": ["KRW-BTC"] }`); `1s` adds to `candles1s`. */
  candles?: Partial<Record<CandleUnit, readonly string[]>>;
  /** Trades in batches (each batch in order per market). */
  onTrades?: (trades: TradeEvent[]) => void;
  onTicker?: (event: TickerEvent) => void;
  onOrderbook?: (event: OrderbookEvent) => void;
  onCandle?: (event: CandleEvent) => void;
  /** Connection state changes (for health reporting). */
  onConnection?: (connected: boolean) => void;
  /**
   * Used to backfill trade gaps after a reconnect; without it gaps are only counted. Its rate
   * limiter's ban also holds the connection attempts (a quotation ban is of the IP, upgrades
   * included), and a 418 at the upgrade is recorded there.
   */
  rest?: UpbitRest;
  /**
   * Epoch ms from which the consumer needs every trade of the `trades` markets (e.g. the end of
   * the last second it stored). Each market's gap starts here until a trade of it is delivered,
   * so a quiet market's trades missed during a drop are backfilled too, and the first connection
   * backfills from here like a reconnect: the catch-up runs once the subscription is live, so no
   * trade falls between it and the stream. Without it the first connection has no gap and a market
   * gets one only after its first trade.
   */
  sinceMs?: number;
  /**
   * Called once, when the first connection's backfill (see `sinceMs`) is delivered, with the number
   * of trades only it supplied; at the first open with 0 when there is nothing to backfill.
   */
  onCaughtUp?: (backfilled: number) => void;
  /** Wait after a reconnect before backfilling, so the new subscription is live first. @default {300} */
  backfillDelayMs?: number;
  /** Pages of 500 trades fetched per market and gap at most. @default {20} */
  backfillMaxPages?: number;
  /** Trade ids remembered per market for dedup. @default {20000} */
  dedupPerMarket?: number;
  /** Collect trades this long before calling `onTrades`; 0 = once per frame. @default {0} */
  batchMs?: number;
  /** `PING` interval, well inside the 120 s idle timeout. @default {30000} */
  keepaliveMs?: number;
  /** A connection with no frame for this long is replaced. @default {2 * keepaliveMs + 10000} */
  staleAfterMs?: number;
  /** Reconnect backoff. @default {{ baseMs: 500, maxMs: 30000, jitter: 0.5 }} */
  reconnect?: BackoffOptions;
  /** @default {createLogger("upbit-ws")} */
  logger?: Logger;
}

/** Counters of a {@linkcode UpbitPublicWs}. */
export interface PublicWsStats {
  connected: boolean;
  /** Frames received, any kind. */
  received: number;
  /** Trades delivered (live and backfilled). */
  trades: number;
  /** Trades dropped as already delivered. */
  duplicates: number;
  /** Frames that were not JSON or failed validation; skipped. */
  malformed: number;
  /** `{"error":…}` frames from the server. */
  serverErrors: number;
  reconnects: number;
  /** Trades delivered from REST backfill. */
  backfilled: number;
  /** Gaps that could not be closed (REST failed or too many pages). */
  gapsUnfilled: number;
}

interface MarketState {
  /** Newest trade time delivered, epoch ms (0 = none yet). */
  lastTs: number;
  seen: Set<bigint>;
  ring: bigint[];
  head: number;
}

function tickToEvent(t: TradeTick): TradeEvent {
  return {
    type: "trade",
    market: t.market,
    price: t.trade_price,
    volume: t.trade_volume,
    side: t.ask_bid,
    timestampMs: t.timestamp,
    sequentialId: t.sequential_id,
    streamType: "BACKFILL",
  };
}

function byTime(a: TradeEvent, b: TradeEvent): number {
  return a.timestampMs - b.timestampMs ||
    (a.sequentialId < b.sequentialId ? -1 : a.sequentialId > b.sequentialId ? 1 : 0);
}

/**
 * Public market-data stream client.
 *
 * @example
 * ```ts ignore
 * const ws = new UpbitPublicWs({ url, trades: ["KRW-BTC"], rest, onTrades: (b) => feed(b) });
 * ws.start();
 * // …
 * await ws.close();
 * ```
 */
export class UpbitPublicWs {
  readonly #options: UpbitPublicWsOptions;
  readonly #socket: ReconnectingSocket;
  readonly #log: Logger;
  readonly #markets = new Map<string, MarketState>();
  readonly #dedupPerMarket: number;
  readonly #stats = {
    received: 0,
    trades: 0,
    duplicates: 0,
    malformed: 0,
    serverErrors: 0,
    backfilled: 0,
    gapsUnfilled: 0,
  };
  #pending: TradeEvent[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #backfillTimer: ReturnType<typeof setTimeout> | undefined;
  /** Markets whose gap is to be backfilled, with the newest trade time before the drop. */
  #gaps = new Map<string, number>();
  readonly #backfills = new Set<Promise<void>>();
  /**
   * Live trades of EVERY market held back while a gap backfill runs, and then the backfilled ones
   * (null when none runs): a consumer with one event-time watermark over all markets (the feed's
   * bars) would otherwise see one market's newer trades before another market's backfilled ones
   * and drop those as late.
   */
  #held: TradeEvent[] | null = null;
  /** Whether `onCaughtUp` was called. */
  #caughtUp = false;
  /** `performance.now()` (monotonic: no clock steps) at the last frame received; -1 before one. */
  #lastFrameAt = -1;
  readonly #abort = new AbortController();
  /** Where bans are known: the REST client's budget (shared with it), else one of its own. */
  readonly #bans: UpbitRequestBudget;

  /** @throws {TypeError} when nothing is subscribed or `url` is not ws(s). */
  constructor(options: UpbitPublicWsOptions) {
    if (!/^wss?:\/\//.test(options.url)) {
      throw new TypeError(
        `Cannot create UpbitPublicWs as 'url' must start with ws:// or wss://: current value is ${
          JSON.stringify(options.url)
        }`,
      );
    }
    const n = (options.trades?.length ?? 0) + (options.tickers?.length ?? 0) +
      (options.orderbooks?.length ?? 0) + (options.candles1s?.length ?? 0) +
      Object.values(options.candles ?? {}).reduce((sum, codes) => sum + (codes?.length ?? 0), 0);
    if (n === 0) {
      throw new TypeError("Cannot create UpbitPublicWs as no market is subscribed");
    }
    this.#options = options;
    this.#bans = options.rest?.rateLimiter ?? new UpbitRequestBudget();
    this.#log = options.logger ?? createLogger("upbit-ws");
    this.#dedupPerMarket = options.dedupPerMarket ?? 20_000;
    if (options.sinceMs !== undefined) {
      for (const code of options.trades ?? []) this.#market(code).lastTs = options.sinceMs;
    }
    const keepaliveMs = options.keepaliveMs ?? 30_000;
    this.#socket = new ReconnectingSocket({
      url: options.url,
      subscription: () => this.#subscription(),
      onFrame: (text) => this.#onFrame(text),
      onOpen: (reconnect) => this.#onOpen(reconnect),
      onDrop: () => this.#onDrop(),
      // A 418 at the upgrade bans the IP's quotation calls and upgrades alike (§3.3, §9.10):
      // recorded in the REST client's budget (which stops the backfill and tells the other actors),
      // and no upgrade is tried until it ends. Deno does not expose the refusal's body or headers,
      // so the ban's length is unknown: the budget's own growing default applies, unless a ban it
      // already knows explains the refusal.
      onUpgradeRefused: (status) => {
        if (status === 418 && this.#bans.bannedUntil() === 0) {
          const banMs = this.#bans.onBanned();
          this.#log.error(
            "Upbit refused the WebSocket upgrade with 418 (banned): no reconnect before the ban ends",
            {
              ban_ms: banMs,
            },
          );
        }
        return false;
      },
      notBefore: () => this.#bans.bannedUntil(),
      keepaliveMs,
      staleAfterMs: options.staleAfterMs ?? 2 * keepaliveMs + 10_000,
      reconnect: { baseMs: 500, maxMs: 30_000, jitter: 0.5, ...options.reconnect },
      logger: this.#log,
    });
  }

  /** Connects and subscribes. */
  start(): void {
    this.#socket.start();
  }

  /** Closes the connection now; it reconnects and backfills as after any drop (tests). */
  dropConnection(): void {
    this.#socket.dropConnection();
  }

  /**
   * How long ago (ms) the last frame was received, while the stream is complete up to it:
   * connected, caught up (see `sinceMs`) and no gap being backfilled, so every trade printed well
   * before it (the network's and the exchange's delays) has been delivered or is in the batch
   * being collected (`batchMs`). Null otherwise. A consumer may treat the trades printed before
   * that frame, less its lateness, as complete; a silent connection keeps that point from moving.
   */
  lastFrameAgeMs(): number | null {
    const busy = this.#held !== null || this.#backfillTimer !== undefined ||
      this.#backfills.size > 0;
    if (!this.#socket.stats.connected || !this.#caughtUp || busy || this.#lastFrameAt < 0) {
      return null;
    }
    return Math.max(0, performance.now() - this.#lastFrameAt);
  }

  /** Counters since start. */
  stats(): PublicWsStats {
    return {
      connected: this.#socket.stats.connected,
      reconnects: this.#socket.stats.reconnects,
      ...this.#stats,
    };
  }

  /** Stops: closes the socket, cancels backfills, delivers what is pending. */
  async close(): Promise<void> {
    this.#abort.abort(new Error("UpbitPublicWs closed"));
    if (this.#backfillTimer !== undefined) clearTimeout(this.#backfillTimer);
    await this.#socket.close();
    await Promise.allSettled([...this.#backfills]);
    if (this.#held) this.#release();
    this.#flush();
  }

  #subscription(): string {
    const o = this.#options;
    const req: unknown[] = [{ ticket: crypto.randomUUID() }];
    if (o.trades?.length) req.push({ type: "trade", codes: [...o.trades] });
    if (o.tickers?.length) req.push({ type: "ticker", codes: [...o.tickers] });
    if (o.orderbooks?.length) req.push({ type: "orderbook", codes: [...o.orderbooks] });
    for (const unit of CANDLE_UNITS) {
      const codes = [...(unit === "1s" ? o.candles1s ?? [] : []), ...(o.candles?.[unit] ?? [])];
      if (codes.length > 0) req.push({ type: `candle.${unit}`, codes: [...new Set(codes)] });
    }
    req.push({ format: "DEFAULT" });
    return JSON.stringify(req);
  }

  #market(code: string): MarketState {
    let m = this.#markets.get(code);
    if (!m) {
      m = { lastTs: 0, seen: new Set(), ring: [], head: 0 };
      this.#markets.set(code, m);
    }
    return m;
  }

  #onDrop(): void {
    this.#options.onConnection?.(false);
    this.#recordGaps();
  }

  /** Each market's gap starts at its newest trade delivered (or `sinceMs`, see there). */
  #recordGaps(): void {
    for (const [code, m] of this.#markets) {
      if (m.lastTs > 0 && !this.#gaps.has(code)) this.#gaps.set(code, m.lastTs);
    }
  }

  #onOpen(reconnect: boolean): void {
    this.#options.onConnection?.(true);
    // The first open of a consumer that gave `sinceMs` has a gap: from there to the subscription.
    if (!reconnect && this.#options.sinceMs !== undefined) this.#recordGaps();
    if (this.#gaps.size === 0) {
      if (!reconnect) this.#signalCaughtUp(0);
      return;
    }
    // Hold every live trade from now on; backfill once the subscription is live.
    this.#held ??= [];
    if (this.#backfillTimer !== undefined) return;
    this.#backfillTimer = setTimeout(() => {
      this.#backfillTimer = undefined;
      const gaps = [...this.#gaps];
      this.#gaps.clear();
      const p = this.#backfillAll(gaps).finally(() => {
        this.#backfills.delete(p);
        // Another drop may have started a backfill meanwhile: release only after the last one.
        if (this.#backfills.size === 0 && this.#backfillTimer === undefined) this.#release();
      });
      this.#backfills.add(p);
    }, this.#options.backfillDelayMs ?? 300);
  }

  /**
   * Backfills every gap market at once and adds their trades to the held live ones; `#release`
   * delivers both merged in time order. Delivering the backfill first would let one market's
   * backfilled trades (fetched up to its first request) move a consumer's shared watermark past
   * another market's held live trades of the same seconds, which that market's backfill, fetched
   * earlier, does not hold: they would be late.
   */
  async #backfillAll(gaps: [string, number][]): Promise<void> {
    const found = (await Promise.all(gaps.map(([code, since]) => this.#fetchGap(code, since))))
      .flat();
    // Before the held ones (held since the connection opened, released after the last
    // backfill): of a trade both have, the backfilled copy is delivered (counted).
    this.#held = found.concat(this.#held ?? []);
  }

  /** Delivers the trades backfilled and held during the backfill, merged in time order. */
  #release(): void {
    const held = this.#held ?? [];
    this.#held = null;
    held.sort(byTime); // stable: the backfilled copy of a trade stays first
    const backfilled = new Map<string, number>();
    let total = 0;
    for (const t of held) {
      if (this.#deliver(this.#market(t.market), t) && t.streamType === "BACKFILL") {
        backfilled.set(t.market, (backfilled.get(t.market) ?? 0) + 1);
        total++;
      }
    }
    for (const [market, trades] of backfilled) {
      this.#stats.backfilled += trades;
      this.#log.info("trade gap backfilled", { market, trades });
    }
    this.#flush();
    this.#signalCaughtUp(total);
  }

  #signalCaughtUp(backfilled: number): void {
    if (this.#caughtUp) return;
    this.#caughtUp = true;
    try {
      this.#options.onCaughtUp?.(backfilled);
    } catch (err) {
      this.#log.error("onCaughtUp callback failed", { error: String(err) });
    }
  }

  async #fetchGap(code: string, sinceTs: number): Promise<TradeEvent[]> {
    const found: TradeEvent[] = [];
    if (this.#options.rest) {
      // Pages back date by date, so a gap across 00:00 UTC is closed too.
      const result = await tradesSince(this.#options.rest, code, sinceTs, {
        maxPages: this.#options.backfillMaxPages ?? 20,
        signal: this.#abort.signal,
      });
      // What was fetched is delivered even when a later page failed.
      for (const t of result.trades) found.push(tickToEvent(t));
      if (!result.complete && !this.#abort.signal.aborted) {
        this.#stats.gapsUnfilled++;
        this.#log.warn(
          result.error === undefined
            ? "trade gap larger than the backfill allows; some trades are missing"
            : "trade backfill failed; trades of the gap are missing",
          {
            market: code,
            since_ms: sinceTs,
            fetched: found.length,
            ...(result.error === undefined ? {} : {
              error: result.error instanceof Error ? result.error.message : String(result.error),
            }),
          },
        );
      }
    } else {
      this.#stats.gapsUnfilled++;
      this.#log.warn("trade backfill failed; trades of the gap are missing", {
        market: code,
        since_ms: sinceTs,
        error: "no REST client to backfill with",
      });
    }
    return found;
  }

  /** Dedups, remembers and queues one trade; false when it was a duplicate. */
  #deliver(m: MarketState, t: TradeEvent): boolean {
    if (m.seen.has(t.sequentialId)) {
      this.#stats.duplicates++;
      return false;
    }
    m.seen.add(t.sequentialId);
    m.ring.push(t.sequentialId);
    if (m.seen.size > this.#dedupPerMarket) {
      m.seen.delete(m.ring[m.head] as bigint);
      m.head++;
      if (m.head > 4096 && m.head * 2 > m.ring.length) {
        m.ring = m.ring.slice(m.head);
        m.head = 0;
      }
    }
    if (t.timestampMs > m.lastTs) m.lastTs = t.timestampMs;
    this.#stats.trades++;
    this.#pending.push(t);
    return true;
  }

  #flush(): void {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    try {
      this.#options.onTrades?.(batch);
    } catch (err) {
      this.#log.error("onTrades callback failed", { error: String(err) });
    }
  }

  #scheduleFlush(): void {
    const batchMs = this.#options.batchMs ?? 0;
    if (batchMs <= 0) this.#flush();
    else if (this.#flushTimer === undefined && this.#pending.length > 0) {
      this.#flushTimer = setTimeout(() => this.#flush(), batchMs);
    }
  }

  #malformed(reason: string, text: string): void {
    this.#stats.malformed++;
    // Rate-limit the log: the first few, then every 1000th.
    const n = this.#stats.malformed;
    if (n <= 5 || n % 1000 === 0) {
      this.#log.warn("malformed WebSocket frame skipped", {
        reason,
        count: n,
        frame: text.slice(0, 120),
      });
    }
  }

  #onFrame(text: string): void {
    this.#stats.received++;
    this.#lastFrameAt = performance.now();
    let msg: unknown;
    try {
      msg = parseJsonExactIds(text);
    } catch {
      this.#malformed("not JSON", text);
      return;
    }
    const items = Array.isArray(msg) ? msg : [msg];
    for (const item of items) this.#onMessage(item, text);
    this.#scheduleFlush();
  }

  #onMessage(msg: unknown, text: string): void {
    if (typeof msg !== "object" || msg === null) {
      this.#malformed("not an object", text);
      return;
    }
    const rec = msg as Record<string, unknown>;
    if (rec.status === "UP") return;
    if ("error" in rec) {
      this.#stats.serverErrors++;
      this.#log.warn("WebSocket error frame", { error: rec.error });
      return;
    }
    switch (rec.type) {
      case "trade": {
        let f: TradeFields;
        if (isTradeFrame(rec)) f = rec as TradeFields;
        else {
          const p = TradeFrame.safeParse(rec);
          if (!p.success) return this.#malformed("invalid trade", text);
          f = p.data;
        }
        const m = this.#market(f.code);
        const event: TradeEvent = {
          type: "trade",
          market: f.code,
          price: f.trade_price,
          volume: f.trade_volume,
          side: f.ask_bid,
          timestampMs: f.trade_timestamp,
          sequentialId: BigInt(f.sequential_id),
          streamType: f.stream_type,
        };
        if (this.#held) this.#held.push(event);
        else this.#deliver(m, event);
        return;
      }
      case "ticker": {
        const p = TickerFrame.safeParse(rec);
        if (!p.success) return this.#malformed("invalid ticker", text);
        const f = p.data;
        this.#emit(this.#options.onTicker, {
          type: "ticker",
          market: f.code,
          price: f.trade_price,
          open: f.opening_price,
          high: f.high_price,
          low: f.low_price,
          prevClosingPrice: f.prev_closing_price,
          change: f.change,
          signedChangeRate: f.signed_change_rate,
          accTradePrice24h: f.acc_trade_price_24h,
          accTradeVolume24h: f.acc_trade_volume_24h,
          timestampMs: f.timestamp,
          streamType: f.stream_type,
        });
        return;
      }
      case "orderbook": {
        const p = OrderbookFrame.safeParse(rec);
        if (!p.success) return this.#malformed("invalid orderbook", text);
        const f = p.data;
        this.#emit(this.#options.onOrderbook, {
          type: "orderbook",
          market: f.code,
          totalAskSize: f.total_ask_size,
          totalBidSize: f.total_bid_size,
          units: f.orderbook_units.map((u) => ({
            askPrice: u.ask_price,
            bidPrice: u.bid_price,
            askSize: u.ask_size,
            bidSize: u.bid_size,
          })),
          timestampMs: f.timestamp,
          streamType: f.stream_type,
        });
        return;
      }
      case "candle.1s":
      case "candle.1m":
      case "candle.3m":
      case "candle.5m":
      case "candle.10m":
      case "candle.15m":
      case "candle.30m":
      case "candle.60m":
      case "candle.240m": {
        const p = CandleFrame.safeParse(rec);
        if (!p.success) return this.#malformed("invalid candle", text);
        const f = p.data;
        this.#emit(this.#options.onCandle, {
          type: "candle",
          unit: f.type.slice("candle.".length) as CandleUnit,
          market: f.code,
          candleDateTimeUtc: f.candle_date_time_utc,
          open: f.opening_price,
          high: f.high_price,
          low: f.low_price,
          close: f.trade_price,
          volume: f.candle_acc_trade_volume,
          value: f.candle_acc_trade_price,
          timestampMs: f.timestamp,
          streamType: f.stream_type,
        });
        return;
      }
      default:
        this.#malformed("unknown type", text);
    }
  }

  #emit<T>(cb: ((event: T) => void) | undefined, event: T): void {
    if (!cb) return;
    try {
      cb(event);
    } catch (err) {
      this.#log.error("WebSocket event callback failed", { error: String(err) });
    }
  }
}
