/**
 * @module zod schemas of Upbit's wire format, one per endpoint or stream (§4, §6, §7), and the
 * typed values they produce.
 *
 * Exchange REST sends amounts as decimal strings: they stay strings here (checked to be decimals),
 * so no amount is rounded through a float; convert deliberately where you compute. Quotation REST
 * and public streams send JSON numbers, which are kept as numbers, except `sequential_id`, which
 * exceeds 2^53 and is read exactly from the text (see {@linkcode parseJsonExactIds}).
 */
import { z } from "zod";
import { OrderSide, OrdType } from "../domain.ts";

const DECIMAL = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;

/** A decimal string such as `"0.0005"`; older answers sent some as numbers, normalized to text. */
export const DecimalString = z.union([
  z.string().regex(DECIMAL, "must be a decimal string"),
  z.number().finite().transform((n) => String(n)),
]);

/** A decimal amount as text, exactly as Upbit sent it. */
export type Decimal = string;

/** One balance, `GET /v1/accounts` element (§4.1). */
export const Account = z.object({
  currency: z.string(),
  balance: DecimalString,
  locked: DecimalString,
  avg_buy_price: DecimalString,
  avg_buy_price_modified: z.boolean(),
  unit_currency: z.string(),
});
/** One balance of the key's pocket. */
export type Account = z.output<typeof Account>;

/** `GET /v1/accounts` response. */
export const Accounts = z.array(Account);

// Order side and type on REST (§4.3): `bid` buys, `ask` sells; `price` = market buy by KRW total,
// `market` = market sell by volume. Defined once in lib/domain.ts.
export { OrderSide, OrdType };

/**
 * Order state on REST (§4.5). `prevented` (self-trade prevention cancelled the order or its rest,
 * since 2026-11-09) is final like `cancel`.
 */
export const OrderState = z.enum(["wait", "watch", "done", "cancel", "prevented"]);
/** `cancel` and `prevented` may still have fills: check `executed_volume` (§9.6). */
export type OrderState = z.output<typeof OrderState>;

/** One fill in `GET /v1/order` (§4.5 `trades[]`). */
export const OrderTrade = z.object({
  market: z.string(),
  uuid: z.string(),
  price: DecimalString,
  volume: DecimalString,
  funds: DecimalString,
  trend: z.string().nullish(),
  created_at: z.string(),
  side: OrderSide,
});
/** One fill of an order. */
export type OrderTrade = z.output<typeof OrderTrade>;

/** The Order object (§4.5): create, test, get, list and cancel responses. */
export const Order = z.object({
  uuid: z.string().min(1),
  side: OrderSide,
  ord_type: OrdType,
  price: DecimalString.nullish(),
  state: OrderState,
  market: z.string(),
  created_at: z.string(),
  volume: DecimalString.nullish(),
  remaining_volume: DecimalString.nullish(),
  executed_volume: DecimalString,
  executed_funds: DecimalString.nullish(),
  reserved_fee: DecimalString,
  remaining_fee: DecimalString,
  paid_fee: DecimalString,
  locked: DecimalString,
  trades_count: z.number().int(),
  time_in_force: z.enum(["ioc", "fok", "post_only"]).nullish(),
  /**
   * `none`, `cancel_maker`, `cancel_taker` or `reduce`; always present since 2026-11-09
   * (`cancel_maker` when the order named none). Kept a string so a new value never fails a read.
   */
  smp_type: z.string().nullish(),
  /** Quantity self-trade prevention cancelled; it never executed. */
  prevented_volume: DecimalString.nullish(),
  /** What prevention released: quote funds (bid) or quantity (ask). */
  prevented_locked: DecimalString.nullish(),
  identifier: z.string().nullish(),
  trades: z.array(OrderTrade).optional(),
});
/** An order as Upbit reports it. */
export type Order = z.output<typeof Order>;

/** `GET /v1/orders/uuids`, `/open`, `/closed` responses. */
export const Orders = z.array(Order);

const ChanceAccount = z.object({
  currency: z.string(),
  balance: DecimalString,
  locked: DecimalString,
  avg_buy_price: DecimalString,
  avg_buy_price_modified: z.boolean(),
  unit_currency: z.string(),
});

/** `GET /v1/orders/chance` response (§4.2). */
export const OrdersChance = z.object({
  bid_fee: DecimalString,
  ask_fee: DecimalString,
  maker_bid_fee: DecimalString.optional(),
  maker_ask_fee: DecimalString.optional(),
  market: z.object({
    id: z.string(),
    name: z.string(),
    order_sides: z.array(z.string()).optional(),
    bid_types: z.array(z.string()).optional(),
    ask_types: z.array(z.string()).optional(),
    bid: z.object({ currency: z.string(), min_total: DecimalString }),
    ask: z.object({ currency: z.string(), min_total: DecimalString }),
    max_total: DecimalString,
    state: z.string(),
  }),
  bid_account: ChanceAccount,
  ask_account: ChanceAccount,
});
/** Order constraints and the two balances of a market. */
export type OrdersChance = z.output<typeof OrdersChance>;

