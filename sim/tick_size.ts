/**
 * @module The KRW-market price unit (tick size) in force since 2025-07-31 (§8.3), and helpers that
 * keep prices on that grid without floating-point noise.
 */

/**
 * [lower bound, tick] rows of §8.3, highest band first, as exact decimal text; below the last
 * band the tick is 0.00000001. The one copy of the table: the exchange's exact price rules
 * (`_price_rules.ts`) read it too.
 */
export const KRW_TICK_BANDS: ReadonlyArray<readonly [lower: string, tick: string]> = [
  ["1000000", "1000"],
  ["500000", "500"],
  ["100000", "100"],
  ["50000", "50"],
  ["10000", "10"],
  ["5000", "5"],
  ["100", "1"],
  ["10", "0.1"],
  ["1", "0.01"],
  ["0.1", "0.001"],
  ["0.01", "0.0001"],
  ["0.001", "0.00001"],
  ["0.0001", "0.000001"],
  ["0.00001", "0.0000001"],
];

const KRW_TICKS = KRW_TICK_BANDS.map(([lower, tick]) => [Number(lower), Number(tick)] as const);

/** Tick size of a KRW-market price (the band is chosen by the price itself). */
export function krwTickSize(price: number): number {
  for (const [lower, tick] of KRW_TICKS) if (price >= lower) return tick;
  return 0.00000001;
}

/** Decimal places of a tick (e.g. 0.001 -> 3, 1000 -> 0). */
export function tickDecimals(tick: number): number {
  return tick >= 1 ? 0 : Math.round(-Math.log10(tick));
}

/** The tick as Upbit prints it in `/v1/orderbook/instruments` (a string, e.g. `"0.001"`). */
export function tickText(tick: number): string {
  return tick.toFixed(tickDecimals(tick));
}

/** Rounds `value` to a multiple of `tick` and strips floating-point noise. */
export function snapToTick(value: number, tick: number, mode: "floor" | "ceil" | "round"): number {
  const units = value / tick;
  // A relative epsilon keeps 0.30000000000000004 / 0.1 from becoming 4 under ceil.
  const eps = 1e-9;
  const n = mode === "floor"
    ? Math.floor(units + eps)
    : mode === "ceil"
    ? Math.ceil(units - eps)
    : Math.round(units);
  // A whole tick gives a whole price, exact as it is (the bands' prices stay far below 2^53).
  if (tick >= 1) return n * tick;
  return Number((n * tick).toFixed(tickDecimals(tick)));
}

/** True when `price` lies on the §8.3 grid of its own band. */
export function isOnKrwGrid(price: number): boolean {
  const tick = krwTickSize(price);
  return snapToTick(price, tick, "round") === price;
}

/** The next price one tick above `price` on the KRW grid. */
export function tickUp(price: number): number {
  return snapToTick(price + krwTickSize(price), krwTickSize(price + krwTickSize(price)), "round");
}

/** The next price one tick below `price` on the KRW grid (the band below may have a smaller tick). */
export function tickDown(price: number): number {
  const tick = krwTickSize(price * (1 - 1e-9));
  return snapToTick(price - tick, tick, "round");
}
