/**
 * @module Errors of the Upbit client: one class for every answer Upbit refused
 * ({@linkcode UpbitApiError} and its 429/418 subclasses), one for requests whose answer never
 * arrived ({@linkcode UpbitTransportError}), one for answers we could not read
 * ({@linkcode UpbitResponseError}), and {@linkcode UpbitBanActiveError} for calls refused locally
 * while a 418 ban is running.
 */

/** The meta of one HTTP exchange, as the executor stores it on each attempt. */
export interface CallMeta {
  /** HTTP status, or `null` when no answer arrived. */
  readonly http_status: number | null;
  /** The raw `Remaining-Req` header, e.g. `group=default; min=1800; sec=29`, or `null`. */
  readonly remaining_req: string | null;
  /** Time from sending to the end of the body (or to the failure), in ms. */
  readonly latency_ms: number;
}

/** Fields shared by every Upbit client error. */
export interface UpbitErrorFields {
  /** Meta of the failed attempt (absent when nothing was sent). */
  readonly meta?: CallMeta;
}

/**
 * Upbit answered with an error status (§5). `code` is Upbit's `error.name` (quotation endpoints
 * send numbers, kept as their string form; `""` when the body was not the JSON envelope, e.g. the
 * plain-text 429 of §3.3).
 */
export class UpbitApiError extends Error implements UpbitErrorFields {
  /** HTTP status of the answer. */
  readonly httpStatus: number;
  /** Upbit's `error.name`, e.g. `insufficient_funds_bid`. */
  readonly code: string;
  /** The raw `Remaining-Req` header, or `null`. */
  readonly remainingReq: string | null;
  /** Suggested wait before trying again (429: next second; 418: the ban), if any. */
  readonly retryAfterMs?: number;
  readonly meta: CallMeta;

  constructor(
    init: {
      httpStatus: number;
      code: string;
      message: string;
      remainingReq: string | null;
      meta: CallMeta;
      retryAfterMs?: number;
    },
  ) {
    super(init.message || `Upbit answered HTTP ${init.httpStatus}`);
    this.name = "UpbitApiError";
    this.httpStatus = init.httpStatus;
    this.code = init.code;
    this.remainingReq = init.remainingReq;
    this.meta = init.meta;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
  }
}

/** HTTP 429: the per-second budget of a group was exceeded (§3.3). Nothing was processed. */
export class UpbitRateLimitError extends UpbitApiError {
  constructor(init: ConstructorParameters<typeof UpbitApiError>[0]) {
    super(init);
    this.name = "UpbitRateLimitError";
  }
}

/**
 * Upbit answered HTTP 418: the exchange bans this client for a while after repeated 429s (§3.3).
 * Compare {@linkcode UpbitBanActiveError}: a call our client refused itself while such a ban runs.
 */
export class UpbitBanResponseError extends UpbitApiError {
  /** How long this client refuses all REST calls (the server's value or our own, growing). */
  readonly banMs: number;
  constructor(init: ConstructorParameters<typeof UpbitApiError>[0] & { banMs: number }) {
    super({ ...init, retryAfterMs: init.banMs });
    this.name = "UpbitBanResponseError";
    this.banMs = init.banMs;
  }
}

/**
 * A call refused by the client itself because a 418 ban is running; nothing was sent to Upbit.
 * Compare {@linkcode UpbitBanResponseError}: Upbit's 418 answer that started the ban.
 */
export class UpbitBanActiveError extends Error {
  /** When the ban ends (epoch ms). */
  readonly bannedUntilMs: number;
  readonly retryAfterMs: number;
  constructor(bannedUntilMs: number, nowMs: number) {
    super(
      `Upbit REST calls are suspended for ${
        Math.ceil((bannedUntilMs - nowMs) / 1000)
      } s after HTTP 418`,
    );
    this.name = "UpbitBanActiveError";
    this.bannedUntilMs = bannedUntilMs;
    this.retryAfterMs = Math.max(0, bannedUntilMs - nowMs);
  }
}

/**
 * No answer arrived: a timeout, a dropped connection, or the caller's abort. Whether the server
 * processed the request is unknown (for an order creation that matters, see `postOrder`).
 */
export class UpbitTransportError extends Error implements UpbitErrorFields {
  /** `timeout` (our per-request timeout), `aborted` (caller's signal) or `network`. */
  readonly kind: "timeout" | "aborted" | "network";
  readonly meta: CallMeta;
  constructor(
    kind: "timeout" | "aborted" | "network",
    message: string,
    meta: CallMeta,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "UpbitTransportError";
    this.kind = kind;
    this.meta = meta;
  }
}

/** A 2xx answer whose body did not match the expected schema (or was not JSON). */
export class UpbitResponseError extends Error implements UpbitErrorFields {
  readonly meta: CallMeta;
  /** At most 500 characters of the body, for the log. */
  readonly bodyExcerpt: string;
  constructor(message: string, meta: CallMeta, bodyExcerpt: string) {
    super(message);
    this.name = "UpbitResponseError";
    this.meta = meta;
    this.bodyExcerpt = bodyExcerpt;
  }
}

/** Any error the REST client produces. */
export type UpbitError =
  | UpbitApiError
  | UpbitBanActiveError
  | UpbitTransportError
  | UpbitResponseError;

/**
 * Whether trying the same call again later can succeed: 429, 5xx, timeouts and network errors.
 * Never 418 (a ban: wait for it), 4xx refusals, aborts by the caller, or unreadable answers.
 * Shaped like std's `retry(fn, { isRetriable })`. For order creation, see `postOrder`: its
 * unknown outcome must be resolved, not retried.
 *
 * @example
 * ```ts
 * isRetriableUpbitError(new Error("x")); // false
 * ```
 */
export function isRetriableUpbitError(err: unknown): boolean {
  if (err instanceof UpbitBanResponseError) return false;
  if (err instanceof UpbitApiError) return err.httpStatus === 429 || err.httpStatus >= 500;
  if (err instanceof UpbitTransportError) return err.kind !== "aborted";
  return false;
}

/**
 * The private WebSocket refused the credentials: at the upgrade (`via: "upgrade"`, HTTP 401 or 403)
 * or in-band (`via: "in_band"`, the `INVALID_AUTH` error frame). The client stops for good: the
 * same keys would be refused again, so only a person can fix it.
 */
export class UpbitWsAuthError extends Error {
  /** Where the refusal came. */
  readonly via: "upgrade" | "in_band";
  /** HTTP status of a refused upgrade; null for an in-band refusal. */
  readonly httpStatus: number | null;
  constructor(via: "upgrade" | "in_band", detail: string, httpStatus: number | null = null) {
    super(
      via === "upgrade"
        ? `Upbit private WebSocket refused the credentials at the upgrade (HTTP ${httpStatus}): ${detail}`
        : `Upbit private WebSocket refused the credentials (${detail})`,
    );
    this.name = "UpbitWsAuthError";
    this.via = via;
    this.httpStatus = httpStatus;
  }
}
