/** @module Date and number formats of Upbit's quotation REST and WebSocket messages. */

const KST_OFFSET_MS = 9 * 3_600_000;

/** The last second formatted by {@linkcode iso}: trades come many to a second. */
let isoSecond = NaN;
let isoText = "";

/** ISO-8601 of the whole second holding `ms` (every caller keeps at most the seconds). */
function iso(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoText = new Date(second * 1000).toISOString();
  }
  return isoText;
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

/** `JSON.rawJSON` (in V8, not yet in TypeScript's lib): a value written into JSON as its text. */
const rawJSON = (JSON as unknown as { rawJSON(text: string): object }).rawJSON;

/**
 * A bigint as an exact JSON integer inside {@linkcode jsonText}'s output (Upbit's
 * `sequential_id` exceeds 2^53 and is a plain JSON number on the wire, §7.5). A message built
 * with it instead of the bigint is written without `jsonText`'s slower path.
 */
export function exactInteger(n: bigint): object {
  return rawJSON(n.toString());
}

/** `JSON.stringify` that writes bigints as exact JSON integers (see {@linkcode exactInteger}). */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    // `JSON.stringify` refuses a bigint; the replacer below writes it instead.
    if (!(err instanceof TypeError)) throw err;
  }
  return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? exactInteger(v) : v));
}

/** A JSON response whose bigints are exact integers (see {@linkcode jsonText}). */
export function jsonResponse(value: unknown, init?: ResponseInit): Response {
  const headers = new Headers(init?.headers);
  headers.set("content-type", "application/json");
  return new Response(jsonText(value), { ...init, headers });
}
