/**
 * @module 1-second bars from a trade stream, finalised by an event-time watermark.
 *
 * Pure: no I/O, no timers, no wall clock. The feed passes trades in the order they arrive and
 * gets back the bars that became final plus the open bars that changed, and upserts both.
 *
 * Watermark. A market's watermark is the largest trade timestamp seen minus
 * `allowedLatenessMs` (with `watermarkScope: "shared"`, the largest over every market fed to this
 * aggregator, see {@linkcode BarAggregatorOptions}). The bar of second `s` is final once the
 * watermark reaches `s + 1000`, i.e. once the whole second lies behind it. A trade whose second is
 * already final is late: it is not applied, and it is counted and returned, never dropped silently.
 * Nothing here looks at a clock, so a stalled stream never finalises a bar early; the cost is that
 * after the last trade of a burst the bar stays open until a later trade moves the watermark.
 * {@linkcode BarAggregator.flushBefore} lets the feed finalise explicitly (see its doc for when
 * that is safe).
 *
 * Money. Upbit volumes carry at most 8 decimals, so volume sums are rounded to 8 decimals after
 * each addition and stay exact (0.01 + 0.02 + 0.005 is 0.035, not 0.034999…). `quoteVolume` is
 * the float sum of `price * volume`: bars are analytics, not accounting, and a relative error
 * around 1e-15 is irrelevant there. Prices are kept as given.
 */

/** Rounds to 8 decimals (Upbit's volume precision), removing float noise from sums. */
function round8(x: number): number {
  return Math.round(x * 1e8) / 1e8;
}

/**
 * How long after its end a second stays open for late trades in the live feed, ms: a bar is final
 * once a trade this much after its end has arrived (or the clock says so). The backtest's fill
 * model waits as long (`lib/backtest/fill.ts`).
 */
export const FEED_ALLOWED_LATENESS_MS = 2000;

/** One public trade, as the feed parses it from the `trade` stream (§7.5). */
export interface Trade {
  /** Market code, e.g. `KRW-BTC`. */
  market: string;
  /** `trade_price`. */
  price: number;
  /** `trade_volume` (base asset). */
  volume: number;
  /** `ask_bid`: `BID` = a buyer lifted an ask (buyer-initiated), `ASK` = a seller hit a bid. */
  side: "ASK" | "BID";
  /** `trade_timestamp`, epoch ms. */
  timestampMs: number;
  /** `sequential_id`: unique per trade, about 1.7e16 (above 2^53), hence a bigint read exactly. */
  sequentialId: bigint;
}

/** A 1-second OHLCV bar of one market (a row of `market_1s`). */
export interface Bar {
  market: string;
  /** Epoch ms of the start of the second. */
  ts: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Sum of trade volumes (base asset). */
  volume: number;
  /** Sum of `price * volume` (quote currency, float). */
  quoteVolume: number;
  tradeCount: number;
  /** Volume of `BID` (buyer-initiated) trades. */
  buyVolume: number;
  /** Volume of `ASK` (seller-initiated) trades. */
  sellVolume: number;
  /**
   * What a market buy would have paid: the price of the bar's last buyer-initiated (`BID`)
   * trade, which lifted the best ask. Null when the bar has none; absent on bars built by hand
   * or stored before migration 008.
   */
  askEst?: number | null;
  /** What a market sell would have got: the price of the bar's last `ASK` trade (hit the bid). */
  bidEst?: number | null;
}

/** What one call of {@linkcode BarAggregator.ingest} or `flushBefore` produced. */
export interface BarBatch {
  /** Bars that became final in this call, in `(ts, market)` order. Each is emitted once. */
  final: Bar[];
  /** Open bars changed in this call (not final yet), in `(ts, market)` order. */
  open: Bar[];
  /** Trades of this call that arrived after their second was final; not applied. */
  late: Trade[];
  /** Trades of this call already seen (same identity, see {@linkcode tradeKey}); ignored. */
  duplicates: number;
  /** Trades of this call rejected for a timestamp too far ahead of `nowMs`; not applied. */
  future: Trade[];
}

/** Running totals since construction (or restore), for metrics and logs. */
export interface BarStats {
  accepted: number;
  duplicates: number;
  lateDropped: number;
  futureRejected: number;
}

