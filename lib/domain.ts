/**
 * @module upbot's shared vocabulary: trade modes, order sides and types, market codes and paper
 * actions, as zod schemas with the types inferred from them. Every layer (and the simulator)
 * takes these from here rather than spelling them again.
 */
import { z } from "zod";

/** Quote currency of a market code (`KRW`, `BTC`, `USDT`). */
const QUOTE = "[A-Z]{2,10}";
/** Base currency of a market code (`BTC`, `1INCH`). */
const BASE = "[A-Z0-9]{1,15}";

/** A market code as Upbit lists markets, quote-base: `KRW-BTC`, `BTC-ETH`, `USDT-1INCH`. */
export const MARKET_CODE_PATTERN: RegExp = new RegExp(`^${QUOTE}-${BASE}$`);

/** A KRW market code (`KRW-BTC`), where only KRW markets make sense (the simulator's markets). */
export const KRW_MARKET_CODE_PATTERN: RegExp = new RegExp(`^KRW-${BASE}$`);

/** The base part of a market code, for patterns that embed one (e.g. `KRW-BTC=0.5`). */
export const MARKET_BASE_SOURCE: string = BASE;

/** A market code (see {@linkcode MARKET_CODE_PATTERN}). */
export const MarketCode = z.string().regex(MARKET_CODE_PATTERN);

/** Executor modes: shadow logs orders only, test calls `/v1/orders/test`, live places orders. */
export const TRADE_MODES = ["shadow", "test", "live"] as const;
/** Executor mode (see {@linkcode TRADE_MODES}). */
export const TradeMode = z.enum(TRADE_MODES);
/** Executor mode. */
export type TradeMode = z.infer<typeof TradeMode>;

/** `bid` (buy) or `ask` (sell). */
export const OrderSide = z.enum(["bid", "ask"]);
/** `bid` (buy) or `ask` (sell). */
export type OrderSide = z.infer<typeof OrderSide>;

/** Upbit order types (§4.3). */
export const OrdType = z.enum(["limit", "price", "market", "best"]);
/** Upbit order types (§4.3). */
export type OrdType = z.infer<typeof OrdType>;

/** What a paper trade does. */
export const PaperAction = z.enum(["ENTER_LONG", "EXIT_LONG"]);
/** What a paper trade does. */
export type PaperAction = z.infer<typeof PaperAction>;
