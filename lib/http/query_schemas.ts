/**
 * @module zod schemas of the query parameters shared by the dashboard JSON endpoints: `limit`,
 * `before` (an id to page back from), `from` / `to` (Unix ms), `market`. Every schema is strict,
 * so an unknown parameter is a 400 naming it rather than a filter silently ignored.
 */
import { z } from "zod";
import { MARKET_CODE_PATTERN } from "../domain.ts";

/** A market code such as `KRW-BTC` (the same rule as the `MARKETS` setting). */
export const MarketCode = z.string().regex(
  MARKET_CODE_PATTERN,
  "must be a market code like KRW-BTC",
);

/** A whole number in a query string, within `[min, max]`. */
export function queryInt(min: number, max: number) {
  return z.string().regex(/^-?\d{1,16}$/, "must be a whole number").transform(Number).pipe(
    z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`),
  );
}

/** Unix milliseconds (1970 up to year 2286). */
export const UnixMs = queryInt(0, 9_999_999_999_999);

/** `limit` and `before`, the paging of every list endpoint (newest first). */
export function paging(defaultLimit: number, maxLimit: number) {
  return {
    limit: queryInt(1, maxLimit).default(defaultLimit),
    before: queryInt(1, Number.MAX_SAFE_INTEGER).optional(),
  };
}

/** `from` and `to`, an optional time range (Unix ms, inclusive). */
export const timeRange = { from: UnixMs.optional(), to: UnixMs.optional() };
