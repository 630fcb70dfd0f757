/**
 * @module {@linkcode RestCallStats}: counts what one `UpbitRest` client sent and got back, by
 * Upbit rate-limit group and HTTP status, with the 429 / 418 answers and the latest
 * `Remaining-Req` per group. It wraps the client's `fetch`, so every call is counted, retries
 * included, whichever actor owns the client. The counts are published as flat actor metrics
 * ({@linkcode RestCallStats.metrics}) and exposed by `/metrics`.
 */
import { parseRemainingReq, rateLimitGroupOf } from "./rate_limiter.ts";

/** Prefix of the metric keys: `rest_calls:<group>:<status>` (status `error` = no answer). */
export const REST_CALLS_KEY = "rest_calls";
/** Prefix of the metric keys: `rest_rate_limited:<429|418>`. */
export const REST_RATE_LIMITED_KEY = "rest_rate_limited";
/** Prefix of the metric keys: `rest_remaining_req:<group>` (the header's `sec`). */
export const REST_REMAINING_REQ_KEY = "rest_remaining_req";

/**
 * Counters of one Upbit REST client. Pass {@linkcode RestCallStats.fetch} as the client's
 * `fetch` option.
 *
 * @example
 * ```ts ignore
 * const stats = new RestCallStats();
 * const rest = new UpbitRest({ baseUrl, fetch: stats.fetch });
 * ctx.setMetrics({ ...stats.metrics() });
 * ```
 */
export class RestCallStats {
  readonly #calls = new Map<string, number>();
  readonly #rateLimited = { "429": 0, "418": 0 };
  readonly #remaining = new Map<string, number>();
  readonly #inner: typeof fetch;

  /** @param inner the real fetch. @default {globalThis.fetch} */
  constructor(inner: typeof fetch = globalThis.fetch.bind(globalThis)) {
    this.#inner = inner;
  }

  /** The counting fetch (bound: pass it as is). */
  readonly fetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init?.method ?? (input instanceof Request ? input.method : "GET");
    // The group the client's limiter counts the request in (the header may name another, §3.2).
    const group = rateLimitGroupOf(method.toUpperCase(), url.pathname);
    let res: Response;
    try {
      res = await this.#inner(input, init);
    } catch (err) {
      this.#count(group, "error");
      throw err;
    }
    this.#count(group, String(res.status));
    if (res.status === 429 || res.status === 418) this.#rateLimited[res.status]++;
    const remaining = parseRemainingReq(res.headers.get("remaining-req"));
    if (remaining) this.#remaining.set(group, remaining.sec);
    return res;
  };

  #count(group: string, status: string): void {
    const key = `${group}:${status}`;
    this.#calls.set(key, (this.#calls.get(key) ?? 0) + 1);
  }

  /**
   * The counters as flat actor metrics: `rest_calls:<group>:<status>`,
   * `rest_rate_limited:429`, `rest_rate_limited:418` and `rest_remaining_req:<group>`.
   */
  metrics(): Record<string, number> {
    const out: Record<string, number> = {
      [`${REST_RATE_LIMITED_KEY}:429`]: this.#rateLimited["429"],
      [`${REST_RATE_LIMITED_KEY}:418`]: this.#rateLimited["418"],
    };
    for (const [key, n] of this.#calls) out[`${REST_CALLS_KEY}:${key}`] = n;
    for (const [group, sec] of this.#remaining) out[`${REST_REMAINING_REQ_KEY}:${group}`] = sec;
    return out;
  }
}
