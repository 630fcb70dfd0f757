/**
 * @module The risk gate: every live order passes {@linkcode gateOrder} (or {@linkcode checkOrder}
 * on a context from {@linkcode riskContext}) right before the wire. The rules are pure
 * (`risk_core.ts`); this module assembles what they judge from the database and the exchange:
 * balances, the positions upbot holds, entries in flight, today's realised loss, halts, market
 * warnings and orders whose outcome is unknown.
 *
 * The daily loss window is the KST day (from 00:00 Asia/Seoul = 15:00 UTC), shortened by the
 * newest {@linkcode resumeAfterDailyLoss}: losses before a resume no longer count.
 */
import type { Config } from "../config.ts";
import { entryHaltReason } from "../control/trading_state.ts";
import type { Sql } from "../db/connect.ts";
import { dec, ZERO } from "../decimal.ts";
import { UpbitApiError } from "../upbit/errors.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import type { Ticker } from "../upbit/schemas.ts";
import { recentHighCloses } from "./closer_inputs.ts";
import { unresolvedOrders } from "./lost_orders.ts";
import { ledgerPositions } from "./position_ledger.ts";
import {
  checkOrder,
  type EntryInFlight,
  fromUnits,
  type RiskContext,
  type RiskDecision,
  type RiskLimits,
  type RiskOrder,
  toUnits,
} from "./risk_core.ts";

export {
  checkOrder,
  type RiskContext,
  type RiskDecision,
  type RiskLimits,
  type RiskOrder,
  RiskRefusalCode,
} from "./risk_core.ts";

const KST_OFFSET_MS = 9 * 3600_000;
const DAY_MS = 86_400_000;

/** Start (ms since epoch) of the KST day holding `nowMs`: 00:00 Asia/Seoul = 15:00 UTC. */
export function kstDayStart(nowMs: number): number {
  return Math.floor((nowMs + KST_OFFSET_MS) / DAY_MS) * DAY_MS - KST_OFFSET_MS;
}

/** The limits from the configuration. */
export function riskLimits(
  config: Pick<
    Config,
    | "RISK_MAX_ORDER_KRW"
    | "RISK_MAX_OPEN_POSITIONS"
    | "RISK_MAX_EXPOSURE_KRW"
    | "RISK_MAX_DAILY_LOSS_KRW"
    | "EXECUTOR_MAX_SIGNAL_AGE_SEC"
  >,
): RiskLimits {
  return {
    maxOrderKrw: config.RISK_MAX_ORDER_KRW,
    maxOpenPositions: config.RISK_MAX_OPEN_POSITIONS,
    maxExposureKrw: config.RISK_MAX_EXPOSURE_KRW,
    maxDailyLossKrw: config.RISK_MAX_DAILY_LOSS_KRW,
    maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
  };
}

/**
 * Where the market-warning rule comes from: the exchange-fidelity work's
 * `entryRefusalForMarket(sql, market)` (null: entries allowed). Passed in so that this module does
 * not depend on a store it does not own.
 */
export type MarketRefusal = (sql: Sql, market: string) => Promise<string | null>;

/** Options of {@linkcode riskContext}. */
export interface RiskContextOptions {
  /** Fresh balances come from here (`GET /v1/accounts`); without it, the newest stored snapshot. */
  rest?: UpbitRest | null;
  /** Market warnings (see {@linkcode MarketRefusal}); without it no market is refused. */
  marketRefusal?: MarketRefusal;
  /** The id of the attempt being judged when it is already written (not counted in flight). */
  attemptId?: number;
  /** Read the visible bids' depth (`GET /v1/orderbook`, with `rest`): the order is a sell. */
  sell?: boolean;
  nowMs?: number;
}

/** The open volume upbot holds per market (the position ledger's, only markets above zero). */
export async function openVolumes(sql: Sql): Promise<Map<string, string>> {
  const held = (await ledgerPositions(sql)).filter((p) => dec(p.openVolume) > ZERO);
  return new Map(held.map((p) => [p.symbol, p.openVolume]));
}

/**
 * Live entries sent (or about to be) and not final: they may still buy. `exceptId`: the attempt
 * being judged, written before the gate, is not its own competitor.
 */
export async function entriesInFlight(sql: Sql, exceptId?: number): Promise<EntryInFlight[]> {
  const rows = await sql<{ symbol: string; price: string | null }[]>`
    select symbol, price::text as price from upbit_order_attempts
    where mode = 'live' and side = 'bid'
      and state in ('pending', 'sent', 'unknown', 'open', 'partially_filled')
      and id <> ${exceptId ?? -1}
    order by id`;
  return rows.map((r) => ({ market: r.symbol, krw: Number(r.price ?? 0) }));
}

