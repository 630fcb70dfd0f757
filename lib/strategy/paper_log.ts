/**
 * @module The log line of a paper trade, exactly as the original system printed it:
 * `PaperTrade EXIT(EV_BAD): price=99203155 qty=0.00200866 fee=99.63 pnl=-431.79 hold=81s` and
 * `PaperTrade ENTER: price=99569000 qty=0.00200865 fee=100.00`.
 *
 * Price as the market prints it (no exponent, no trailing zeros), qty with 8 decimals, fee and pnl
 * with 2 decimals (half away from zero on the printed decimal value).
 */
import type { PaperEvent } from "./policy.ts";

/**
 * The log message of a paper trade event.
 *
 * @example
 * ```ts
 * formatPaperTrade({ action: "EXIT_LONG", market: "KRW-BTC", ts: 0, price: 99203155,
 *   qty: 0.00200866, fee: 99.6297, pnl: -431.79, holdSec: 81, reason: "EV_BAD", entryTs: 0,
 *   entryPrice: 99400000, ev: -0.3 });
 * // "PaperTrade EXIT(EV_BAD): price=99203155 qty=0.00200866 fee=99.63 pnl=-431.79 hold=81s"
 * ```
 */
export function formatPaperTrade(event: PaperEvent): string {
  const common = `price=${formatPrice(event.price)} qty=${fixed(event.qty, 8)} fee=${
    fixed(event.fee, 2)
  }`;
  if (event.action === "ENTER_LONG") return `PaperTrade ENTER: ${common}`;
  return `PaperTrade EXIT(${event.reason}): ${common} pnl=${
    fixed(event.pnl, 2)
  } hold=${event.holdSec}s`;
}

/** A price as an exchange prints it: plain decimal, at most 8 decimals, no trailing zeros. */
export function formatPrice(price: number): string {
  const s = fixed(price, 8);
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/**
 * `x` with exactly `digits` decimals, rounded half away from zero on its shortest decimal text
 * (so 1.005 gives "1.01", where `toFixed` gives "1.00"), never "-0.00".
 */
export function fixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return String(x);
  const negative = x < 0;
  const m = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(Math.abs(x)));
  if (!m) return x.toFixed(digits);
  // Exact decimal digits of |x|: units / 10^scale.
  const frac = m[2] ?? "";
  let scale = frac.length - Number(m[3] ?? 0);
  let units = BigInt((m[1] ?? "0") + frac);
  if (scale < 0) {
    units *= 10n ** BigInt(-scale);
    scale = 0;
  }
  let scaled: bigint;
  if (scale <= digits) {
    scaled = units * 10n ** BigInt(digits - scale);
  } else {
    const div = 10n ** BigInt(scale - digits);
    scaled = units / div;
    if ((units % div) * 2n >= div) scaled += 1n;
  }
  let text = scaled.toString().padStart(digits + 1, "0");
  if (digits > 0) text = `${text.slice(0, -digits)}.${text.slice(-digits)}`;
  return negative && scaled !== 0n ? `-${text}` : text;
}
