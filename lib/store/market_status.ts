/**
 * @module `upbit_market_status`: each market's warning, caution flags and listing state, written by
 * the market-status poller (`lib/pipeline/market_status.ts`) and read by the risk gate through
 * {@linkcode entryRefusalForMarket}: entries are refused on a market under warning, caution or
 * delisting; exits never are.
 */
import type { Sql } from "../db/connect.ts";

/** One market's status as stored. */
export interface MarketStatusRow {
  market: string;
  warning: boolean;
  /** Caution flags by name (e.g. `PRICE_FLUCTUATIONS`), as Upbit sent them. */
  caution: Readonly<Record<string, boolean>>;
  /**
   * `PREVIEW`, `ACTIVE`, `DELISTED`, or `UNLISTED` when `market/all` no longer lists the market;
   * null when no answer carried it.
   */
  marketState: string | null;
  delistingDate: string | null;
}

/** Why entries are refused on a market (see {@linkcode entryRefusalForMarket}). */
export type MarketEntryRefusal =
  | "market_delisting"
  | "market_unlisted"
  | "market_inactive"
  | "market_warning"
  | "market_caution"
  | "market_status_stale";

/** Inserts or replaces the status of each market in `rows`, in one statement. */
export async function upsertMarketStatus(
  sql: Sql,
  rows: readonly MarketStatusRow[],
): Promise<void> {
  if (rows.length === 0) return;
  const values = rows.map((r) => ({
    market: r.market,
    warning: r.warning,
    caution: sql.json({ ...r.caution }),
    market_state: r.marketState,
    delisting_date: r.delistingDate,
  }));
  await sql`
    insert into upbit_market_status ${sql(values)}
    on conflict (market) do update set
      warning = excluded.warning, caution = excluded.caution,
      market_state = excluded.market_state, delisting_date = excluded.delisting_date,
      updated_at = now()`;
}

/** The stored status of `market`, or null when it was never written. */
export async function readMarketStatus(
  sql: Sql,
  market: string,
): Promise<(MarketStatusRow & { updatedAt: Date }) | null> {
  const [row] = await sql<{
    market: string;
    warning: boolean;
    caution: Record<string, boolean>;
    market_state: string | null;
    delisting_date: string | null;
    updated_at: Date;
  }[]>`
    select market, warning, caution, market_state, delisting_date, updated_at
    from upbit_market_status where market = ${market}`;
  if (!row) return null;
  return {
    market: row.market,
    warning: row.warning,
    caution: row.caution,
    marketState: row.market_state,
    delistingDate: row.delisting_date,
    updatedAt: row.updated_at,
  };
}

/** Options of {@linkcode entryRefusalForMarket}. */
export interface EntryRefusalOptions {
  /**
   * Refuse (`market_status_stale`) when the status is older than this, in seconds, or missing: the
   * poller has stopped, so a warning may be unseen. Unset: a missing row allows entries (the
   * poller has not run yet) and age is not checked.
   */
  maxAgeSec?: number;
  /** @default {Date.now} */
  now?: () => number;
}

/**
 * Whether new entries on `market` must be refused, and why: null = allowed; else a reason code, the
 * gravest first (delisting, unlisted, not ACTIVE, warning, caution). Exits are never refused on
 * these grounds: callers use this for entries only.
 *
 * @example
 * ```ts ignore
 * const refusal = await entryRefusalForMarket(sql, "KRW-BTC");
 * if (refusal !== null) return skip(refusal);
 * ```
 */
export async function entryRefusalForMarket(
  sql: Sql,
  market: string,
  options: EntryRefusalOptions = {},
): Promise<MarketEntryRefusal | null> {
  const status = await readMarketStatus(sql, market);
  if (options.maxAgeSec !== undefined) {
    const now = (options.now ?? Date.now)();
    if (!status || now - status.updatedAt.getTime() > options.maxAgeSec * 1000) {
      return "market_status_stale";
    }
  }
  if (!status) return null;
  if (status.delistingDate !== null || status.marketState === "DELISTED") {
    return "market_delisting";
  }
  if (status.marketState === "UNLISTED") return "market_unlisted";
  if (status.marketState !== null && status.marketState !== "ACTIVE") return "market_inactive";
  if (status.warning) return "market_warning";
  if (Object.values(status.caution).some((on) => on === true)) return "market_caution";
  return null;
}