/** Options of {@linkcode BarAggregator}. */
export interface BarAggregatorOptions {
  /** How far behind the newest trade a trade may arrive and still be included. @default {2000} */
  allowedLatenessMs?: number;
  /**
   * `shared`: one watermark from the newest trade of any market (right when every market comes
   * over one connection, so one market's trades do not lag another's by more than the lateness;
   * quiet markets then finalise promptly). `market`: each market's own newest trade (a quiet
   * market's bar waits for that market's next trade). @default {"shared"}
   */
  watermarkScope?: "shared" | "market";
  /** How long (event time) trade identities are remembered for duplicate detection. @default {120000} */
  dedupRetentionMs?: number;
  /** Hard cap on remembered trade identities per market (oldest seconds are forgotten first). @default {200000} */
  maxDedupKeys?: number;
  /**
   * With `nowMs` passed to `ingest`, trades stamped more than this ahead of it are rejected, so one
   * bad timestamp cannot push the watermark into the future and make every later trade late.
   * @default {60000}
   */
  maxFutureMs?: number;
}

interface OpenBar {
  bar: Bar;
  firstTs: number;
  firstSeq: bigint;
  lastTs: number;
  lastSeq: bigint;
  /** Time and id of the trade behind `askEst` / `bidEst` (-Infinity: none yet). */
  buyTs: number;
  buySeq: bigint;
  sellTs: number;
  sellSeq: bigint;
}

interface MarketState {
  /** Newest trade timestamp of this market, or -Infinity. */
  maxTs: number;
  /** Every second starting before this is final (a multiple of 1000). */
  finalBeforeMs: number;
  open: Map<number, OpenBar>;
  /** Second start -> identities of the trades seen in that second (open seconds). */
  seen: Map<number, SeenSecond>;
  /**
   * Final second start -> the sorted sequential ids of its trades. A final second's identities
   * only tell a replayed trade (a duplicate) from a late one, and both are dropped: 8 bytes per
   * trade instead of the open second's fields (about 100 bytes), which at 20,000 trades/s over
   * the 120 s retention were about 190 MB of the feed's heap.
   */
  sealed: Map<number, BigInt64Array>;
  /** Identities remembered, in `seen` and `sealed`. */
  seenCount: number;
}

const SECOND_MS = 1000;

/** Start (epoch ms) of the second containing `tsMs`. */
export function secondStart(tsMs: number): number {
  return Math.floor(tsMs / SECOND_MS) * SECOND_MS;
}

/**
 * Identity of a trade for duplicate detection: the exact `sequential_id` plus timestamp, price,
 * volume and side (a replayed trade, e.g. a reconnect snapshot, matches in all of them).
 */
export function tradeKey(t: Trade): string {
  return `${t.sequentialId}|${t.timestampMs}|${t.price}|${t.volume}|${t.side}`;
}

function sameNumber(a: number, b: number): boolean {
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}

/**
 * The identities ({@linkcode tradeKey}) of the trades seen in one second, kept by sequential id
 * with the other fields in flat arrays instead of as key strings: building and hashing a key per
 * trade was the aggregator's largest cost at tens of thousands of trades a second, and keeping
 * the trade objects themselves would hold about twice the memory of the strings. Same answers as
 * a set of `tradeKey`s.
 */
class SeenSecond {
  /** Sequential id -> index (in the arrays below) of the first trade seen with it. */
  readonly #byId = new Map<bigint, number>();
  readonly #ts: number[] = [];
  readonly #price: number[] = [];
  readonly #volume: number[] = [];
  readonly #side: string[] = [];
  /** Keys of further trades sharing an id with an earlier one but differing in another field. */
  #others: Set<string> | null = null;
  size = 0;

  constructor(first: Trade) {
    this.add(first);
  }

