/**
 * @module The account actor's logic: `GET /v1/accounts` -> `upbit_account_snapshots` (one row per
 * currency per poll) and `live_positions` (one row per traded market: KRW and base balances,
 * average buy price, FLAT or LONG); and {@linkcode KeyExpiryWatch}, the warning before the key
 * expires.
 */
import type { Client } from "../db.ts";
import type { Logger } from "../log.ts";
import type { Account } from "../upbit/schemas.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { daysToExpiry, ExpiryWarnings, keyInUse } from "../upbit/api_keys.ts";
import { MIN_ORDER_KRW } from "../execution/executor.ts";

/** Options of {@linkcode AccountSync}. */
export interface AccountSyncOptions {
  sql: Client;
  rest: UpbitRest;
  markets: readonly string[];
  log: Logger;
  now?: () => number;
}

/** A position as derived from the balances. */
export interface DerivedPosition {
  symbol: string;
  krwBalance: string;
  baseBalance: string;
  baseLocked: string;
  avgBuyPrice: string;
  status: "FLAT" | "LONG";
}

/**
 * Derives each market's position. LONG when the base holding (available + locked) is worth at
 * least Upbit's minimum order at `prices[symbol]` (else at the average buy price): dust below the
 * minimum cannot be sold, so it counts as FLAT.
 */
export function derivePositions(
  accounts: readonly Account[],
  markets: readonly string[],
  prices: Readonly<Record<string, number>>,
): DerivedPosition[] {
  const byCurrency = new Map(accounts.map((a) => [a.currency, a]));
  const krw = byCurrency.get("KRW")?.balance ?? "0";
  return markets.map((symbol) => {
    const base = symbol.slice(symbol.indexOf("-") + 1);
    const a = byCurrency.get(base);
    const balance = a?.balance ?? "0";
    const locked = a?.locked ?? "0";
    const avg = a?.avg_buy_price ?? "0";
    const price = prices[symbol] ?? Number(avg);
    const value = (Number(balance) + Number(locked)) * price;
    return {
      symbol,
      krwBalance: krw,
      baseBalance: balance,
      baseLocked: locked,
      avgBuyPrice: avg,
      status: value >= MIN_ORDER_KRW ? "LONG" : "FLAT",
    };
  });
}

/** Mirrors the exchange account into the database. */
export class AccountSync {
  #o: AccountSyncOptions;
  #now: () => number;

  constructor(options: AccountSyncOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** One poll: stores the balances and the derived positions in one transaction. */
  async pollOnce(): Promise<DerivedPosition[]> {
    const { data: accounts } = await this.#o.rest.getAccounts();
    const ts = new Date(this.#now());
    const latest = await this.#o.sql<{ symbol: string; close: string }[]>`
      select distinct on (symbol) symbol, close from market_1s
      where symbol in ${this.#o.sql(this.#o.markets)}
      order by symbol, ts desc`;
    const prices = Object.fromEntries(latest.map((r) => [r.symbol, Number(r.close)]));
    const positions = derivePositions(accounts, this.#o.markets, prices);
    await this.#o.sql.begin(async (tx) => {
      if (accounts.length > 0) {
        const rows = accounts.map((a) => ({
          ts,
          currency: a.currency,
          balance: a.balance,
          locked: a.locked,
          avg_buy_price: a.avg_buy_price,
          unit_currency: a.unit_currency,
        }));
        await tx`insert into upbit_account_snapshots ${tx(rows)}`;
      }
      for (const p of positions) {
        await tx`
          insert into live_positions (symbol, ts, krw_balance, base_balance, base_locked,
                                      avg_buy_price, position_status)
          values (${p.symbol}, ${ts}, ${p.krwBalance}, ${p.baseBalance}, ${p.baseLocked},
                  ${p.avgBuyPrice}, ${p.status})
          on conflict (symbol) do update set ts = excluded.ts,
            krw_balance = excluded.krw_balance, base_balance = excluded.base_balance,
            base_locked = excluded.base_locked, avg_buy_price = excluded.avg_buy_price,
            position_status = excluded.position_status, updated_at = now()`;
      }
    });
    return positions;
  }
}

/** Options of {@linkcode KeyExpiryWatch}. */
export interface KeyExpiryWatchOptions {
  rest: UpbitRest;
  /** The key in use (its entry in `GET /v1/api_keys`). */
  accessKey: string;
  log: Logger;
  now?: () => number;
}

/**
 * Warns (log warn, at most once a day) while the key in use expires within
 * `KEY_EXPIRY_WARN_DAYS` (14) days: an expired key stops every order and exit.
 */
export class KeyExpiryWatch {
  readonly #o: KeyExpiryWatchOptions;
  readonly #warnings = new ExpiryWarnings();

  constructor(options: KeyExpiryWatchOptions) {
    this.#o = options;
  }

  /**
   * Reads `GET /v1/api_keys` and warns when due. Returns the days to expiry, or null when the list
   * does not show the key in use.
   *
   * @throws {UpbitError} when the call fails.
   */
  async check(): Promise<number | null> {
    const { data } = await this.#o.rest.getApiKeys();
    const key = keyInUse(data, this.#o.accessKey);
    if (!key) return null;
    const now = (this.#o.now ?? Date.now)();
    const days = daysToExpiry(key.expire_at, now);
    if (this.#warnings.due(days, now)) {
      this.#o.log.warn(`the Upbit key expires in ${days} days: issue a new one`, {
        expire_at: key.expire_at,
        days_to_expiry: days,
      });
    }
    return days;
  }
}
