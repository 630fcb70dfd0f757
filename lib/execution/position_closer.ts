/**
 * @module The position closer's decisions, as a pure function: for each market the live ledger
 * still holds, sell it (reduce-only, never more than the ledger's open volume, so never the
 * owner's own coins), write off what cannot be sold (`dust`) or is no longer there (`gone`), or
 * hold and say why (coins locked in the owner's orders are held, never written off). What a
 * refused sell means is the executor's to judge (`lib/execution/executor.ts`), as for every order.
 */
import { type Dec, dec, formatDec, maxDec, minDec, mul, truncDec, ZERO } from "../decimal.ts";
import type { TradeMode } from "../domain.ts";

/** Fractional digits of an order volume Upbit accepts (§8.2: quantities carry 8 decimals). */
export const VOLUME_PLACES = 8;

/** One market as the closer sees it. Amounts are exact decimal strings. */
export interface CloserMarket {
  market: string;
  /** The ledger's open volume (what upbot owns). */
  openVolume: string;
  /** true when every paper ENTER_LONG of this market has its EXIT_LONG. */
  paperFlat: boolean;
  /** true when a sell of this market is open, pending or of unknown outcome. */
  sellUnsettled: boolean;
  /**
   * true when a buy of this market is open, pending or of unknown outcome: its fills may not be
   * in the ledger yet, so a short balance proves nothing.
   */
  buyUnsettled: boolean;
  /** The exchange's free (`balance`, not `locked`) amount of the coin; null when not known. */
  freeBalance: string | null;
  /**
   * The exchange's `locked` amount of the coin (in open orders; with no sell of ours unsettled,
   * the owner's); null when not known.
   */
  lockedBalance: string | null;
  /** Last traded price in KRW; null when not known. */
  lastPrice: string | null;
}

/** Everything {@linkcode decideCloses} needs. */
export interface CloserInput {
  /** The effective trading mode: only `live` sends or writes anything off. */
  mode: TradeMode;
  /** Close every ledger position now, even when the paper book still holds it. */
  flatten: boolean;
  /** Minimum order total in KRW (§8.2: 5,000). */
  minOrderKrw: string;
  markets: readonly CloserMarket[];
}

/** Why an open position is left alone this round. */
export type HoldReason =
  /** Not in live mode: nothing is sent; closed when live mode returns. */
  | "not_live"
  /** The paper book still holds the market (and no flatten was asked for). */
  | "paper_open"
  /** A sell of the market is open or unresolved: wait for its outcome. */
  | "sell_unsettled"
  /** The exchange balance is not known. */
  | "no_balance"
  /** No last price: the minimum order total cannot be checked. */
  | "no_price"
  /** Part of the position is not on the exchange but a buy is still unsettled. */
  | "buy_unsettled"
  /**
   * Part of the position is on the exchange but locked in orders that are not upbot's (the
   * owner's): held until those coins are free again.
   */
  | "owner_locked";

/**
 * One thing to do for a market. A sell's volume has at most 8 decimals (truncated, never rounded
 * up); gone and dust volumes are exact, so the ledger closes to zero.
 */
export type CloseDecision =
  /** Send a reduce-only market sell (`ord_type: "market"`) of `volume`. */
  | { kind: "sell"; market: string; volume: string }
  /** Record `volume` as dust worth `valueKrw` at the last price (below the minimum total). */
  | { kind: "dust"; market: string; volume: string; valueKrw: string }
  /**
   * Record `volume` as gone: the ledger says upbot owns it, the exchange does not hold it (its
   * free balance was `freeBalance`, `lockedBalance` more in orders when present, and no order of
   * ours was unsettled).
   */
  | { kind: "gone"; market: string; volume: string; freeBalance: string; lockedBalance?: string }
  /** Leave the open position for now (report it). */
  | { kind: "hold"; market: string; volume: string; reason: HoldReason };

/**
 * Decides, per market with an open ledger volume, what closes it:
 * - only in live mode, only when the paper book is flat (or `flatten`), and never while a sell of
 *   that market is open or unresolved;
 * - what the ledger owns but the exchange's free and locked balances together lack is `gone` (not
 *   while any order of the market is unsettled: coins locked in our own sell or a buy not yet in
 *   the ledger);
 * - what is there but only locked (in the owner's orders) is held (`owner_locked`), never written
 *   off: the owner may cancel;
 * - the rest, min(open volume, free balance) truncated to 8 decimals, is sold when worth at least
 *   the minimum order total at the last price, else recorded as `dust` (not while part of the
 *   position is locked: freed, it may be worth a sell).
 *
 * Markets with no open volume get no decision. Every other market gets at least one.
 */
export function decideCloses(input: CloserInput): CloseDecision[] {
  const min = dec(input.minOrderKrw);
  const out: CloseDecision[] = [];
  for (const m of input.markets) {
    const open = dec(m.openVolume);
    if (open <= ZERO) continue;
    const hold = (reason: HoldReason, volume: Dec = open) =>
      out.push({ kind: "hold", market: m.market, volume: formatDec(volume), reason });
    if (input.mode !== "live") {
      hold("not_live");
      continue;
    }
    if (!m.paperFlat && !input.flatten) {
      hold("paper_open");
      continue;
    }
    if (m.sellUnsettled) {
      hold("sell_unsettled");
      continue;
    }
    if (m.freeBalance === null) {
      hold("no_balance");
      continue;
    }
    const free = maxDec(dec(m.freeBalance), ZERO);
    const locked = m.lockedBalance === null ? ZERO : maxDec(dec(m.lockedBalance), ZERO);
    let present = open;
    if (free + locked < open) {
      if (m.buyUnsettled) {
        hold("buy_unsettled");
        continue;
      }
      const missing = open - (free + locked);
      out.push({
        kind: "gone",
        market: m.market,
        volume: formatDec(missing),
        freeBalance: formatDec(free),
        ...(locked > ZERO ? { lockedBalance: formatDec(locked) } : {}),
      });
      present = open - missing;
      if (present === ZERO) continue;
    }
    // What is there but not free sits in the owner's orders (no sell of ours is unsettled).
    const lockedPart = present > free ? present - free : ZERO;
    if (m.lastPrice === null) {
      hold("no_price", present);
      continue;
    }
    const price = dec(m.lastPrice);
    const sellable = truncDec(minDec(present, free), VOLUME_PLACES);
    if (sellable > ZERO && mul(sellable, price) >= min) {
      out.push({ kind: "sell", market: m.market, volume: formatDec(sellable) });
      if (lockedPart > ZERO) hold("owner_locked", present - sellable);
    } else if (lockedPart > ZERO) {
      hold("owner_locked", present);
    } else {
      out.push(dustOf(m.market, present, price));
    }
  }
  return out;
}

function dustOf(market: string, volume: Dec, price: Dec): CloseDecision {
  return {
    kind: "dust",
    market,
    volume: formatDec(volume),
    valueKrw: formatDec(truncDec(mul(volume, price), VOLUME_PLACES)),
  };
}
