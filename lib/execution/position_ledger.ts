/**
 * @module The live position ledger (`position_ledger` view, migrations 003 and 019): what upbot
 * owns on the exchange per market, from the fills of its own live orders, minus volume recorded
 * as `gone` (no longer on the exchange) or `dust` (below the minimum order total), plus volume
 * recorded as `oversold` (sold beyond what it bought: the ledger brought back to zero). Amounts
 * are exact decimal strings.
 */
import { atomically, type Sql } from "../db/connect.ts";
import { assertLeaseHeld, fencedInsert, leaseFenceOf } from "../db/lease.ts";
import { dec, formatDec } from "../decimal.ts";
import type { Logger } from "../log.ts";
import type { CloseDecision } from "./position_closer.ts";

/** One market of the ledger. Volumes in the coin, money in KRW, all exact decimal strings. */
export interface LedgerPosition {
  symbol: string;
  /** Volume bought by upbot's live orders. */
  bought: string;
  /** Volume sold by upbot's live orders. */
  sold: string;
  /** Volume recorded as no longer on the exchange. */
  gone: string;
  /** Volume recorded as unsellable dust. */
  dust: string;
  /** Volume sold beyond what was bought, recorded so the ledger is not below zero. */
  oversold: string;
  /**
   * bought - sold - gone - dust + oversold: what upbot still owns (below zero only when a sale
   * went beyond it, until the closer records that as oversold).
   */
  openVolume: string;
  /** KRW paid for every buy, fees included. */
  cost: string;
  /** KRW received for every sale, net of fees. */
  proceeds: string;
  /** KRW fees of every fill. */
  fees: string;
  /** Cost basis per coin of the open position (buy fees included); null when flat. */
  avgEntryPrice: string | null;
  /** proceeds - cost + cost basis of the open volume (informational: 8 decimals). */
  realisedPnl: string;
  /** Time of the last movement (attempt creation or adjustment). */
  lastTs: Date;
}

interface LedgerRow {
  symbol: string;
  bought: string;
  sold: string;
  gone: string;
  dust: string;
  oversold: string;
  open_volume: string;
  cost: string;
  proceeds: string;
  fees: string;
  avg_entry_price: string | null;
  realised_pnl: string;
  last_ts: Date;
}

/** NUMERIC text without trailing zeros (`"0.00100000"` -> `"0.001"`). */
function clean(value: string): string {
  return formatDec(dec(value));
}

function toPosition(r: LedgerRow): LedgerPosition {
  return {
    symbol: r.symbol,
    bought: clean(r.bought),
    sold: clean(r.sold),
    gone: clean(r.gone),
    dust: clean(r.dust),
    oversold: clean(r.oversold),
    openVolume: clean(r.open_volume),
    cost: clean(r.cost),
    proceeds: clean(r.proceeds),
    fees: clean(r.fees),
    avgEntryPrice: r.avg_entry_price === null ? null : clean(r.avg_entry_price),
    realisedPnl: clean(r.realised_pnl),
    lastTs: r.last_ts,
  };
}

/** Every market upbot ever held live, by symbol. */
export async function ledgerPositions(sql: Sql): Promise<LedgerPosition[]> {
  const rows = await sql<LedgerRow[]>`select * from position_ledger order by symbol`;
  return rows.map(toPosition);
}

/** The ledger of `market`, or null when upbot never held it live. */
export async function ledgerPosition(sql: Sql, market: string): Promise<LedgerPosition | null> {
  const [row] = await sql<LedgerRow[]>`select * from position_ledger where symbol = ${market}`;
  return row ? toPosition(row) : null;
}

/** Thrown when an adjustment would close more than the ledger's open volume. */
export class LedgerAdjustmentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerAdjustmentError";
  }
}

/**
 * Appends an adjustment, only if `volume` is positive and at most the market's open volume (the
 * check and the insert are one statement). One closer writes adjustments, so two adjustments
 * racing past the same check is not a case this guards. Under a lease the fence is checked in
 * the same statement, as for attempts: an upbot that lost the lease may be reading balances while
 * the new holder's sell fills, and would write what was sold off as gone.
 *
 * @throws {LeaseLostError} when `sql` writes under a lease another upbot took (nothing written).
 */
async function recordAdjustment(
  sql: Sql,
  kind: "gone" | "dust",
  market: string,
  volume: string,
  valueKrw: string | null,
  reason: string,
): Promise<void> {
  const amount = dec(volume);
  if (amount <= 0n) {
    throw new LedgerAdjustmentError(
      `Cannot record ${kind} for ${market} as the volume must be positive: current value is ${volume}`,
    );
  }
  const text = formatDec(amount);
  const f = fencedInsert(sql);
  const rows = await sql<{ id: string }[]>`
    with ${f.withFence}
    inserted as (
      insert into position_adjustments (symbol, kind, volume, value_krw, reason)
      select ${market}, ${kind}, ${text}::numeric, ${valueKrw}::numeric, ${reason}
      from position_ledger
      where symbol = ${market} and open_volume >= ${text}::numeric ${f.ifHeld}
      returning id
    )
    ${f.answer}`;
  if (f.inserted(rows) === undefined) {
    const open = (await ledgerPosition(sql, market))?.openVolume ?? "0";
    throw new LedgerAdjustmentError(
      `Cannot record ${kind} of ${text} for ${market} as it exceeds the ledger's open volume ${open}`,
    );
  }
}

