/**
 * @module Market warnings and listing state of the simulated markets, settable at run time
 * (`POST /_sim/markets`): `market/all?is_details=true` shows `market_event.warning` and the five
 * `market_event.caution` flags (§6), and the ticker (REST and WebSocket, §7.4) shows
 * `market_state` (PREVIEW / ACTIVE / DELISTED) and `delisting_date`.
 *
 * The board of a {@linkcode SimMarket} is reached through {@linkcode marketStatusOf}, so the
 * quotation REST, the public WebSocket and the admin endpoint share it without new plumbing.
 */
import { z } from "zod";
import { MarketCode } from "../lib/domain.ts";
import type { ListingState } from "./contract.ts";
import type { SimMarket } from "./market.ts";

/** The caution flags of §6 (`market_event.caution`), all false by default. */
export const CAUTION_FLAGS = [
  "PRICE_FLUCTUATIONS",
  "TRADING_VOLUME_SOARING",
  "DEPOSIT_AMOUNT_SOARING",
  "GLOBAL_PRICE_DIFFERENCES",
  "CONCENTRATION_OF_SMALL_ACCOUNTS",
] as const;
/** One caution flag. */
export type CautionFlag = (typeof CAUTION_FLAGS)[number];

/** Warning, cautions and listing state of one market. */
export interface MarketStatus {
  warning: boolean;
  caution: Record<CautionFlag, boolean>;
  market_state: ListingState;
  /** `yyyy-MM-dd` (format inferred: the docs name the field only), or null. */
  delisting_date: string | null;
}

/** One update of `POST /_sim/markets`: the market, and the fields to change. */
export const MarketStatusPatch = z.strictObject({
  market: MarketCode,
  warning: z.boolean().optional(),
  caution: z.strictObject(
    Object.fromEntries(CAUTION_FLAGS.map((f) => [f, z.boolean().optional()])) as Record<
      CautionFlag,
      z.ZodOptional<z.ZodBoolean>
    >,
  ).optional(),
  market_state: z.enum(["PREVIEW", "ACTIVE", "DELISTED"]).optional(),
  delisting_date: z.string().regex(/^\d{4}-\d\d-\d\d$/).nullable().optional(),
});
/** One update of `POST /_sim/markets`. */
export type MarketStatusPatch = z.output<typeof MarketStatusPatch>;

/** The body of `POST /_sim/markets`: one update or a list of them. */
export const MarketStatusBody = z.union([MarketStatusPatch, z.array(MarketStatusPatch).max(1000)]);

function normal(): MarketStatus {
  return {
    warning: false,
    caution: Object.fromEntries(CAUTION_FLAGS.map((f) => [f, false])) as MarketStatus["caution"],
    market_state: "ACTIVE",
    delisting_date: null,
  };
}

/** Status of every market; markets never set are normal (no warning, ACTIVE). */
export class MarketStatusBoard {
  readonly #status = new Map<string, MarketStatus>();

  /** A copy of `market`'s status. */
  get(market: string): MarketStatus {
    const s = this.#status.get(market) ?? normal();
    return { ...s, caution: { ...s.caution } };
  }

  /** Applies one update (fields not given keep their value); returns the new status. */
  apply(patch: MarketStatusPatch): MarketStatus {
    const next = this.get(patch.market);
    if (patch.warning !== undefined) next.warning = patch.warning;
    for (const [flag, on] of Object.entries(patch.caution ?? {})) {
      if (on !== undefined) next.caution[flag as CautionFlag] = on;
    }
    if (patch.market_state !== undefined) next.market_state = patch.market_state;
    if (patch.delisting_date !== undefined) next.delisting_date = patch.delisting_date;
    this.#status.set(patch.market, next);
    return this.get(patch.market);
  }

  /** `market_event` of `market/all?is_details=true` (§6). */
  marketEvent(market: string): { warning: boolean; caution: Record<CautionFlag, boolean> } {
    const s = this.get(market);
    return { warning: s.warning, caution: s.caution };
  }
}

const boards = new WeakMap<SimMarket, MarketStatusBoard>();

/** The status board of `market` (created on first use). */
export function marketStatusOf(market: SimMarket): MarketStatusBoard {
  let board = boards.get(market);
  if (!board) {
    board = new MarketStatusBoard();
    boards.set(market, board);
  }
  return board;
}
