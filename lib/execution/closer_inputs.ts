/**
 * @module Assembles the position closer's input from the database (the ledger, the paper book,
 * unsettled live orders, last prices) and the exchange's balances (free and locked).
 */
import type { Sql } from "../db/connect.ts";
import { dec, formatDec, ZERO } from "../decimal.ts";
import { MIN_ORDER_KRW } from "./executor.ts";
import { ledgerPositions } from "./position_ledger.ts";
import type { CloserInput, CloserMarket } from "./position_closer.ts";
import type { UpbitRest } from "../upbit/rest.ts";

/** A coin as `GET /v1/accounts` reports it: free (`balance`) and in open orders (`locked`). */
export interface CoinBalance {
  balance: string;
  locked: string;
}

/** Per currency (`"BTC"`): the free and locked amounts. */
export type AccountBalances = Readonly<Record<string, CoinBalance>>;

/** The account's balances from Upbit (`GET /v1/accounts`), by currency. */
export async function readAccountBalances(rest: UpbitRest): Promise<AccountBalances> {
  const { data } = await rest.getAccounts();
  return Object.fromEntries(
    data.map((a) => [a.currency, { balance: a.balance, locked: a.locked }]),
  );
}

/** Options of {@linkcode closerInputs}. */
export interface CloserInputsOptions {
  /** Close every ledger position even when the paper book holds it. @default {false} */
  flatten?: boolean;
  /** Minimum order total in KRW. @default {"5000"} */
  minOrderKrw?: string;
  /**
   * The configured markets (`MARKETS`). A ledger market outside them is paper-flat whatever the
   * paper book says: the evaluator no longer writes its exit. @default every market
   */
  markets?: readonly string[];
  /**
   * Markets the caller holds this round whatever their balance (a close backing off, a paper exit
   * not handled yet): their balance alone is no reason to ask for the balances.
   * @default none
   */
  waiting?: ReadonlySet<string>;
}

/** Which sides of a market have a live order that is open, pending or of unknown outcome. */
export interface UnsettledSides {
  buy: boolean;
  sell: boolean;
}

/**
 * Markets with a live order whose outcome is not final (the view `live_orders_unsettled`,
 * migration 015): not sent yet or waiting to be re-sent, on its way, answer lost, held by Upbit,
 * or given a uuid and then lost by Upbit and not found again (it may have filled, and closing its
 * market again meanwhile could sell the owner's coins; the order_lost alarm asks a person to look).
 */
export async function unsettledLiveOrders(sql: Sql): Promise<Map<string, UnsettledSides>> {
  const rows = await sql<{ symbol: string; side: "bid" | "ask" }[]>`
    select distinct symbol, side from live_orders_unsettled`;
  const out = new Map<string, UnsettledSides>();
  for (const r of rows) {
    const sides = out.get(r.symbol) ?? { buy: false, sell: false };
    if (r.side === "bid") sides.buy = true;
    else sides.sell = true;
    out.set(r.symbol, sides);
  }
  return out;
}

/**
 * Markets whose paper book holds an ENTER_LONG without its EXIT_LONG, among `configured` (the
 * `MARKETS` setting; every market when absent): the evaluator writes exits only for those, so an
 * open entry of another market never gets its exit and must not hold the live position. Nor does
 * one of a market Upbit ends trading on ({@linkcode delistingMarkets}): after the date the coins
 * can no longer be sold, so the closer sells them now rather than wait for the paper exit.
 */
export async function paperOpenMarkets(
  sql: Sql,
  configured?: readonly string[],
): Promise<Set<string>> {
  const rows = await sql<{ symbol: string }[]>`
    select distinct e.symbol from paper_trades e
    where e.action = 'ENTER_LONG'
      and not exists (select 1 from paper_trades x where x.entry_id = e.id)
      and not exists (select 1 from upbit_market_status s
                      where s.market = e.symbol and ${sql.unsafe(DELISTING)})`;
  return new Set(
    rows.map((r) => r.symbol).filter((m) => configured === undefined || configured.includes(m)),
  );
}

/**
 * A market status row (`s`) saying Upbit ends trading on the market at a date: it still trades
 * until then. Not `DELISTED` / `UNLISTED`: Upbit refuses orders there anyway, and `UNLISTED` is
 * written when one `market/all` answer lacks the market (a glitch would sell every position).
 */
const DELISTING = "s.delisting_date is not null";

/**
 * Of `markets`, those Upbit announced the end of trading on, with the date (the market-status
 * poller's `upbit_market_status`).
 */
