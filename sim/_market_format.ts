/** @module Date and number formats of Upbit's quotation REST and WebSocket messages. */

const KST_OFFSET_MS = 9 * 3_600_000;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** `yyyy-MM-dd` (UTC). */
export function utcDate(ms: number): string {
  return iso(ms).slice(0, 10);
}

/** `HH:mm:ss` (UTC). */
export function utcTime(ms: number): string {
  return iso(ms).slice(11, 19);
}

/** `yyyyMMdd` (UTC). */
export function utcDateCompact(ms: number): string {
  return utcDate(ms).replaceAll("-", "");
}

/** `HHmmss` (UTC). */
export function utcTimeCompact(ms: number): string {
  return utcTime(ms).replaceAll(":", "");
}

/** `yyyyMMdd` (KST). */
export function kstDateCompact(ms: number): string {
  return utcDateCompact(ms + KST_OFFSET_MS);
}

/** `HHmmss` (KST). */
export function kstTimeCompact(ms: number): string {
  return utcTimeCompact(ms + KST_OFFSET_MS);
}

/** Candle time `yyyy-MM-ddTHH:mm:ss` (UTC, no offset). */
export function candleTimeUtc(ms: number): string {
  return iso(ms).slice(0, 19);
}

/** Candle time `yyyy-MM-ddTHH:mm:ss` (KST, no offset). */
export function candleTimeKst(ms: number): string {
  return candleTimeUtc(ms + KST_OFFSET_MS);
}

/** Removes binary floating-point noise (e.g. 0.30000000000000004 -> 0.3). */
export function clean(x: number, decimals = 10): number {
  return Number(x.toFixed(decimals));
}

/** Change against the previous close, as in ticker and trade messages. */
export function changeOf(price: number, prevClose: number): {
  change: "RISE" | "EVEN" | "FALL";
  changePrice: number;
  changeRate: number;
  signedChangePrice: number;
  signedChangeRate: number;
} {
  const signed = clean(price - prevClose);
  const rate = prevClose > 0 ? clean(signed / prevClose) : 0;
  return {
    change: signed > 0 ? "RISE" : signed < 0 ? "FALL" : "EVEN",
    changePrice: Math.abs(signed),
    changeRate: Math.abs(rate),
    signedChangePrice: signed,
    signedChangeRate: rate,
  };
}

/**
 * Parses a candle `to` bound: ISO-8601 with `Z` or an offset, or without one (then UTC), with `T` or
 * a space between date and time. Returns undefined when unparsable.
 */
export function parseToBound(text: string): number | undefined {
  let s = text.trim().replace(" ", "T");
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) s += "T00:00:00";
  if (!/(Z|[+-]\d{2}:?\d{2})$/.test(s)) s += "Z";
  const ms = Date.parse(s);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Marks a bigint inside `JSON.stringify`'s output; the random part keeps real strings apart. */
const BIGINT_TAG = `bigint-${crypto.randomUUID()}:`;
const BIGINT_MARKED = new RegExp(`"${BIGINT_TAG}(-?\\d+)"`, "g");

/**
 * `JSON.stringify` that writes bigints as exact JSON integers (Upbit's `sequential_id` exceeds
 * 2^53 and is a plain JSON number on the wire, §7.5).
 */
export function jsonText(value: unknown): string {
  const text = JSON.stringify(
    value,
    (_key, v) => (typeof v === "bigint" ? BIGINT_TAG + v.toString() : v),
  );
  return text.includes(BIGINT_TAG) ? text.replace(BIGINT_MARKED, "$1") : text;
}

/** A JSON response whose bigints are exact integers (see {@linkcode jsonText}). */
export function jsonResponse(value: unknown, init?: ResponseInit): Response {
  const headers = new Headers(init?.headers);
  headers.set("content-type", "application/json");
  return new Response(jsonText(value), { ...init, headers });
}
