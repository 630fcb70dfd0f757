/**
 * @module The risk gate's pure rules: {@linkcode checkOrder} decides, from a snapshot of the
 * account and the limits, whether one order may go on the wire. No I/O here; `risk_gate.ts`
 * assembles the snapshot from the database and the exchange.
 *
 * Entries pass every rule. Exits pass exactly two caps and one check: the coin's free balance,
 * the visible bids' depth (Upbit refuses a market sell larger than the 30 visible bid levels,
 * §8.2: selling what they hold now and the rest later beats a sell refused every time), and
 * Upbit's minimum total (a remainder below it is dust). No entry limit ever blocks an exit: a live
 * position is an obligation.
 */
import { z } from "zod";

/** Upbit's minimum order total on KRW markets (§8.2). */
export const MIN_TOTAL_KRW = 5000;
/** Upbit's maximum order total on KRW markets (`over_krw_funds_bid`, §4.3). */
export const MAX_TOTAL_KRW = 1_000_000_000;
/** Upbit's taker fee on KRW markets, reserved on top of a buy's total (§4.5). */
export const FEE_RATE = 0.0005;
/**
 * Share of the visible bids' size a market sell may take (percent): the book moves between our
 * look and Upbit's check, and a sell over the depth is refused whole.
 */
export const BID_DEPTH_SHARE_PCT = 90n;

/** Why the risk gate refused an order; stored on the attempt as its reason. */
export const RiskRefusalCode = z.enum([
  // Entries only.
  "entries_halted",
  "market_warning",
  "market_order_unknown",
  "signal_stale",
  "daily_loss_limit",
  "no_price",
  "order_over_max_krw",
  "below_min_total",
  "above_max_total",
  "max_open_positions",
  "max_exposure",
  "insufficient_krw",
  // Exits: the only three.
  "no_free_balance",
  "no_bids",
  "exit_below_min_total",
]);
/** A refusal reason code. */
export type RiskRefusalCode = z.infer<typeof RiskRefusalCode>;

/** A market buy of `krw` (ord_type `price`) for a signal made at `signalTs`. */
export interface EntryOrder {
  side: "bid";
  market: string;
  krw: number;
  /** When the entry signal was made (ms since epoch). */
  signalTs: number;
}

/** A market sell of `volume` (a decimal string, at most 8 decimals). */
export interface ExitOrder {
  side: "ask";
  market: string;
  volume: string;
}

/** An order on its way to the wire. */
export type RiskOrder = EntryOrder | ExitOrder;

/** The limits, from the settings. */
export interface RiskLimits {
  /** `RISK_MAX_ORDER_KRW` */
  maxOrderKrw: number;
  /** `RISK_MAX_OPEN_POSITIONS` */
  maxOpenPositions: number;
  /** `RISK_MAX_EXPOSURE_KRW` */
  maxExposureKrw: number;
  /** `RISK_MAX_DAILY_LOSS_KRW` */
  maxDailyLossKrw: number;
  /** `EXECUTOR_MAX_SIGNAL_AGE_SEC` */
  maxSignalAgeSec: number;
}

/** An entry sent but not final yet: it may still buy. */
export interface EntryInFlight {
  market: string;
  krw: number;
}

/** The state an order is judged against. */
export interface RiskContext {
  nowMs: number;
  /**
   * The order's market's price, or null when none is known: its highest 1-second close of the
   * last minute, and for a sell the best bid when higher (a sale is refused as dust only when
   * every price known says so).
   */
  lastPrice: number | null;
  /** KRW available to spend (not locked). */
  freeKrw: number;
  /** The order's market's coin available to sell (not locked), a decimal string. */
  freeCoin: string;
  /**
   * Size of the visible bid levels of the order's market (a decimal string), for a sell; null
   * when not read (entries, or the gate without an Upbit client).
   */
  bidDepth?: string | null;
  /** Markets where the ledger holds open volume. */
  heldMarkets: readonly string[];
  /** Entries sent and not final. */
  entriesInFlight: readonly EntryInFlight[];
  /** Open ledger volume of every market at its last price, in KRW. */
  exposureKrw: number;
  /** Realised loss (a positive number; 0 after a gain) since the loss window began. */
  realisedLossKrw: number;
  /** Why the market refuses entries (exchange warning / caution), or null. */
  marketWarning: string | null;
  /** Why entries are halted on this market (operator or reconciliation), or null. */
  haltReason: string | null;
  /** Identifiers of this market's orders still unknown after the poll limit. */
  unknownOrders: readonly string[];
}

/** The gate's answer. An allowed exit carries the volume to send and what capped it, if anything. */
export type RiskDecision =
  | { ok: true; volume?: string; capped?: "free_balance" | "bid_depth" }
  | { ok: false; code: RiskRefusalCode; detail: string };

/**
 * Decides whether `order` may be sent.
 *
 * @example
 * ```ts ignore
 * const d = checkOrder({ side: "bid", market: "KRW-BTC", krw: 10000, signalTs: now }, ctx, limits);
 * if (!d.ok) await recordRefusal(d.code, d.detail);
 * ```
 */
export function checkOrder(order: RiskOrder, ctx: RiskContext, limits: RiskLimits): RiskDecision {
  return order.side === "ask" ? checkExit(order, ctx) : checkEntry(order, ctx, limits);
}

function refuse(code: RiskRefusalCode, detail: string): RiskDecision {
  return { ok: false, code, detail };
}

