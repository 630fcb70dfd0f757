/**
 * @module Policy profiles, the EV formula and the paper position state machine.
 *
 * Units: barriers, thresholds and EV are in PERCENT (`0.15` = 0.15 %), like the `EVAL_*`
 * variables. Fees are 0.05 % per side (§8.1), so a round trip costs 0.1 %.
 *
 * EV (percent) = p_up·TP − p_down·SL − round-trip fee − expected spread cost (a market buy pays
 * the ask and a market sell gets the bid: one spread per round trip, see `spread.ts`). The
 * horizon outcome is taken as a zero return; it is not, but its mean is small against the
 * barriers and ignoring it keeps EV readable.
 *
 * Paper position, per market: FLAT → LONG on `ENTER_LONG` when EV > entry threshold (at the bar's
 * close); LONG → FLAT on `EXIT_LONG` with the first reason that holds, in this order:
 * `SL` (low ≤ entry·(1−sl)), `TP` (high ≥ entry·(1+tp)), `TIMEOUT` (held ≥ horizon), `EV_BAD`
 * (EV < exit threshold, only while the EV is trusted: the skill gate is open and the model has
 * learned from at least one label; an untrained model's EV is a prior, not news). SL is checked before TP: when one bar reaches both, the order inside the
 * bar is unknown and the loss is the conservative assumption (as in the labels). At most one
 * action per bar, so a position exited on a bar is not re-entered on the same bar.
 */
import type { Config } from "../config.ts";
import type { Bar } from "./bars.ts";
import type { BarrierProbabilities } from "./model.ts";
import { checkSkillGateParams, type SkillGateParams } from "./skill_gate.ts";

/** Fee per side as a fraction (Upbit KRW market, maker and taker). */
export const FEE_RATE = 0.0005;

/** Round-trip fee in percent (two sides). */
export const ROUND_TRIP_FEE_PCT = 2 * FEE_RATE * 100;

/** Everything the evaluator needs to know about a profile. */
export interface StrategyParams {
  /** Take-profit barrier, percent. */
  tpPct: number;
  /** Stop-loss barrier, percent. */
  slPct: number;
  /** Barrier horizon and maximum hold, seconds (integer). */
  horizonSec: number;
  /** Enter when EV (percent) is above this. */
  entryEvMin: number;
  /** Exit with `EV_BAD` when EV (percent) is below this. */
  exitEvMin: number;
  /** Seconds after an exit before the next entry (0: the next bar). */
  cooldownSec: number;
  /** Entries only while the model beats the base rate (`skill_gate.ts`); null: no gate. */
  skillGate: SkillGateParams | null;
}

/** Profile names (`PAPER_POLICY_PROFILE`). */
export type ProfileName = "test" | "default";

/**
 * The profiles. `test` enters whenever the model is not clearly bearish (with the untrained,
 * uniform model EV = −0.10 > −0.15) and its barriers are narrow and its horizon short, so on a
 * simulator a trade opens and closes within a minute; it has no skill gate (it exists to exercise
 * the pipeline). `default` needs a trained model that sees an edge after fees (untrained
 * EV = 0.5/3 − 0.4/3 − 0.1 ≈ −0.067 < 0.05, so it waits) and that has beaten the base rate over
 * the last hour or so of labels (at least 30 minutes of them), by 0.02 nats per label.
 */
export const PROFILES: Readonly<Record<ProfileName, Readonly<StrategyParams>>> = Object.freeze({
  test: Object.freeze({
    tpPct: 0.15,
    slPct: 0.15,
    horizonSec: 30,
    entryEvMin: -0.15,
    exitEvMin: -0.2,
    cooldownSec: 0,
    skillGate: null,
  }),
  default: Object.freeze({
    tpPct: 0.5,
    slPct: 0.4,
    horizonSec: 300,
    entryEvMin: 0.05,
    exitEvMin: -0.05,
    cooldownSec: 30,
    skillGate: Object.freeze({ minLabels: 1800, windowLabels: 3600, marginNats: 0.02 }),
  }),
});

/** Values that replace a profile's (undefined: keep the profile's). */
export interface ParamOverrides {
  tpPct?: number;
  slPct?: number;
  horizonSec?: number;
  entryEvMin?: number;
  exitEvMin?: number;
  cooldownSec?: number;
  /** Null turns the gate off. */
  skillGate?: SkillGateParams | null;
}

