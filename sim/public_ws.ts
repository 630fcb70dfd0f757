/**
 * @module Public WebSocket `/websocket/v1` (§7.2-7.7, §7.9): request parsing, SNAPSHOT then REALTIME
 * `trade` / `ticker` / `orderbook` / `candle.1s` .. `candle.240m` messages in the four formats, binary frames, `PING`
 * and the periodic `{"status":"UP"}`, the idle timeout, the websocket-message limit (§3.1), error
 * messages, and the malformed-frame fault.
 */
import { z } from "zod";
import { MARKET_CODE_PATTERN } from "../lib/domain.ts";
import type { Faults } from "./contract.ts";
import type { MarketTrade, SimMarket } from "./market.ts";
import type { Rng } from "./_rng.ts";
import {
  candleTimeKst,
  candleTimeUtc,
  changeOf,
  clean,
  exactInteger,
  jsonText,
  utcDate,
  utcDateCompact,
  utcTime,
  utcTimeCompact,
} from "./_market_format.ts";
import { marketStatusOf } from "./market_status.ts";
import { restOrderbook } from "./quotation.ts";
import { WS_TOO_MANY_REQUESTS_FRAME } from "./rate_limit.ts";
import { WS_IDLE_TIMEOUT_MS, WS_STATUS_INTERVAL_MS, WsSession } from "./_ws_session.ts";

/** Wire format of a subscription (§7.2). */
export type WsFormat = "DEFAULT" | "SIMPLE" | "JSON_LIST" | "SIMPLE_LIST";

type StreamType = "SNAPSHOT" | "REALTIME";
type Message = Record<string, unknown>;

/** Options of {@linkcode PublicWebSocketHub}. */
export interface PublicWebSocketOptions {
  market: SimMarket;
  faults: () => Faults;
  /** Fault randomness (separate from the market's stream so faults do not change the market). */
  rng: Rng;
  /** Close a connection after this long without traffic either way. @default {120_000} */
  idleTimeoutMs?: number;
  /** Interval of `{"status":"UP"}` after a client's `PING`. @default {10_000} */
  statusIntervalMs?: number;
}

interface Subscription {
  format: WsFormat;
  trade: Set<string>;
  ticker: Set<string>;
  /** code -> depth */
  orderbook: Map<string, number>;
  /** candle type (`candle.1s`, `candle.1m`, …) -> codes */
  candle: Map<string, Set<string>>;
  /** Raw request parts, for LIST_SUBSCRIPTIONS. */
  listed: { type: string; codes: string[]; level?: number }[];
}

interface Connection {
  socket: WebSocket;
  sub: Subscription | undefined;
  session: WsSession;
}

/** Candle types of §7.7 and their unit in seconds. */
const CANDLE_UNITS = new Map<string, number>([
  ["candle.1s", 1],
  ...[1, 3, 5, 10, 15, 30, 60, 240].map((m) => [`candle.${m}m`, m * 60] as [string, number]),
]);
const SUPPORTED_TYPES = new Set(["trade", "ticker", "orderbook", ...CANDLE_UNITS.keys()]);
const CODE = MARKET_CODE_PATTERN;
const ORDERBOOK_DEPTHS = new Set([1, 5, 15, 30]);

const TicketPart = z.object({ ticket: z.string().min(1) });
const FormatPart = z.object({ format: z.string() });
const MethodPart = z.object({ method: z.string() });
const TypePart = z.object({
  type: z.string(),
  codes: z.array(z.string()).optional(),
  is_only_snapshot: z.boolean().optional(),
  is_only_realtime: z.boolean().optional(),
  level: z.number().optional(),
});

class WsRequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

interface ParsedRequest {
  ticket: string;
  format: WsFormat;
  listSubscriptions: boolean;
  types: z.infer<typeof TypePart>[];
}

