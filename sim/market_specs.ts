/**
 * @module The simulated markets: names, realistic starting price levels (KRW, 2025-2026) and the
 * documented parameters of each market's price process (docs/simulator.md, "The market").
 *
 * Every parameter is a level typical of the major KRW markets, not a measurement of one day: the
 * one-minute volatility of 0.05-0.3 %, a spread of one or two ticks, a log-normal trade size with a
 * median of tens of thousands of KRW. The price is a driftless random walk (no edge by
 * construction).
 */

/** Static description of one simulated market. */
export interface MarketSpec {
  /** e.g. `KRW-BTC` */
  code: string;
  koreanName: string;
  englishName: string;
  /** Starting price in KRW. */
  price: number;
  /** Relative share of generated trades (the trade rate of this market = rate × weight / Σ weight). */
  weight: number;
  /** Typical KRW notional of one book level. */
  levelNotional: number;
  /** Standard deviation of the one-minute log return of the mid price (0.001 = 0.1 %). */
  volatility1m: number;
  /** Typical (mean) spread between best ask and best bid, in ticks of the KRW grid (§8.3). */
  spreadTicks: number;
  /** Median KRW notional of one trade (log-normal sizes). */
  medianTradeKrw: number;
  /** Standard deviation of the log of a trade's notional (the width of the heavy right tail). */
  tradeSizeSigma: number;
}

/** The default dozen KRW markets. */
export const DEFAULT_MARKET_SPECS: readonly MarketSpec[] = [
  spec("KRW-BTC", "비트코인", "Bitcoin", 140_000_000, 10, 60_000_000, 0.0008, 2, 100_000),
  spec("KRW-ETH", "이더리움", "Ethereum", 5_000_000, 7, 40_000_000, 0.0012, 2, 80_000),
  spec("KRW-XRP", "리플", "XRP", 3_000, 9, 30_000_000, 0.0015, 1, 60_000),
  spec("KRW-SOL", "솔라나", "Solana", 250_000, 5, 20_000_000, 0.0016, 2, 60_000),
  spec("KRW-DOGE", "도지코인", "Dogecoin", 400, 6, 15_000_000, 0.002, 1, 40_000),
  spec("KRW-ADA", "에이다", "Cardano", 1_000, 3, 8_000_000, 0.0018, 1, 40_000),
  spec("KRW-TRX", "트론", "TRON", 450, 2, 6_000_000, 0.0015, 1, 40_000),
  spec("KRW-AVAX", "아발란체", "Avalanche", 35_000, 2, 6_000_000, 0.002, 2, 40_000),
  spec("KRW-LINK", "체인링크", "Chainlink", 25_000, 2, 6_000_000, 0.0018, 2, 40_000),
  spec("KRW-DOT", "폴카닷", "Polkadot", 6_000, 1.5, 4_000_000, 0.002, 1, 30_000),
  spec("KRW-SHIB", "시바이누", "Shiba Inu", 0.0185, 2, 5_000_000, 0.0025, 1, 30_000),
  spec("KRW-BTT", "비트토렌트", "BitTorrent", 0.00089, 1, 2_000_000, 0.003, 1, 20_000),
];

function spec(
  code: string,
  koreanName: string,
  englishName: string,
  price: number,
  weight: number,
  levelNotional: number,
  volatility1m: number,
  spreadTicks: number,
  medianTradeKrw: number,
): MarketSpec {
  return {
    code,
    koreanName,
    englishName,
    price,
    weight,
    levelNotional,
    volatility1m,
    spreadTicks,
    medianTradeKrw,
    tradeSizeSigma: 1.3,
  };
}

/** Default market codes. */
export const DEFAULT_MARKETS: readonly string[] = DEFAULT_MARKET_SPECS.map((s) => s.code);

/** The spec of `code`; unknown codes get a plausible made-up level derived from `seedValue`. */
export function specFor(code: string, seedValue: number): MarketSpec {
  const known = DEFAULT_MARKET_SPECS.find((s) => s.code === code);
  if (known) return known;
  const base = code.split("-")[1] ?? code;
  // 10 .. 100,000 KRW, stable for a given code and seed.
  let h = seedValue | 0;
  for (const ch of code) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  const exponent = 1 + ((h >>> 0) % 5);
  return spec(code, base, base, 10 ** exponent * 1.5, 1, 3_000_000, 0.002, 1, 30_000);
}
