/**
 * @module A seeded pseudo-random stream (mulberry32): the simulator's ids and fault dice and the
 * crash suite's kill moments, reproducible from a seed.
 */

/** A seeded stream of uniform numbers in [0, 1). */
export type Random = () => number;

/**
 * mulberry32: small, fast, and good enough for ids, dice and test schedules (not for secrets).
 *
 * @example
 * ```ts
 * const random = mulberry32(1);
 * random() === mulberry32(1)(); // true
 * ```
 */
export function mulberry32(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
