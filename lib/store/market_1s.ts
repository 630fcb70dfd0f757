/**
 * @module `market_1s`: 1-second bars written by the feed and read by the evaluator.
 */
import type { Bar } from "../strategy/bars.ts";
import type { Sql } from "../db/connect.ts";

/**
 * Inserts or updates `bars` in one statement; a bar already final is never reopened (a late
 * upsert of the open version cannot overwrite the final one).
 */
export async function upsertBars(
  sql: Sql,
  bars: readonly Bar[],
  isFinal: boolean,
): Promise<void> {
  if (bars.length === 0) return;
  const rows = bars.map((b) => ({
    symbol: b.market,
    ts: new Date(b.ts),
    open: String(b.open),
    high: String(b.high),
    low: String(b.low),
    close: String(b.close),
    volume: String(b.volume),
    quote_volume: String(b.quoteVolume),
    trade_count: b.tradeCount,
    buy_volume: String(b.buyVolume),
    sell_volume: String(b.sellVolume),
    ask_est: b.askEst == null ? null : String(b.askEst),
    bid_est: b.bidEst == null ? null : String(b.bidEst),
    is_final: isFinal,
  }));
  await sql`
    insert into market_1s ${sql(rows)}
    on conflict (symbol, ts) do update set
      open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
      volume = excluded.volume, quote_volume = excluded.quote_volume,
      trade_count = excluded.trade_count, buy_volume = excluded.buy_volume,
      sell_volume = excluded.sell_volume, ask_est = excluded.ask_est,
      bid_est = excluded.bid_est, is_final = excluded.is_final, updated_at = now()
    where not market_1s.is_final`;
}

interface BarRow {
  symbol: string;
  ts: Date;
  open: string;
  high: string;
  low: string;
  close: string;
  volume: string;
  quote_volume: string;
  trade_count: number;
  buy_volume: string;
  sell_volume: string;
  ask_est: string | null;
  bid_est: string | null;
}

function toBar(r: BarRow): Bar {
  return {
    market: r.symbol,
    ts: r.ts.getTime(),
    open: Number(r.open),
    high: Number(r.high),
    low: Number(r.low),
    close: Number(r.close),
    volume: Number(r.volume),
    quoteVolume: Number(r.quote_volume),
    tradeCount: r.trade_count,
    buyVolume: Number(r.buy_volume),
    sellVolume: Number(r.sell_volume),
    askEst: r.ask_est === null ? null : Number(r.ask_est),
    bidEst: r.bid_est === null ? null : Number(r.bid_est),
  };
}

/** Final bars of `symbol` strictly after `afterTs` (epoch ms), oldest first, at most `limit`. */
export async function finalBarsAfter(
  sql: Sql,
  symbol: string,
  afterTs: number,
  limit = 5000,
): Promise<Bar[]> {
  const rows = await sql<BarRow[]>`
    select symbol, ts, open, high, low, close, volume, quote_volume, trade_count, buy_volume,
           sell_volume, ask_est, bid_est
    from market_1s
    where symbol = ${symbol} and is_final and ts > ${new Date(afterTs)}
    order by ts
    limit ${limit}`;
  return rows.map(toBar);
}
