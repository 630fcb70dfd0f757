/**
 * @module upbot's application messages: what its actors say to each other and to the supervisor
 * (`bars.final`, `wake`, `trading.halt`, `upbit.ban`). zod schemas, with the types inferred.
 *
 * Adding one is a one-place change: add its schema to `UPBOT_MESSAGE_SCHEMAS`; routing, validation
 * and the typed handler map of `runUpbotActor` follow from it. The generic runtime that carries
 * them is `lib/actors/`; upbot's protocol and rules for them are in `lib/pipeline/runtime.ts`.
 */
import { z } from "zod";
import { MarketCode } from "../domain.ts";

// zod 4 numbers reject NaN and Infinity.
const finite = z.number();

/**
 * One final 1-second bar as it travels inside a `bars.final` message (the wire schema; the
 * strategy's own type is `Bar` in lib/strategy/bars.ts). `ts` is the bar's start, epoch ms.
 */
export const BarMessage = z.object({
  ts: z.number().int().nonnegative(),
  open: finite,
  high: finite,
  low: finite,
  close: finite,
  volume: finite,
  quoteVolume: finite,
  tradeCount: z.number().int().nonnegative(),
  buyVolume: finite,
  sellVolume: finite,
});
/** One final 1-second bar inside a `bars.final` message. */
export type BarMessage = z.infer<typeof BarMessage>;

/**
 * `bars.final`: feed to evaluator, bars already written to the database, batched per market
 * (the feed sends one message per market per flush, never one per bar).
 */
export const BarsFinal = z.object({
  type: z.literal("bars.final"),
  market: MarketCode,
  bars: z.array(BarMessage).min(1).max(10_000),
});

/**
 * `wake`: "new rows in `topic`, look at the database". It only wakes and informs; the database
 * holds the truth, so a lost or duplicated wake is harmless (the receiver also polls). Wakes of
 * one topic coalesce: one waiting in a mailbox or a restart buffer is enough.
 */
export const Wake = z.object({
  type: z.literal("wake"),
  topic: z.enum(["paper_trades", "order_attempts", "account", "trading_state"]),
});

/**
 * `trading.halt`: stop placing orders. The supervisor broadcasts it when a critical actor has
 * failed for good; an actor may send it to `supervisor` to request a halt.
 */
export const TradingHalt = z.object({
  type: z.literal("trading.halt"),
  reason: z.string().min(1).max(500),
});

/**
 * `trading.resume`: placing entries may go on again. The supervisor broadcasts it when a person
 * lifted the stored halt that followed its own `trading.halt`.
 */
export const TradingResume = z.object({ type: z.literal("trading.resume") });

/**
 * `upbit.ban`: an actor's Upbit client drew a 418 (§3.3); every REST call is refused until
 * `untilMs` (epoch ms). Sent to `supervisor`, which broadcasts it to every other actor; the actor
 * runtime applies it at once to the actor's rate limiters (see `lib/pipeline/upbit_bans.ts`).
 */
export const UpbitBan = z.object({
  type: z.literal("upbit.ban"),
  untilMs: z.number().int().positive(),
});

/** Every application message. Add a new one here (and only here). */
const UPBOT_MESSAGE_SCHEMAS = [BarsFinal, Wake, TradingHalt, TradingResume, UpbitBan] as const;

/** Any message one upbot actor sends another (or the supervisor). */
export const UpbotMessage = z.discriminatedUnion("type", UPBOT_MESSAGE_SCHEMAS);
/** Any message one upbot actor sends another (or the supervisor). */
export type UpbotMessage = z.infer<typeof UpbotMessage>;
/** The `type` tag of an upbot message. */
export type UpbotMessageType = UpbotMessage["type"];
/** The upbot message with tag `T`. */
export type UpbotMessageOf<T extends UpbotMessageType> = Extract<UpbotMessage, { type: T }>;
