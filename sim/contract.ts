/**
 * @module Internal contract between the simulator's two halves: the market (price generator,
 * quotation REST, public WebSocket, server composition, faults) and the exchange (auth, accounts,
 * orders, matching, accounting, exchange REST, private WebSocket).
 *
 * The market owns prices and prints trades; the exchange matches user orders against the market's
 * book and trades. Neither half knows the other's internals.
 */
import type { Faults } from "./faults.ts";

export type { Faults } from "./faults.ts";

/**
 * An error the simulated exchange answers with (§5.1 envelope): HTTP status and the §5.2 name.
 * Every refusal inside the simulator (authentication, validation, cancel) is one of these.
 */
export interface SimError {
  status: number;
  name: string;
  message: string;
}

/** The outcome of a step that can be refused: the value, or why not. */
export type SimResult<T, E = SimError> = { ok: true; value: T } | { ok: false; error: E };

/** A successful {@linkcode SimResult}. */
export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

/** A refused {@linkcode SimResult} with a {@linkcode SimError}. */
export function refused(status: number, name: string, message: string): {
  ok: false;
  error: SimError;
} {
  return { ok: false, error: { status, name, message } };
}

/** One order as listed by `GET /_sim/orders`. */
export interface SimOrderSummary {
  uuid: string;
  identifier: string | null;
  market: string;
  side: "bid" | "ask";
  ord_type: string;
  state: string;
  executed_volume: string;
}

/**
 * When a `POST /v1/orders` with an identifier arrived at the server (the first time, whatever the
 * answer), as listed by `GET /_sim/receipts`: an observability hook for latency measurements
 * (`bench/decision_to_wire.ts`).
 */
export interface SimReceipt {
  identifier: string;
  /** {@linkcode simClockMs} when the server's handler got the request (headers read). */
  received_at_ms: number;
}

/** How many receipts are kept (the oldest are forgotten first). */
export const MAX_RECEIPTS = 100_000;

/**
 * The simulator's clock for receipts: epoch ms with sub-millisecond resolution
 * (`performance.timeOrigin + performance.now()`), comparable with the same expression in another
 * process on the same machine (`GET /_sim/clock` answers it, to measure the difference).
 */
export function simClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A trade printed by the simulated market. */
export interface SimTrade {
  market: string;
  price: number;
  volume: number;
  side: "ASK" | "BID";
  timestampMs: number;
  /** About 1.7e16 like Upbit's, above 2^53: a bigint, written to JSON as an exact integer. */
  sequentialId: bigint;
}

/** §7.4 `market_state`: a market's listing state. */
export type ListingState = "PREVIEW" | "ACTIVE" | "DELISTED";

/** One price level of the simulated book. */
export interface BookLevel {
  price: number;
  size: number;
}

/** What the exchange needs from the market. Implemented in `sim/market.ts`. */
export interface MarketView {
  /** Every simulated market code, e.g. `KRW-BTC`. */
  markets(): string[];
  /** Top-30 book, best level first on each side. */
  book(market: string): { asks: BookLevel[]; bids: BookLevel[] };
  /** Last trade price. */
  lastPrice(market: string): number;
  /** Listing state (§7.4 `market_state`); only `ACTIVE` markets take orders. */
  listingState(market: string): ListingState;
  /** Called for every printed trade (generated or injected), in sequence order. Returns unsubscribe. */
  onTrade(listener: (trade: SimTrade) => void): () => void;
}

/** What the server composition needs from the exchange. Implemented in `sim/exchange.ts`. */
export interface ExchangeHandler {
  /** True for the authenticated REST paths the exchange answers (`/v1/accounts`, `/v1/orders…`, `/v1/order`). */
  handles(method: string, pathname: string): boolean;
  /** Rate-limit group of an exchange call (§3.1): `default`, `order`, `order-test`, `order-cancel-all`. */
  rateLimitGroup(method: string, pathname: string): string;
  /**
   * Answers one exchange REST request (auth, validation, effects). Faults other than offline markets are
   * applied by the composition around this call, except `burn`: the request is authenticated, then a
   * real create only uses up its identifier (`identifier`, or `new_identifier` of cancel_and_new) and
   * is answered 500 `server_error`; nothing is created or cancelled. `reserved`: a `POST /v1/orders`
   * whose identifier was taken by {@linkcode reserveIdentifier} when it arrived is processed now.
   * `refused`: the composition refused a real create (429, or 418 while banned): the request is
   * authenticated, then only its identifier is used up (nothing is created, no receipt is listed);
   * the answer is for the composition to drop.
   * `arrivedAtMs`: when the server got the request ({@linkcode simClockMs}); a `POST /v1/orders`
   * with an identifier is listed with it in {@linkcode receipts}.
   */
  handle(
    req: Request,
    fault?: "burn" | "reserved" | "refused",
    arrivedAtMs?: number,
  ): Promise<Response>;
  /**
   * Takes the identifier of a create that arrived and is processed later (`create_delay_ms`);
   * false when it is already used (the create is then refused as usual when processed).
   */
  reserveIdentifier(identifier: string): boolean;
  /** Upgrades `/websocket/v1/private` (JWT in `Authorization`), then streams myOrder / myAsset. */
  handlePrivateWebSocket(req: Request): Promise<Response>;
  /** Every order held (for `GET /_sim/orders`). */
  orders(): SimOrderSummary[];
  /** When each `POST /v1/orders` arrived, by identifier (for `GET /_sim/receipts`). */
  receipts(): SimReceipt[];
  /** Closes every private WebSocket now. */
  dropWebSockets(): void;
  /** Stops timers. */
  close(): void;
}

/** Options the composition passes to the exchange. */
export interface ExchangeOptions {
  market: MarketView;
  accessKey: string;
  secretKey: string;
  /** Starting KRW balance. */
  krw: number;
  /** Coins held at start by market (`KRW-BTC` → volume); throws `RangeError` on bad entries. */
  balances?: Record<string, string | number>;
  /** Coins of markets no longer listed, by market (see `SimulatorOptions.delisted`). */
  delisted?: Record<string, string | number>;
  seed: number;
  /**
   * State file (`--state`): loaded at start when it exists (then `krw` and `balances` are ignored;
   * throws `StateFileError` when it is corrupt), rewritten atomically after every change.
   */
  stateFile?: string;
  /** Live fault settings (read on every request; `offline_markets` -> `market_offline`). */
  faults: () => Faults;
  /**
   * Expiry of the key (epoch ms): shown by `GET /v1/api_keys`; from then on REST calls and private
   * WebSocket upgrades signed with it are refused with 401 `expired_access_key`.
   * @default {one year from now}
   */
  apiKeyExpireAtMs?: number;
  /** Private WebSocket idle timeout (§7.9). @default {120_000} */
  wsIdleTimeoutMs?: number;
  /** Interval of `{"status":"UP"}` after a `PING` on the private WebSocket. @default {10_000} */
  wsStatusIntervalMs?: number;
}
