/**
 * @module One 418 ban known to every actor at once. Upbit bans the IP or the pocket (§3.3), not one
 * client, but each actor has its own `UpbitRest` and rate limiter. A limiter that draws a 418
 * announces the ban's end through this worker's announcer (upbot's actor runtime,
 * `lib/pipeline/runtime.ts`, sends `upbit.ban` to the supervisor, whose policy broadcasts it); the
 * runtime applies a received `upbit.ban` to every limiter registered here ahead of the mailbox, so
 * no other actor sends a request into the ban.
 *
 * The registry is per worker (each actor is its own isolate).
 */
import type { UpbitRequestBudget } from "../upbit/rate_limiter.ts";

const limiters = new Set<UpbitRequestBudget>();
let announcer: ((untilMs: number) => void) | undefined;

/** Sets where this worker's bans are announced (the actor runtime does it at start). */
export function setBanAnnouncer(announce: ((untilMs: number) => void) | undefined): void {
  announcer = announce;
}

/** Tells the other actors about a ban this worker drew (no-op outside an actor). */
export function announceBan(untilMs: number): void {
  announcer?.(untilMs);
}

/**
 * Registers a limiter: it receives every ban announced by other actors. Returns the function that
 * unregisters it. Pair it with `onBan: announceBan` in the limiter's options.
 */
export function shareBans(limiter: UpbitRequestBudget): () => void {
  limiters.add(limiter);
  return () => limiters.delete(limiter);
}

/** Applies a ban announced by another actor to every registered limiter; returns how many took it. */
export function applyBanEverywhere(untilMs: number): number {
  let applied = 0;
  for (const limiter of limiters) if (limiter.applyBan(untilMs)) applied++;
  return applied;
}