/**
 * The overrides set by `EVAL_TP_PCT`, `EVAL_SL_PCT`, `EVAL_HORIZON_SEC`, `EVAL_ENTRY_EV_MIN`,
 * `EVAL_EXIT_EV_MIN` and `EVAL_SKILL_GATE` (`on`: the default profile's gate; `off`: none).
 */
export function overridesFromConfig(
  config: Pick<
    Config,
    | "EVAL_TP_PCT"
    | "EVAL_SL_PCT"
    | "EVAL_HORIZON_SEC"
    | "EVAL_ENTRY_EV_MIN"
    | "EVAL_EXIT_EV_MIN"
    | "EVAL_SKILL_GATE"
  >,
): ParamOverrides {
  return {
    tpPct: config.EVAL_TP_PCT,
    slPct: config.EVAL_SL_PCT,
    horizonSec: config.EVAL_HORIZON_SEC,
    entryEvMin: config.EVAL_ENTRY_EV_MIN,
    exitEvMin: config.EVAL_EXIT_EV_MIN,
    skillGate: config.EVAL_SKILL_GATE === "off"
      ? null
      : config.EVAL_SKILL_GATE === "on"
      ? { ...PROFILES.default.skillGate! }
      : undefined,
  };
}

/**
 * A profile with overrides applied.
 *
 * @throws {RangeError} when a barrier is not positive, the horizon is not a positive integer, the
 * cooldown is negative, or a threshold is not finite.
 * @example
 * ```ts
 * resolveParams("default", { entryEvMin: -1 }).entryEvMin; // -1
 * ```
 */
export function resolveParams(
  profile: ProfileName,
  overrides: ParamOverrides = {},
): StrategyParams {
  const base = PROFILES[profile];
  const p: StrategyParams = {
    tpPct: overrides.tpPct ?? base.tpPct,
    slPct: overrides.slPct ?? base.slPct,
    horizonSec: overrides.horizonSec ?? base.horizonSec,
    entryEvMin: overrides.entryEvMin ?? base.entryEvMin,
    exitEvMin: overrides.exitEvMin ?? base.exitEvMin,
    cooldownSec: overrides.cooldownSec ?? base.cooldownSec,
    skillGate: overrides.skillGate !== undefined
      ? overrides.skillGate && { ...overrides.skillGate }
      : base.skillGate && { ...base.skillGate },
  };
  const bad = (name: keyof StrategyParams, rule: string) => {
    throw new RangeError(
      `Cannot use profile '${profile}' as '${name}' must be ${rule}: current value is ${p[name]}`,
    );
  };
  if (!(p.tpPct > 0) || !Number.isFinite(p.tpPct)) bad("tpPct", "> 0");
  if (!(p.slPct > 0) || !(p.slPct < 100)) bad("slPct", "> 0 and < 100");
  if (!Number.isInteger(p.horizonSec) || p.horizonSec < 1) bad("horizonSec", "an integer >= 1");
  if (!Number.isFinite(p.entryEvMin)) bad("entryEvMin", "finite");
  if (!Number.isFinite(p.exitEvMin)) bad("exitEvMin", "finite");
  if (!(p.cooldownSec >= 0) || !Number.isFinite(p.cooldownSec)) bad("cooldownSec", ">= 0");
  if (p.skillGate) checkSkillGateParams(p.skillGate, `profile '${profile}'`);
  return p;
}

/**
 * Expected value of a long entry, in percent: `pUp·tpPct − pDown·slPct − 0.1 − spreadPct`.
 *
 * @param spreadPct expected spread cost of the round trip, percent (0: unknown).
 * @example
 * ```ts
 * expectedValuePct({ pUp: 0.5, pDown: 0.2, pFlat: 0.3 }, { tpPct: 0.5, slPct: 0.4 }); // 0.07
 * expectedValuePct({ pUp: 0.5, pDown: 0.2, pFlat: 0.3 }, { tpPct: 0.5, slPct: 0.4 }, 0.02); // 0.05
 * ```
 */
export function expectedValuePct(
  p: BarrierProbabilities,
  params: Pick<StrategyParams, "tpPct" | "slPct">,
  spreadPct = 0,
): number {
  return p.pUp * params.tpPct - p.pDown * params.slPct - ROUND_TRIP_FEE_PCT - spreadPct;
}