  /** Whether a trade of the same identity was added. */
  has(t: Trade): boolean {
    const i = this.#byId.get(t.sequentialId);
    if (i === undefined) return false;
    if (
      sameNumber(this.#ts[i]!, t.timestampMs) && sameNumber(this.#price[i]!, t.price) &&
      sameNumber(this.#volume[i]!, t.volume) && this.#side[i] === t.side
    ) return true;
    return this.#others?.has(tradeKey(t)) ?? false;
  }

  /** The distinct sequential ids seen, sorted, or null when one does not fit in 64 bits. */
  sortedIds(): BigInt64Array | null {
    const ids = new BigInt64Array(this.#byId.size);
    let i = 0;
    for (const id of this.#byId.keys()) {
      if (BigInt.asIntN(64, id) !== id) return null;
      ids[i++] = id;
    }
    return ids.sort();
  }

  /** Adds `t` (the caller checked {@linkcode has} first). */
  add(t: Trade): void {
    if (!this.#byId.has(t.sequentialId)) {
      this.#byId.set(t.sequentialId, this.#ts.length);
      this.#ts.push(t.timestampMs);
      this.#price.push(t.price);
      this.#volume.push(t.volume);
      this.#side.push(t.side);
    } else (this.#others ??= new Set()).add(tradeKey(t));
    this.size++;
  }
}

function compareBars(a: Bar, b: Bar): number {
  return a.ts - b.ts || (a.market < b.market ? -1 : a.market > b.market ? 1 : 0);
}

/**
 * Aggregates trades of any number of markets into 1-second bars.
 *
 * @example
 * ```ts
 * const agg = new BarAggregator({ allowedLatenessMs: 2000 });
 * const batch = agg.ingest([
 *   { market: "KRW-BTC", price: 100, volume: 1, side: "BID", timestampMs: 1_000, sequentialId: 1n },
 * ]);
 * batch.open.length; // 1: the bar of second 1000 is open until a trade at >= 4000 arrives
 * ```
 */
export class BarAggregator {
  readonly allowedLatenessMs: number;
  readonly watermarkScope: "shared" | "market";
  readonly #dedupRetentionMs: number;
  readonly #maxDedupKeys: number;
  readonly #maxFutureMs: number;
  readonly #markets = new Map<string, MarketState>();
  /** Newest trade timestamp of any market. */
  #sharedMaxTs = -Infinity;
  /** Lower bound set by {@linkcode flushBefore}. */
  #flushFloorMs = -Infinity;
  #stats: BarStats = { accepted: 0, duplicates: 0, lateDropped: 0, futureRejected: 0 };

  /** @throws {RangeError} when an option is negative or not finite. */
  constructor(options: BarAggregatorOptions = {}) {
    this.allowedLatenessMs = nonNegative(
      "allowedLatenessMs",
      options.allowedLatenessMs ?? FEED_ALLOWED_LATENESS_MS,
    );
    this.watermarkScope = options.watermarkScope ?? "shared";
    this.#dedupRetentionMs = nonNegative("dedupRetentionMs", options.dedupRetentionMs ?? 120_000);
    this.#maxDedupKeys = nonNegative("maxDedupKeys", options.maxDedupKeys ?? 200_000);
    this.#maxFutureMs = nonNegative("maxFutureMs", options.maxFutureMs ?? 60_000);
  }

  /**
   * Applies trades in arrival order. Lateness is judged against the watermark as it stands when
   * each trade arrives, so the result does not depend on how the stream was cut into batches.
   *
   * @param nowMs the feed's wall clock, used only to reject absurd future timestamps (optional).
   */
  ingest(trades: Iterable<Trade>, nowMs?: number): BarBatch {
    const late: Trade[] = [];
    const future: Trade[] = [];
    let duplicates = 0;
    const touched = new Map<string, Set<number>>();
    for (const trade of trades) {
      if (nowMs !== undefined && trade.timestampMs > nowMs + this.#maxFutureMs) {
        future.push(trade);
        this.#stats.futureRejected++;
        continue;
      }
      const state = this.#state(trade.market);
      const sec = secondStart(trade.timestampMs);
      const seenSecond = state.seen.get(sec);
      if (seenSecond?.has(trade) || sealedHas(state.sealed.get(sec), trade.sequentialId)) {
        duplicates++;
        this.#stats.duplicates++;
        continue;
      }
      if (sec < this.#finalBefore(state)) {
        late.push(trade);
        this.#stats.lateDropped++;
        continue;
      }
      if (seenSecond) seenSecond.add(trade);
      else state.seen.set(sec, new SeenSecond(trade));
      state.seenCount++;
      this.#apply(state, sec, trade);
      this.#stats.accepted++;
      let secs = touched.get(trade.market);
      if (!secs) touched.set(trade.market, secs = new Set());
      secs.add(sec);
      if (trade.timestampMs > state.maxTs) state.maxTs = trade.timestampMs;
      if (trade.timestampMs > this.#sharedMaxTs) this.#sharedMaxTs = trade.timestampMs;
      // Advance this trade's market now so the next trade is judged against the new watermark;
      // the other markets are advanced lazily (#finalBefore) and finalised at the end.
      state.finalBeforeMs = this.#finalBefore(state);
    }
    const final = this.#finalise();
    const open: Bar[] = [];
    for (const [market, secs] of touched) {
      const state = this.#markets.get(market);
      for (const sec of secs) {
        const ob = state?.open.get(sec);
        if (ob) open.push({ ...ob.bar });
      }
    }
    open.sort(compareBars);
    this.#evictSeen();
    return { final, open, late, duplicates, future };
  }

  /**
   * Finalises every bar whose second ends at or before `tsMs`, in every market, and raises the
   * watermark to `tsMs` so that later trades for those seconds count as late.
   *
   * When to call it (the feed decides): only while the WebSocket is connected and the feed has
   * processed everything received, with `tsMs` = wall clock − `allowedLatenessMs` − a margin for
   * clock skew between this host and the exchange (e.g. 1000 ms). Then a quiet market's last bar
   * becomes final a few seconds after its second instead of at the market's next trade. Never call
   * it while disconnected or reconnecting: trades that are still on their way would become late.
   */
  flushBefore(tsMs: number): BarBatch {
    if (tsMs > this.#flushFloorMs) this.#flushFloorMs = tsMs;
    const final = this.#finalise();
    this.#evictSeen();
    return { final, open: [], late: [], duplicates: 0, future: [] };
  }

  /** The current watermark of `market` (event time, epoch ms); `-Infinity` before any trade. */
  watermarkMs(market: string): number {
    const state = this.#markets.get(market);
    const maxTs = this.watermarkScope === "shared" ? this.#sharedMaxTs : state?.maxTs ?? -Infinity;
    return Math.max(maxTs - this.allowedLatenessMs, this.#flushFloorMs);
  }

  /** Bars not final yet, in `(ts, market)` order (copies). */
  openBars(): Bar[] {
    const out: Bar[] = [];
    for (const state of this.#markets.values()) {
      for (const ob of state.open.values()) out.push({ ...ob.bar });
    }
    return out.sort(compareBars);
  }

  /** Totals since construction. */
  stats(): BarStats {
    return { ...this.#stats };
  }

  #state(market: string): MarketState {
    let state = this.#markets.get(market);
    if (!state) {
      state = {
        maxTs: -Infinity,
        finalBeforeMs: -Infinity,
        open: new Map(),
        seen: new Map(),
        sealed: new Map(),
        seenCount: 0,
      };
      this.#markets.set(market, state);
    }
    return state;
  }

  /** Seconds starting before the returned value are final for this market (monotonic). */
  #finalBefore(state: MarketState): number {
    const maxTs = this.watermarkScope === "shared" ? this.#sharedMaxTs : state.maxTs;
    const watermark = Math.max(maxTs - this.allowedLatenessMs, this.#flushFloorMs);
    // The bar of second s is final when watermark >= s + 1000, i.e. s < floor(watermark).
    const fromWatermark = Number.isFinite(watermark) ? secondStart(watermark) : -Infinity;
    return Math.max(state.finalBeforeMs, fromWatermark);
  }

  #apply(state: MarketState, sec: number, t: Trade): void {
    const ob = state.open.get(sec);
    const buy = t.side === "BID" ? t.volume : 0;
    const sell = t.side === "ASK" ? t.volume : 0;
    if (!ob) {
      state.open.set(sec, {
        bar: {
          market: t.market,
          ts: sec,
          open: t.price,
          high: t.price,
          low: t.price,
          close: t.price,
          volume: t.volume,
          quoteVolume: t.price * t.volume,
          tradeCount: 1,
          buyVolume: buy,
          sellVolume: sell,
          askEst: t.side === "BID" ? t.price : null,
          bidEst: t.side === "ASK" ? t.price : null,
        },
        firstTs: t.timestampMs,
        firstSeq: t.sequentialId,
        lastTs: t.timestampMs,
        lastSeq: t.sequentialId,
        buyTs: t.side === "BID" ? t.timestampMs : -Infinity,
        buySeq: t.sequentialId,
        sellTs: t.side === "ASK" ? t.timestampMs : -Infinity,
        sellSeq: t.sequentialId,
      });
      return;
    }
    const bar = ob.bar;
    if (t.price > bar.high) bar.high = t.price;
    if (t.price < bar.low) bar.low = t.price;
    bar.volume = round8(bar.volume + t.volume);
    bar.quoteVolume += t.price * t.volume;
    bar.tradeCount++;
    bar.buyVolume = round8(bar.buyVolume + buy);
    bar.sellVolume = round8(bar.sellVolume + sell);
    // Open and close follow trade time, ties by sequential id, whatever the arrival order.
    if (
      t.timestampMs < ob.firstTs || (t.timestampMs === ob.firstTs && t.sequentialId < ob.firstSeq)
    ) {
      bar.open = t.price;
      ob.firstTs = t.timestampMs;
      ob.firstSeq = t.sequentialId;
    }
    if (t.timestampMs > ob.lastTs || (t.timestampMs === ob.lastTs && t.sequentialId > ob.lastSeq)) {
      bar.close = t.price;
      ob.lastTs = t.timestampMs;
      ob.lastSeq = t.sequentialId;
    }
    // The last trade of each side, by the same order.
    if (t.side === "BID") {
      if (t.timestampMs > ob.buyTs || (t.timestampMs === ob.buyTs && t.sequentialId > ob.buySeq)) {
        bar.askEst = t.price;
        ob.buyTs = t.timestampMs;
        ob.buySeq = t.sequentialId;
      }
    } else if (
      t.timestampMs > ob.sellTs || (t.timestampMs === ob.sellTs && t.sequentialId > ob.sellSeq)
    ) {
      bar.bidEst = t.price;
      ob.sellTs = t.timestampMs;
      ob.sellSeq = t.sequentialId;
    }
  }

  #finalise(): Bar[] {
    const final: Bar[] = [];
    for (const state of this.#markets.values()) {
      state.finalBeforeMs = this.#finalBefore(state);
      for (const [sec, ob] of state.open) {
        if (sec < state.finalBeforeMs) {
          final.push(ob.bar);
          state.open.delete(sec);
        }
      }
    }
    return final.sort(compareBars);
  }

  /**
   * Seals the identities of seconds that became final (see `MarketState.sealed`), then forgets
   * old seconds: by event time, then by the hard cap (oldest first).
   */
  #evictSeen(): void {
    for (const state of this.#markets.values()) {
      for (const [sec, seen] of state.seen) {
        if (sec >= state.finalBeforeMs) continue;
        const ids = seen.sortedIds();
        if (ids === null) continue; // an id beyond 64 bits: keep the fields (never at Upbit)
        state.seen.delete(sec);
        state.sealed.set(sec, ids);
        state.seenCount -= seen.size - ids.length;
      }
      const horizon = state.finalBeforeMs - this.#dedupRetentionMs;
      if (state.seenCount <= this.#maxDedupKeys && !(horizon > -Infinity)) continue;
      const secs = [...state.seen.keys(), ...state.sealed.keys()].sort((a, b) => a - b);
      for (const sec of secs) {
        const overCap = state.seenCount > this.#maxDedupKeys;
        // Never forget a second that is still open: its duplicates must stay detectable.
        if (!(sec < horizon || overCap) || sec >= state.finalBeforeMs) break;
        state.seenCount -= state.seen.get(sec)?.size ?? state.sealed.get(sec)?.length ?? 0;
        state.seen.delete(sec);
        state.sealed.delete(sec);
      }
    }
  }
}

/** Whether the sorted `ids` hold `id` (binary search). */
function sealedHas(ids: BigInt64Array | undefined, id: bigint): boolean {
  if (ids === undefined) return false;
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = ids[mid]!;
    if (v === id) return true;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `Cannot create BarAggregator as '${name}' must be >= 0: current value is ${value}`,
    );
  }
  return value;
}
