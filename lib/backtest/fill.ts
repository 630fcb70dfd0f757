/**
 * @module The fill model layered on the paper-trade stream: each paper action is filled at the
 * next bar's open, moved against the trader by a slippage in basis points, and pays Upbit's fee
 * (0.05 % per side). The paper stream itself is untouched: parity with the live evaluator is on
 * the paper trades, and this model only estimates what a market order would have got.
 */
import type { Bar } from "../strategy/bars.ts";
import { FEE_RATE, type PaperEnter, type PaperExit } from "../strategy/policy.ts";

/** Options of {@linkcode FillModel}. */
export interface FillOptions {
  /** Quote amount spent by one entry (`ORDER_KRW_AMOUNT`). */
  krwAmount: number;
  /** Adverse price move per fill, basis points (buys pay more, sells get less). */
  slippageBps: number;
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
 * Fills paper actions at the open of the bar after them. Feed it every bar after the
 * evaluator has stepped it ({@linkcode FillModel.onBar}) and every paper action as it comes
 * ({@linkcode FillModel.onEnter}, {@linkcode FillModel.onExit}).
 *
 * @example
 * ```ts
 * const fills = new FillModel({ krwAmount: 10_000, slippageBps: 2 });
 * ```
 */
export class FillModel {
  readonly krwAmount: number;
  readonly slippage: number;
  /** The paper action waiting for the next bar's open. */
  #waiting: { kind: "enter" } | { kind: "exit"; done: (t: FilledTrade | null) => void } | null =
    null;
  #entry: FillLeg | null = null;

  /** @throws {RangeError} when `krwAmount` is not positive or slippage is negative. */
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
  }

  /** A paper entry happened at the close of the current bar. */
  onEnter(_event: PaperEnter): void {
    this.#waiting = { kind: "enter" };
  }

  /**
   * A paper exit happened at the close of the current bar; `done` receives the filled round trip
   * once the next bar opens (null when the entry never filled).
   */
  onExit(_event: PaperExit, done: (t: FilledTrade | null) => void): void {
    this.#waiting = { kind: "exit", done };
  }

  /**
   * The next bar: fills what waits at its open. Call before stepping the evaluator with `bar`
   * (an action of bar i fills at bar i+1's open, whatever bar i+1 then triggers).
   */
  onBar(bar: Bar): void {
    const w = this.#waiting;
    if (!w) return;
    this.#waiting = null;
    if (w.kind === "enter") {
      this.#entry = { ts: bar.ts, price: bar.open * (1 + this.slippage) };
      return;
    }
    const entry = this.#entry;
    this.#entry = null;
    if (!entry) {
      w.done(null);
      return;
    }
    const exit = { ts: bar.ts, price: bar.open * (1 - this.slippage) };
    const qty = this.krwAmount / entry.price;
    const fees = (entry.price + exit.price) * qty * FEE_RATE;
    w.done({ entry, exit, qty, fees, pnl: (exit.price - entry.price) * qty - fees });
  }

  /** Whether an exit is still waiting for a bar (the data ended right after it). */
  get exitPending(): boolean {
    return this.#waiting?.kind === "exit";
  }
}
