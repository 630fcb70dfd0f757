/**
 * @module `UpbitRest`: the signed REST client of Upbit (§2–§6). Methods are named after the
 * endpoints; every call yields `{ data, meta }` where meta is `{ http_status, remaining_req,
 * latency_ms }` of the answer (the executor stores it on each attempt).
 *
 * Reads are retried with exponential backoff; order creation never is: `postOrder` returns an
 * explicit `unknown` outcome that must be resolved with {@linkcode UpbitRest.resolveUnknownOrder}.
 */
import type { z } from "zod";
import { MARKET_CODE_PATTERN } from "../domain.ts";
import { createLogger, type Logger } from "../log.ts";
import { ApiKeys } from "./api_keys.ts";
import { bodyHashInput, buildQuery, type QueryParams, signToken } from "./_jwt.ts";
import { backoffDelayMs, type BackoffOptions, sleep } from "./backoff.ts";
import {
  type CallMeta,
  isRetriableUpbitError,
  UpbitApiError,
  UpbitBanActiveError,
  UpbitBanResponseError,
  type UpbitError,
  UpbitRateLimitError,
  UpbitResponseError,
  UpbitTransportError,
} from "./errors.ts";
import {
  parseRemainingReq,
  rateLimitGroupOf,
  UpbitRequestBudget,
  type UpbitRequestBudgetOptions,
} from "./rate_limiter.ts";
import {
  Accounts,
  BatchCancelResult,
  Candles,
  type Decimal,
  ErrorEnvelope,
  MarketInfos,
  Order,
  Orderbooks,
  Orders,
  OrdersChance,
  parseJsonExactIds,
  Tickers,
  TradeTicks,
} from "./schemas.ts";

/** Options of {@linkcode UpbitRest}. */
export interface UpbitRestOptions {
  /** REST base URL without `/v1`. @default {"https://api.upbit.com"} */
  baseUrl?: string;
  /** Needed for exchange (private) endpoints only. */
  accessKey?: string;
  /** Needed for exchange (private) endpoints only; never logged. */
  secretKey?: string;
  /** Per-attempt timeout, headers and body included, in ms. @default {10000} */
  timeoutMs?: number;
  /** Attempts of a read (GET) before giving up. @default {3} */
  maxAttempts?: number;
  /** Backoff between read attempts. @default {{ baseMs: 500, maxMs: 8000, jitter: 0.5 }} */
  backoff?: BackoffOptions;
  /** A limiter to share, or options for this client's own. */
  rateLimiter?: UpbitRequestBudget | UpbitRequestBudgetOptions;
  /** Injectable for tests. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** @default {createLogger("upbit-rest")} */
  logger?: Logger;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts waiting, the request and retries. */
  signal?: AbortSignal;
}

/** Meta of a successful call: the final attempt's meta plus how many attempts were made. */
export interface ResultMeta extends CallMeta {
  /** Attempts made, including the successful one. */
  readonly attempts: number;
}

/** A successful call. */
export interface UpbitResult<T> {
  readonly data: T;
  readonly meta: ResultMeta;
}

/** Body of `POST /v1/orders` (§4.3). Amounts are decimal strings; keys are sent in this order. */
export interface OrderRequest {
  market: string;
  side: "bid" | "ask";
  ord_type: "limit" | "price" | "market" | "best";
  /** Base quantity (limit, market sell, best ask). */
  volume?: Decimal;
  /** Unit price (limit) or quote total (price, best bid). */
  price?: Decimal;
  time_in_force?: "ioc" | "fok" | "post_only";
  /**
   * Self-trade prevention (§4.3). When absent the client sends {@linkcode DEFAULT_SMP_TYPE}
   * (`none` with `post_only`, the only combination Upbit accepts).
   */
  smp_type?: "none" | "cancel_maker" | "cancel_taker" | "reduce";
  /**
   * Client order id, unique forever (≤ 64 chars). Required for real orders: it is how an
   * unknown outcome is resolved.
   */
  identifier: string;
}

/** Body of `POST /v1/orders/test`: the same, identifier optional (use throw-away ones). */
export type TestOrderRequest = Omit<OrderRequest, "identifier"> & { identifier?: string };

/** Why an order creation's outcome is unknown. */
export type UnknownReason =
  | "timeout"
  | "network"
  | "aborted"
  | "server_error"
  | "unreadable_answer";