/** Parses one request frame; throws {@linkcode WsRequestError} with the §7.9 error name. */
function parseRequest(text: string): ParsedRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new WsRequestError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.");
  }
  if (!Array.isArray(raw) || raw.some((p) => typeof p !== "object" || p === null)) {
    throw new WsRequestError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.");
  }
  let ticket: string | undefined;
  let format: WsFormat = "DEFAULT";
  let listSubscriptions = false;
  const types: z.infer<typeof TypePart>[] = [];
  for (const part of raw as object[]) {
    if ("ticket" in part) {
      const t = TicketPart.safeParse(part);
      if (!t.success) throw new WsRequestError("NO_TICKET", "ticket이 없습니다.");
      ticket = t.data.ticket;
    } else if ("type" in part) {
      const t = TypePart.safeParse(part);
      if (!t.success) throw new WsRequestError("INVALID_PARAM", "잘못된 파라미터입니다.");
      types.push(t.data);
    } else if ("format" in part) {
      const f = FormatPart.safeParse(part);
      const value = f.success ? f.data.format : "";
      if (!["DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"].includes(value)) {
        throw new WsRequestError("INVALID_PARAM", "잘못된 format입니다.");
      }
      format = value as WsFormat;
    } else if ("method" in part) {
      const m = MethodPart.safeParse(part);
      if (!m.success || m.data.method !== "LIST_SUBSCRIPTIONS") {
        throw new WsRequestError("INVALID_PARAM", "잘못된 method입니다.");
      }
      listSubscriptions = true;
    } else {
      throw new WsRequestError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.");
    }
  }
  if (ticket === undefined) throw new WsRequestError("NO_TICKET", "ticket이 없습니다.");
  if (types.length === 0 && !listSubscriptions) {
    throw new WsRequestError("NO_TYPE", "type이 없습니다.");
  }
  for (const t of types) {
    if (!SUPPORTED_TYPES.has(t.type)) {
      throw new WsRequestError("INVALID_PARAM", `지원하지 않는 type입니다: ${t.type}`);
    }
    if (!t.codes || t.codes.length === 0) throw new WsRequestError("NO_CODES", "codes가 없습니다.");
    for (const code of t.codes) {
      const [pair, depthText, extra] = code.split(".");
      const depthOk = depthText === undefined ||
        (t.type === "orderbook" && ORDERBOOK_DEPTHS.has(Number(depthText)));
      if (!pair || !CODE.test(pair) || !depthOk || extra !== undefined) {
        throw new WsRequestError("INVALID_PARAM", `잘못된 codes입니다: ${code}`);
      }
    }
  }
  return { ticket, format, listSubscriptions, types };
}

// ---- message builders (DEFAULT keys) and SIMPLE abbreviations ---------------------------------

const SIMPLE_KEYS: Record<string, string> = {
  type: "ty",
  code: "cd",
  opening_price: "op",
  high_price: "hp",
  low_price: "lp",
  trade_price: "tp",
  prev_closing_price: "pcp",
  change: "c",
  change_price: "cp",
  signed_change_price: "scp",
  change_rate: "cr",
  signed_change_rate: "scr",
  trade_volume: "tv",
  acc_trade_volume: "atv",
  acc_trade_volume_24h: "atv24h",
  acc_trade_price: "atp",
  acc_trade_price_24h: "atp24h",
  trade_timestamp: "ttms",
  ask_bid: "ab",
  acc_ask_volume: "aav",
  acc_bid_volume: "abv",
  highest_52_week_price: "h52wp",
  highest_52_week_date: "h52wdt",
  lowest_52_week_price: "l52wp",
  lowest_52_week_date: "l52wdt",
  market_state: "ms",
  is_trading_suspended: "its",
  delisting_date: "dd",
  market_warning: "mw",
  timestamp: "tms",
  stream_type: "st",
  sequential_id: "sid",
  best_ask_price: "bap",
  best_ask_size: "bas",
  best_bid_price: "bbp",
  best_bid_size: "bbs",
  total_ask_size: "tas",
  total_bid_size: "tbs",
  orderbook_units: "obu",
  ask_price: "ap",
  bid_price: "bp",
  ask_size: "as",
  bid_size: "bs",
  level: "lv",
  candle_date_time_utc: "cdttmu",
  candle_date_time_kst: "cdttmk",
  candle_acc_trade_volume: "catv",
  candle_acc_trade_price: "catp",
};

/** Per-type exceptions: `trade_date` / `trade_time` abbreviate differently in ticker and trade. */
const SIMPLE_KEYS_BY_TYPE: Record<string, Record<string, string>> = {
  ticker: { trade_date: "tdt", trade_time: "ttm" },
  trade: { trade_date: "td", trade_time: "ttm" },
};

/** Converts a DEFAULT message to SIMPLE keys (§7.4-7.7). */
export function toSimple(message: Message): Message {
  const perType = SIMPLE_KEYS_BY_TYPE[String(message.type)] ?? {};
  const out: Message = {};
  for (const [key, value] of Object.entries(message)) {
    const short = perType[key] ?? SIMPLE_KEYS[key] ?? key;
    out[short] = Array.isArray(value)
      ? value.map((v) => (typeof v === "object" && v !== null ? toSimple(v as Message) : v))
      : value;
  }
  return out;
}

