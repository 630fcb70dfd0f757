/**
 * @module Restart delays: exponential backoff with jitter, bounded by a minimum and a maximum
 * (Akka's `BackoffSupervisor` shape; the same curve as std's `exponentialBackoffWithJitter`).
 */

/** Options of {@linkcode restartDelayMs}. */
export interface BackoffOptions {
  /** Delay before the first restart, ms. */
  minDelayMs: number;
  /** Upper bound of every delay, ms. */
  maxDelayMs: number;
  /** Random extra of up to this fraction of the delay (0 = none, 0.2 = up to +20%). */
  jitter: number;
  /** Growth factor per attempt. @default {2} */
  multiplier?: number;
}

/** Throws a `RangeError` in std's sentence shape unless the options are usable. */
export function checkBackoffOptions(options: BackoffOptions): void {
  const { minDelayMs, maxDelayMs, jitter, multiplier = 2 } = options;
  if (!(Number.isFinite(minDelayMs) && minDelayMs >= 0)) {
    throw new RangeError(
      `Cannot back off as 'minDelayMs' must be a non-negative number: current value is ${minDelayMs}`,
    );
  }
  if (!(Number.isFinite(maxDelayMs) && maxDelayMs >= minDelayMs)) {
    throw new RangeError(
      `Cannot back off as 'maxDelayMs' must be >= 'minDelayMs': current value is ${maxDelayMs}`,
    );
  }
  if (!(jitter >= 0 && jitter <= 1)) {
    throw new RangeError(
      `Cannot back off as 'jitter' must be from 0 to 1: current value is ${jitter}`,
    );
  }
  if (!(multiplier >= 1)) {
    throw new RangeError(
      `Cannot back off as 'multiplier' must be >= 1: current value is ${multiplier}`,
    );
  }
}

/**
 * The delay before restart number `attempt + 1` (attempt 0 is the first restart after a
 * stable run): `min(max, minDelayMs * multiplier^attempt)`, plus up to `jitter` of it at
 * random, never more than `maxDelayMs`. The result is always within
 * `[minDelayMs, maxDelayMs]`.
 *
 * @example Usage
 * ```ts
 * restartDelayMs(3, { minDelayMs: 500, maxDelayMs: 30_000, jitter: 0 }); // 4000
 * ```
 */
export function restartDelayMs(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  const { minDelayMs, maxDelayMs, jitter, multiplier = 2 } = options;
  const base = Math.min(maxDelayMs, minDelayMs * multiplier ** Math.max(0, attempt));
  return Math.round(Math.min(maxDelayMs, base * (1 + jitter * random())));
}
