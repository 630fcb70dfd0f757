/**
 * @module Re-export of `lib/backoff.ts`, kept only because `lib/upbit/rest.ts` and
 * `lib/execution/executor.ts` import it and are being edited on other branches right now.
 * New code imports `lib/backoff.ts`; remove this file once those imports are switched.
 */
export { backoffDelayMs, type BackoffOptions, sleep } from "../backoff.ts";