function tradeMessage(t: MarketTrade, stream: StreamType): Message {
  const ch = changeOf(t.price, t.prevClosingPrice);
  return {
    type: "trade",
    code: t.market,
    timestamp: Date.now(),
    trade_date: utcDate(t.timestampMs),
    trade_time: utcTime(t.timestampMs),
    trade_timestamp: t.timestampMs,
    trade_price: t.price,
    trade_volume: t.volume,
    ask_bid: t.side,
    prev_closing_price: t.prevClosingPrice,
    change: ch.change,
    change_price: ch.changePrice,
    sequential_id: exactInteger(t.sequentialId),
    best_ask_price: t.bestAskPrice,
    best_ask_size: t.bestAskSize,
    best_bid_price: t.bestBidPrice,
    best_bid_size: t.bestBidSize,
    stream_type: stream,
  };
}

function tickerMessage(market: SimMarket, code: string, stream: StreamType): Message {
  const s = market.stats(code);
  const listing = marketStatusOf(market).get(code);
  const ch = changeOf(s.tradePrice, s.prevClosingPrice);
  return {
    type: "ticker",
    code,
    opening_price: s.openingPrice,
    high_price: s.highPrice,
    low_price: s.lowPrice,
    trade_price: s.tradePrice,
    prev_closing_price: s.prevClosingPrice,
    change: ch.change,
    change_price: ch.changePrice,
    signed_change_price: ch.signedChangePrice,
    change_rate: ch.changeRate,
    signed_change_rate: ch.signedChangeRate,
    trade_volume: s.tradeVolume,
    acc_trade_volume: clean(s.accTradeVolume, 8),
    acc_trade_volume_24h: clean(s.accTradeVolume24h, 8),
    acc_trade_price: clean(s.accTradePrice, 8),
    acc_trade_price_24h: clean(s.accTradePrice24h, 8),
    trade_date: utcDateCompact(s.tradeTimestamp),
    trade_time: utcTimeCompact(s.tradeTimestamp),
    trade_timestamp: s.tradeTimestamp,
    ask_bid: s.askBid,
    acc_ask_volume: clean(s.accAskVolume, 8),
    acc_bid_volume: clean(s.accBidVolume, 8),
    highest_52_week_price: s.highest52WeekPrice,
    highest_52_week_date: s.highest52WeekDate,
    lowest_52_week_price: s.lowest52WeekPrice,
    lowest_52_week_date: s.lowest52WeekDate,
    market_state: listing.market_state,
    is_trading_suspended: false,
    delisting_date: listing.delisting_date,
    // Deprecated (§7.4), kept in step with market_event.warning.
    market_warning: listing.warning ? "CAUTION" : "NONE",
    timestamp: Date.now(),
    stream_type: stream,
  };
}

function orderbookMessage(
  market: SimMarket,
  code: string,
  depth: number,
  stream: StreamType,
): Message {
  const book = restOrderbook(market, code, depth);
  return {
    type: "orderbook",
    code,
    timestamp: book.timestamp,
    total_ask_size: book.total_ask_size,
    total_bid_size: book.total_bid_size,
    orderbook_units: book.orderbook_units,
    stream_type: stream,
    level: 0,
  };
}

function candleMessage(
  market: SimMarket,
  code: string,
  type: string,
  stream: StreamType,
): Message | undefined {
  const c = market.currentCandle(code, CANDLE_UNITS.get(type) ?? 1);
  if (!c) return undefined;
  return {
    type,
    code,
    candle_date_time_utc: candleTimeUtc(c.startMs),
    candle_date_time_kst: candleTimeKst(c.startMs),
    opening_price: c.open,
    high_price: c.high,
    low_price: c.low,
    trade_price: c.close,
    candle_acc_trade_volume: clean(c.volume, 8),
    candle_acc_trade_price: clean(c.amount, 8),
    timestamp: c.lastTs,
    stream_type: stream,
  };
}

const encoder = new TextEncoder();
const STATUS_UP = '{"status":"UP"}';
/** Unsent bytes after which a connection is closed as a slow consumer. */
const SLOW_CONSUMER_BYTES = 64 * 1024 * 1024;

/** Serves every public WebSocket connection and streams market data to it. */
export class PublicWebSocketHub {
  readonly #market: SimMarket;
  readonly #faults: () => Faults;
  readonly #rng: Rng;
  readonly #idleTimeoutMs: number;
  readonly #statusIntervalMs: number;
  readonly #connections = new Set<Connection>();
  readonly #unsubscribe: (() => void)[] = [];
  #closed = false;

