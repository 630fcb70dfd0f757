/** @module The simulator's exact decimals: {@link ../lib/decimal.ts}, shared with upbot's ledger. */
export * from "../lib/decimal.ts";