const CancelledRef = z.object({
  uuid: z.string(),
  market: z.string(),
  identifier: z.string().nullish(),
});

/** `DELETE /v1/orders/uuids` and `DELETE /v1/orders/open` response (§4.11, §4.12). */
export const BatchCancelResult = z.object({
  success: z.object({ count: z.number().int(), orders: z.array(CancelledRef) }),
  failed: z.object({ count: z.number().int(), orders: z.array(CancelledRef) }),
});
/** Which cancels were accepted and which failed. */
export type BatchCancelResult = z.output<typeof BatchCancelResult>;

/** Error envelope of §5.1 (`name` is a number on quotation endpoints). */
export const ErrorEnvelope = z.object({
  error: z.object({
    name: z.union([z.string(), z.number()]).transform((n) => String(n)),
    message: z.string().nullish(),
  }),
});

// ---- Quotation (§6): JSON numbers.

/**
 * `market_event` of `GET /v1/market/all?is_details=true` (§6): the warning (투자유의) and the
 * caution flags (주의, e.g. `PRICE_FLUCTUATIONS`). Caution names are kept as sent: a new flag
 * still counts.
 */
export const MarketEvent = z.object({
  warning: z.boolean(),
  caution: z.record(z.string(), z.boolean()).default({}),
});
/** Warning and caution flags of one market. */
export type MarketEvent = z.output<typeof MarketEvent>;

/** `GET /v1/market/all` element; `market_event` only with `is_details=true`. */
export const MarketInfo = z.object({
  market: z.string(),
  korean_name: z.string(),
  english_name: z.string(),
  market_event: MarketEvent.optional(),
});
/** A listed market. */
export type MarketInfo = z.output<typeof MarketInfo>;

/** `GET /v1/market/all` response. */
export const MarketInfos = z.array(MarketInfo);

/** `GET /v1/ticker` element. */
export const Ticker = z.object({
  market: z.string(),
  trade_date: z.string(),
  trade_time: z.string(),
  trade_timestamp: z.number(),
  opening_price: z.number(),
  high_price: z.number(),
  low_price: z.number(),
  trade_price: z.number(),
  prev_closing_price: z.number(),
  change: z.enum(["RISE", "EVEN", "FALL"]),
  change_price: z.number(),
  change_rate: z.number(),
  signed_change_price: z.number(),
  signed_change_rate: z.number(),
  trade_volume: z.number(),
  acc_trade_price: z.number(),
  acc_trade_price_24h: z.number(),
  acc_trade_volume: z.number(),
  acc_trade_volume_24h: z.number(),
  timestamp: z.number(),
  /** `PREVIEW`, `ACTIVE` or `DELISTED` (§7.4); absent when the answer does not carry it. */
  market_state: z.string().optional(),
  /** The announced delisting day, or null. */
  delisting_date: z.string().nullish(),
});
/** A ticker snapshot. */
export type Ticker = z.output<typeof Ticker>;

/** `GET /v1/ticker` response. */
export const Tickers = z.array(Ticker);

/**
 * A `sequential_id` read exactly (see {@linkcode parseJsonExactIds}): a digit string, or a number
 * only while it is a safe integer (a larger one was already rounded by `JSON.parse`).
 */
export const SequentialId = z.union([
  z.string().regex(/^\d+$/).transform((s) => BigInt(s)),
  z.number().int().nonnegative().refine(Number.isSafeInteger, {
    message: "sequential_id above 2^53 must be read exactly (parseJsonExactIds)",
  }).transform((n) => BigInt(n)),
]);

/** `GET /v1/trades/ticks` element (§6). */
export const TradeTick = z.object({
  market: z.string(),
  trade_date_utc: z.string(),
  trade_time_utc: z.string(),
  timestamp: z.number(),
  trade_price: z.number(),
  trade_volume: z.number(),
  prev_closing_price: z.number().optional(),
  change_price: z.number().optional(),
  ask_bid: z.enum(["ASK", "BID"]),
  sequential_id: SequentialId,
});
/** One past trade; `sequential_id` is a bigint. */
export type TradeTick = z.output<typeof TradeTick>;

/** `GET /v1/trades/ticks` response. */
export const TradeTicks = z.array(TradeTick);

/** One level of an order book (REST and WebSocket use the same names). */
export const OrderbookUnit = z.object({
  ask_price: z.number(),
  bid_price: z.number(),
  ask_size: z.number(),
  bid_size: z.number(),
});

