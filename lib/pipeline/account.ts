/**
 * @module The account actor's logic: `GET /v1/accounts` -> `upbit_account_snapshots` (one row per
 * currency per poll) and `live_positions` (one row per configured market and per market of the
 * position ledger: the exchange's KRW and coin balances beside upbot's own position, which
 * comes from the ledger, never from the balances); and {@linkcode KeyExpiryWatch}, the warning
 * before the key expires.
 */
import type { Client } from "../db/connect.ts";
import { dec, formatDec, ZERO } from "../decimal.ts";
import type { Logger } from "../log.ts";
import type { Account } from "../upbit/schemas.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { type LedgerPosition, ledgerPositions } from "../execution/position_ledger.ts";
import { daysToExpiry, ExpiryWarnings, keyInUse } from "../upbit/api_keys.ts";

/** Options of {@linkcode AccountSync}. */
export interface AccountSyncOptions {
  sql: Client;
  rest: UpbitRest;
  markets: readonly string[];
  log: Logger;
  now?: () => number;
  /**
   * Whether `GET /v1/accounts` answered: false when the call failed (no answer or an error
   * status), true when it succeeded. The reconciliation gate watches the REST connection by it.
   */
  onRestResult?: (ok: boolean) => void;
}

/** A `live_positions` row: the account's balances and upbot's position in one market. */
export interface DerivedPosition {
  symbol: string;
  /** The exchange's available KRW. */
  krwBalance: string;
  /** The exchange's available coin (the whole account, the owner's coins included). */
  baseBalance: string;
  baseLocked: string;
  /** The exchange's average buy price of the coin (the whole account). */
  avgBuyPrice: string;
  /** What upbot owns: the ledger's open volume (0 when the ledger is flat or below zero). */
  ownedVolume: string;
  /** The ledger's cost basis per coin; null when flat. */
  entryPrice: string | null;
  /** LONG exactly when upbot owns a volume above zero. */
  status: "FLAT" | "LONG";
}

/**
 * One row per market of `markets` and per market of the ledger (a position is an obligation even
 * after its market leaves the configuration, and its row turns FLAT once closed). The position is
 * the ledger's: coins the owner holds that upbot did not buy leave a market FLAT.
 */
export function derivePositions(
  accounts: readonly Account[],
  markets: readonly string[],
  ledger: readonly LedgerPosition[],
): DerivedPosition[] {
  const byCurrency = new Map(accounts.map((a) => [a.currency, a]));
  const byMarket = new Map(ledger.map((p) => [p.symbol, p]));
  const krw = byCurrency.get("KRW")?.balance ?? "0";
  const symbols = [...new Set([...markets, ...ledger.map((p) => p.symbol)])].sort();
  return symbols.map((symbol) => {
    const a = byCurrency.get(symbol.slice(symbol.indexOf("-") + 1));
    const p = byMarket.get(symbol);
    const owned = p && dec(p.openVolume) > ZERO ? dec(p.openVolume) : ZERO;
    return {
      symbol,
      krwBalance: krw,
      baseBalance: a?.balance ?? "0",
      baseLocked: a?.locked ?? "0",
      avgBuyPrice: a?.avg_buy_price ?? "0",
      ownedVolume: formatDec(owned),
      entryPrice: owned > ZERO ? p?.avgEntryPrice ?? null : null,
      status: owned > ZERO ? "LONG" : "FLAT",
    };
  });
}

/** Mirrors the exchange account into the database. */
export class AccountSync {
  #options: AccountSyncOptions;
  #now: () => number;

  constructor(options: AccountSyncOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * One poll: stores the balances and the positions in one transaction, the positions read from
   * the ledger inside it. Reports the REST call's outcome to `onRestResult`.
   */
  async pollOnce(): Promise<DerivedPosition[]> {
    let accounts: Account[];
    try {
      ({ data: accounts } = await this.#options.rest.getAccounts());
    } catch (err) {
      this.#options.onRestResult?.(false);
      throw err;
    }
    // Only the REST call counts: a failing database write is not a lost exchange connection.
    this.#options.onRestResult?.(true);
    const ts = new Date(this.#now());
    return await this.#options.sql.begin(async (tx) => {
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
      const positions = derivePositions(accounts, this.#options.markets, await ledgerPositions(tx));
      for (const p of positions) {
        await tx`
          insert into live_positions (symbol, ts, krw_balance, base_balance, base_locked,
                                      avg_buy_price, owned_volume, entry_price, position_status)
          values (${p.symbol}, ${ts}, ${p.krwBalance}, ${p.baseBalance}, ${p.baseLocked},
                  ${p.avgBuyPrice}, ${p.ownedVolume}, ${p.entryPrice}, ${p.status})
          on conflict (symbol) do update set ts = excluded.ts,
            krw_balance = excluded.krw_balance, base_balance = excluded.base_balance,
            base_locked = excluded.base_locked, avg_buy_price = excluded.avg_buy_price,
            owned_volume = excluded.owned_volume, entry_price = excluded.entry_price,
            position_status = excluded.position_status, updated_at = now()`;
      }
      return positions;
    });
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
  readonly #options: KeyExpiryWatchOptions;
  readonly #warnings = new ExpiryWarnings();

  constructor(options: KeyExpiryWatchOptions) {
    this.#options = options;
  }

  /**
   * Reads `GET /v1/api_keys` and warns when due. Returns the days to expiry, or null when the list
   * does not show the key in use.
   *
   * @throws {UpbitError} when the call fails.
   */
  async check(): Promise<number | null> {
    const { data } = await this.#options.rest.getApiKeys();
    const key = keyInUse(data, this.#options.accessKey);
    if (!key) return null;
    const now = (this.#options.now ?? Date.now)();
    const days = daysToExpiry(key.expire_at, now);
    if (this.#warnings.due(days, now)) {
      this.#options.log.warn(`the Upbit key expires in ${days} days: issue a new one`, {
        expire_at: key.expire_at,
        days_to_expiry: days,
      });
    }
    return days;
  }
}