/**
 * Outcome of `postOrder` / `postOrderTest`. Switch on `kind`; `unknown` means the order may or may
 * not exist: resolve it with `resolveUnknownOrder(identifier)` before anything else, never resend.
 * `test: true` results come from `/v1/orders/test`: their uuids are not real orders.
 */
export type PostOrderResult =
  | {
    readonly kind: "accepted";
    readonly test: boolean;
    readonly order: Order;
    readonly meta: CallMeta;
  }
  | {
    readonly kind: "rejected";
    readonly test: boolean;
    /** Upbit's refusal (4xx, 429), or the local ban refusal (nothing sent). */
    readonly error: UpbitApiError | UpbitBanActiveError;
    readonly meta?: CallMeta;
  }
  | {
    readonly kind: "unknown";
    readonly test: boolean;
    readonly reason: UnknownReason;
    readonly identifier: string | undefined;
    readonly error: UpbitError;
    readonly meta?: CallMeta;
  };

/** Outcome of {@linkcode UpbitRest.resolveUnknownOrder}. */
export type ResolveOrderResult =
  | { readonly kind: "found"; readonly order: Order; readonly meta: ResultMeta }
  | { readonly kind: "not_found"; readonly meta: CallMeta };

/** `{ uuid }` or `{ identifier }` of one order. */
export type OrderRef = { uuid: string; identifier?: never } | { identifier: string; uuid?: never };

type Method = "GET" | "POST" | "DELETE";

interface RequestSpec<S extends z.ZodType> {
  method: Method;
  path: string;
  query?: QueryParams;
  body?: Readonly<Record<string, string | undefined>>;
  auth: boolean;
  schema: S;
  /** Retry 5xx/network/timeout (reads). 429 is retried for every call but order creation. */
  retryUnsafe: boolean;
  /** Never retry anything (order creation). */
  once?: boolean;
  exactIds?: boolean;
}

const DECIMAL = /^\d+(\.\d+)?$/;

function checkOrderRequest(method: string, body: TestOrderRequest, needIdentifier: boolean): void {
  const problems: string[] = [];
  if (!MARKET_CODE_PATTERN.test(body.market)) problems.push(`'market' ${body.market}`);
  if (body.volume !== undefined && !DECIMAL.test(body.volume)) {
    problems.push("'volume' not decimal");
  }
  if (body.price !== undefined && !DECIMAL.test(body.price)) problems.push("'price' not decimal");
  const needs = {
    limit: [true, true],
    price: [false, true],
    market: [true, false],
    best: body.side === "bid" ? [false, true] : [true, false],
  }[body.ord_type];
  if (!needs) problems.push(`'ord_type' ${body.ord_type}`);
  else {
    if (needs[0] !== (body.volume !== undefined)) {
      problems.push(`'volume' must ${needs[0] ? "" : "not "}be set for ${body.ord_type}`);
    }
    if (needs[1] !== (body.price !== undefined)) {
      problems.push(`'price' must ${needs[1] ? "" : "not "}be set for ${body.ord_type}`);
    }
  }
  if (body.ord_type === "price" && body.side !== "bid") problems.push("'price' orders are bids");
  if (body.ord_type === "market" && body.side !== "ask") problems.push("'market' orders are asks");
  if (needIdentifier && !body.identifier) problems.push("'identifier' is required");
  if (
    body.identifier !== undefined && (body.identifier.length === 0 || body.identifier.length > 64)
  ) {
    problems.push("'identifier' must be 1..64 characters");
  }
  if (problems.length > 0) {
    throw new TypeError(`Cannot call ${method} as the order is invalid: ${problems.join(", ")}`);
  }
}

/**
 * `smp_type` upbot sends when the caller names none. Since 2026-11-09 Upbit treats an order without
 * one as `cancel_maker`: an upbot order meeting the owner's own resting order would cancel the
 * owner's order. `cancel_taker` cancels upbot's own order instead (it ends `prevented`, its
 * executed part counting like a partial fill).
 */
export const DEFAULT_SMP_TYPE = "cancel_taker";

