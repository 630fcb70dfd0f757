/**
 * @module Exact order-price rules of the simulated exchange: the tick grid per quote currency (KRW
 * table in force since 2025-07-31, §8.3; BTC and USDT markets, §8.4) and the min / max order totals
 * (§8.2), all in {@linkcode Dec} so that grid checks have no floating-point noise.
 */
import { type Dec, dec } from "./_decimal.ts";
import { KRW_TICK_BANDS } from "./tick_size.ts";

type Band = readonly [lower: Dec, tick: Dec];

const bands = (rows: Array<[string, string]>): Band[] => rows.map(([l, t]) => [dec(l), dec(t)]);

/** §8.3 (the table lives in `tick_size.ts`). */
const KRW_BANDS = bands(KRW_TICK_BANDS.map(([lower, tick]) => [lower, tick]));

/** §8.4 USDT market (since 2024-08-19). */
const USDT_BANDS = bands([
  ["10", "0.01"],
  ["1", "0.001"],
  ["0.1", "0.0001"],
  ["0.01", "0.00001"],
  ["0.001", "0.000001"],
  ["0.0001", "0.0000001"],
]);

const SMALLEST_TICK = dec("0.00000001");

/** Price unit of `price` in a market quoted in `quote` (`KRW`, `BTC`, `USDT`). */
export function tickSize(quote: string, price: Dec): Dec {
  const table = quote === "KRW" ? KRW_BANDS : quote === "USDT" ? USDT_BANDS : [];
  for (const [lower, tick] of table) if (price >= lower) return tick;
  return SMALLEST_TICK;
}

/** True when `price` is a positive multiple of its band's tick. */
export function isOnTickGrid(quote: string, price: Dec): boolean {
  return price > 0n && price % tickSize(quote, price) === 0n;
}

const MIN_TOTAL: Record<string, Dec> = {
  KRW: dec("5000"),
  BTC: dec("0.00005"),
  USDT: dec("0.5"),
};
const MAX_TOTAL: Record<string, Dec> = { KRW: dec("1000000000"), BTC: dec("10") };

/** Minimum order total in the quote currency (§8.2). */
export function minTotal(quote: string): Dec {
  return MIN_TOTAL[quote] ?? MIN_TOTAL.KRW!;
}

/** Maximum order total in the quote currency (§8.2); `undefined` when none is documented. */
export function maxTotal(quote: string): Dec | undefined {
  return MAX_TOTAL[quote];
}
