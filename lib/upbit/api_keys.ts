/**
 * @module Upbit API keys and their expiry: the schema of `GET /v1/api_keys` (each key of the
 * account with its `access_key` and `expire_at`; keys are valid one year, §2.4) and the pure
 * "days to expiry" arithmetic behind the smoke check and the account actor's warning.
 */
import { z } from "zod";

/** `GET /v1/api_keys` element. `expire_at` is ISO-8601 with an offset. */
export const ApiKey = z.object({
  access_key: z.string(),
  expire_at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not an ISO-8601 time"),
});
/** One API key of the account. */
export type ApiKey = z.output<typeof ApiKey>;

/** `GET /v1/api_keys` response. */
export const ApiKeys = z.array(ApiKey);

const DAY_MS = 86_400_000;

/** Warn this many days (or fewer) before a key expires. */
export const KEY_EXPIRY_WARN_DAYS = 14;

/**
 * Whole days left until `expireAt`, rounded down: 0 on the last day, negative once expired.
 *
 * @throws {RangeError} when `expireAt` is not a readable time.
 *
 * @example
 * ```ts
 * daysToExpiry("2026-01-15T00:00:00Z", Date.parse("2026-01-01T12:00:00Z")); // 13
 * ```
 */
export function daysToExpiry(expireAt: string, nowMs: number): number {
  const at = Date.parse(expireAt);
  if (Number.isNaN(at)) {
    throw new RangeError(
      `Cannot compute days to expiry as 'expireAt' is not a time: current value is ${
        JSON.stringify(expireAt)
      }`,
    );
  }
  return Math.floor((at - nowMs) / DAY_MS);
}

/** The key in use among `keys`, or undefined when the list does not show it. */
export function keyInUse(keys: readonly ApiKey[], accessKey: string): ApiKey | undefined {
  return keys.find((k) => k.access_key === accessKey);
}

/** Whether a key with `days` left must be warned about (within {@linkcode KEY_EXPIRY_WARN_DAYS}). */
export function expiresSoon(days: number): boolean {
  return days <= KEY_EXPIRY_WARN_DAYS;
}

/**
 * Says when a warning is due: at most once per `intervalMs` (a day by default), and only while the
 * key expires soon. Holds the time of the last warning.
 */
export class ExpiryWarnings {
  #lastWarnedMs = Number.NEGATIVE_INFINITY;
  readonly #intervalMs: number;

  constructor(intervalMs = DAY_MS) {
    this.#intervalMs = intervalMs;
  }

  /** True when a key `days` from expiry must be warned about now (and records it). */
  due(days: number, nowMs: number): boolean {
    if (!expiresSoon(days) || nowMs - this.#lastWarnedMs < this.#intervalMs) return false;
    this.#lastWarnedMs = nowMs;
    return true;
  }
}