/**
 * Records `volume` of `market` as gone: no longer on the exchange (e.g. sold by hand), so upbot
 * stops trying to sell it. The caller raises the alarm.
 *
 * @throws {LedgerAdjustmentError} when `volume` is not positive or exceeds the open volume.
 */
export async function recordGone(
  sql: Sql,
  market: string,
  volume: string,
  why: string,
): Promise<void> {
  await recordAdjustment(sql, "gone", market, volume, null, why);
}

/**
 * Records `volume` of `market` as dust: a remainder worth less than the minimum order total, which
 * cannot be sold, with its value `valueKrw` at the last price.
 *
 * @throws {LedgerAdjustmentError} when `volume` is not positive or exceeds the open volume.
 */
export async function recordDust(
  sql: Sql,
  market: string,
  volume: string,
  valueKrw: string,
): Promise<void> {
  if (dec(valueKrw) < 0n) {
    throw new LedgerAdjustmentError(
      `Cannot record dust for ${market} as the value must not be negative: current value is ${valueKrw}`,
    );
  }
  await recordAdjustment(
    sql,
    "dust",
    market,
    volume,
    formatDec(dec(valueKrw)),
    "below the minimum order total",
  );
}

/**
 * Records that upbot sold more of `market` than it bought (the ledger's open volume is below
 * zero): an `oversold` adjustment of the shortfall brings it back to zero, so the next buy is
 * whole and not netted against it. Only while no live order of the market is unsettled (one in
 * flight may still bring fills). `also` runs in the same transaction with the volume recorded
 * (the caller's alarm and halt: all of it is stored, or none). Under a lease the lease is checked
 * in that transaction first.
 *
 * @returns the volume recorded, or null when nothing was (not below zero, or an order unsettled).
 * @throws {LeaseLostError} when `sql` writes under a lease another upbot took (nothing written).
 */
export async function recordOversold(
  sql: Sql,
  market: string,
  also: (tx: Sql, volume: string) => Promise<void>,
): Promise<string | null> {
  const fence = leaseFenceOf(sql);
  return await atomically(sql, async (tx) => {
    if (fence) await assertLeaseHeld(tx, fence);
    const [row] = await tx<{ volume: string }[]>`
      insert into position_adjustments (symbol, kind, volume, value_krw, reason)
      select ${market}, 'oversold', -open_volume, null,
             'sold beyond what upbot bought: the owner''s coins'
      from position_ledger
      where symbol = ${market} and open_volume < 0
        and not exists (select 1 from live_orders_unsettled u where u.symbol = ${market})
      returning volume::text as volume`;
    if (!row) return null;
    const volume = clean(row.volume);
    await also(tx, volume);
    return volume;
  });
}

/**
 * Records the `gone` and `dust` decisions of the closer (sells and holds are the caller's), each
 * with its log line: gone is an alarm (error), dust a warning. Returns how many were recorded.
 *
 * @throws {LedgerAdjustmentError} when a decision exceeds the open volume (the ledger moved since
 *   the decisions were made: decide again).
 */
export async function recordWriteOffs(
  sql: Sql,
  decisions: readonly CloseDecision[],
  log: Logger,
): Promise<number> {
  let recorded = 0;
  for (const d of decisions) {
    if (d.kind === "gone") {
      await recordGone(
        sql,
        d.market,
        d.volume,
        `free balance ${d.freeBalance}${
          d.lockedBalance ? ` and locked ${d.lockedBalance}` : ""
        } below the ledger's open volume; no order of ours unsettled`,
      );
      log.error(
        `Position ${d.market}: ${d.volume} no longer on the exchange (free balance ${d.freeBalance}${
          d.lockedBalance ? `, locked ${d.lockedBalance}` : ""
        }); recorded as gone, check the account (sold by hand?)`,
        {
          market: d.market,
          volume: d.volume,
          free_balance: d.freeBalance,
          ...(d.lockedBalance ? { locked_balance: d.lockedBalance } : {}),
        },
      );
      recorded++;
    } else if (d.kind === "dust") {
      await recordDust(sql, d.market, d.volume, d.valueKrw);
      log.warn(
        `Position ${d.market}: remainder ${d.volume} worth ${d.valueKrw} KRW is below the minimum order total; recorded as dust`,
        { market: d.market, volume: d.volume, value_krw: d.valueKrw },
      );
      recorded++;
    }
  }
  return recorded;
}
