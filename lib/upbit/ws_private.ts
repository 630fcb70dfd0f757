/**
 * @module `UpbitPrivateWs`: Upbit's private stream (`/websocket/v1/private`, §7.8), `myOrder` and
 * `myAsset` as typed events. The JWT (`access_key` + `nonce`, HS512) goes in the `Authorization`
 * header of every (re)connect; Deno's `WebSocket` accepts `{ headers }`.
 *
 * Amounts arrive as long JSON numbers; they are read from the frame text exactly and kept as
 * decimal strings. The stream has no snapshot and no replay: after `onReconnect`, resync orders
 * and balances over REST.
 */
import { z } from "zod";
import { createLogger, type Logger } from "../log.ts";
import { signToken } from "./_jwt.ts";
import { ReconnectingSocket } from "./_ws_base.ts";
import type { BackoffOptions } from "../backoff.ts";
import { UpbitWsAuthError } from "./errors.ts";
import { UpbitRequestBudget } from "./rate_limiter.ts";
import { type Decimal, DecimalString, parseJsonExactDecimals } from "./schemas.ts";

/** A change of one of our orders (§7.8 myOrder). Side and types use the REST vocabulary. */
export interface MyOrderEvent {
  readonly type: "myOrder";
  readonly market: string;
  readonly uuid: string;
  readonly side: "bid" | "ask";
  readonly ordType: string;
  /** `wait`, `watch`, `trade` (a fill happened), `done`, `cancel`, `prevented`. */
  readonly state: "wait" | "watch" | "trade" | "done" | "cancel" | "prevented";
  readonly tradeUuid: string | null;
  /** Order price, or the fill price when `state` is `trade`. */
  readonly price: Decimal | null;
  readonly avgPrice: Decimal | null;
  /** Order volume, or the fill volume when `state` is `trade`. */
  readonly volume: Decimal | null;
  readonly remainingVolume: Decimal | null;
  readonly executedVolume: Decimal;
  readonly tradesCount: number;
  readonly reservedFee: Decimal | null;
  readonly remainingFee: Decimal | null;
  readonly paidFee: Decimal | null;
  readonly locked: Decimal | null;
  readonly executedFunds: Decimal | null;
  readonly tradeFee: Decimal | null;
  readonly isMaker: boolean | null;
  readonly identifier: string | null;
  readonly timeInForce: string | null;
  readonly tradeTimestampMs: number | null;
  readonly orderTimestampMs: number | null;
  readonly timestampMs: number;
}

/** A balance change (§7.8 myAsset): the assets it lists. */
export interface MyAssetEvent {
  readonly type: "myAsset";
  readonly assetUuid: string | null;
  readonly assets: readonly { currency: string; balance: Decimal; locked: Decimal }[];
  readonly assetTimestampMs: number | null;
  readonly timestampMs: number;
}

const Dec = DecimalString.nullish().transform((v) => v ?? null);

const MyOrderFrame = z.object({
  type: z.literal("myOrder"),
  code: z.string(),
  uuid: z.string(),
  ask_bid: z.enum(["ASK", "BID"]),
  order_type: z.string(),
  state: z.enum(["wait", "watch", "trade", "done", "cancel", "prevented"]),
  trade_uuid: z.string().nullish(),
  price: Dec,
  avg_price: Dec,
  volume: Dec,
  remaining_volume: Dec,
  executed_volume: DecimalString,
  trades_count: z.number().int(),
  reserved_fee: Dec,
  remaining_fee: Dec,
  paid_fee: Dec,
  locked: Dec,
  executed_funds: Dec,
  trade_fee: Dec,
  is_maker: z.boolean().nullish(),
  identifier: z.string().nullish(),
  time_in_force: z.string().nullish(),
  trade_timestamp: z.number().nullish(),
  order_timestamp: z.number().nullish(),
  timestamp: z.number(),
});

const MyAssetFrame = z.object({
  type: z.literal("myAsset"),
  asset_uuid: z.string().nullish(),
  assets: z.array(
    z.object({ currency: z.string(), balance: DecimalString, locked: DecimalString }),
  ),
  asset_timestamp: z.number().nullish(),
  timestamp: z.number(),
});

