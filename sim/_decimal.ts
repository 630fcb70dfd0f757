/** @module The simulator's exact decimals: `lib/decimal.ts`, shared with upbot's position ledger. */
export * from "../lib/decimal.ts";