/** `GET /v1/orderbook` element. */
export const Orderbook = z.object({
  market: z.string(),
  timestamp: z.number(),
  total_ask_size: z.number(),
  total_bid_size: z.number(),
  orderbook_units: z.array(OrderbookUnit),
  level: z.union([z.number(), z.string()]).optional(),
});
/** A top-N book, best level first. */
export type Orderbook = z.output<typeof Orderbook>;

/** `GET /v1/orderbook` response. */
export const Orderbooks = z.array(Orderbook);

/** `GET /v1/candles/*` element. */
export const Candle = z.object({
  market: z.string(),
  candle_date_time_utc: z.string(),
  candle_date_time_kst: z.string(),
  opening_price: z.number(),
  high_price: z.number(),
  low_price: z.number(),
  trade_price: z.number(),
  timestamp: z.number(),
  candle_acc_trade_price: z.number(),
  candle_acc_trade_volume: z.number(),
  unit: z.number().optional(),
  /** Day candles: the previous day's close and the change against it. */
  prev_closing_price: z.number().optional(),
  change_price: z.number().optional(),
  change_rate: z.number().optional(),
  /** Day candles with `converting_price_unit`. */
  converted_trade_price: z.number().optional(),
  /** Week and month candles: the first day of the period ("yyyy-MM-dd"). */
  first_day_of_period: z.string().optional(),
});
/** One candle (newest first in responses). */
export type Candle = z.output<typeof Candle>;

/** `GET /v1/candles/*` response. */
export const Candles = z.array(Candle);

const SEQ_ID_NUMBER = /"(sequential_id|sid)":\s*(\d+)/g;

/**
 * `JSON.parse`, except that `sequential_id` (and SIMPLE `sid`) numbers become strings first: they
 * exceed 2^53 (e.g. `17303368620470001`) and would be rounded as floats, breaking dedup.
 *
 * @throws {SyntaxError} when `text` is not JSON.
 * @example
 * ```ts
 * parseJsonExactIds('{"sequential_id":17303368620470001}'); // { sequential_id: "17303368620470001" }
 * ```
 */
export function parseJsonExactIds(text: string): unknown {
  if (!text.includes('id"')) return JSON.parse(text);
  return parseOneExactId(text) ?? JSON.parse(text.replace(SEQ_ID_NUMBER, '"$1":"$2"'));
}

const SEQ_KEY = '"sequential_id":';

/**
 * The fast path of {@linkcode parseJsonExactIds} for its common case, a WebSocket `trade` frame:
 * one object whose only `sequential_id` is its own, followed by plain digits. Parses the text as
 * is and puts the id's digits back, instead of rewriting the whole text first (that rewrite cost
 * as much again as the parse, for every trade). Returns undefined for anything else, and for
 * every text on which the two ways could differ (other spacing, a leading zero, a fraction or an
 * exponent, a nested, repeated or escaped key, `sid`): the caller then takes the general path.
 */
function parseOneExactId(text: string): Record<string, unknown> | undefined {
  const at = text.indexOf(SEQ_KEY);
  if (at < 0 || text.indexOf('"sequential_id"', at + 1) >= 0 || text.includes('"sid"')) {
    return undefined;
  }
  // A key spelled with `\u` escapes would be the object's own key without being found here.
  if (text.includes("\\u")) return undefined;
  if (text.lastIndexOf('"sequential_id"', at - 1) >= 0) return undefined;
  const start = at + SEQ_KEY.length;
  let end = start;
  for (; end < text.length; end++) {
    const c = text.charCodeAt(end);
    if (c < 48 || c > 57) break;
  }
  // Digits right after the colon, no leading zero, and then the end of the number.
  if (end === start || (text.charCodeAt(start) === 48 && end - start > 1)) return undefined;
  const next = text.charCodeAt(end);
  if (next === 46 || next === 101 || next === 69) return undefined; // '.', 'e', 'E'
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const rec = parsed as Record<string, unknown>;
  const digits = text.slice(start, end);
  // The key found in the text is this object's own, not a nested one.
  if (typeof rec.sequential_id !== "number" || rec.sequential_id !== Number(digits)) {
    return undefined;
  }
  rec.sequential_id = digits;
  return rec;
}

/**
 * `JSON.parse` keeping every non-integer number as its exact source text (a decimal string), for
 * private streams whose amounts arrive as long JSON numbers (§7.8, §9.1). Integers stay numbers.
 *
 * @throws {SyntaxError} when `text` is not JSON.
 */
export function parseJsonExactDecimals(text: string): unknown {
  return JSON.parse(text, (_key, value, context?: { source?: string }) => {
    if (typeof value === "number" && context?.source !== undefined) {
      const src = context.source;
      if (!/^-?\d+$/.test(src) || !Number.isSafeInteger(value)) return src;
    }
    return value;
  });
}