/** Why a paper position was closed. */
export type ExitReason = "TP" | "SL" | "TIMEOUT" | "EV_BAD";

/** An open paper position (also what the evaluator restores from `paper_trades` on restart). */
export interface PaperPosition {
  market: string;
  /** `ts` of the entry bar. */
  entryTs: number;
  entryPrice: number;
  qty: number;
  /** Fee paid on entry (quote currency). */
  entryFee: number;
}

/** A paper entry. */
export interface PaperEnter {
  action: "ENTER_LONG";
  market: string;
  /** `ts` of the bar whose close is the price. */
  ts: number;
  price: number;
  qty: number;
  fee: number;
  /** EV (percent) that triggered the entry. */
  ev: number;
}

/** A paper exit. */
export interface PaperExit {
  action: "EXIT_LONG";
  market: string;
  ts: number;
  price: number;
  qty: number;
  /** Fee paid on exit. */
  fee: number;
  /** `(price − entryPrice)·qty − entryFee − fee`. */
  pnl: number;
  holdSec: number;
  reason: ExitReason;
  entryTs: number;
  entryPrice: number;
  /** EV (percent) at this bar, or null without a prediction. */
  ev: number | null;
}

/** A paper trade event. */
export type PaperEvent = PaperEnter | PaperExit;

/**
 * The first bar `ts` at which an entry is allowed again after an exit at bar `exitTs`: the
 * cooldown of `params.cooldownSec`, at least one second (never an entry on the exit's own bar).
 *
 * @example
 * ```ts
 * cooldownEndTs(60_000, { cooldownSec: 30 }); // 90_000
 * cooldownEndTs(60_000, { cooldownSec: 0 }); // 61_000
 * ```
 */
export function cooldownEndTs(exitTs: number, params: Pick<StrategyParams, "cooldownSec">): number {
  return exitTs + Math.max(1, params.cooldownSec) * 1000;
}

/** Serialisable state of a {@linkcode PaperPolicy}. */
export interface PaperPolicyState {
  position: PaperPosition | null;
  /** No entry on bars before this ts (cooldown), or null. */
  noEntryBeforeTs: number | null;
}

/**
 * `floor(krwAmount / price)` to 8 decimals, computed exactly on the decimal values (a float
 * division then `Math.floor(x·1e8)` can land one unit low, e.g. when x·1e8 = 200865.99999999997).
 *
 * @example
 * ```ts
 * quantityFor(200_000, 99_569_000); // 0.00200865
 * ```
 */
export function quantityFor(krwAmount: number, price: number): number {
  if (!(krwAmount > 0) || !(price > 0)) return 0;
  const k = decimalOf(krwAmount);
  const p = decimalOf(price);
  // qty·1e8 = k.units/10^k.scale / (p.units/10^p.scale) · 10^8
  const num = k.units * 10n ** BigInt(8 + p.scale);
  const den = p.units * 10n ** BigInt(k.scale);
  return Number(num / den) / 1e8;
}