/** Records a resume of the daily loss limit: losses before now no longer count today. */
export async function resumeAfterDailyLoss(sql: Sql, by: string): Promise<void> {
  if (by.trim() === "") throw new Error("who resumes must not be empty");
  await sql`insert into daily_loss_resumes (resumed_by) values (${by})`;
}

/**
 * Start of the loss window at `nowMs`: the KST day's start, or the newest resume if later (of the
 * loss limit itself, or the operator's resume of all entries: `deno task resume`).
 */
export async function lossWindowStart(sql: Sql, nowMs: number): Promise<Date> {
  const dayStart = kstDayStart(nowMs);
  const [row] = await sql<{ at: Date | null }[]>`
    select greatest(
      (select max(at) from daily_loss_resumes),
      (select max(at) from trading_state_history where scope = 'global' and action = 'resume')
    ) as at`;
  const resumed = row?.at ? row.at.getTime() : 0;
  return new Date(Math.max(dayStart, resumed));
}

/**
 * Realised loss (positive KRW; 0 after a net gain) of what left upbot's positions since `since`:
 * each sale's proceeds net of its fee, and each volume recorded gone or dust (no proceeds; an
 * `oversold` record brings volume back and is no loss of upbot's), against
 * the average cost (buy fees included) of the market's buys since it was last flat: the position
 * ledger's cost basis (migration 003), per movement instead of per market.
 */
export async function realisedLossSince(sql: Sql, since: Date): Promise<number> {
  const [row] = await sql<{ pnl: string | null }[]>`
    with ordered as (
      select m.*, sum(delta) over (partition by symbol order by ts, source, id) as holding
      from position_movements m
    ), segmented as (
      -- A segment starts after each movement that left the market flat.
      select o.*, coalesce(sum(case when holding <= 0 then 1 else 0 end) over (
        partition by symbol order by ts, source, id
        rows between unbounded preceding and 1 preceding), 0) as segment
      from ordered o
    ), costed as (
      select s.*,
        sum(case when kind = 'buy' then funds + fee else 0 end)
          over (partition by symbol, segment order by ts, source, id) as seg_cost,
        sum(case when kind = 'buy' then volume else 0 end)
          over (partition by symbol, segment order by ts, source, id) as seg_volume
      from segmented s
    )
    select sum(case when kind = 'sell' then funds - fee else 0 end
               - case when seg_volume > 0 then volume * seg_cost / seg_volume else 0 end)::text
           as pnl
    from costed
    where kind not in ('buy', 'oversold') and ts >= ${since}`;
  const pnl = Number(row?.pnl ?? 0);
  return pnl < 0 ? -pnl : 0;
}

/**
 * The highest recent close of every market in `markets` (market_1s, as the closer prices them:
 * an old bar is no price, so an exit is not refused as dust on a price long gone, nor on one
 * bar of a wick).
 */
async function lastPrices(sql: Sql, markets: readonly string[]): Promise<Map<string, number>> {
  const closes = await recentHighCloses(sql, markets);
  return new Map([...closes].map(([symbol, close]) => [symbol, Number(close)]));
}

/** Free balance per currency: fresh from Upbit when `rest` is given, else the newest snapshot. */
async function freeBalances(sql: Sql, rest: UpbitRest | null | undefined) {
  if (rest) {
    const { data } = await rest.getAccounts();
    return new Map(data.map((a) => [a.currency, a.balance]));
  }
  const rows = await sql<{ currency: string; balance: string }[]>`
    select distinct on (currency) currency, balance::text as balance
    from upbit_account_snapshots order by currency, ts desc, id desc`;
  return new Map(rows.map((r) => [r.currency, r.balance]));
}

/**
 * Assembles everything {@linkcode checkOrder} judges an order of `market` against.
 *
 * @throws {UpbitError} when fresh balances were asked for and Upbit did not answer (the order
 *   then waits: no rule is judged on a guess).
 */
