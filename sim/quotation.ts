/**
 * @module Quotation REST (§6): markets, ticker, recent trades, order book, instruments and candles,
 * with JSON numbers and the numeric-name error envelope of §5.1.
 */
import type { Candle, MarketStats, SimMarket } from "./market.ts";
import {
  candleTimeKst,
  candleTimeUtc,
  changeOf,
  clean,
  exactInteger,
  jsonResponse,
  kstDateCompact,
  kstTimeCompact,
  parseToBound,
  utcDate,
  utcDateCompact,
  utcTime,
  utcTimeCompact,
} from "./_market_format.ts";
import { marketStatusOf } from "./market_status.ts";
import { krwTickSize, tickText } from "./tick_size.ts";

const MINUTE_UNITS = new Set([1, 3, 5, 10, 15, 30, 60, 240]);

/** Rate-limit group (§3.1) of a quotation path, or undefined when it is not one. */
export function quotationGroup(pathname: string): string | undefined {
  if (pathname === "/v1/market/all") return "market";
  if (pathname.startsWith("/v1/candles/")) return "candle";
  if (pathname === "/v1/trades/ticks") return "trade";
  if (pathname === "/v1/ticker" || pathname === "/v1/ticker/all") return "ticker";
  if (pathname === "/v1/orderbook" || pathname.startsWith("/v1/orderbook/")) return "orderbook";
  return undefined;
}

/** A quotation error: `{"error":{"name":<status>,"message":…}}` (numeric name, §5.1). */
export function quotationError(status: number, message: string): Response {
  return Response.json({ error: { name: status, message } }, { status });
}

const INVALID = "Invalid parameter. Check the given value!";
const MISSING = "Missing request parameter error. Check the required parameters!";
const TYPE_MISMATCH = "Type mismatch error. Check the parameters type!";

class QuotationError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Answers one quotation GET request. */
export function handleQuotation(req: Request, url: URL, market: SimMarket): Response {
  if (req.method !== "GET") return quotationError(405, "Method Not Allowed");
  try {
    // `sequential_id` (above 2^53) is an exact JSON integer on the wire (`exactInteger`).
    return jsonResponse(route(url, market));
  } catch (err) {
    if (err instanceof QuotationError) return quotationError(err.status, err.message);
    throw err;
  }
}

function route(url: URL, market: SimMarket): unknown {
  const q = url.searchParams;
  const path = url.pathname;
  switch (path) {
    case "/v1/market/all":
      return marketAll(market, q.get("is_details") === "true");
    case "/v1/ticker":
      return marketList(market, required(q, "markets")).map((m) =>
        withListing(market, restTicker(market.stats(m)))
      );
    case "/v1/ticker/all": {
      const quotes = required(q, "quote_currencies").split(",").map((s) => s.trim());
      return market.markets()
        .filter((m) => quotes.includes(m.split("-")[0] ?? ""))
        .map((m) => withListing(market, restTicker(market.stats(m))));
    }
    case "/v1/trades/ticks":
      return tradesTicks(market, q);
    case "/v1/orderbook":
      return orderbook(market, q);
    case "/v1/orderbook/instruments":
      return marketList(market, required(q, "markets")).map((m) => {
        const tick = krwTickSize(market.lastPrice(m));
        return {
          market: m,
          quote_currency: m.split("-")[0] ?? "KRW",
          tick_size: tickText(tick),
          // Grouping levels are not simulated: only 0 (no grouping) is offered.
          supported_levels: ["0"],
        };
      });
    case "/v1/candles/seconds":
      return candles(market, q, 1, undefined);
    case "/v1/candles/days":
    case "/v1/candles/weeks":
    case "/v1/candles/months":
      return periodCandles(market, q, path.slice("/v1/candles/".length) as Period);
  }
  const minutes = /^\/v1\/candles\/minutes\/([^/]+)$/.exec(path);
  if (minutes) {
    const unit = Number(minutes[1]);
    if (!MINUTE_UNITS.has(unit)) throw new QuotationError(400, INVALID);
    return candles(market, q, unit * 60, unit);
  }
  throw new QuotationError(404, "Not Found");
}

function required(q: URLSearchParams, name: string): string {
  const value = q.get(name);
  if (value === null || value.trim() === "") throw new QuotationError(400, MISSING);
  return value;
}

function marketCode(market: SimMarket, code: string): string {
  const m = code.trim();
  if (!market.has(m)) throw new QuotationError(404, "Code not found");
  return m;
}

function marketList(market: SimMarket, text: string): string[] {
  return text.split(",").map((c) => marketCode(market, c));
}

