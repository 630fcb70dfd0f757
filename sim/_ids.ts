/**
 * @module Seeded ids for the simulated exchange: a mulberry32 stream and UUID-v4-shaped strings
 * drawn from it, so that a seed reproduces every order and trade uuid.
 */

import { mulberry32, type Random } from "../lib/random.ts";

export { mulberry32, type Random };

/** A generator of UUID-v4-shaped strings (version 4, variant 10xx) from `random`. */
export function uuidGenerator(random: Random): () => string {
  const word = () => Math.floor(random() * 4294967296).toString(16).padStart(8, "0");
  return () => {
    const hex = word() + word() + word() + word();
    const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${
      hex.slice(17, 20)
    }-${hex.slice(20, 32)}`;
  };
}

/** A seeded uuid stream that counts its draws, so a restart can continue it without repeats. */
export interface CountedUuids {
  /** The next uuid. */
  next(): string;
  /** Seed of the stream. */
  readonly seed: number;
  /** Uuids drawn so far (including those skipped on resume). */
  drawn(): number;
}

/** The uuid stream of `seed`, resumed after `skip` draws. */
export function countedUuids(seed: number, skip = 0): CountedUuids {
  const generate = uuidGenerator(mulberry32(seed));
  let drawn = 0;
  const next = () => {
    drawn++;
    return generate();
  };
  while (drawn < skip) next();
  return { next, seed, drawn: () => drawn };
}
