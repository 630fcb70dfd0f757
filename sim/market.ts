/**
 * @module The simulated market: a seeded, driftless random walk per market on the KRW tick grid
 * with the documented parameters of `market_specs.ts` (one-minute volatility, spread in ticks, trade
 * share, trade sizes), trades with bursts (sweeps), a 30-level book around the price, day / 24 h
 * statistics, candles and a bounded history of trades per market, optionally backdated by whole
 * days. Implements the exchange's {@linkcode MarketView}.
 *
 * Determinism: the content of the n-th generated trade (market, price, volume, side) depends only
 * on the seed, n and the times at which trades are generated (the price moves with elapsed time),
 * and on injected trades, which move the price. `sequential_id`s come from the clock: trade time in ms ×
 * 10,000 plus a counter, about 1.7e16 like Upbit's, above 2^53.
 */
import type { BookLevel, ListingState, MarketView } from "./contract.ts";
import type { SimTrade } from "./contract.ts";
import { createRng, hash01, type Rng } from "./_rng.ts";
import { type MarketSpec, specFor } from "./market_specs.ts";
import { marketStatusOf } from "./market_status.ts";
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
  /**
   * Whole days of backdated history generated at construction (trades, candles, day statistics),
   * so that earlier UTC dates have trades. @default {0}
   */
  historyDays?: number;
  /** Trades per second across all markets in the backdated history. @default {2} */
  historyRate?: number;
  /**
   * Multiplier on every market's one-minute volatility. A test knob: 1 is the documented market;
   * tests that need exits within seconds raise it. @default {1}
   */
  volatilityScale?: number;
  /**
   * Markets whose book shows no bids right now (the `bookless_markets` fault): every view of the
   * book (REST and WebSocket orderbook, the exchange's matching and depth checks) leaves the bids
   * out. The market itself (prices, generated trades) goes on. @default {none}
   */
  bidless?: (market: string) => boolean;
}

const DAY_MS = 86_400_000;
const BOOK_DEPTH = 30;
const SECOND_CANDLES = 7_200;
const MINUTE_CANDLES = 10_080;
/** `sequential_id` = trade time in ms × this + a counter (Upbit's ids look the same). */
const SID_PER_MS = 10_000n;

class MarketState {
  readonly code: string;
  readonly spec: MarketSpec;
  /** Continuous mid price; the best bid is its floor on the grid. */
  mid: number;
  /** Time up to which the mid has moved (the random walk advances with elapsed time). */
  lastMoveMs: number;
  /** Current spread in ticks (drawn per generated trade around the spec's typical spread). */
  spread = 1;
  /** Ticks the touch is displaced by a sweep; back to 0 at the market's next ordinary trade. */
  sweep = 0;
  /**
   * Largest sweep in ticks: half a minute's volatility (at least one tick), so that sweeps make
   * wicks without adding to the one-minute volatility of the spec.
   */
  readonly maxSweep: number;
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
  /** Start of the live market (after any backdated history); the synthetic volume fades from it. */
  startedMs: number;
  high52: number;
  high52Date: string;
  low52: number;
  low52Date: string;
  readonly history: TradeHistory;
  readonly seconds = new Ring<Candle>(SECOND_CANDLES);
  readonly minutes: Ring<Candle>;
  /** 1 s candle changed since it was last pushed on the WebSocket. */
  candleDirty = false;
  candlePushedMs = 0;
  bookDirty = false;
  /** Cached sum of the closed 1 m candles of the last 24 h. */
  sum24 = { minuteStart: -1, price: 0, volume: 0 };

