/**
 * @module The live-trading guard: the executor places real orders only when all five conditions
 * hold; otherwise it downgrades to shadow and says which conditions failed.
 */
import type { Config } from "../config.ts";

/** How the executor treats paper trades. */
import type { TradeMode } from "../domain.ts";

export type { TradeMode };

/** The exact phrase `LIVE_GUARD_PHRASE` must hold for live trading. */
export const LIVE_GUARD_PHRASE = "I_CONFIRM_LIVE_TRADING";

/** One condition of the guard, with the value it saw (never a secret: keys show set / not set). */
export interface GuardCondition {
  name: string;
  ok: boolean;
  value: string;
}

/** The guard's decision. */
export interface GuardDecision {
  /** The mode asked for by `UPBIT_TRADE_MODE`. */
  requested: TradeMode;
  /** The mode the executor runs in. */
  effective: TradeMode;
  /** Every live condition (all five), in the documented order. */
  conditions: GuardCondition[];
  /** Why `effective` differs from `requested`, or `[]`. */
  downgradeReasons: string[];
}

/** The settings the guard reads. */
export type GuardSettings = Pick<
  Config,
  | "UPBIT_TRADE_MODE"
  | "LIVE_TRADING_ENABLED"
  | "LIVE_GUARD_PHRASE"
  | "PAPER_POLICY_PROFILE"
  | "UPBIT_ACCESS_KEY"
  | "UPBIT_SECRET_KEY"
>;

/**
 * Decides the executor's mode.
 *
 * - `shadow` is always allowed.
 * - `test` needs both keys (it calls the authenticated `POST /v1/orders/test`); without them it
 *   downgrades to shadow.
 * - `live` needs all five conditions: `LIVE_TRADING_ENABLED=true`, `UPBIT_TRADE_MODE=live`,
 *   `LIVE_GUARD_PHRASE=I_CONFIRM_LIVE_TRADING`, `PAPER_POLICY_PROFILE` not `test`, both keys set.
 *   Anything less downgrades to shadow (never to test: an operator who asked for live did not
 *   ask for test calls).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../config.ts";
 * decideTradeMode(parseConfig({})).effective; // "shadow"
 * ```
 */
export function decideTradeMode(s: GuardSettings): GuardDecision {
  const keys = Boolean(s.UPBIT_ACCESS_KEY) && Boolean(s.UPBIT_SECRET_KEY);
  const keyState = s.UPBIT_ACCESS_KEY
    ? (s.UPBIT_SECRET_KEY ? "set" : "UPBIT_SECRET_KEY not set")
    : (s.UPBIT_SECRET_KEY ? "UPBIT_ACCESS_KEY not set" : "not set");
  const conditions: GuardCondition[] = [
    {
      name: "LIVE_TRADING_ENABLED",
      ok: s.LIVE_TRADING_ENABLED === true,
      value: String(s.LIVE_TRADING_ENABLED),
    },
    { name: "UPBIT_TRADE_MODE", ok: s.UPBIT_TRADE_MODE === "live", value: s.UPBIT_TRADE_MODE },
    {
      name: "LIVE_GUARD_PHRASE",
      ok: s.LIVE_GUARD_PHRASE === LIVE_GUARD_PHRASE,
      // The phrase is not a secret, but show only whether it matches.
      value: s.LIVE_GUARD_PHRASE === ""
        ? "empty"
        : (s.LIVE_GUARD_PHRASE === LIVE_GUARD_PHRASE ? "confirmed" : "wrong phrase"),
    },
    {
      name: "PAPER_POLICY_PROFILE",
      ok: s.PAPER_POLICY_PROFILE !== "test",
      value: s.PAPER_POLICY_PROFILE,
    },
    { name: "UPBIT_KEYS", ok: keys, value: keyState },
  ];
  const requested = s.UPBIT_TRADE_MODE;
  let effective: TradeMode = "shadow";
  const downgradeReasons: string[] = [];
  if (requested === "live") {
    const failed = conditions.filter((c) => !c.ok);
    if (failed.length === 0) effective = "live";
    else for (const c of failed) downgradeReasons.push(`${c.name}=${c.value}`);
  } else if (requested === "test") {
    if (keys) effective = "test";
    else downgradeReasons.push(`UPBIT_KEYS=${keyState}`);
  }
  return { requested, effective, conditions, downgradeReasons };
}