/** The exact decimal value of a finite positive number as printed by `String(x)`. */
function decimalOf(x: number): { units: bigint; scale: number } {
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  if (!m) throw new RangeError(`not a positive decimal: ${x}`);
  const frac = m[2] ?? "";
  let scale = frac.length - Number(m[3] ?? 0);
  let units = BigInt((m[1] ?? "0") + frac);
  if (scale < 0) {
    units *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { units, scale };
}

/** Float noise of `c·(1+x)` removed (12 significant digits) so barrier prices print cleanly. */
function cleanPrice(x: number): number {
  return Number(x.toPrecision(12));
}

/** Options of {@linkcode PaperPolicy}. */
export interface PaperPolicyOptions {
  /** Quote amount spent by one entry (`ORDER_KRW_AMOUNT`). */
  krwAmount: number;
}

/**
 * The paper position of one market.
 *
 * Exit prices: `TP` exits at the take-profit price (a resting sell there fills when the market
 * trades through it); `SL` at the stop-loss price, or at the bar's open when the bar opened below it
 * (a gap: the first trade through the stop was the open); `TIMEOUT` and `EV_BAD` at the bar's close.
 *
 * @example
 * ```ts
 * const policy = new PaperPolicy("KRW-BTC", resolveParams("test"), { krwAmount: 10_000 });
 * ```
 */
export class PaperPolicy {
  readonly market: string;
  readonly params: StrategyParams;
  readonly krwAmount: number;
  #position: PaperPosition | null = null;
  #noEntryBeforeTs: number | null = null;

  /** @throws {RangeError} when `krwAmount` is not positive. */
  constructor(
    market: string,
    params: StrategyParams,
    options: PaperPolicyOptions,
    state?: PaperPolicyState,
  ) {
    if (!(options.krwAmount > 0)) {
      throw new RangeError(
        `Cannot create PaperPolicy as 'krwAmount' must be > 0: current value is ${options.krwAmount}`,
      );
    }
    this.market = market;
    this.params = { ...params };
    this.krwAmount = options.krwAmount;
    if (state) {
      this.#position = state.position ? { ...state.position } : null;
      this.#noEntryBeforeTs = state.noEntryBeforeTs;
    }
  }

  /** The open position, or null when flat. */
  get position(): PaperPosition | null {
    return this.#position ? { ...this.#position } : null;
  }

  /**
   * Steps the state machine on a final bar of this market. `ev` is the EV (percent) predicted at
   * this bar's close, or null when there is none (then no entry and no `EV_BAD`). `entryAllowed`
   * false (the skill gate is closed) refuses an entry. `evExitAllowed` false (the EV is not to be
   * trusted: the gate is closed or the model has learned nothing, e.g. just after a reset) refuses
   * an `EV_BAD` exit, since an untrained model's EV is below the default exit threshold whatever
   * the price does; `SL`, `TP` and `TIMEOUT` are never blocked. Returns at most one event.
   */
  onBar(
    bar: Bar,
    ev: number | null,
    entryAllowed = true,
    evExitAllowed = entryAllowed,
  ): PaperEvent[] {
    const pos = this.#position;
    if (pos) {
      if (bar.ts <= pos.entryTs) return [];
      const exit = this.#exitFor(pos, bar, evExitAllowed ? ev : null);
      if (!exit) return [];
      const fee = exit.price * pos.qty * FEE_RATE;
      const event: PaperExit = {
        action: "EXIT_LONG",
        market: this.market,
        ts: bar.ts,
        price: exit.price,
        qty: pos.qty,
        fee,
        pnl: (exit.price - pos.entryPrice) * pos.qty - pos.entryFee - fee,
        holdSec: Math.round((bar.ts - pos.entryTs) / 1000),
        reason: exit.reason,
        entryTs: pos.entryTs,
        entryPrice: pos.entryPrice,
        ev,
      };
      this.#position = null;
      this.#noEntryBeforeTs = cooldownEndTs(bar.ts, this.params);
      return [event];
    }
    if (!entryAllowed || ev === null || !(ev > this.params.entryEvMin)) return [];
    if (this.#noEntryBeforeTs !== null && bar.ts < this.#noEntryBeforeTs) return [];
    const price = bar.close;
    const qty = quantityFor(this.krwAmount, price);
    if (qty <= 0) return [];
    const fee = price * qty * FEE_RATE;
    this.#position = {
      market: this.market,
      entryTs: bar.ts,
      entryPrice: price,
      qty,
      entryFee: fee,
    };
    return [{ action: "ENTER_LONG", market: this.market, ts: bar.ts, price, qty, fee, ev }];
  }

  /** Serialisable state. */
  snapshot(): PaperPolicyState {
    return { position: this.position, noEntryBeforeTs: this.#noEntryBeforeTs };
  }

  #exitFor(
    pos: PaperPosition,
    bar: Bar,
    ev: number | null,
  ): { reason: ExitReason; price: number } | null {
    const slPrice = cleanPrice(pos.entryPrice * (1 - this.params.slPct / 100));
    const tpPrice = cleanPrice(pos.entryPrice * (1 + this.params.tpPct / 100));
    if (bar.low <= slPrice) return { reason: "SL", price: Math.min(slPrice, bar.open) };
    if (bar.high >= tpPrice) return { reason: "TP", price: tpPrice };
    if (bar.ts - pos.entryTs >= this.params.horizonSec * 1000) {
      return { reason: "TIMEOUT", price: bar.close };
    }
    if (ev !== null && ev < this.params.exitEvMin) return { reason: "EV_BAD", price: bar.close };
    return null;
  }
}