function orderBody(body: TestOrderRequest): Record<string, string | undefined> {
  // post_only is accepted only with `none` or no smp_type (and never takes, so never self-trades).
  const smpType = body.smp_type ??
    (body.time_in_force === "post_only" ? undefined : DEFAULT_SMP_TYPE);
  // Fixed key order: the JSON sent and the hashed string use it (§2.2).
  return {
    market: body.market,
    side: body.side,
    volume: body.volume,
    price: body.price,
    ord_type: body.ord_type,
    time_in_force: body.time_in_force,
    smp_type: smpType,
    identifier: body.identifier,
  };
}

function ref(r: OrderRef): QueryParams {
  return r.uuid !== undefined ? { uuid: r.uuid } : { identifier: r.identifier };
}

/**
 * How long a 418 bans, in ms: `Retry-After`, else every amount with its unit in the answer's
 * text added up; undefined when it says nothing readable.
 *
 * @example
 * ```ts
 * parseBanMs(new Response(null, { status: 418 }), "1분 30초 동안 차단"); // 90_000
 * ```
 */
export function parseBanMs(res: Response, text: string): number | undefined {
  const retryAfter = Number(res.headers.get("retry-after"));
  if (Number.isFinite(retryAfter) && retryAfter > 0) return retryAfter * 1000;
  // Every amount with its unit, added up ("1 min 30 s", "1분 30초"): the first alone would send
  // into a ban still running. A plain-text 418 may state its length only in Korean (§3.3: the
  // format is undocumented; without a match the client's own doubling default applies).
  let ms = 0;
  const english = /(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|seconds?|min|minutes?)\b/gi;
  for (const m of text.matchAll(english)) {
    const n = Number(m[1]);
    const unit = (m[2] as string).toLowerCase();
    ms += unit.startsWith("ms") || unit.startsWith("milli")
      ? n
      : unit.startsWith("min")
      ? n * 60_000
      : n * 1000;
  }
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)\s*(밀리초|초|분|시간)/g)) {
    ms += Number(m[1]) * KOREAN_UNIT_MS[m[2] as keyof typeof KOREAN_UNIT_MS];
  }
  return ms > 0 ? ms : undefined;
}

/** Milliseconds of the Korean time units a ban's text may use. */
const KOREAN_UNIT_MS = { "밀리초": 1, "초": 1000, "분": 60_000, "시간": 3_600_000 } as const;

/**
 * The Upbit REST client. One instance per key: its rate limiter is shared by all its calls.
 *
 * @example
 * ```ts ignore
 * const upbit = new UpbitRest({ accessKey, secretKey });
 * const { data: accounts, meta } = await upbit.getAccounts();
 * ```
 */
export class UpbitRest {
  readonly #baseUrl: string;
  readonly #accessKey: string | undefined;
  readonly #secretKey: string | undefined;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffOptions;
  readonly #fetch: typeof fetch;
  readonly #log: Logger;
  /** The limiter shared by every call of this client. */
  readonly rateLimiter: UpbitRequestBudget;

  /** @throws {TypeError | RangeError} for a bad option, naming it and its value. */
  constructor(options: UpbitRestOptions = {}) {
    const baseUrl = (options.baseUrl ?? "https://api.upbit.com").replace(/\/+$/, "");
    let protocol = "";
    try {
      protocol = new URL(baseUrl).protocol;
    } catch { /* reported below */ }
    if (protocol !== "https:" && protocol !== "http:") {
      throw new TypeError(
        `Cannot create UpbitRest as 'baseUrl' must be an http(s) URL: current value is ${
          JSON.stringify(baseUrl)
        }`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      throw new RangeError(
        `Cannot create UpbitRest as 'timeoutMs' must be > 0: current value is ${timeoutMs}`,
      );
    }
    const maxAttempts = options.maxAttempts ?? 3;
    if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new RangeError(
        `Cannot create UpbitRest as 'maxAttempts' must be an integer >= 1: current value is ${maxAttempts}`,
      );
    }
    if (Boolean(options.accessKey) !== Boolean(options.secretKey)) {
      throw new TypeError(
        "Cannot create UpbitRest as 'accessKey' and 'secretKey' must be given together",
      );
    }
    this.#baseUrl = baseUrl;
    this.#accessKey = options.accessKey || undefined;
    this.#secretKey = options.secretKey || undefined;
    this.#timeoutMs = timeoutMs;
    this.#maxAttempts = maxAttempts;
    this.#backoff = { baseMs: 500, maxMs: 8000, jitter: 0.5, ...options.backoff };
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#log = options.logger ?? createLogger("upbit-rest");
    this.rateLimiter = options.rateLimiter instanceof UpbitRequestBudget
      ? options.rateLimiter
      : new UpbitRequestBudget(options.rateLimiter);
  }