  constructor(
    spec: MarketSpec,
    rng: Rng,
    nowMs: number,
    historySize: number,
    minuteCandles: number,
  ) {
    this.code = spec.code;
    this.spec = spec;
    const tick = krwTickSize(spec.price);
    this.mid = snapToTick(spec.price * (1 + 0.01 * rng.normal()), tick, "floor");
    this.lastMoveMs = nowMs;
    this.maxSweep = Math.max(
      1,
      Math.floor(0.5 * spec.volatility1m * this.mid / krwTickSize(this.mid)),
    );
    this.minutes = new Ring<Candle>(minuteCandles);
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

  /** Best bid: the mid's floor on the grid, displaced by an ongoing sweep. */
  bestBid(): number {
    let bid = snapToTick(this.mid, krwTickSize(this.mid * (1 + 1e-12)), "floor");
    for (let i = 0; i < this.sweep; i++) bid = tickUp(bid);
    for (let i = 0; i > this.sweep && bid > 0; i--) bid = tickDown(bid);
    return bid;
  }

  /** Best ask: `spread` ticks above the best bid. */
  bestAsk(bid = this.bestBid()): number {
    let ask = bid;
    for (let i = 0; i < this.spread; i++) ask = tickUp(ask);
    return ask;
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
  readonly sid: BigInt64Array;
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
    this.sid = new BigInt64Array(capacity);
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
  sequentialId: bigint;
  prevClosingPrice: number;
}

/** The simulated market of every configured code. */
export class SimMarket implements MarketView {
  readonly #states = new Map<string, MarketState>();
  readonly #codes: string[];
  readonly #cumulativeWeights: number[];
  readonly #rng: Rng;
  readonly #bidless: (market: string) => boolean;
  readonly #now: () => number;
  readonly #tradeListeners = new Set<(trade: SimTrade) => void>();
  readonly #batchListeners = new Set<(trades: MarketTrade[]) => void>();
  readonly #tickListeners = new Set<(nowMs: number) => void>();
  readonly #batchIntervalMs: number;
  #rate: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastBatchMs = 0;
  #carry = 0;
  #lastSid = 0n;
  #tradeCount = 0;
  #burst: { state: MarketState; side: "ASK" | "BID"; left: number } | undefined;
  readonly #volatilityScale: number;

  /** @throws {RangeError} when `historyDays` or `volatilityScale` is out of range. */
  constructor(options: SimMarketOptions) {
    this.#now = options.now ?? Date.now;
    this.#rng = createRng(options.seed);
    this.#rate = options.rate;
    this.#batchIntervalMs = options.batchIntervalMs ?? 20;
    const historyDays = options.historyDays ?? 0;
    if (!Number.isInteger(historyDays) || historyDays < 0 || historyDays > 31) {
      throw new RangeError(
        `Cannot create SimMarket as 'historyDays' must be a whole number 0..31: current value is ${historyDays}`,
      );
    }
    this.#bidless = options.bidless ?? (() => false);
    this.#volatilityScale = options.volatilityScale ?? 1;
    if (!(this.#volatilityScale >= 0 && this.#volatilityScale <= 1000)) {
      throw new RangeError(
        `Cannot create SimMarket as 'volatilityScale' must be 0..1000: current value is ${this.#volatilityScale}`,
      );
    }
    const historyRate = historyDays > 0 ? options.historyRate ?? 2 : 0;
    const nowMs = this.#now();
    const startMs = nowMs - historyDays * DAY_MS;
    const specs = options.markets.map((code) => specFor(code, options.seed));
    const totalWeight = specs.reduce((sum, s) => sum + s.weight, 0);
    const minuteCandles = Math.max(MINUTE_CANDLES, (historyDays + 2) * 1440);
    this.#codes = [...options.markets];
    let total = 0;
    this.#cumulativeWeights = [];
    for (const spec of specs) {
      // Room for the backdated trades of this market besides the live history.
      const backdated = historyRate * (spec.weight / totalWeight) * historyDays * 86_400;
      const capacity = Math.max(1, Math.ceil((options.historySize ?? 100_000) + backdated * 1.2));
      const state = new MarketState(spec, this.#rng, startMs, capacity, minuteCandles);
      this.#states.set(spec.code, state);
      total += spec.weight;
      this.#cumulativeWeights.push(total);
    }
    if (historyRate > 0) {
      this.#backdate(startMs, nowMs, historyRate, options.seed);
      // The thin backdated stream stands for a busier market: keep the synthetic 24 h volume.
      for (const state of this.#states.values()) state.startedMs = nowMs;
    }
  }

  /** Generates the backdated history: a Poisson stream of `rate` trades/s from `fromMs` on. */
  #backdate(fromMs: number, toMs: number, rate: number, seed: number): void {
    const arrivals = createRng(seed ^ 0x0ba5_eda7);
    let t = fromMs;
    for (;;) {
      let u = arrivals.next();
      while (u <= Number.EPSILON) u = arrivals.next();
      t += -Math.log(u) / rate * 1000;
      if (t >= toMs) break;
      this.generate(1, Math.floor(t));
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

  listingState(market: string): ListingState {
    return marketStatusOf(this).get(market).market_state;
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
      // Driftless random walk of the log mid, scaled by the time elapsed since it last moved, so
      // the one-minute volatility is the spec's whatever the trade rate (no edge by construction).
      const z = rng.normal();
      const elapsed = nowMs - state.lastMoveMs;
      if (elapsed > 0) {
        const sigma = state.spec.volatility1m * this.#volatilityScale * Math.sqrt(elapsed / 60_000);
        state.mid *= Math.exp(sigma * z);
        state.lastMoveMs = nowMs;
      }
      // A sweep displaces the touch one tick per trade; it does not move the mid, and the book is
      // back around the mid at the market's next ordinary trade.
      if (burst) {
        const sweep = state.sweep + (side === "BID" ? 1 : -1);
        state.sweep = Math.max(-state.maxSweep, Math.min(state.maxSweep, sweep));
      } else {
        state.sweep = 0;
        state.spread = spreadDraw(state.spec.spreadTicks, rng.next());
      }
      const bestBid = state.bestBid();
      const price = side === "ASK" ? bestBid : state.bestAsk(bestBid);
      // Trade notional: log-normal around the spec's median, heavy right tail.
      const notional = state.spec.medianTradeKrw *
        Math.exp(state.spec.tradeSizeSigma * rng.normal()) * sizeFactor;
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
    // Put the book around the injected price: a sell hits the best bid, a buy lifts the best ask
    // (one tick above the bid until the next generated trade of the market).
    state.mid = trade.side === "ASK" ? trade.price : tickDown(trade.price);
    state.sweep = 0;
    state.spread = 1;
    const at = trade.timestampMs ?? this.#now();
    if (at > state.lastMoveMs) state.lastMoveMs = at;
    const printed = this.#record(
      state,
      trade.price,
      trade.volume,
      trade.side,
      at,
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
    // Upbit-like ids (ms × 10,000 + n, about 1.7e16: above 2^53, so only exact parsing keeps them
    // apart), strictly increasing across all markets.
    const fromClock = BigInt(Math.floor(timestampMs)) * SID_PER_MS;
    const sid = fromClock > this.#lastSid ? fromClock : this.#lastSid + 1n;
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
    const bestAsk = state.bestAsk(bestBid);
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
      // A market shown without bids (fault `bookless_markets`) shows none in its trades either.
      bestBidPrice: this.#bidless(state.code) ? 0 : bestBid,
      bestBidSize: this.#bidless(state.code) ? 0 : state.levelSize(1, 0, bestBid),
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
    const bidless = this.#bidless(market);
    let bid = state.bestBid();
    let ask = state.bestAsk(bid);
    for (let level = 0; level < depth; level++) {
      asks.push({ price: ask, size: state.levelSize(0, level, ask) });
      if (bid > 0 && !bidless) bids.push({ price: bid, size: state.levelSize(1, level, bid) });
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
   * Markets whose current candles (every unit) changed and were last pushed at least a second ago
   * (pushed at most once per second, §7.7); marks them pushed.
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
   * a cursor is given (Upbit's backfill paging), across every date.
   */
  tradesBefore(market: string, count: number, cursor?: bigint): HistoricTrade[] {
    const h = this.#state(market).history;
    const out: HistoricTrade[] = [];
    for (let k = cursor === undefined ? 0 : olderThanId(h, cursor); k < h.size; k++) {
      if (out.length >= count) break;
      out.push(historic(market, h, h.at(k)));
    }
    return out;
  }

  /**
   * `/v1/trades/ticks` of one UTC trade date (§6): the date of the market's newest trade, or
   * `daysAgo` days before it; newest first; only trades before the end of second `toSecond` of that
   * date (inclusive) and with `sequential_id < cursor` when given; at most `count`.
   */
  tradesOfDate(
    market: string,
    query: { daysAgo?: number; toSecond?: number; cursor?: bigint; count: number },
  ): HistoricTrade[] {
    const h = this.#state(market).history;
    const newestTs = h.size > 0 ? h.ts[h.at(0)] ?? this.#now() : this.#now();
    const dayStart = (Math.floor(newestTs / DAY_MS) - (query.daysAgo ?? 0)) * DAY_MS;
    const end = dayStart + (query.toSecond === undefined ? DAY_MS : (query.toSecond + 1) * 1000);
    let k = olderThanTime(h, end);
    if (query.cursor !== undefined) k = Math.max(k, olderThanId(h, query.cursor));
    const out: HistoricTrade[] = [];
    for (; k < h.size && out.length < query.count; k++) {
      const i = h.at(k);
      if ((h.ts[i] ?? 0) < dayStart) break;
      out.push(historic(market, h, i));
    }
    return out;
  }

  /**
   * Candles newest first, each starting before `toMs` (exclusive bound), at most `count`.
   * `unitSeconds` is 1 for second candles or 60 × minutes.
   */
  candles(market: string, unitSeconds: number, count: number, toMs?: number): Candle[] {
    const s = this.#state(market);
    if (unitSeconds === 1) {
      const out: Candle[] = [];
      for (const c of s.seconds.newestFirst()) {
        if (toMs !== undefined && c.startMs >= toMs) continue;
        out.push({ ...c });
        if (out.length >= count) break;
      }
      return out;
    }
    const unitMs = unitSeconds * 1000;
    return aggregate(s.minutes, (ms) => Math.floor(ms / unitMs) * unitMs, count, toMs);
  }

  /**
   * Day, week or month candles newest first (§6): days run 00:00-24:00 UTC, weeks start on Monday
   * 00:00 UTC, months on the first day 00:00 UTC. Built from the minute candles kept (at least seven
   * days, more with backdated history).
   */
  periodCandles(
    market: string,
    period: "days" | "weeks" | "months",
    count: number,
    toMs?: number,
  ): Candle[] {
    return aggregate(this.#state(market).minutes, PERIOD_START[period], count, toMs);
  }

  /** The current candle of `unitSeconds` (1, or 60 × minutes) of `market`, if any trade happened. */
  currentCandle(market: string, unitSeconds: number): Candle | undefined {
    return this.candles(market, unitSeconds, 1)[0];
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

/** Spread in ticks: uniform over 1 .. 2 × typical − 1, so its mean is the typical spread. */
function spreadDraw(typical: number, u: number): number {
  const widest = Math.max(1, Math.round(2 * typical - 1));
  return 1 + Math.min(widest - 1, Math.floor(u * widest));
}

function historic(market: string, h: TradeHistory, i: number): HistoricTrade {
  return {
    market,
    price: h.price[i] ?? 0,
    volume: h.volume[i] ?? 0,
    side: h.side[i] === 1 ? "BID" : "ASK",
    timestampMs: h.ts[i] ?? 0,
    sequentialId: h.sid[i] ?? 0n,
    prevClosingPrice: h.pcp[i] ?? 0,
  };
}

/** Smallest k (newest first) whose trade has `sequential_id < cursor` (ids increase with time). */
function olderThanId(h: TradeHistory, cursor: bigint): number {
  let lo = 0;
  let hi = h.size;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if ((h.sid[h.at(m)] ?? 0n) >= cursor) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/**
 * Smallest k (newest first) whose trade time is before `endMs`. Trade times follow the ids except
 * for trades injected with a past time; those are ordered by id, as the generator prints them.
 */
function olderThanTime(h: TradeHistory, endMs: number): number {
  let lo = 0;
  let hi = h.size;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if ((h.ts[h.at(m)] ?? 0) >= endMs) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** Start of the period holding `ms`, per REST period (UTC). */
const PERIOD_START: Record<"days" | "weeks" | "months", (ms: number) => number> = {
  days: (ms) => Math.floor(ms / DAY_MS) * DAY_MS,
  // 1970-01-01 was a Thursday: shift by three days so that weeks start on Monday.
  weeks: (ms) => Math.floor((ms + 3 * DAY_MS) / (7 * DAY_MS)) * 7 * DAY_MS - 3 * DAY_MS,
  months: (ms) => {
    const d = new Date(ms);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  },
};

/** Merges minute candles (newest first) into candles of the periods `startOf` defines. */
function aggregate(
  minutes: Ring<Candle>,
  startOf: (ms: number) => number,
  count: number,
  toMs: number | undefined,
): Candle[] {
  const out: Candle[] = [];
  let current: Candle | undefined;
  for (const c of minutes.newestFirst()) {
    const start = startOf(c.startMs);
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