/** Options of {@linkcode UpbitPrivateWs}. */
export interface UpbitPrivateWsOptions {
  /** e.g. `wss://api.upbit.com/websocket/v1/private` */
  url: string;
  accessKey: string;
  secretKey: string;
  /** Subscribe to `myOrder` (limit to `orderCodes` markets; omitted = all). @default {true} */
  myOrder?: boolean;
  orderCodes?: readonly string[];
  /** Subscribe to `myAsset`. @default {true} */
  myAsset?: boolean;
  /**
   * The exchange REST client's rate limiter (`UpbitRest.rateLimiter` of the same key): an upgrade
   * with a token counts per pocket (§3.1), so its ban holds the connection attempts, and a 418 at
   * the upgrade is recorded there (stopping the REST calls too). @default {a budget of its own}
   */
  rateLimiter?: UpbitRequestBudget;
  onOrder?: (event: MyOrderEvent) => void;
  onAsset?: (event: MyAssetEvent) => void;
  /** After every reconnect: events may have been missed, resync over REST. */
  onReconnect?: () => void;
  /**
   * Connection changes: true after each open (the first included), false after each unexpected
   * drop and after an in-band credentials refusal (the open connection is then closed for good).
   * A refused reconnect reports nothing new: the stream stays lost until the next true.
   */
  onConnection?: (connected: boolean) => void;
  /**
   * The server refused the credentials, at the upgrade (HTTP 401/403) or in-band
   * (`INVALID_AUTH`): the client has stopped for good (logged once, here). Called once.
   */
  onAuthError?: (error: UpbitWsAuthError) => void;
  /** @default {30000} */
  keepaliveMs?: number;
  /** @default {2 * keepaliveMs + 10000} */
  staleAfterMs?: number;
  /** @default {{ baseMs: 500, maxMs: 30000, jitter: 0.5 }} */
  reconnect?: BackoffOptions;
  /** @default {createLogger("upbit-ws-private")} */
  logger?: Logger;
}

/** Counters of a {@linkcode UpbitPrivateWs}. */
export interface PrivateWsStats {
  connected: boolean;
  received: number;
  orders: number;
  assets: number;
  malformed: number;
  serverErrors: number;
  reconnects: number;
  authFailed: boolean;
}

/**
 * Private stream client.
 *
 * @example
 * ```ts ignore
 * const ws = new UpbitPrivateWs({ url, accessKey, secretKey, onOrder: (e) => poller.onEvent(e) });
 * ws.start();
 * ```
 */
export class UpbitPrivateWs {
  readonly #options: UpbitPrivateWsOptions;
  readonly #socket: ReconnectingSocket;
  readonly #log: Logger;
  readonly #stats = { received: 0, orders: 0, assets: 0, malformed: 0, serverErrors: 0 };
  #authFailed = false;
  readonly #bans: UpbitRequestBudget;

