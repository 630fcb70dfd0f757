/**
 * @module The simulated market: a seeded random walk per market on the KRW tick grid, trades with
 * realistic sizes and bursts, a 30-level book around the price, day / 24 h statistics, candles and
 * a bounded history of trades per market. Implements the exchange's {@linkcode MarketView}.
 *
 * Determinism: the content of the n-th generated trade (market, price, volume, side) depends only on
 * the seed and n (and on injected trades, which move the price). Timestamps and `sequential_id`s come
 * from the clock.
 */
import type { BookLevel, MarketView } from "./contract.ts";
import type { SimTrade } from "./mod.ts";
import { createRng, hash01, type Rng } from "./_rng.ts";
import { type MarketSpec, specFor } from "./market_specs.ts";
import { krwTickSize, snapToTick, tickDown, tickUp } from "./tick_size.ts";
import { Ring } from "./_ring.ts";

/** A printed trade with the market context the wire messages need. */
export interface MarketTrade extends SimTrade {
  prevClosingPrice: number;
  bestAskPrice: number;
  bestAskSize: number;
  bestBidPrice: number;
  bestBidSize: number;
}

/** One OHLCV candle. */
export interface Candle {
  /** Interval start, epoch ms. */
  startMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Base volume. */
  volume: number;
  /** Quote (KRW) amount. */
  amount: number;
  /** Timestamp of the last trade in it. */
  lastTs: number;
}

/** Day and 24 h statistics of one market (ticker fields). */
export interface MarketStats {
  market: string;
  tradePrice: number;
  tradeVolume: number;
  tradeTimestamp: number;
  askBid: "ASK" | "BID";
  openingPrice: number;
  highPrice: number;
  lowPrice: number;
  prevClosingPrice: number;
  accTradePrice: number;
  accTradeVolume: number;
  accTradePrice24h: number;
  accTradeVolume24h: number;
  accAskVolume: number;
  accBidVolume: number;
  highest52WeekPrice: number;
  highest52WeekDate: string;
  lowest52WeekPrice: number;
  lowest52WeekDate: string;
}

/** Options of {@linkcode SimMarket}. */
export interface SimMarketOptions {
  seed: number;
  markets: readonly string[];
  /** Generated trades per second across all markets (0 = only injected trades). */
  rate: number;
  /** Trades kept per market for `/v1/trades/ticks`. @default {100_000} */
  historySize?: number;
  /** Milliseconds between generation batches. @default {20} */
  batchIntervalMs?: number;
  /** Clock (epoch ms). @default {Date.now} */
  now?: () => number;
}

const DAY_MS = 86_400_000;
const BOOK_DEPTH = 30;
/** Per-trade relative volatility of the mid price. */
const SIGMA = 2e-5;
/** Per-trade pull of the mid back to its starting level, so long runs stay realistic. */
const REVERSION = 2e-5;
const SECOND_CANDLES = 7_200;
const MINUTE_CANDLES = 10_080;

class MarketState {
  readonly code: string;
  readonly spec: MarketSpec;
  readonly logAnchor: number;
  /** Continuous mid price; the book is built around its floor on the grid. */
  mid: number;
  lastPrice: number;
  lastVolume = 0;
  lastSide: "ASK" | "BID" = "BID";
  lastTs = 0;
  /** Changes with every trade; book sizes are a hash of it. */
  bookSeed = 0;
  dayIndex = -1;
  prevClose: number;
  open: number;
  high: number;
  low: number;
  accPrice = 0;
  accVolume = 0;
  accAsk = 0;
  accBid = 0;
  /** Synthetic volume of the (pre-simulation) last 24 h, faded out as simulated history accumulates. */
  readonly baseline24Price: number;
  readonly startedMs: number;
  high52: number;
  high52Date: string;
  low52: number;
  low52Date: string;
  readonly history: TradeHistory;
  readonly seconds = new Ring<Candle>(SECOND_CANDLES);
  readonly minutes = new Ring<Candle>(MINUTE_CANDLES);
  /** 1 s candle changed since it was last pushed on the WebSocket. */
  candleDirty = false;
  candlePushedMs = 0;
  bookDirty = false;
  /** Cached sum of the closed 1 m candles of the last 24 h. */
  sum24 = { minuteStart: -1, price: 0, volume: 0 };

