/**
 * @module Exact decimal money for the simulated exchange and upbot's position ledger and closer: a
 * `Dec` is a bigint holding the value scaled by 10^20, so sums of prices (8 dp) × volumes (8 dp) ×
 * fee rates (4 dp) stay exact. Balances, fees and volumes to sell are never computed as floats.
 */

/** A decimal value scaled by 10^{@linkcode DEC_PLACES}. */
export type Dec = bigint;

/** Fractional digits a `Dec` keeps. */
export const DEC_PLACES = 20;
const SCALE = 10n ** BigInt(DEC_PLACES);

/** Zero. */
export const ZERO: Dec = 0n;

const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * Parses a decimal string (`"0.001"`, `"1e-7"`) or a finite number exactly (numbers through their
 * shortest round-trip text). Digits beyond 20 places are truncated. Returns `undefined` when the
 * input is not a plain finite decimal.
 */
export function parseDec(input: string | number): Dec | undefined {
  if (typeof input === "number" && !Number.isFinite(input)) return undefined;
  const text = String(input).trim();
  const m = DECIMAL_RE.exec(text);
  if (!m) return undefined;
  const [, sign, intPart = "", fracPart = "", expPart] = m;
  if (intPart === "" && fracPart === "") return undefined;
  let digits = intPart + fracPart;
  let point = intPart.length + (expPart ? Number(expPart) : 0);
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  }
  if (point > digits.length) digits = digits + "0".repeat(point - digits.length);
  const whole = digits.slice(0, point) || "0";
  const frac = digits.slice(point).slice(0, DEC_PLACES).padEnd(DEC_PLACES, "0");
  const value = BigInt(whole) * SCALE + BigInt(frac);
  return sign === "-" ? -value : value;
}

/** Like {@linkcode parseDec} but throws on bad input (for trusted internal values). */
export function dec(input: string | number): Dec {
  const value = parseDec(input);
  if (value === undefined) throw new RangeError(`Cannot parse decimal: ${String(input)}`);
  return value;
}

/** Number of fractional digits actually used by `value` (0..20). */
export function decimalPlaces(value: Dec): number {
  let frac = (value < 0n ? -value : value) % SCALE;
  if (frac === 0n) return 0;
  let places = DEC_PLACES;
  while (frac % 10n === 0n) {
    frac /= 10n;
    places--;
  }
  return places;
}

/** Plain decimal text without trailing zeros (`"15584.9886"`, `"0"`). */
export function formatDec(value: Dec): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = abs / SCALE;
  const frac = (abs % SCALE).toString().padStart(DEC_PLACES, "0").replace(/0+$/, "");
  return (negative ? "-" : "") + whole.toString() + (frac ? "." + frac : "");
}

/** The value as a JSON number (for WebSocket frames, which carry numbers). */
export function toNumber(value: Dec): number {
  return Number(formatDec(value));
}

/** a × b (exact while the product needs at most 20 places; truncated beyond). */
export function mul(a: Dec, b: Dec): Dec {
  return (a * b) / SCALE;
}

/** a ÷ b truncated toward zero to `places` fractional digits. */
export function divTrunc(a: Dec, b: Dec, places: number): Dec {
  if (b === 0n) throw new RangeError("Cannot divide by zero");
  const unit = 10n ** BigInt(DEC_PLACES - places);
  return ((a * SCALE) / b / unit) * unit;
}

/** `value` truncated toward zero to `places` fractional digits. */
export function truncDec(value: Dec, places: number): Dec {
  const unit = 10n ** BigInt(DEC_PLACES - places);
  return (value / unit) * unit;
}

/** The smaller of two values. */
export function minDec(a: Dec, b: Dec): Dec {
  return a < b ? a : b;
}

/** The larger of two values. */
export function maxDec(a: Dec, b: Dec): Dec {
  return a > b ? a : b;
}