  /** @throws {TypeError} for a bad URL, missing keys or nothing subscribed. */
  constructor(options: UpbitPrivateWsOptions) {
    if (!/^wss?:\/\/.+\/private$/.test(options.url)) {
      throw new TypeError(
        `Cannot create UpbitPrivateWs as 'url' must be a ws(s) URL ending in /private: current value is ${
          JSON.stringify(options.url)
        }`,
      );
    }
    if (!options.accessKey || !options.secretKey) {
      throw new TypeError(
        "Cannot create UpbitPrivateWs as 'accessKey' and 'secretKey' are required",
      );
    }
    if (options.myOrder === false && options.myAsset === false) {
      throw new TypeError(
        "Cannot create UpbitPrivateWs as neither myOrder nor myAsset is subscribed",
      );
    }
    this.#options = options;
    this.#log = options.logger ?? createLogger("upbit-ws-private");
    this.#bans = options.rateLimiter ?? new UpbitRequestBudget();
    const keepaliveMs = options.keepaliveMs ?? 30_000;
    this.#socket = new ReconnectingSocket({
      url: options.url,
      headers: async () => ({
        Authorization: `Bearer ${await signToken({
          accessKey: options.accessKey,
          secretKey: options.secretKey,
        })}`,
      }),
      subscription: () => this.#subscription(),
      onFrame: (text) => this.#onFrame(text),
      onOpen: (reconnect) => {
        this.#emit(this.#options.onConnection, true);
        if (reconnect) this.#options.onReconnect?.();
      },
      onDrop: () => this.#emit(this.#options.onConnection, false),
      onUpgradeRefused: (status) => {
        if (status === 418 && this.#bans.bannedUntil() === 0) {
          // The pocket is banned (§3.3); Deno hides the refusal's ban length: the budget's default.
          const banMs = this.#bans.onBanned();
          this.#log.error(
            "Upbit refused the private WebSocket upgrade with 418 (banned): no reconnect before the ban ends",
            { ban_ms: banMs },
          );
        }
        if (status !== 401 && status !== 403) return false;
        this.#authRefused(new UpbitWsAuthError("upgrade", "bad or expired keys", status));
        return true;
      },
      notBefore: () => this.#bans.bannedUntil(),
      keepaliveMs,
      staleAfterMs: options.staleAfterMs ?? 2 * keepaliveMs + 10_000,
      reconnect: { baseMs: 500, maxMs: 30_000, jitter: 0.5, ...options.reconnect },
      logger: this.#log,
    });
  }

  /** Connects and subscribes. */
  start(): void {
    this.#socket.start();
  }

  /** Closes the connection now; it reconnects as after any drop (tests). */
  dropConnection(): void {
    this.#socket.dropConnection();
  }

  /** Counters since start. */
  stats(): PrivateWsStats {
    return {
      connected: this.#socket.stats.connected,
      reconnects: this.#socket.stats.reconnects,
      authFailed: this.#authFailed,
      ...this.#stats,
    };
  }

  /** Stops for good. */
  close(): Promise<void> {
    return this.#socket.close();
  }

  #subscription(): string {
    const req: unknown[] = [{ ticket: crypto.randomUUID() }];
    if (this.#options.myOrder !== false) {
      req.push(
        this.#options.orderCodes?.length
          ? { type: "myOrder", codes: [...this.#options.orderCodes] }
          : { type: "myOrder" },
      );
    }
    if (this.#options.myAsset !== false) req.push({ type: "myAsset" }); // codes are forbidden here
    req.push({ format: "DEFAULT" });
    return JSON.stringify(req);
  }

  #malformed(reason: string): void {
    this.#stats.malformed++;
    if (this.#stats.malformed <= 5 || this.#stats.malformed % 1000 === 0) {
      this.#log.warn("malformed private WebSocket frame skipped", {
        reason,
        count: this.#stats.malformed,
      });
    }
  }

  #onFrame(text: string): void {
    this.#stats.received++;
    let msg: unknown;
    try {
      msg = parseJsonExactDecimals(text);
    } catch {
      return this.#malformed("not JSON");
    }
    for (const item of Array.isArray(msg) ? msg : [msg]) this.#onMessage(item);
  }

  #onMessage(msg: unknown): void {
    if (typeof msg !== "object" || msg === null) return this.#malformed("not an object");
    const rec = msg as Record<string, unknown>;
    if (rec.status === "UP") return;
    if ("error" in rec) {
      this.#stats.serverErrors++;
      const err = rec.error as { name?: unknown; message?: unknown } | null;
      if (err?.name === "INVALID_AUTH") {
        // Closing for good skips the socket's onDrop, so the open connection's loss is told here
        // (once: a second refusal frame finds it told).
        const wasUp = !this.#authFailed;
        void this.#socket.close();
        const detail = err.message ? `INVALID_AUTH: ${String(err.message)}` : "INVALID_AUTH";
        this.#authRefused(new UpbitWsAuthError("in_band", detail));
        if (wasUp) this.#emit(this.#options.onConnection, false);
      } else {
        this.#log.warn("private WebSocket error frame", { error: rec.error });
      }
      return;
    }
    if (rec.type === "myOrder") {
      const p = MyOrderFrame.safeParse(rec);
      if (!p.success) return this.#malformed("invalid myOrder");
      const f = p.data;
      this.#stats.orders++;
      this.#emit(this.#options.onOrder, {
        type: "myOrder",
        market: f.code,
        uuid: f.uuid,
        side: f.ask_bid === "BID" ? "bid" : "ask",
        ordType: f.order_type,
        state: f.state,
        tradeUuid: f.trade_uuid ?? null,
        price: f.price,
        avgPrice: f.avg_price,
        volume: f.volume,
        remainingVolume: f.remaining_volume,
        executedVolume: f.executed_volume,
        tradesCount: f.trades_count,
        reservedFee: f.reserved_fee,
        remainingFee: f.remaining_fee,
        paidFee: f.paid_fee,
        locked: f.locked,
        executedFunds: f.executed_funds,
        tradeFee: f.trade_fee,
        isMaker: f.is_maker ?? null,
        identifier: f.identifier ?? null,
        timeInForce: f.time_in_force ?? null,
        tradeTimestampMs: f.trade_timestamp ?? null,
        orderTimestampMs: f.order_timestamp ?? null,
        timestampMs: f.timestamp,
      });
      return;
    }
    if (rec.type === "myAsset") {
      const p = MyAssetFrame.safeParse(rec);
      if (!p.success) return this.#malformed("invalid myAsset");
      const f = p.data;
      this.#stats.assets++;
      this.#emit(this.#options.onAsset, {
        type: "myAsset",
        assetUuid: f.asset_uuid ?? null,
        assets: f.assets,
        assetTimestampMs: f.asset_timestamp ?? null,
        timestampMs: f.timestamp,
      });
      return;
    }
    this.#malformed("unknown type");
  }

  /** Stops for good after an auth refusal: logs once and tells the owner once. */
  #authRefused(error: UpbitWsAuthError): void {
    if (this.#authFailed) return;
    this.#authFailed = true;
    this.#log.error("private WebSocket refused the credentials; not reconnecting", {
      via: error.via,
      http_status: error.httpStatus,
      error: error.message,
    });
    this.#emit(this.#options.onAuthError, error);
  }

  #emit<T>(cb: ((event: T) => void) | undefined, event: T): void {
    if (!cb) return;
    try {
      cb(event);
    } catch (err) {
      this.#log.error("private WebSocket callback failed", { error: String(err) });
    }
  }
}