  constructor(spec: MarketSpec, rng: Rng, nowMs: number, historySize: number) {
    this.code = spec.code;
    this.spec = spec;
    const tick = krwTickSize(spec.price);
    this.mid = snapToTick(spec.price * (1 + 0.01 * rng.normal()), tick, "floor");
    this.logAnchor = Math.log(spec.price);
    this.lastPrice = this.mid;
    const grid = (p: number) => snapToTick(p, krwTickSize(p), "round");
    this.prevClose = grid(this.mid * (1 + 0.02 * rng.normal()));
    this.open = this.prevClose;
    this.high = grid(Math.max(this.open, this.mid) * (1 + 0.01 * Math.abs(rng.normal())));
    this.low = grid(Math.min(this.open, this.mid) * (1 - 0.01 * Math.abs(rng.normal())));
    this.baseline24Price = spec.levelNotional * 2_000 * (0.5 + rng.next());
    this.startedMs = nowMs;
    this.dayIndex = Math.floor(nowMs / DAY_MS);
    // The pre-simulation part of today carries a share of the synthetic daily volume.
    const dayShare = (nowMs - this.dayIndex * DAY_MS) / DAY_MS;
    this.accPrice = this.baseline24Price * dayShare;
    this.accVolume = this.accPrice / this.mid;
    this.accAsk = this.accVolume * 0.5;
    this.accBid = this.accVolume - this.accAsk;
    this.high52 = grid(spec.price * (1.3 + 0.5 * rng.next()));
    this.low52 = grid(spec.price * (0.4 + 0.3 * rng.next()));
    this.high52Date = isoDate(nowMs - DAY_MS * rng.int(10, 300));
    this.low52Date = isoDate(nowMs - DAY_MS * rng.int(10, 300));
    this.history = new TradeHistory(historySize);
  }

  bestBid(): number {
    return snapToTick(this.mid, krwTickSize(this.mid * (1 + 1e-12)), "floor");
  }

  levelSize(side: 0 | 1, level: number, price: number): number {
    const u = hash01(this.bookSeed, side * 64 + level);
    // Thin at the touch, thicker further out; log-normal-ish spread.
    const notional = this.spec.levelNotional * (0.15 + level / BOOK_DEPTH) * (0.2 + 2 * u * u);
    return roundVolume(notional / price);
  }
}