export async function delistingMarkets(
  sql: Sql,
  markets: readonly string[],
): Promise<Map<string, string>> {
  if (markets.length === 0) return new Map();
  const rows = await sql<{ market: string; delisting_date: string }[]>`
    select s.market, s.delisting_date from upbit_market_status s
    where s.market = any(${[...markets]}::text[]) and ${sql.unsafe(DELISTING)}`;
  return new Map(rows.map((r) => [r.market, r.delisting_date]));
}

/** How old a 1-second bar may be and still price a position for the closer, in seconds. */
export const LAST_CLOSE_MAX_AGE_SEC = 60;

/**
 * The highest 1-second close of each of `markets` within the last
 * {@linkcode LAST_CLOSE_MAX_AGE_SEC} seconds (by the database's clock): the price a sale is
 * judged at against Upbit's minimum total. Markets without such a bar are absent.
 */
export async function recentHighCloses(
  sql: Sql,
  markets: readonly string[],
): Promise<Map<string, string>> {
  if (markets.length === 0) return new Map();
  // The highest, not the newest: a position below the minimum is written off as dust for good,
  // and one bar of a wick (a single low trade) must not make a position worth selling look like
  // dust. An old bar (a feed stopped, a market dropped from MARKETS) may be far from today's
  // price either way: without a recent bar the closer asks the ticker.
  const rows = await sql<{ symbol: string; close: string }[]>`
    select symbol, max(close) as close from market_1s
    where symbol in ${sql(markets)}
      and ts > now() - make_interval(secs => ${LAST_CLOSE_MAX_AGE_SEC})
    group by symbol`;
  return new Map(rows.map((r) => [r.symbol, formatDec(dec(r.close))]));
}

/**
 * The closer's input for every market the ledger holds open.
 *
 * The reads run in this order, and the order is what makes them safe without a transaction:
 * unsettled orders first, then the ledger, then (in live mode only, so shadow and test make no
 * API call) the balances through `readFreeBalances`. An order that settles between the first two
 * reads was seen unsettled (the closer waits) or has its fills in the ledger (the poller stores
 * them with the final state); every fill in the ledger happened before the balances were read,
 * so a balance below the ledger means coins left without an order of ours, not a fill the
 * balance has not seen yet. Sells must not be sent by anyone else while this runs. The balances
 * are read only when some market is judged on them (its `freeBalance` and `lockedBalance` are
 * null otherwise).
 */
export async function closerInputs(
  sql: Sql,
  mode: CloserInput["mode"],
  readBalances: () => Promise<AccountBalances>,
  options: CloserInputsOptions = {},
): Promise<CloserInput> {
  const unsettled = await unsettledLiveOrders(sql);
  const ledger = (await ledgerPositions(sql)).filter((p) => dec(p.openVolume) > ZERO);
  const paperOpen = await paperOpenMarkets(sql, options.markets);
  const prices = await recentHighCloses(sql, ledger.map((p) => p.symbol));
  // The balances are asked for only when a market may be closed or written off this round: a
  // market the paper book holds (without a flatten) or with a sell in flight is held whatever its
  // balance (`decideCloses`), and each balance request spends the actor's share of the `default`
  // group that the risk gate needs for the next order.
  const flatten = options.flatten ?? false;
  const judged = ledger.some((p) =>
    (flatten || !paperOpen.has(p.symbol)) && !(unsettled.get(p.symbol)?.sell ?? false) &&
    !(options.waiting?.has(p.symbol) ?? false)
  );
  const balances = mode === "live" && judged ? await readBalances() : null;
  const markets: CloserMarket[] = ledger.map((p) => {
    const currency = p.symbol.slice(p.symbol.indexOf("-") + 1);
    const sides = unsettled.get(p.symbol);
    // GET /v1/accounts leaves out currencies the account does not hold.
    const coin = balances === null ? null : balances[currency] ?? { balance: "0", locked: "0" };
    return {
      market: p.symbol,
      openVolume: p.openVolume,
      paperFlat: !paperOpen.has(p.symbol),
      sellUnsettled: sides?.sell ?? false,
      buyUnsettled: sides?.buy ?? false,
      freeBalance: coin?.balance ?? null,
      lockedBalance: coin?.locked ?? null,
      lastPrice: prices.get(p.symbol) ?? null,
    };
  });
  return {
    mode,
    flatten,
    minOrderKrw: options.minOrderKrw ?? String(MIN_ORDER_KRW),
    markets,
  };
}
