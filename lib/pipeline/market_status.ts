/**
 * @module The market-status poller: one `GET /v1/market/all?is_details=true` (warning and caution
 * flags of every market, §6) and one `GET /v1/ticker` for the configured markets (`market_state`,
 * `delisting_date`) per pass, written to `upbit_market_status`. Two quotation requests per pass,
 * far inside the 10/s of the `market` and `ticker` groups. Run by the feed actor.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { type MarketStatusRow, upsertMarketStatus } from "../store/market_status.ts";

/** Options of {@linkcode MarketStatusPoller}. */
export interface MarketStatusPollerOptions {
  sql: Sql;
  rest: UpbitRest;
  /** The markets upbot trades. */
  markets: readonly string[];
  log: Logger;
}

/** Reads the warnings and listing state of the configured markets and stores them. */
export class MarketStatusPoller {
  readonly #options: MarketStatusPollerOptions;
  /** Markets whose refusal-relevant status was last logged, to log changes only. */
  readonly #lastLogged = new Map<string, string>();

  constructor(options: MarketStatusPollerOptions) {
    this.#options = options;
  }

  /**
   * One pass: reads and stores the status of every configured market. A market that
   * `market/all` no longer lists is stored as `UNLISTED`.
   *
   * @throws {UpbitError} when a call fails (nothing is written then).
   */
  async pollOnce(signal?: AbortSignal): Promise<MarketStatusRow[]> {
    const { rest, markets } = this.#options;
    const { data: listed } = await rest.getMarkets({ isDetails: true }, { signal });
    const byMarket = new Map(listed.map((m) => [m.market, m]));
    const present = markets.filter((m) => byMarket.has(m));
    // A ticker request naming an unlisted market fails as a whole: ask only for listed ones.
    const tickers = present.length === 0
      ? []
      : (await rest.getTicker({ markets: present }, { signal })).data;
    const tickerOf = new Map(tickers.map((t) => [t.market, t]));
    const rows: MarketStatusRow[] = markets.map((market) => {
      const info = byMarket.get(market);
      if (!info) {
        return {
          market,
          warning: false,
          caution: {},
          marketState: "UNLISTED",
          delistingDate: null,
        };
      }
      const ticker = tickerOf.get(market);
      return {
        market,
        warning: info.market_event?.warning ?? false,
        caution: info.market_event?.caution ?? {},
        marketState: ticker?.market_state ?? null,
        delistingDate: ticker?.delisting_date ?? null,
      };
    });
    await upsertMarketStatus(this.#options.sql, rows);
    this.#logChanges(rows);
    return rows;
  }

  #logChanges(rows: readonly MarketStatusRow[]): void {
    for (const r of rows) {
      const cautions = Object.entries(r.caution).filter(([, on]) => on).map(([name]) => name);
      const key = JSON.stringify([r.warning, cautions, r.marketState, r.delistingDate]);
      const before = this.#lastLogged.get(r.market);
      if (before === key) continue;
      this.#lastLogged.set(r.market, key);
      const flagged = r.warning || cautions.length > 0 || r.delistingDate !== null ||
        (r.marketState !== null && r.marketState !== "ACTIVE");
      if (!flagged && before === undefined) continue;
      this.#options.log[flagged ? "warn" : "info"](
        flagged ? "market under warning, caution or delisting" : "market status back to normal",
        {
          market: r.market,
          warning: r.warning,
          caution: cautions,
          market_state: r.marketState,
          delisting_date: r.delistingDate,
        },
      );
    }
  }
}
