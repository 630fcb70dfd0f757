/**
 * @module Fetching every trade of one market since a time over `GET /v1/trades/ticks`, across
 * 00:00 UTC: Upbit answers one trade date per query (the newest date, or `days_ago` 1-7 days
 * before it, §6), so a window that spans midnight pages the newest date with `cursor`, then the
 * previous dates with `days_ago`. Used by the WebSocket client's gap backfills (after a reconnect,
 * and the feed's start-up catch-up on the first connection).
 */
import type { UpbitRest } from "./rest.ts";
import type { TradeTick } from "./schemas.ts";

const DAY_MS = 86_400_000;
/** Upbit serves at most seven dates before the newest (§6). */
const MAX_DAYS_AGO = 7;
const PAGE = 500;

/** What {@linkcode tradesSince} found. */
export interface TradesSince {
  /** Trades at or after the start time, each once, in no particular order. */
  trades: TradeTick[];
  /**
   * True when paging reached a trade older than the start time or the oldest trade there is;
   * false when the page budget or the seven dates ran out first, or a request failed (trades may
   * be missing).
   */
  complete: boolean;
  /** Why a request failed (network, HTTP, validation, abort); the trades fetched before stay. */
  error?: unknown;
}

/** Options of {@linkcode tradesSince}. */
export interface TradesSinceOptions {
  /** Requests at most. @default {20} */
  maxPages?: number;
  signal?: AbortSignal;
}

/** Start of the UTC date of a `trade_date_utc` ("yyyy-MM-dd"), epoch ms. */
function dayStartOf(tradeDateUtc: string): number {
  return Date.parse(`${tradeDateUtc}T00:00:00Z`);
}

/**
 * Every trade of `market` with `timestamp >= sinceMs`, paging back date by date. Never throws: a
 * failed request ends the paging with `complete: false` and the `error`.
 *
 * @example
 * ```ts ignore
 * const { trades, complete } = await tradesSince(rest, "KRW-BTC", Date.now() - 600_000);
 * ```
 */
export async function tradesSince(
  rest: UpbitRest,
  market: string,
  sinceMs: number,
  options: TradesSinceOptions = {},
): Promise<TradesSince> {
  const byId = new Map<bigint, TradeTick>();
  try {
    const complete = await page(rest, market, sinceMs, options, byId);
    return { trades: [...byId.values()], complete };
  } catch (error) {
    return { trades: [...byId.values()], complete: false, error };
  }
}

/** Pages into `byId`; true when the window is closed (see {@linkcode TradesSince.complete}). */
async function page(
  rest: UpbitRest,
  market: string,
  sinceMs: number,
  options: TradesSinceOptions,
  byId: Map<bigint, TradeTick>,
): Promise<boolean> {
  const maxPages = options.maxPages ?? 20;
  // 0 = the newest date (no `days_ago`); the date being paged is known from its first answer.
  let daysAgo = 0;
  let dateStart: number | undefined;
  let cursor: bigint | undefined;
  for (let request = 0; request < maxPages; request++) {
    const { data } = await rest.getTradesTicks({
      market,
      count: PAGE,
      ...(cursor === undefined ? {} : { cursor }),
      ...(daysAgo === 0 ? {} : { daysAgo }),
    }, { signal: options.signal });
    const first = data[0];
    if (first !== undefined) {
      // The answer's date is the truth: when 00:00 UTC passed while paging, `days_ago` counts
      // from a newer date and the date asked for may come again from its newest trade (each trade
      // is kept once).
      dateStart = dayStartOf(first.trade_date_utc);
      let reachedStart = false;
      for (const t of data) {
        if (t.timestamp >= sinceMs) byId.set(t.sequential_id, t);
        else reachedStart = true;
      }
      if (reachedStart) return true;
      cursor = (data[data.length - 1] as TradeTick).sequential_id;
      continue;
    }
    // This date is exhausted. Nothing at all on the newest date means there is no trade.
    if (dateStart === undefined || dateStart <= sinceMs) return true;
    if (daysAgo >= MAX_DAYS_AGO) break;
    daysAgo++;
    dateStart -= DAY_MS;
    cursor = undefined;
  }
  return false;
}