function intParam(
  q: URLSearchParams,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = q.get(name);
  if (text === null || text === "") return fallback;
  if (!/^-?\d+$/.test(text.trim())) throw new QuotationError(400, TYPE_MISMATCH);
  const n = Number(text);
  if (n < min || n > max) throw new QuotationError(400, INVALID);
  return n;
}

function marketAll(market: SimMarket, details: boolean): unknown[] {
  return market.markets().map((code) => {
    const spec = market.spec(code);
    const base = { market: code, korean_name: spec.koreanName, english_name: spec.englishName };
    if (!details) return base;
    return { ...base, market_event: marketStatusOf(market).marketEvent(code) };
  });
}

/**
 * A REST ticker with the market's `market_state` and `delisting_date` (as the WebSocket ticker
 * carries them, §7.4; on REST inferred).
 */
function withListing(market: SimMarket, ticker: Record<string, unknown>): Record<string, unknown> {
  const s = marketStatusOf(market).get(String(ticker.market));
  return { ...ticker, market_state: s.market_state, delisting_date: s.delisting_date };
}

/** The REST ticker object (§6) of one market. */
export function restTicker(s: MarketStats): Record<string, unknown> {
  const ch = changeOf(s.tradePrice, s.prevClosingPrice);
  const ts = s.tradeTimestamp;
  return {
    market: s.market,
    trade_date: utcDateCompact(ts),
    trade_time: utcTimeCompact(ts),
    trade_date_kst: kstDateCompact(ts),
    trade_time_kst: kstTimeCompact(ts),
    trade_timestamp: ts,
    opening_price: s.openingPrice,
    high_price: s.highPrice,
    low_price: s.lowPrice,
    trade_price: s.tradePrice,
    prev_closing_price: s.prevClosingPrice,
    change: ch.change,
    change_price: ch.changePrice,
    change_rate: ch.changeRate,
    signed_change_price: ch.signedChangePrice,
    signed_change_rate: ch.signedChangeRate,
    trade_volume: s.tradeVolume,
    acc_trade_price: clean(s.accTradePrice, 8),
    acc_trade_price_24h: clean(s.accTradePrice24h, 8),
    acc_trade_volume: clean(s.accTradeVolume, 8),
    acc_trade_volume_24h: clean(s.accTradeVolume24h, 8),
    highest_52_week_price: s.highest52WeekPrice,
    highest_52_week_date: s.highest52WeekDate,
    lowest_52_week_price: s.lowest52WeekPrice,
    lowest_52_week_date: s.lowest52WeekDate,
    timestamp: Date.now(),
  };
}

/**
 * `/v1/trades/ticks` (§6): one UTC trade date per query — the date of the newest trade, or
 * `days_ago` (1-7) days before it — newest first, up to `to` (`HHmmss` or `HH:mm:ss`, inclusive
 * second) and below `cursor` (a `sequential_id`), at most `count` (1-500).
 */
function tradesTicks(market: SimMarket, q: URLSearchParams): unknown[] {
  const code = marketCode(market, required(q, "market"));
  const count = intParam(q, "count", 1, 1, 500);
  const cursorText = q.get("cursor");
  let cursor: bigint | undefined;
  if (cursorText !== null && cursorText !== "") {
    if (!/^\d{1,19}$/.test(cursorText.trim())) throw new QuotationError(400, TYPE_MISMATCH);
    cursor = BigInt(cursorText.trim());
  }
  const daysAgoText = q.get("days_ago");
  const daysAgo = daysAgoText === null || daysAgoText === ""
    ? undefined
    : intParam(q, "days_ago", 0, 1, 7);
  const toText = q.get("to");
  let toSecond: number | undefined;
  if (toText !== null && toText !== "") {
    toSecond = parseTimeOfDay(toText.trim());
    if (toSecond === undefined) throw new QuotationError(400, INVALID);
  }
  return market.tradesOfDate(code, { daysAgo, toSecond, cursor, count }).map((t) => {
    const ch = changeOf(t.price, t.prevClosingPrice);
    return {
      market: code,
      trade_date_utc: utcDate(t.timestampMs),
      trade_time_utc: utcTime(t.timestampMs),
      timestamp: t.timestampMs,
      trade_price: t.price,
      trade_volume: t.volume,
      prev_closing_price: t.prevClosingPrice,
      change_price: ch.signedChangePrice,
      ask_bid: t.side,
      sequential_id: exactInteger(t.sequentialId),
    };
  });
}

/** Seconds since 00:00 of `HHmmss` or `HH:mm:ss`, or undefined when it is not a time of day. */
export function parseTimeOfDay(text: string): number | undefined {
  const m = /^(\d{2}):?(\d{2}):?(\d{2})$/.exec(text);
  if (!m || (text.includes(":") && text.length !== 8)) return undefined;
  const [h, min, sec] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (h > 23 || min > 59 || sec > 59) return undefined;
  return h * 3600 + min * 60 + sec;
}