function checkExit(order: ExitOrder, ctx: RiskContext): RiskDecision {
  const wanted = toUnits(order.volume);
  const free = toUnits(ctx.freeCoin);
  let units = wanted < free ? wanted : free;
  let capped: "free_balance" | "bid_depth" | undefined = units < wanted
    ? "free_balance"
    : undefined;
  if (units <= 0n) {
    return refuse(
      "no_free_balance",
      `no free ${order.market} balance to sell (free=${ctx.freeCoin})`,
    );
  }
  if (ctx.bidDepth != null) {
    const depth = toUnits(ctx.bidDepth) * BID_DEPTH_SHARE_PCT / 100n;
    if (depth <= 0n) return refuse("no_bids", `no visible bids on ${order.market}`);
    if (depth < units) {
      units = depth;
      capped = "bid_depth";
    }
  }
  const volume = fromUnits(units);
  // Without a price the exchange judges the minimum itself: never block an exit on our ignorance.
  if (ctx.lastPrice !== null && Number(volume) * ctx.lastPrice < MIN_TOTAL_KRW) {
    return refuse(
      "exit_below_min_total",
      `dust: ${volume} at ${ctx.lastPrice} is under Upbit's minimum of ${MIN_TOTAL_KRW} KRW`,
    );
  }
  return capped ? { ok: true, volume, capped } : { ok: true, volume };
}

function checkEntry(order: EntryOrder, ctx: RiskContext, limits: RiskLimits): RiskDecision {
  if (ctx.haltReason !== null) return refuse("entries_halted", ctx.haltReason);
  if (ctx.marketWarning !== null) return refuse("market_warning", ctx.marketWarning);
  if (ctx.unknownOrders.length > 0) {
    return refuse(
      "market_order_unknown",
      `order(s) still unknown after the poll limit on ${order.market}: ${
        ctx.unknownOrders.join(", ")
      }`,
    );
  }
  const ageSec = (ctx.nowMs - order.signalTs) / 1000;
  if (ageSec > limits.maxSignalAgeSec) {
    return refuse(
      "signal_stale",
      `signal is ${
        Math.round(ageSec)
      }s old (EXECUTOR_MAX_SIGNAL_AGE_SEC=${limits.maxSignalAgeSec})`,
    );
  }
  if (ctx.realisedLossKrw >= limits.maxDailyLossKrw) {
    return refuse(
      "daily_loss_limit",
      `realised loss today ${
        round(ctx.realisedLossKrw)
      } KRW reached RISK_MAX_DAILY_LOSS_KRW=${limits.maxDailyLossKrw}`,
    );
  }
  if (order.krw > limits.maxOrderKrw) {
    return refuse(
      "order_over_max_krw",
      `${order.krw} KRW is over RISK_MAX_ORDER_KRW=${limits.maxOrderKrw}`,
    );
  }
  if (order.krw < MIN_TOTAL_KRW) {
    return refuse("below_min_total", `${order.krw} KRW is under Upbit's minimum ${MIN_TOTAL_KRW}`);
  }
  if (order.krw > MAX_TOTAL_KRW) {
    return refuse("above_max_total", `${order.krw} KRW is over Upbit's maximum ${MAX_TOTAL_KRW}`);
  }
  if (ctx.lastPrice === null || !(ctx.lastPrice > 0)) {
    // Exposure and the minimum volume cannot be judged without one.
    return refuse("no_price", `no last price of ${order.market}`);
  }
  const held = new Set([...ctx.heldMarkets, ...ctx.entriesInFlight.map((e) => e.market)]);
  if (!held.has(order.market) && held.size >= limits.maxOpenPositions) {
    return refuse(
      "max_open_positions",
      `${held.size} market(s) held or being bought (${
        [...held].sort().join(", ")
      }); RISK_MAX_OPEN_POSITIONS=${limits.maxOpenPositions}`,
    );
  }
  const inFlightKrw = ctx.entriesInFlight.reduce((sum, e) => sum + e.krw, 0);
  const exposure = ctx.exposureKrw + inFlightKrw + order.krw;
  if (exposure > limits.maxExposureKrw) {
    return refuse(
      "max_exposure",
      `exposure would be ${round(exposure)} KRW (held ${round(ctx.exposureKrw)}, in flight ${
        round(inFlightKrw)
      }, this ${order.krw}); RISK_MAX_EXPOSURE_KRW=${limits.maxExposureKrw}`,
    );
  }
  const needed = order.krw * (1 + FEE_RATE);
  if (ctx.freeKrw < needed) {
    return refuse(
      "insufficient_krw",
      `${round(ctx.freeKrw)} KRW free, ${round(needed)} needed (order + ${FEE_RATE * 100}% fee)`,
    );
  }
  return { ok: true };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** A decimal string as integer units of 1e-8 (Upbit's volume precision), truncated. */
export function toUnits(decimal: string): bigint {
  const s = decimal.trim();
  const negative = s.startsWith("-");
  const [int = "0", frac = ""] = (negative ? s.slice(1) : s).split(".");
  if (!/^\d*$/.test(int) || !/^\d*$/.test(frac)) {
    throw new RangeError(`not a decimal: ${JSON.stringify(decimal)}`);
  }
  const units = BigInt(int || "0") * 100_000_000n + BigInt((frac + "00000000").slice(0, 8));
  return negative ? -units : units;
}

/** Integer units of 1e-8 as the shortest decimal string. */
export function fromUnits(units: bigint): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const int = abs / 100_000_000n;
  const frac = (abs % 100_000_000n).toString().padStart(8, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${int}${frac ? "." + frac : ""}`;
}
