/**
 * @module Restart delays of the supervisor: the curve of `lib/backoff.ts` in the supervisor's
 * option names, bounded by a minimum and a maximum with the jitter included (Akka's
 * `BackoffSupervisor` shape).
 */
import { backoffDelayMs } from "../backoff.ts";

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
  const delay = backoffDelayMs(Math.max(0, Math.floor(attempt)), {
    baseMs: minDelayMs,
    maxMs: maxDelayMs,
    multiplier,
    jitter,
    random,
  });
  // A restart bound is a promise to the operator: the jitter never takes a delay past it.
  return Math.min(Math.round(maxDelayMs), delay);
}