  constructor(options: PublicWebSocketOptions) {
    this.#market = options.market;
    this.#faults = options.faults;
    this.#rng = options.rng;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? WS_IDLE_TIMEOUT_MS;
    this.#statusIntervalMs = options.statusIntervalMs ?? WS_STATUS_INTERVAL_MS;
    this.#unsubscribe.push(
      this.#market.onBatch((trades) => this.#onBatch(trades)),
      this.#market.onTick((nowMs) => this.#onTick(nowMs)),
    );
  }

  /** Number of open connections. */
  get size(): number {
    return this.#connections.size;
  }

  /** Upgrades a request to `/websocket/v1`. */
  upgrade(req: Request): Response {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const conn: Connection = {
      socket,
      sub: undefined,
      session: new WsSession({
        idleTimeoutMs: this.#idleTimeoutMs,
        statusIntervalMs: this.#statusIntervalMs,
        sendStatus: () => this.#sendRaw(conn, STATUS_UP, false),
        closeIdle: () => this.#drop(conn, 1000, "idle timeout"),
      }),
    };
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      // An upgrade that completes after close() must not start timers.
      if (this.#closed) return this.#drop(conn, 1001, "simulator closed");
      this.#connections.add(conn);
      conn.session.start();
    };
    socket.onclose = () => this.#forget(conn);
    socket.onerror = () => this.#forget(conn);
    socket.onmessage = (ev) => {
      conn.session.touch();
      const text = typeof ev.data === "string"
        ? ev.data
        : new TextDecoder().decode(ev.data as ArrayBuffer);
      this.#onRequest(conn, text);
    };
    return response;
  }

  /** Closes every connection now (fault injection and reconnect tests). */
  dropAll(): void {
    for (const conn of [...this.#connections]) this.#drop(conn, 4000, "simulated disconnect");
  }

  /** Stops listening to the market and closes every connection. */
  close(): void {
    this.#closed = true;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe.length = 0;
    this.dropAll();
  }

  #forget(conn: Connection): void {
    conn.session.stop();
    this.#connections.delete(conn);
  }

  /** Closes one connection and forgets it (its timers stop now, not at the close event). */
  #drop(conn: Connection, code: number, reason: string): void {
    this.#forget(conn);
    try {
      conn.socket.close(code, reason);
    } catch {
      // already closing
    }
  }

  #onRequest(conn: Connection, text: string): void {
    if (text.trim() === "PING") {
      // A keepalive, not a request: websocket-message (§3.1) counts request messages only, so a
      // PING is never refused. It is answered now and then every statusIntervalMs (§7.9).
      this.#sendRaw(conn, STATUS_UP, false);
      conn.session.pinged();
      return;
    }
    if (!conn.session.admit(this.#faults().rate_limit_factor)) {
      // Past the limit the request is ignored; the connection (and its subscriptions) stay.
      this.#sendRaw(conn, WS_TOO_MANY_REQUESTS_FRAME, false);
      return;
    }
    let request: ParsedRequest;
    try {
      request = parseRequest(text);
    } catch (err) {
      if (!(err instanceof WsRequestError)) throw err;
      // Whether Upbit closes the socket after an error is undocumented (§7.9 [?]); it stays open.
      this.#sendRaw(
        conn,
        JSON.stringify({ error: { name: err.code, message: err.message } }),
        false,
      );
      return;
    }
    if (request.listSubscriptions && request.types.length === 0) {
      this.#sendRaw(
        conn,
        JSON.stringify({
          method: "LIST_SUBSCRIPTIONS",
          result: conn.sub?.listed ?? [],
          ticket: request.ticket,
        }),
        false,
      );
      return;
    }
    // A new request replaces the whole subscription set of the connection: ccxt pro resends the
    // full set each time, which implies replacement (§7.2 [L/?]).
    const sub: Subscription = {
      format: request.format,
      trade: new Set(),
      ticker: new Set(),
      orderbook: new Map(),
      candle: new Map(),
      listed: [],
    };
    const snapshot: Message[] = [];
    for (const t of request.types) {
      const codes = t.codes ?? [];
      sub.listed.push(
        t.type === "orderbook"
          ? { type: t.type, codes, level: t.level ?? 0 }
          : { type: t.type, codes },
      );
      for (const raw of codes) {
        const [code = raw, depthText] = raw.split(".");
        // Well-formed but unknown codes are accepted and simply never produce data.
        if (!this.#market.has(code)) continue;
        const depth = depthText === undefined ? 30 : Number(depthText);
        if (!t.is_only_realtime) {
          const m = this.#snapshotOf(t.type, code, depth);
          if (m) snapshot.push(m);
        }
        if (t.is_only_snapshot) continue;
        if (t.type === "trade") sub.trade.add(code);
        else if (t.type === "ticker") sub.ticker.add(code);
        else if (t.type === "orderbook") sub.orderbook.set(code, depth);
        else {
          const codes = sub.candle.get(t.type) ?? new Set<string>();
          codes.add(code);
          sub.candle.set(t.type, codes);
        }
      }
    }
    conn.sub = sub;
    this.#deliver(conn, snapshot);
  }

  #snapshotOf(type: string, code: string, depth: number): Message | undefined {
    const market = this.#market;
    if (type === "trade") {
      const last = market.tradesBefore(code, 1)[0];
      if (!last) return undefined;
      const book = market.bookOf(code, 1);
      return tradeMessage({
        ...last,
        bestAskPrice: book.asks[0]?.price ?? 0,
        bestAskSize: book.asks[0]?.size ?? 0,
        bestBidPrice: book.bids[0]?.price ?? 0,
        bestBidSize: book.bids[0]?.size ?? 0,
      }, "SNAPSHOT");
    }
    if (type === "ticker") return tickerMessage(market, code, "SNAPSHOT");
    if (type === "orderbook") return orderbookMessage(market, code, depth, "SNAPSHOT");
    return candleMessage(market, code, type, "SNAPSHOT");
  }

  #onBatch(trades: MarketTrade[]): void {
    if (this.#connections.size === 0) return;
    for (const conn of this.#connections) {
      const sub = conn.sub;
      if (!sub || (sub.trade.size === 0 && sub.ticker.size === 0)) continue;
      const out: Message[] = [];
      const tickers = new Set<string>();
      for (const t of trades) {
        if (sub.trade.has(t.market)) out.push(tradeMessage(t, "REALTIME"));
        if (sub.ticker.has(t.market)) tickers.add(t.market);
      }
      // One ticker per market per batch: the state after the batch's last trade.
      for (const code of tickers) out.push(tickerMessage(this.#market, code, "REALTIME"));
      this.#deliver(conn, out);
    }
  }

  #onTick(nowMs: number): void {
    const books = this.#market.takeChangedBooks();
    const candles = this.#market.takeCandlesToPush(nowMs);
    for (const conn of this.#connections) {
      const sub = conn.sub;
      if (!sub) continue;
      const out: Message[] = [];
      for (const code of books) {
        const depth = sub.orderbook.get(code);
        if (depth !== undefined) out.push(orderbookMessage(this.#market, code, depth, "REALTIME"));
      }
      for (const code of candles) {
        for (const [type, codes] of sub.candle) {
          if (!codes.has(code)) continue;
          const m = candleMessage(this.#market, code, type, "REALTIME");
          if (m) out.push(m);
        }
      }
      this.#deliver(conn, out);
    }
  }

  #deliver(conn: Connection, messages: Message[]): void {
    if (messages.length === 0 || !conn.sub) return;
    const format = conn.sub.format;
    const simple = format === "SIMPLE" || format === "SIMPLE_LIST";
    const shaped = simple ? messages.map(toSimple) : messages;
    if (format === "JSON_LIST" || format === "SIMPLE_LIST") {
      this.#sendRaw(conn, jsonText(shaped), true);
    } else {
      for (const m of shaped) this.#sendRaw(conn, jsonText(m), true);
    }
  }

  /** Sends one binary frame (§7.3); data frames may be corrupted by the malformed-frame fault. */
  #sendRaw(conn: Connection, text: string, isData: boolean): void {
    if (conn.socket.readyState !== WebSocket.OPEN) return;
    let bytes: Uint8Array = encoder.encode(text);
    const rate = this.#faults().malformed_frame_rate;
    if (isData && rate > 0 && this.#rng.next() < rate) bytes = malform(bytes, this.#rng);
    conn.session.touch();
    if (conn.socket.bufferedAmount > SLOW_CONSUMER_BYTES) {
      // A client that cannot keep up is dropped rather than buffered without bound.
      this.#drop(conn, 4008, "slow consumer");
      return;
    }
    conn.socket.send(bytes);
  }
}

/** Corrupts a frame: either truncated JSON or bytes that are not UTF-8. */
function malform(bytes: Uint8Array, rng: Rng): Uint8Array {
  if (rng.next() < 0.5) return bytes.slice(0, Math.max(1, Math.floor(bytes.length / 2)));
  const out = new Uint8Array(Math.min(bytes.length, 32));
  for (let i = 0; i < out.length; i++) out[i] = 0x80 | rng.int(0x40, 0x7f);
  out[0] = 0xff;
  return out;
}