export async function riskContext(
  sql: Sql,
  market: string,
  o: RiskContextOptions = {},
): Promise<RiskContext> {
  const nowMs = o.nowMs ?? Date.now();
  // Every read is independent of the others: all go out at once (the pool's connections and
  // pipelining), so the gate costs about one round trip (or the balance call) instead of ten.
  const [
    ledger,
    marketPrice,
    balances,
    inFlight,
    realisedLossKrw,
    marketWarning,
    haltReason,
    unknownOrders,
    bids,
  ] = await Promise.all([
    ledgerPositions(sql),
    lastPrices(sql, [market]),
    freeBalances(sql, o.rest),
    entriesInFlight(sql, o.attemptId),
    lossWindowStart(sql, nowMs).then((since) => realisedLossSince(sql, since)),
    o.marketRefusal ? o.marketRefusal(sql, market) : Promise.resolve(null),
    entryHaltReason(sql, market),
    unresolvedOrders(sql, market),
    o.sell && o.rest ? visibleBids(o.rest, market) : null,
  ]);
  const held = ledger.filter((p) => dec(p.openVolume) > ZERO);
  // A ledger below zero (sold beyond what was bought) holds entries until the closer has recorded
  // the shortfall (`recordOversold`): a buy now would be netted against it and partly never sold.
  const below = ledger.find((p) => p.symbol === market && dec(p.openVolume) < ZERO);
  const oversold = below
    ? `the ledger of ${market} is ${below.openVolume}, below zero (sold beyond what upbot bought): no entry until the closer has recorded it`
    : null;
  // A sell is judged on its own market only (exposure limits entries): another market's price
  // that cannot be read (a delisted code the ticker refuses) must not hold an exit.
  const others = o.sell ? [] : held.map((p) => p.symbol).filter((m) => m !== market);
  const prices = others.length > 0
    ? new Map([...marketPrice, ...await lastPrices(sql, [...new Set(others)])])
    : marketPrice;
  // Bars lag or are missing (a market the feed does not follow): ask Upbit's ticker then.
  const missing = [...new Set([market, ...others])].filter((m) => !prices.has(m));
  if (missing.length > 0 && o.rest) {
    for (const t of await readTickers(o.rest, missing)) prices.set(t.market, t.trade_price);
  }
  let exposureKrw = 0;
  for (const p of held) {
    // A holding with no known price is valued at what it cost: never at zero.
    const price = prices.get(p.symbol) ?? Number(p.avgEntryPrice ?? 0);
    exposureKrw += Number(p.openVolume) * price;
  }
  const base = market.slice(market.indexOf("-") + 1);
  // A sale is refused as dust only when every price known says so: the best bid too, when the
  // book was read (it is what a market sell meets; Upbit judges the minimum itself anyway).
  const known = [prices.get(market), bids?.bestBid].filter((p): p is number =>
    typeof p === "number"
  );
  return {
    nowMs,
    lastPrice: known.length > 0 ? Math.max(...known) : null,
    freeKrw: Number(balances.get("KRW") ?? 0),
    freeCoin: balances.get(base) ?? "0",
    heldMarkets: held.map((p) => p.symbol),
    entriesInFlight: inFlight,
    exposureKrw,
    realisedLossKrw,
    marketWarning,
    haltReason: haltReason ?? oversold,
    unknownOrders,
    bidDepth: bids?.size ?? null,
  };
}

/**
 * Upbit's tickers of `markets`. One code Upbit no longer lists (a delisted market upbot still
 * holds) fails a request of several with 404: then each is asked alone and the unknown ones are
 * left out, so one market's missing price holds only that market.
 *
 * @throws {UpbitError} for any other failure.
 */
export async function readTickers(rest: UpbitRest, markets: string[]): Promise<Ticker[]> {
  try {
    return (await rest.getTicker({ markets })).data;
  } catch (err) {
    if (!(err instanceof UpbitApiError && err.httpStatus === 404)) throw err;
    if (markets.length === 1) return [];
  }
  const out: Ticker[] = [];
  for (const market of markets) out.push(...await readTickers(rest, [market]));
  return out;
}

/**
 * `market`'s visible bid levels (the 30 Upbit's §8.2 check counts): their size, a decimal string,
 * and the best bid's price (null when there is no bid).
 */
async function visibleBids(
  rest: UpbitRest,
  market: string,
): Promise<{ size: string; bestBid: number | null }> {
  const { data } = await rest.getOrderbook({ markets: [market], count: 30 });
  const levels = data[0]?.orderbook_units ?? [];
  let units = 0n;
  // Sizes come as JSON numbers; 8 decimals are what a volume carries (the share taken is 90%).
  for (const unit of levels) units += toUnits(unit.bid_size.toFixed(8));
  const bestBid = levels.length > 0 ? Math.max(...levels.map((u) => u.bid_price)) : null;
  return { size: fromUnits(units), bestBid: bestBid !== null && bestBid > 0 ? bestBid : null };
}

/**
 * The gate: the context of `order`'s market, then {@linkcode checkOrder}.
 *
 * @example
 * ```ts ignore
 * const d = await gateOrder(sql, order, riskLimits(config), { rest });
 * if (!d.ok) await refuseAttempt(attempt, d.code, d.detail);
 * ```
 */
export async function gateOrder(
  sql: Sql,
  order: RiskOrder,
  limits: RiskLimits,
  o: RiskContextOptions = {},
): Promise<RiskDecision> {
  return checkOrder(
    order,
    await riskContext(sql, order.market, { ...o, sell: order.side === "ask" }),
    limits,
  );
}
