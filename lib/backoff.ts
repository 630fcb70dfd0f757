/**
 * @module Exponential backoff with jitter, and an abortable sleep: the one place where retry and
 * restart delays are computed (REST retries, WebSocket reconnects, actor restarts, work-loop and
 * alert-webhook retries, order retry times).
 */

/** Options of {@linkcode backoffDelayMs}. */
export interface BackoffOptions {
  /** Delay of attempt 0 before jitter, in ms. @default {500} */
  baseMs?: number;
  /** Cap on the delay before jitter, in ms. @default {30000} */
  maxMs?: number;
  /** Growth factor per attempt. @default {2} */
  multiplier?: number;
  /** Jitter added on top: a uniform share of the delay, 0..1. @default {0.5} */
  jitter?: number;
  /** Random source in [0, 1) (tests pass a fixed one). @default {Math.random} */
  random?: () => number;
}

/**
 * Delay before retry number `attempt` (0-based): `min(maxMs, baseMs * multiplier^attempt)` plus up
 * to `jitter` of that, so that many clients recovering at once do not retry in lockstep. The jitter
 * is added after the cap, so delays at the cap still spread; a caller whose bound must hold with
 * jitter included clamps the result (see `lib/actors/backoff.ts`).
 *
 * @throws {RangeError} when `attempt` is negative or not an integer.
 * @example
 * ```ts
 * backoffDelayMs(3, { baseMs: 100, jitter: 0 }); // 800
 * ```
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(
      `Cannot compute backoff as 'attempt' must be an integer >= 0: current value is ${attempt}`,
    );
  }
  const { baseMs = 500, maxMs = 30_000, multiplier = 2, jitter = 0.5, random = Math.random } =
    options;
  // Growth is bounded so that a huge attempt gives the cap, never Infinity or NaN (0 * Infinity).
  const growth = Math.min(multiplier ** attempt, Number.MAX_VALUE);
  const exp = Math.min(maxMs, baseMs * growth);
  return Math.round(exp + exp * jitter * random());
}

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as `signal` aborts. The timer
 * is always cleared, so tests' sanitizers stay quiet.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
