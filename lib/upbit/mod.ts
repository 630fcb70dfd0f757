/**
 * @module The Upbit client library: the only code in upbot that knows Upbit's wire format.
 *
 * - {@linkcode UpbitRest}: signed REST with rate-limit discipline and safe order creation.
 * - {@linkcode UpbitPublicWs}: market data stream with reconnect, dedup and gap backfill.
 * - {@linkcode UpbitPrivateWs}: `myOrder` / `myAsset` stream.
 */
export * from "./rest.ts";
export * from "./errors.ts";
export * from "./schemas.ts";
export * from "./rate_limiter.ts";
export * from "./backoff.ts";
export * from "./ws_public.ts";
export * from "./ws_private.ts";