function orderbook(market: SimMarket, q: URLSearchParams): unknown[] {
  const codes = marketList(market, required(q, "markets"));
  const count = intParam(q, "count", 30, 1, 30);
  const level = q.get("level");
  // Grouping by price level is not simulated; Upbit answers an unsupported level with [] (§6).
  if (level !== null && level !== "" && Number(level) !== 0) return [];
  return codes.map((code) => restOrderbook(market, code, count));
}

/** The orderbook object (REST shape) of one market. */
export function restOrderbook(
  market: SimMarket,
  code: string,
  depth: number,
): {
  market: string;
  timestamp: number;
  total_ask_size: number;
  total_bid_size: number;
  orderbook_units: unknown[];
  level: number;
} {
  const book = market.bookOf(code, depth);
  const units = [];
  let totalAsk = 0;
  let totalBid = 0;
  // A unit pairs the i-th ask with the i-th bid (§6), so a side with fewer levels than `depth`
  // (a `bookless_markets` market has no bids) is written as zero price and size: the asks still
  // need their units, so an empty `orderbook_units` would hide them. Inferred shape: the docs do
  // not show a one-sided book; clients must not take a 0 price for a level.
  for (let i = 0; i < depth; i++) {
    const ask = book.asks[i];
    const bid = book.bids[i];
    totalAsk += ask?.size ?? 0;
    totalBid += bid?.size ?? 0;
    units.push({
      ask_price: ask?.price ?? 0,
      bid_price: bid?.price ?? 0,
      ask_size: ask?.size ?? 0,
      bid_size: bid?.size ?? 0,
    });
  }
  return {
    market: code,
    timestamp: market.bookTimestamp(code),
    total_ask_size: clean(totalAsk, 8),
    total_bid_size: clean(totalBid, 8),
    orderbook_units: units,
    level: 0,
  };
}

function candleQuery(market: SimMarket, q: URLSearchParams) {
  const code = marketCode(market, required(q, "market"));
  const count = intParam(q, "count", 1, 1, 200);
  const toText = q.get("to");
  let toMs: number | undefined;
  if (toText !== null && toText !== "") {
    toMs = parseToBound(toText);
    if (toMs === undefined) throw new QuotationError(400, INVALID);
  }
  return { code, count, toMs };
}

function candles(
  market: SimMarket,
  q: URLSearchParams,
  unitSeconds: number,
  minuteUnit: number | undefined,
): unknown[] {
  const { code, count, toMs } = candleQuery(market, q);
  return market.candles(code, unitSeconds, count, toMs).map((c) => restCandle(code, c, minuteUnit));
}

type Period = "days" | "weeks" | "months";

/**
 * `/v1/candles/days|weeks|months`: the base candle; days add `prev_closing_price`, `change_price`,
 * `change_rate` (and `converted_trade_price` when `converting_price_unit=KRW` is given); weeks and
 * months add `first_day_of_period`.
 */
function periodCandles(market: SimMarket, q: URLSearchParams, period: Period): unknown[] {
  const { code, count, toMs } = candleQuery(market, q);
  const converting = q.get("converting_price_unit");
  // Every simulated market is quoted in KRW, so KRW is the one conversion there is (inferred).
  if (period === "days" && converting !== null && converting !== "" && converting !== "KRW") {
    throw new QuotationError(400, INVALID);
  }
  // One more than asked, so that the oldest day candle has a previous close.
  const list = market.periodCandles(code, period, count + 1, toMs);
  return list.slice(0, count).map((c, i) => {
    const out = restCandle(code, c);
    if (period !== "days") {
      out.first_day_of_period = utcDate(c.startMs);
      return out;
    }
    // The previous day's close; the open when no earlier day is kept (inferred).
    const prev = list[i + 1]?.close ?? c.open;
    out.prev_closing_price = prev;
    out.change_price = clean(c.close - prev);
    out.change_rate = prev > 0 ? clean((c.close - prev) / prev) : 0;
    if (converting === "KRW") out.converted_trade_price = c.close;
    return out;
  });
}

/** The REST candle object of §6. */
export function restCandle(code: string, c: Candle, minuteUnit?: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    market: code,
    candle_date_time_utc: candleTimeUtc(c.startMs),
    candle_date_time_kst: candleTimeKst(c.startMs),
    opening_price: c.open,
    high_price: c.high,
    low_price: c.low,
    trade_price: c.close,
    timestamp: c.lastTs,
    candle_acc_trade_price: clean(c.amount, 8),
    candle_acc_trade_volume: clean(c.volume, 8),
  };
  if (minuteUnit !== undefined) out.unit = minuteUnit;
  return out;
}
