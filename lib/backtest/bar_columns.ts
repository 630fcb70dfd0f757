/**
 * @module Bars as columns of numbers, to hand a market's history to sweep workers cheaply (one
 * `Float64Array` per field is cloned far faster than an array of objects). A null `askEst` /
 * `bidEst` travels as NaN.
 */
import type { Bar } from "../strategy/bars.ts";

const FIELDS = [
  "ts",
  "open",
  "high",
  "low",
  "close",
  "volume",
  "quoteVolume",
  "tradeCount",
  "buyVolume",
  "sellVolume",
  "askEst",
  "bidEst",
] as const;

/** One market's bars, field by field. */
export interface BarColumns {
  market: string;
  length: number;
  columns: Record<(typeof FIELDS)[number], Float64Array>;
}

/** Packs `bars` (all of `market`). */
export function toColumns(market: string, bars: readonly Bar[]): BarColumns {
  const columns = Object.fromEntries(
    FIELDS.map((f) => [f, new Float64Array(bars.length)]),
  ) as BarColumns["columns"];
  bars.forEach((b, i) => {
    for (const f of FIELDS) columns[f][i] = b[f] ?? NaN;
  });
  return { market, length: bars.length, columns };
}

/** Unpacks columns into bars (askEst / bidEst null where NaN). */
export function fromColumns(c: BarColumns): Bar[] {
  const k = c.columns;
  const out: Bar[] = new Array(c.length);
  for (let i = 0; i < c.length; i++) {
    const ask = k.askEst[i]!;
    const bid = k.bidEst[i]!;
    out[i] = {
      market: c.market,
      ts: k.ts[i]!,
      open: k.open[i]!,
      high: k.high[i]!,
      low: k.low[i]!,
      close: k.close[i]!,
      volume: k.volume[i]!,
      quoteVolume: k.quoteVolume[i]!,
      tradeCount: k.tradeCount[i]!,
      buyVolume: k.buyVolume[i]!,
      sellVolume: k.sellVolume[i]!,
      askEst: Number.isNaN(ask) ? null : ask,
      bidEst: Number.isNaN(bid) ? null : bid,
    };
  }
  return out;
}
