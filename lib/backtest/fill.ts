/**
 * @module The fill model layered on the paper-trade stream: each paper action is filled at the
 * open of the first bar live could have traded at, moved against the trader by a slippage in basis
 * points, and pays Upbit's fee (0.05 % per side). The paper stream itself is untouched: parity
 * with the live evaluator is on the paper trades, and this model only estimates what a market
 * order would have got.
 *
 * When live could trade. The paper action of bar `s` (its `ts`, the start of its second) is taken
 * once bar `s` is final, and the feed makes it final only when a trade at or after
 * `s + 1000 + lateness` arrives (the watermark of `lib/strategy/bars.ts`; the lateness is the
 * feed's `FEED_ALLOWED_LATENESS_MS` in `lib/strategy/bars.ts`, 2000 ms); then the feed's flush
 * (every 250 ms), the evaluator and the executor run before the order reaches the exchange. So an
 * action is filled at the open of the first bar whose `ts` is at least
 * `s + 1000 + lateness + latencyMs` (`latencyMs`: that pipeline delay, 0 by default), never earlier.
 * An entry whose fill bar lies more than `EXECUTOR_MAX_SIGNAL_AGE_SEC` after `s` (a gap without
 * bars) is skipped, as the executor skips a stale entry; its round trip is not filled. An exit is
 * filled however late (the executor sends exits whatever their age).
 */
import { parseConfig } from "../config.ts";
import { type Bar, FEED_ALLOWED_LATENESS_MS } from "../strategy/bars.ts";
import { FEE_RATE, type PaperEnter, type PaperExit } from "../strategy/policy.ts";

/** The default of `EXECUTOR_MAX_SIGNAL_AGE_SEC`, as `lib/config.ts` defines it. */
export const DEFAULT_MAX_SIGNAL_AGE_SEC: number = parseConfig({}).EXECUTOR_MAX_SIGNAL_AGE_SEC;

/**
 * From a paper action's bar `ts` to the earliest bar `ts` live could have traded it at, ms: one
 * second for the bar, the feed's lateness ({@linkcode FEED_ALLOWED_LATENESS_MS}) before the bar is
 * final, then `latencyMs` (feed flush, evaluator, executor, network).
 *
 * @example
 * ```ts
 * fillDelayMs(); // 3000
 * fillDelayMs(500); // 3500
 * ```
 */
export function fillDelayMs(latencyMs = 0): number {
  return 1000 + FEED_ALLOWED_LATENESS_MS + latencyMs;
}

/** Options of {@linkcode FillModel}. */
export interface FillOptions {
  /** Quote amount spent by one entry (`ORDER_KRW_AMOUNT`). */
  krwAmount: number;
  /** Adverse price move per fill, basis points (buys pay more, sells get less). */
  slippageBps: number;
  /**
   * Extra delay between the signal bar becoming final and the order reaching the exchange (feed
   * flush, evaluator, executor, network), ms. @default {0}
   */
  latencyMs?: number;
  /**
   * `EXECUTOR_MAX_SIGNAL_AGE_SEC`: an entry filling later than this after its signal is skipped.
   * @default {DEFAULT_MAX_SIGNAL_AGE_SEC}
   */
  maxSignalAgeSec?: number;
}

/** One leg filled by the model. */
export interface FillLeg {
  /** `ts` of the bar whose open is the fill. */
  ts: number;
  price: number;
}

/** A round trip as the fill model saw it. */
export interface FilledTrade {
  entry: FillLeg;
  exit: FillLeg;
  qty: number;
  /** Both fees (quote currency). */
  fees: number;
  /** `(exit − entry)·qty − fees`. */
  pnl: number;
}

/**
 * What became of a round trip's exit: the filled trade, `"stale_entry"` when its entry was
 * skipped as stale (live sends no exit for an entry it never sent), or null when the entry never
 * filled.
 */
export type ExitOutcome = FilledTrade | "stale_entry" | null;

type Waiting =
  | { kind: "enter"; signalTs: number; dueTs: number }
  | { kind: "exit"; dueTs: number; done: (t: ExitOutcome) => void };

function checkNonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(
      `FillModel '${name}' must be a finite number >= 0: current value is ${value}`,
    );
  }
  return value;
}

/**
 * Fills paper actions at the open of the first bar live could have traded at (see the module
 * doc). Feed it every bar before the evaluator steps it ({@linkcode FillModel.onBar}) and every
 * paper action as it comes ({@linkcode FillModel.onEnter}, {@linkcode FillModel.onExit}).
 *
 * @example
 * ```ts
 * const fills = new FillModel({ krwAmount: 10_000, slippageBps: 2 });
 * fills.delayMs; // 3000: one second for the bar, two of lateness
 * ```
 */
export class FillModel {
  readonly krwAmount: number;
  readonly slippage: number;
  /** From an action's bar `ts` to the earliest bar `ts` it can fill at, ms ({@linkcode fillDelayMs}). */
  readonly delayMs: number;
  /** Longest time from an entry's bar `ts` to its fill bar's `ts`, ms (longer: stale, skipped). */
  readonly maxSignalAgeMs: number;
  /** Actions waiting for their fill bar, oldest first (their due times never decrease). */
  #waiting: Waiting[] = [];
  #entry: FillLeg | "stale_entry" | null = null;

  /** @throws {RangeError} when `krwAmount` is not positive or another option is negative. */
  constructor(options: FillOptions) {
    if (!(options.krwAmount > 0)) {
      throw new RangeError(
        `FillModel 'krwAmount' must be > 0: current value is ${options.krwAmount}`,
      );
    }
    if (!(options.slippageBps >= 0) || !Number.isFinite(options.slippageBps)) {
      throw new RangeError(
        `FillModel 'slippageBps' must be >= 0: current value is ${options.slippageBps}`,
      );
    }
    this.krwAmount = options.krwAmount;
    this.slippage = options.slippageBps / 10_000;
    this.delayMs = fillDelayMs(checkNonNegative("latencyMs", options.latencyMs ?? 0));
    this.maxSignalAgeMs = 1000 *
      checkNonNegative("maxSignalAgeSec", options.maxSignalAgeSec ?? DEFAULT_MAX_SIGNAL_AGE_SEC);
  }

  /** A paper entry happened at the close of bar `event.ts`. */
  onEnter(event: PaperEnter): void {
    this.#waiting.push({ kind: "enter", signalTs: event.ts, dueTs: event.ts + this.delayMs });
  }

  /**
   * A paper exit happened at the close of bar `event.ts`; `done` receives the outcome of the
   * round trip once its fill bar comes (see {@linkcode ExitOutcome}).
   */
  onExit(event: PaperExit, done: (t: ExitOutcome) => void): void {
    this.#waiting.push({ kind: "exit", dueTs: event.ts + this.delayMs, done });
  }

  /**
   * The next bar: fills every waiting action due at or before its `ts`, at its open. Call before
   * stepping the evaluator with `bar` (an action of bar i fills at a later bar's open, whatever
   * that bar then triggers).
   */
  onBar(bar: Bar): void {
    const waiting = this.#waiting;
    while (waiting.length > 0 && waiting[0]!.dueTs <= bar.ts) {
      const w = waiting.shift()!;
      if (w.kind === "enter") {
        if (bar.ts - w.signalTs > this.maxSignalAgeMs) {
          this.#entry = "stale_entry";
        } else {
          this.#entry = { ts: bar.ts, price: bar.open * (1 + this.slippage) };
        }
        continue;
      }
      const entry = this.#entry;
      this.#entry = null;
      if (entry === null || entry === "stale_entry") {
        w.done(entry);
        continue;
      }
      const exit = { ts: bar.ts, price: bar.open * (1 - this.slippage) };
      const qty = this.krwAmount / entry.price;
      const fees = (entry.price + exit.price) * qty * FEE_RATE;
      w.done({ entry, exit, qty, fees, pnl: (exit.price - entry.price) * qty - fees });
    }
  }

  /** Whether an exit is still waiting for its fill bar (the data ended too soon after it). */
  get exitPending(): boolean {
    return this.#waiting.some((w) => w.kind === "exit");
  }
}