  /** Whether keys were given (exchange endpoints need them). */
  get hasKeys(): boolean {
    return this.#accessKey !== undefined;
  }

  /** Stops the rate limiter's timers and rejects calls waiting for a slot. */
  close(): void {
    this.rateLimiter.close(new Error("UpbitRest closed"));
  }

  // ---------------------------------------------------------------- transport

  async #attempt<S extends z.ZodType>(
    spec: RequestSpec<S>,
    signal: AbortSignal | undefined,
  ): Promise<{ data: z.output<S>; meta: CallMeta }> {
    const group = rateLimitGroupOf(spec.method, spec.path);
    await this.rateLimiter.acquire(group, signal);

    const query = buildQuery(spec.query ?? {});
    const url = this.#baseUrl + spec.path + (query.wire ? "?" + query.wire : "");
    const headers: Record<string, string> = { Accept: "application/json" };
    let bodyText: string | undefined;
    let hashInput = query.hashed;
    if (spec.body) {
      const clean: Record<string, string> = {};
      for (const [k, v] of Object.entries(spec.body)) if (v !== undefined) clean[k] = v;
      bodyText = JSON.stringify(clean);
      hashInput = bodyHashInput(clean);
      headers["Content-Type"] = "application/json; charset=utf-8";
    }
    if (spec.auth) {
      if (!this.#accessKey || !this.#secretKey) {
        throw new TypeError(
          `Cannot call ${spec.method} ${spec.path} as UpbitRest has no accessKey/secretKey`,
        );
      }
      const token = await signToken({
        accessKey: this.#accessKey,
        secretKey: this.#secretKey,
        hashInput,
      });
      headers.Authorization = `Bearer ${token}`;
    }

    // A timer cleared when the answer is read: AbortSignal.timeout's would live on for the whole
    // timeout after every request (thousands of pending timers and signals under load).
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException("timed out", "TimeoutError")),
      this.#timeoutMs,
    );
    const combined = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    const started = performance.now();
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(url, {
        method: spec.method,
        headers,
        body: bodyText,
        signal: combined,
      });
      text = await res.text();
    } catch (err) {
      const meta: CallMeta = {
        http_status: null,
        remaining_req: null,
        latency_ms: Math.round(performance.now() - started),
      };
      if (signal?.aborted) {
        throw new UpbitTransportError("aborted", `${spec.method} ${spec.path} aborted`, meta, err);
      }
      if (timeout.signal.aborted) {
        throw new UpbitTransportError(
          "timeout",
          `${spec.method} ${spec.path} timed out after ${this.#timeoutMs} ms`,
          meta,
          err,
        );
      }
      throw new UpbitTransportError(
        "network",
        `${spec.method} ${spec.path} failed: ${err instanceof Error ? err.message : String(err)}`,
        meta,
        err,
      );
    } finally {
      clearTimeout(timer);
    }
    const remainingReq = res.headers.get("remaining-req");
    const meta: CallMeta = {
      http_status: res.status,
      remaining_req: remainingReq,
      latency_ms: Math.round(performance.now() - started),
    };
    // The header's group name may not be the documented one (§3.2): the pause belongs to the
    // group this request was counted in.
    this.rateLimiter.observe(group, parseRemainingReq(remainingReq));

    if (res.ok) {
      let json: unknown;
      try {
        json = spec.exactIds ? parseJsonExactIds(text) : JSON.parse(text);
      } catch {
        throw new UpbitResponseError(
          `${spec.method} ${spec.path} answered ${res.status} with a body that is not JSON`,
          meta,
          text.slice(0, 500),
        );
      }
      const parsed = spec.schema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new UpbitResponseError(
          `${spec.method} ${spec.path} answered an unexpected body: ${
            issue ? `${issue.path.join(".")} ${issue.message}` : "invalid"
          }`,
          meta,
          text.slice(0, 500),
        );
      }
      return { data: parsed.data as z.output<S>, meta };
    }
    throw this.#apiError(spec, res, text, meta, group);
  }

  #apiError(
    spec: RequestSpec<z.ZodType>,
    res: Response,
    text: string,
    meta: CallMeta,
    group: string,
  ): UpbitApiError {
    let code = "";
    let message = text.trim().slice(0, 300);
    try {
      const env = ErrorEnvelope.safeParse(JSON.parse(text));
      if (env.success) {
        code = env.data.error.name;
        message = env.data.error.message ?? "";
      }
    } catch { /* plain text, e.g. the 429 body of §3.3 */ }
    const init = {
      httpStatus: res.status,
      code,
      message: message || `${spec.method} ${spec.path} answered HTTP ${res.status}`,
      remainingReq: meta.remaining_req,
      meta,
    };
    if (res.status === 429) {
      const pauseMs = this.rateLimiter.onRateLimited(group);
      this.#log.warn("Upbit answered 429: pausing the group", {
        group,
        path: spec.path,
        pause_ms: pauseMs,
        remaining_req: meta.remaining_req,
      });
      return new UpbitRateLimitError({ ...init, retryAfterMs: pauseMs });
    }
    if (res.status === 418) {
      const banMs = this.rateLimiter.onBanned(parseBanMs(res, text));
      this.#log.error("Upbit answered 418 (banned): every REST call of this client stops", {
        group,
        path: spec.path,
        ban_ms: banMs,
        body: text.slice(0, 200),
      });
      return new UpbitBanResponseError({ ...init, banMs });
    }
    return new UpbitApiError(init);
  }

  async #call<S extends z.ZodType>(
    spec: RequestSpec<S>,
    options: CallOptions = {},
  ): Promise<UpbitResult<z.output<S>>> {
    for (let attempt = 0;; attempt++) {
      try {
        const { data, meta } = await this.#attempt(spec, options.signal);
        return { data, meta: { ...meta, attempts: attempt + 1 } };
      } catch (err) {
        const retriable = !spec.once && attempt + 1 < this.#maxAttempts &&
          isRetriableUpbitError(err) &&
          (spec.retryUnsafe || err instanceof UpbitRateLimitError);
        if (!retriable) throw err;
        const delay = backoffDelayMs(attempt, this.#backoff);
        this.#log.debug("retrying Upbit call", {
          path: spec.path,
          attempt: attempt + 1,
          delay_ms: delay,
          error: err instanceof Error ? err.message : String(err),
        });
        await sleep(delay, options.signal);
      }
    }
  }

  #get<S extends z.ZodType>(
    path: string,
    query: QueryParams,
    schema: S,
    auth: boolean,
    options: CallOptions | undefined,
    exactIds = false,
  ): Promise<UpbitResult<z.output<S>>> {
    return this.#call(
      { method: "GET", path, query, schema, auth, retryUnsafe: true, exactIds },
      options,
    );
  }

  // ---------------------------------------------------------------- quotation (§6)

  /** `GET /v1/market/all` */
  getMarkets(params: { isDetails?: boolean } = {}, options?: CallOptions) {
    return this.#get(
      "/v1/market/all",
      { is_details: params.isDetails },
      MarketInfos,
      false,
      options,
    );
  }

  /** `GET /v1/ticker?markets=A,B` */
  getTicker(params: { markets: readonly string[] }, options?: CallOptions) {
    return this.#get("/v1/ticker", { markets: params.markets.join(",") }, Tickers, false, options);
  }

  /**
   * `GET /v1/trades/ticks`: newest first; page back with `cursor` = the last `sequential_id` seen.
   * `count` 1..500.
   */
  getTradesTicks(
    params: {
      market: string;
      count?: number;
      cursor?: bigint | string;
      to?: string;
      daysAgo?: number;
    },
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/trades/ticks",
      {
        market: params.market,
        to: params.to,
        count: params.count,
        cursor: params.cursor === undefined ? undefined : String(params.cursor),
        days_ago: params.daysAgo,
      },
      TradeTicks,
      false,
      options,
      true,
    );
  }

  /** `GET /v1/orderbook?markets=A,B` */
  getOrderbook(
    params: { markets: readonly string[]; level?: number | string; count?: number },
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/orderbook",
      { markets: params.markets.join(","), level: params.level, count: params.count },
      Orderbooks,
      false,
      options,
    );
  }

  /** `GET /v1/candles/seconds` (newest first; `count` ≤ 200). */
  getCandlesSeconds(
    params: { market: string; to?: string; count?: number },
    options?: CallOptions,
  ) {
    return this.#get("/v1/candles/seconds", { ...params }, Candles, false, options);
  }

  /** `GET /v1/candles/minutes/{unit}` */
  getCandlesMinutes(
    params: {
      unit: 1 | 3 | 5 | 10 | 15 | 30 | 60 | 240;
      market: string;
      to?: string;
      count?: number;
    },
    options?: CallOptions,
  ) {
    const { unit, ...rest } = params;
    return this.#get(`/v1/candles/minutes/${unit}`, rest, Candles, false, options);
  }

  /** `GET /v1/candles/days` (days run 00:00-24:00 UTC; with `prev_closing_price` and change). */
  getCandlesDays(
    params: { market: string; to?: string; count?: number; convertingPriceUnit?: string },
    options?: CallOptions,
  ) {
    const { convertingPriceUnit, ...rest } = params;
    return this.#get(
      "/v1/candles/days",
      { ...rest, converting_price_unit: convertingPriceUnit },
      Candles,
      false,
      options,
    );
  }

  /** `GET /v1/candles/weeks` or `/v1/candles/months` (with `first_day_of_period`). */
  getCandlesPeriod(
    params: { period: "weeks" | "months"; market: string; to?: string; count?: number },
    options?: CallOptions,
  ) {
    const { period, ...rest } = params;
    return this.#get(`/v1/candles/${period}`, rest, Candles, false, options);
  }

  // ---------------------------------------------------------------- exchange (§4)

  /** `GET /v1/accounts` — balances of the key's pocket. */
  getAccounts(options?: CallOptions) {
    return this.#get("/v1/accounts", {}, Accounts, true, options);
  }

  /** `GET /v1/api_keys` — the account's keys with their expiry (§2.4: keys last one year). */
  getApiKeys(options?: CallOptions) {
    return this.#get("/v1/api_keys", {}, ApiKeys, true, options);
  }

  /** `GET /v1/orders/chance?market=…` — fees, limits and the two balances. */
  getOrdersChance(params: { market: string }, options?: CallOptions) {
    return this.#get("/v1/orders/chance", { market: params.market }, OrdersChance, true, options);
  }

  /** `GET /v1/order?uuid=…|identifier=…` — one order with its fills. */
  getOrder(params: OrderRef, options?: CallOptions) {
    return this.#get("/v1/order", ref(params), Order, true, options);
  }

  /** `GET /v1/orders/uuids?uuids[]=…` (≤ 100). */
  getOrdersByUuids(
    params: { uuids: readonly string[]; market?: string; orderBy?: "asc" | "desc" },
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/orders/uuids",
      { market: params.market, "uuids[]": params.uuids, order_by: params.orderBy },
      Orders,
      true,
      options,
    );
  }

  /** `GET /v1/orders/uuids?identifiers[]=…` (≤ 100). */
  getOrdersByIdentifiers(
    params: { identifiers: readonly string[]; market?: string; orderBy?: "asc" | "desc" },
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/orders/uuids",
      { market: params.market, "identifiers[]": params.identifiers, order_by: params.orderBy },
      Orders,
      true,
      options,
    );
  }

  /** `GET /v1/orders/open` */
  getOrdersOpen(
    params: {
      market?: string;
      states?: readonly ("wait" | "watch")[];
      page?: number;
      limit?: number;
      orderBy?: "asc" | "desc";
    } = {},
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/orders/open",
      {
        market: params.market,
        "states[]": params.states,
        page: params.page,
        limit: params.limit,
        order_by: params.orderBy,
      },
      Orders,
      true,
      options,
    );
  }

  /** `GET /v1/orders/closed` (window ≤ 7 days; times as ms or ISO with offset). */
  getOrdersClosed(
    params: {
      market?: string;
      states?: readonly ("done" | "cancel")[];
      startTime?: string | number;
      endTime?: string | number;
      limit?: number;
      orderBy?: "asc" | "desc";
    } = {},
    options?: CallOptions,
  ) {
    return this.#get(
      "/v1/orders/closed",
      {
        market: params.market,
        "states[]": params.states,
        start_time: params.startTime,
        end_time: params.endTime,
        limit: params.limit,
        order_by: params.orderBy,
      },
      Orders,
      true,
      options,
    );
  }

  /**
   * `POST /v1/orders` — creates an order, exactly once: never retried. An `unknown` result means
   * the order may exist; call {@linkcode resolveUnknownOrder} with its identifier (after a few
   * seconds: a request that timed out may still be in flight) and never resend the identifier.
   *
   * @throws {TypeError} only for an invalid request (nothing is sent).
   */
  postOrder(body: OrderRequest, options?: CallOptions): Promise<PostOrderResult> {
    checkOrderRequest("postOrder", body, true);
    return this.#post("/v1/orders", body, false, options);
  }

  /**
   * `POST /v1/orders/test` — validates an order without creating it (§4.4). Results carry
   * `test: true`; their uuids are not orders.
   *
   * @throws {TypeError} only for an invalid request (nothing is sent).
   */
  postOrderTest(body: TestOrderRequest, options?: CallOptions): Promise<PostOrderResult> {
    checkOrderRequest("postOrderTest", body, false);
    return this.#post("/v1/orders/test", body, true, options);
  }

  async #post(
    path: string,
    body: TestOrderRequest,
    test: boolean,
    options: CallOptions | undefined,
  ): Promise<PostOrderResult> {
    const identifier = body.identifier;
    try {
      const { data, meta } = await this.#call(
        {
          method: "POST",
          path,
          body: orderBody(body),
          schema: Order,
          auth: true,
          retryUnsafe: false,
          once: true,
        },
        options,
      );
      return { kind: "accepted", test, order: data, meta };
    } catch (err) {
      if (err instanceof UpbitBanActiveError) return { kind: "rejected", test, error: err };
      if (err instanceof UpbitApiError) {
        if (err.httpStatus >= 500) {
          return {
            kind: "unknown",
            test,
            reason: "server_error",
            identifier,
            error: err,
            meta: err.meta,
          };
        }
        return { kind: "rejected", test, error: err, meta: err.meta };
      }
      if (err instanceof UpbitTransportError) {
        return { kind: "unknown", test, reason: err.kind, identifier, error: err, meta: err.meta };
      }
      if (err instanceof UpbitResponseError) {
        return {
          kind: "unknown",
          test,
          reason: "unreadable_answer",
          identifier,
          error: err,
          meta: err.meta,
        };
      }
      // Aborted while waiting for a rate-limit slot: nothing was sent.
      throw err;
    }
  }

  /**
   * Resolves an order creation whose outcome was unknown: `GET /v1/order?identifier=…`.
   * `not_found` (404 `order_not_found`) means the order was not created; the identifier is burnt
   * anyway (§4.3), so a new attempt needs a new one.
   *
   * @throws {UpbitError} when the lookup itself fails (after its retries): try again later.
   */
  async resolveUnknownOrder(
    identifier: string,
    options?: CallOptions,
  ): Promise<ResolveOrderResult> {
    try {
      const { data, meta } = await this.getOrder({ identifier }, options);
      return { kind: "found", order: data, meta };
    } catch (err) {
      if (
        err instanceof UpbitApiError && err.httpStatus === 404 && err.code === "order_not_found"
      ) {
        return { kind: "not_found", meta: err.meta };
      }
      throw err;
    }
  }

  /** `DELETE /v1/order?uuid=…|identifier=…` — cancel accepted (the answer shows the order before). */
  deleteOrder(params: OrderRef, options?: CallOptions) {
    return this.#call(
      {
        method: "DELETE",
        path: "/v1/order",
        query: ref(params),
        schema: Order,
        auth: true,
        retryUnsafe: false,
      },
      options,
    );
  }

  /** `DELETE /v1/orders/uuids?uuids[]=…` (≤ 20). */
  deleteOrdersByUuids(params: { uuids: readonly string[] }, options?: CallOptions) {
    return this.#call(
      {
        method: "DELETE",
        path: "/v1/orders/uuids",
        query: { "uuids[]": params.uuids },
        schema: BatchCancelResult,
        auth: true,
        retryUnsafe: false,
      },
      options,
    );
  }

  /** `DELETE /v1/orders/uuids?identifiers[]=…` (≤ 20). */
  deleteOrdersByIdentifiers(params: { identifiers: readonly string[] }, options?: CallOptions) {
    return this.#call(
      {
        method: "DELETE",
        path: "/v1/orders/uuids",
        query: { "identifiers[]": params.identifiers },
        schema: BatchCancelResult,
        auth: true,
        retryUnsafe: false,
      },
      options,
    );
  }
}