/** Bounded history of one market's trades, struct-of-arrays for a small footprint. */
class TradeHistory {
  readonly capacity: number;
  readonly price: Float64Array;
  readonly volume: Float64Array;
  readonly ts: Float64Array;
  readonly sid: Float64Array;
  readonly pcp: Float64Array;
  readonly side: Uint8Array;
  /** Index of the next write. */
  head = 0;
  size = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.price = new Float64Array(capacity);
    this.volume = new Float64Array(capacity);
    this.ts = new Float64Array(capacity);
    this.sid = new Float64Array(capacity);
    this.pcp = new Float64Array(capacity);
    this.side = new Uint8Array(capacity);
  }

  push(t: MarketTrade): void {
    const i = this.head;
    this.price[i] = t.price;
    this.volume[i] = t.volume;
    this.ts[i] = t.timestampMs;
    this.sid[i] = t.sequentialId;
    this.pcp[i] = t.prevClosingPrice;
    this.side[i] = t.side === "BID" ? 1 : 0;
    this.head = (i + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** Physical index of the k-th newest trade (k = 0 newest). */
  at(k: number): number {
    return (this.head - 1 - k + this.capacity * 2) % this.capacity;
  }
}

/** A trade read back from history (for `/v1/trades/ticks`). */
export interface HistoricTrade {
  market: string;
  price: number;
  volume: number;
  side: "ASK" | "BID";
  timestampMs: number;
  sequentialId: number;
  prevClosingPrice: number;
}

/** The simulated market of every configured code. */
export class SimMarket implements MarketView {
  readonly #states = new Map<string, MarketState>();
  readonly #codes: string[];
  readonly #cumulativeWeights: number[];
  readonly #rng: Rng;
  readonly #now: () => number;
  readonly #tradeListeners = new Set<(trade: SimTrade) => void>();
  readonly #batchListeners = new Set<(trades: MarketTrade[]) => void>();
  readonly #tickListeners = new Set<(nowMs: number) => void>();
  readonly #batchIntervalMs: number;
  #rate: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastBatchMs = 0;
  #carry = 0;
  #lastSid = 0;
  #tradeCount = 0;
  #burst: { state: MarketState; side: "ASK" | "BID"; left: number } | undefined;

  constructor(options: SimMarketOptions) {
    this.#now = options.now ?? Date.now;
    this.#rng = createRng(options.seed);
    this.#rate = options.rate;
    this.#batchIntervalMs = options.batchIntervalMs ?? 20;
    const nowMs = this.#now();
    const historySize = options.historySize ?? 100_000;
    this.#codes = [...options.markets];
    let total = 0;
    this.#cumulativeWeights = [];
    for (const code of this.#codes) {
      const spec = specFor(code, options.seed);
      this.#states.set(code, new MarketState(spec, this.#rng, nowMs, historySize));
      total += spec.weight;
      this.#cumulativeWeights.push(total);
    }
  }

  // ---- MarketView ----------------------------------------------------------------------------

  markets(): string[] {
    return [...this.#codes];
  }

  book(market: string): { asks: BookLevel[]; bids: BookLevel[] } {
    return this.bookOf(market, BOOK_DEPTH);
  }

  lastPrice(market: string): number {
    return this.#state(market).lastPrice;
  }

  onTrade(listener: (trade: SimTrade) => void): () => void {
    this.#tradeListeners.add(listener);
    return () => this.#tradeListeners.delete(listener);
  }

  // ---- generator -----------------------------------------------------------------------------

  /** True when `market` is simulated. */
  has(market: string): boolean {
    return this.#states.has(market);
  }

  /** The static description of `market`. */
  spec(market: string): MarketSpec {
    return this.#state(market).spec;
  }

  /** Called with every batch of printed trades (generated or injected), in sequence order. */
  onBatch(listener: (trades: MarketTrade[]) => void): () => void {
    this.#batchListeners.add(listener);
    return () => this.#batchListeners.delete(listener);
  }

  /** Called on every generator tick (also when no trade was due), after the batch. */
  onTick(listener: (nowMs: number) => void): () => void {
    this.#tickListeners.add(listener);
    return () => this.#tickListeners.delete(listener);
  }

  /** Starts the batch timer. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#lastBatchMs = this.#now();
    this.#timer = setInterval(() => this.#tick(), this.#batchIntervalMs);
  }

  /** Stops the batch timer. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Changes the generation rate (trades per second). */
  setRate(rate: number): void {
    this.#rate = rate;
  }

  #tick(): void {
    const nowMs = this.#now();
    const elapsed = Math.max(0, nowMs - this.#lastBatchMs);
    this.#lastBatchMs = nowMs;
    // After a stall (GC, suspended laptop) do not try to catch up more than half a second.
    const due = Math.min(this.#rate * elapsed / 1000 + this.#carry, this.#rate / 2 + 1);
    const count = Math.floor(due);
    this.#carry = due - count;
    if (count > 0) this.#publish(this.generate(count, nowMs));
    for (const listener of this.#tickListeners) listener(nowMs);
  }

  #publish(trades: MarketTrade[]): void {
    for (const trade of trades) for (const listener of this.#tradeListeners) listener(trade);
    for (const listener of this.#batchListeners) listener(trades);
  }

  /**
   * Generates the next `count` trades at time `nowMs` and records them, without notifying listeners
   * (the timer publishes them). Exposed for determinism tests and benchmarks.
   */
  generate(count: number, nowMs: number): MarketTrade[] {
    const out: MarketTrade[] = new Array(count);
    const rng = this.#rng;
    for (let i = 0; i < count; i++) {
      let state: MarketState;
      let side: "ASK" | "BID";
      let sizeFactor = 1;
      const burst = this.#burst;
      if (burst) {
        state = burst.state;
        side = burst.side;
        sizeFactor = 3;
        if (--burst.left <= 0) this.#burst = undefined;
      } else {
        state = this.#pickMarket(rng.next());
        side = rng.next() < 0.5 ? "ASK" : "BID";
        if (rng.next() < 0.01) {
          // A sweep: a run of same-side trades walking the book.
          this.#burst = { state, side, left: rng.int(3, 20) };
        }
      }
      // Random walk of the log mid, gently pulled back to the starting level.
      const logMid = Math.log(state.mid);
      const step = SIGMA * rng.normal() - REVERSION * (logMid - state.logAnchor);
      let mid = Math.exp(logMid + step);
      if (burst) mid = side === "BID" ? tickUp(state.mid) : tickDown(state.mid);
      state.mid = mid;
      const bestBid = state.bestBid();
      const price = side === "ASK" ? bestBid : tickUp(bestBid);
      // Trade notional: log-normal around ~60,000 KRW (median), heavy right tail.
      const notional = 60_000 * Math.exp(1.3 * rng.normal()) * sizeFactor;
      const volume = Math.max(1e-8, roundVolume(notional / price));
      out[i] = this.#record(state, price, volume, side, nowMs);
    }
    return out;
  }

  /** Prints one trade now (tests; with rate 0 only injected trades exist) and notifies listeners. */
  inject(trade: {
    market: string;
    price: number;
    volume: number;
    side: "ASK" | "BID";
    timestampMs?: number;
  }): MarketTrade {
    const state = this.#state(trade.market);
    // Put the book around the injected price: a sell hits the best bid, a buy lifts the best ask.
    state.mid = trade.side === "ASK" ? trade.price : tickDown(trade.price);
    const printed = this.#record(
      state,
      trade.price,
      trade.volume,
      trade.side,
      trade.timestampMs ?? this.#now(),
    );
    this.#publish([printed]);
    return printed;
  }

  #pickMarket(u: number): MarketState {
    const weights = this.#cumulativeWeights;
    const target = u * (weights[weights.length - 1] ?? 1);
    let i = 0;
    while (i < weights.length - 1 && (weights[i] ?? 0) <= target) i++;
    return this.#states.get(this.#codes[i] ?? "") as MarketState;
  }

  #record(
    state: MarketState,
    price: number,
    volume: number,
    side: "ASK" | "BID",
    timestampMs: number,
  ): MarketTrade {
    // Upbit-like ids (ms * 1000 + n) stay below 2^53; strictly increasing across all markets.
    const sid = Math.max(this.#lastSid + 1, timestampMs * 1000);
    this.#lastSid = sid;
    this.#tradeCount++;
    this.#rollDay(state, timestampMs);
    state.lastPrice = price;
    state.lastVolume = volume;
    state.lastSide = side;
    state.lastTs = timestampMs;
    state.bookSeed = this.#tradeCount;
    state.bookDirty = true;
    if (price > state.high) state.high = price;
    if (price < state.low) state.low = price;
    const amount = price * volume;
    state.accPrice += amount;
    state.accVolume += volume;
    if (side === "ASK") state.accAsk += volume;
    else state.accBid += volume;
    if (price > state.high52) {
      state.high52 = price;
      state.high52Date = isoDate(timestampMs);
    }
    if (price < state.low52) {
      state.low52 = price;
      state.low52Date = isoDate(timestampMs);
    }
    addToCandles(state.seconds, 1000, price, volume, timestampMs);
    addToCandles(state.minutes, 60_000, price, volume, timestampMs);
    state.candleDirty = true;
    const bestBid = state.bestBid();
    const bestAsk = tickUp(bestBid);
    const trade: MarketTrade = {
      market: state.code,
      price,
      volume,
      side,
      timestampMs,
      sequentialId: sid,
      prevClosingPrice: state.prevClose,
      bestAskPrice: bestAsk,
      bestAskSize: state.levelSize(0, 0, bestAsk),
      bestBidPrice: bestBid,
      bestBidSize: state.levelSize(1, 0, bestBid),
    };
    state.history.push(trade);
    return trade;
  }

  #rollDay(state: MarketState, timestampMs: number): void {
    const day = Math.floor(timestampMs / DAY_MS);
    if (day <= state.dayIndex) return;
    // Day candles and prev_closing_price roll at 00:00 UTC (§9.3).
    state.dayIndex = day;
    state.prevClose = state.lastPrice;
    state.open = state.lastPrice;
    state.high = state.lastPrice;
    state.low = state.lastPrice;
    state.accPrice = 0;
    state.accVolume = 0;
    state.accAsk = 0;
    state.accBid = 0;
  }

  // ---- queries -------------------------------------------------------------------------------

  #state(market: string): MarketState {
    const state = this.#states.get(market);
    if (!state) throw new Error(`unknown market ${market}`);
    return state;
  }

  /** Top-`depth` book, best level first on each side, consistent with the last trade. */
  bookOf(market: string, depth: number): { asks: BookLevel[]; bids: BookLevel[] } {
    const state = this.#state(market);
    const asks: BookLevel[] = [];
    const bids: BookLevel[] = [];
    let bid = state.bestBid();
    let ask = tickUp(bid);
    for (let level = 0; level < depth; level++) {
      asks.push({ price: ask, size: state.levelSize(0, level, ask) });
      if (bid > 0) bids.push({ price: bid, size: state.levelSize(1, level, bid) });
      ask = tickUp(ask);
      bid = tickDown(bid);
    }
    return { asks, bids };
  }

  /** Timestamp of the book (the last trade's time, or now when nothing traded yet). */
  bookTimestamp(market: string): number {
    return this.#state(market).lastTs || this.#now();
  }

  /** Markets whose book changed since the last call (and clears the flags). */
  takeChangedBooks(): string[] {
    const out: string[] = [];
    for (const state of this.#states.values()) {
      if (state.bookDirty) {
        state.bookDirty = false;
        out.push(state.code);
      }
    }
    return out;
  }

  /**
   * Markets whose current 1 s candle changed and was last pushed at least a second ago (pushed at
   * most once per second, §7.7); marks them pushed.
   */
  takeCandlesToPush(nowMs: number): string[] {
    const out: string[] = [];
    for (const state of this.#states.values()) {
      if (state.candleDirty && nowMs - state.candlePushedMs >= 1000) {
        state.candleDirty = false;
        state.candlePushedMs = nowMs;
        out.push(state.code);
      }
    }
    return out;
  }

  /** Day and 24 h statistics for the ticker. */
  stats(market: string): MarketStats {
    const s = this.#state(market);
    const nowMs = this.#now();
    const closed = this.#closedMinutes24h(s, nowMs);
    let price24 = closed.price;
    let volume24 = closed.volume;
    const current = s.minutes.newest();
    if (current && current.startMs >= Math.floor(nowMs / 60_000) * 60_000) {
      price24 += current.amount;
      volume24 += current.volume;
    }
    const fade = Math.max(0, 1 - (nowMs - s.startedMs) / DAY_MS);
    price24 += s.baseline24Price * fade;
    volume24 += s.baseline24Price * fade / s.spec.price;
    return {
      market,
      tradePrice: s.lastPrice,
      tradeVolume: s.lastVolume,
      tradeTimestamp: s.lastTs || s.startedMs,
      askBid: s.lastSide,
      openingPrice: s.open,
      highPrice: s.high,
      lowPrice: s.low,
      prevClosingPrice: s.prevClose,
      accTradePrice: s.accPrice,
      accTradeVolume: s.accVolume,
      accTradePrice24h: price24,
      accTradeVolume24h: volume24,
      accAskVolume: s.accAsk,
      accBidVolume: s.accBid,
      highest52WeekPrice: s.high52,
      highest52WeekDate: s.high52Date,
      lowest52WeekPrice: s.low52,
      lowest52WeekDate: s.low52Date,
    };
  }

  #closedMinutes24h(s: MarketState, nowMs: number): { price: number; volume: number } {
    const minuteStart = Math.floor(nowMs / 60_000) * 60_000;
    if (s.sum24.minuteStart !== minuteStart) {
      let price = 0;
      let volume = 0;
      for (const c of s.minutes.newestFirst()) {
        if (c.startMs >= minuteStart) continue;
        if (c.startMs < nowMs - DAY_MS) break;
        price += c.amount;
        volume += c.volume;
      }
      s.sum24 = { minuteStart, price, volume };
    }
    return s.sum24;
  }

  /**
   * Trades of `market` newest first: at most `count`, only those with `sequential_id < cursor` when
   * a cursor is given (Upbit's backfill paging).
   */
  tradesBefore(market: string, count: number, cursor?: number): HistoricTrade[] {
    const h = this.#state(market).history;
    const out: HistoricTrade[] = [];
    let k = 0;
    if (cursor !== undefined) {
      // Binary search over the (increasing) ids for the newest trade older than the cursor.
      let lo = 0;
      let hi = h.size; // k in [lo, hi): sid(at(k)) decreases with k
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if ((h.sid[h.at(m)] ?? 0) >= cursor) lo = m + 1;
        else hi = m;
      }
      k = lo;
    }
    for (; k < h.size && out.length < count; k++) {
      const i = h.at(k);
      out.push({
        market,
        price: h.price[i] ?? 0,
        volume: h.volume[i] ?? 0,
        side: h.side[i] === 1 ? "BID" : "ASK",
        timestampMs: h.ts[i] ?? 0,
        sequentialId: h.sid[i] ?? 0,
        prevClosingPrice: h.pcp[i] ?? 0,
      });
    }
    return out;
  }

  /**
   * Candles newest first, each starting before `toMs` (exclusive bound), at most `count`.
   * `unitSeconds` is 1 for second candles or 60 × minutes.
   */
  candles(market: string, unitSeconds: number, count: number, toMs?: number): Candle[] {
    const s = this.#state(market);
    const out: Candle[] = [];
    if (unitSeconds === 1) {
      for (const c of s.seconds.newestFirst()) {
        if (toMs !== undefined && c.startMs >= toMs) continue;
        out.push({ ...c });
        if (out.length >= count) break;
      }
      return out;
    }
    const unitMs = unitSeconds * 1000;
    let current: Candle | undefined;
    for (const c of s.minutes.newestFirst()) {
      const start = Math.floor(c.startMs / unitMs) * unitMs;
      if (toMs !== undefined && start >= toMs) continue;
      if (current && current.startMs === start) {
        // Walking backwards: this minute is older, so it sets the open.
        current.open = c.open;
        current.high = Math.max(current.high, c.high);
        current.low = Math.min(current.low, c.low);
        current.volume += c.volume;
        current.amount += c.amount;
        continue;
      }
      if (current) {
        out.push(current);
        if (out.length >= count) return out;
      }
      current = { ...c, startMs: start };
    }
    if (current && out.length < count) out.push(current);
    return out;
  }

  /** The newest 1 s candle of `market` (for `candle.1s`), if any trade happened. */
  currentSecondCandle(market: string): Candle | undefined {
    const c = this.#state(market).seconds.newest();
    return c ? { ...c } : undefined;
  }

  /** Number of trades printed so far (generated and injected). */
  tradeCount(): number {
    return this.#tradeCount;
  }
}

function addToCandles(
  ring: Ring<Candle>,
  unitMs: number,
  price: number,
  volume: number,
  ts: number,
): void {
  const start = Math.floor(ts / unitMs) * unitMs;
  const last = ring.newest();
  if (last && last.startMs === start) {
    if (price > last.high) last.high = price;
    if (price < last.low) last.low = price;
    last.close = price;
    last.volume += volume;
    last.amount += price * volume;
    last.lastTs = ts;
    return;
  }
  if (last && last.startMs > start) return; // an injected trade in the past: history only
  ring.push({
    startMs: start,
    open: price,
    high: price,
    low: price,
    close: price,
    volume,
    amount: price * volume,
    lastTs: ts,
  });
}

/** Rounds a quantity to 8 decimals (Upbit's precision). */
export function roundVolume(v: number): number {
  return Number(v.toFixed(8));
}

function isoDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
