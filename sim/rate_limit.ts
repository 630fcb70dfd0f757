/**
 * @module Per-group request limits of §3: a sliding window per (group, client) in which every
 * request received counts (refused ones too), the `Remaining-Req` header, 429 past the limit and a
 * growing 418 ban for clients that keep sending (a ban drawn in a pocket-counted group blocks the
 * pocket in all of them, one drawn in an IP-counted group blocks the IP in all of those); and the
 * per-connection websocket-message budget.
 */

/**
 * Limit of each group per window (§3.1): most are per second, `order-cancel-all` is 1 per 2 s,
 * `websocket-connect` counts WebSocket upgrades, `origin` counts quotation REST calls and public
 * WebSocket upgrades that carry an `Origin` header (1 per 10 s).
 */
export const GROUP_LIMITS: Readonly<Record<string, { limit: number; windowMs: number }>> = {
  market: { limit: 10, windowMs: 1000 },
  candle: { limit: 10, windowMs: 1000 },
  trade: { limit: 10, windowMs: 1000 },
  ticker: { limit: 10, windowMs: 1000 },
  orderbook: { limit: 10, windowMs: 1000 },
  default: { limit: 30, windowMs: 1000 },
  order: { limit: 12, windowMs: 1000 },
  "order-test": { limit: 8, windowMs: 1000 },
  "order-cancel-all": { limit: 1, windowMs: 2000 },
  "websocket-connect": { limit: 5, windowMs: 1000 },
  origin: { limit: 1, windowMs: 10_000 },
};

/**
 * The groups counted per pocket (§3.1: the exchange groups; `websocket-connect` with a token is
 * passed as pocket-counted by the caller). A 418 drawn in one of them blocks the client in all of
 * them: §3.3 says the block is of "the IP / pocket / connection", not of one group (the least kind
 * reading).
 */
export const POCKET_GROUPS: ReadonlySet<string> = new Set([
  "default",
  "order",
  "order-test",
  "order-cancel-all",
]);

/** Requests refused (429) within one window's length before the next one is a 418 ban. */
export const BAN_AFTER_EXTRA_REQUESTS = 5;
const FIRST_BAN_MS = 1000;
const MAX_BAN_MS = 60_000;
/** A client that stays clean this long after a ban starts over at the first ban length. */
const BAN_MEMORY_MS = 10 * 60_000;

/** Verdict on one request. */
export type RateDecision =
  | { kind: "allowed"; group: string; limit: number; remaining: number }
  | { kind: "limited"; group: string; limit: number }
  | { kind: "banned"; group: string; limit: number; banMs: number };

/**
 * One (group, client): the times of its newest requests, every one received (accepted, refused
 * with 429 or 418), and of its refused ones, each oldest first from its head index on (at most
 * `limit` and {@linkcode BAN_AFTER_EXTRA_REQUESTS} + 1 entries in the window respectively, so memory
 * stays bounded: whether the window holds `limit` requests only needs the newest `limit`).
 */
interface Counter {
  recent: number[];
  recentHead: number;
  refused: number[];
  refusedHead: number;
  /** Time of the last request counted, for the eviction of idle clients. */
  last: number;
}

interface Ban {
  banUntil: number;
  banLevel: number;
  lastBanEnd: number;
}

/**
 * Upbit's side of the rate limits, as the simulator enforces them: counts requests per (group,
 * client) and decides 200, 429 or 418. The client's own budgets are `UpbitRequestBudget` in lib/upbit.
 */
export class SimRateLimits {
  readonly #counters = new Map<string, Counter>();
  /**
   * Bans by (pocket, client) for the pocket-counted groups, and by (IP, client) for the others
   * (the quotation groups, `origin` and `websocket-connect` without a token).
   */
  readonly #bans = new Map<string, Ban>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * Counts one request of `client` in `group`; `factor` scales the limit (floor, at least 1).
   * `pocket`: the group is counted per pocket, so a ban of the client in any pocket-counted group
   * refuses this request, and a ban drawn here refuses the client in all of them. Otherwise the
   * group is counted per IP and the same holds across the IP-counted groups: §3.3 blocks "the IP /
   * pocket / connection", not one group, so a 418 drawn on `ticker` also refuses the IP's candles,
   * trades, orderbooks, markets, Origin calls and public WebSocket upgrades (the least kind reading).
   */
  check(
    group: string,
    client: string,
    factor = 1,
    pocket = POCKET_GROUPS.has(group),
  ): RateDecision {
    const spec = GROUP_LIMITS[group] ?? GROUP_LIMITS.default!;
    const limit = scaledLimit(spec.limit, factor);
    const now = this.#now();
    const key = `${group}\u0000${client}`;
    let c = this.#counters.get(key);
    if (!c) {
      c = { recent: [], recentHead: 0, refused: [], refusedHead: 0, last: now };
      this.#counters.set(key, c);
      if (this.#counters.size > 100_000) this.#prune(now);
    }
    // A sliding window: at most `limit` requests in ANY `windowMs` interval, not per calendar
    // second. §9.10 leaves "sliding/fixed 1-s window" open [?]; sliding is the least kind reading
    // (a fixed window lets `limit` pass at the end of one second and `limit` more at the start of
    // the next), so a client that survives here survives either.
    // Every request received counts in the window, refused ones (429, 418) included: whether
    // Upbit counts refusals is not documented [?], and counting them is the least kind reading (a
    // client that keeps sending past the limit keeps its window full and is banned, §9.10
    // "excessive 429s escalate to 418 bans", instead of being let through at the limit's rate).
    c.last = now;
    const start = now - spec.windowMs;
    c.recentHead = dropUntil(c.recent, c.recentHead, start);
    c.refusedHead = dropUntil(c.refused, c.refusedHead, start);
    const used = c.recent.length - c.recentHead;
    c.recent.push(now);
    // Only the newest `limit` matter: the window is full when they are all in it.
    if (c.recent.length - c.recentHead > limit) c.recentHead = c.recent.length - limit;
    const banKey = pocket ? `\u0001pocket\u0000${client}` : `\u0001ip\u0000${client}`;
    let b = this.#bans.get(banKey);
    if (b && now < b.banUntil) return { kind: "banned", group, limit, banMs: b.banUntil - now };
    if (used < limit) {
      // `sec=`: what is still allowed in the window that ends now.
      return { kind: "allowed", group, limit, remaining: limit - used - 1 };
    }
    c.refused.push(now);
    if (c.refused.length - c.refusedHead > BAN_AFTER_EXTRA_REQUESTS) {
      if (!b) {
        b = { banUntil: 0, banLevel: 0, lastBanEnd: 0 };
        this.#bans.set(banKey, b);
      }
      if (b.lastBanEnd > 0 && now - b.lastBanEnd > BAN_MEMORY_MS) b.banLevel = 0;
      const banMs = Math.min(FIRST_BAN_MS * 2 ** b.banLevel, MAX_BAN_MS);
      b.banLevel++;
      b.banUntil = now + banMs;
      b.lastBanEnd = b.banUntil;
      // The refusals are paid for by the ban; the window stays used up (a ban shorter than the
      // window, origin's 10 s, must not refill it) until its requests age out.
      c.refused.length = 0;
      c.refusedHead = 0;
      return { kind: "banned", group, limit, banMs };
    }
    return { kind: "limited", group, limit };
  }

  #prune(now: number): void {
    for (const [key, c] of this.#counters) {
      if (now - c.last > BAN_MEMORY_MS) this.#counters.delete(key);
    }
    for (const [key, b] of this.#bans) {
      if (now - b.lastBanEnd > BAN_MEMORY_MS) this.#bans.delete(key);
    }
  }
}

/**
 * Drops (by moving `head` past them) the entries of `times` (ascending) at or before `start`, and
 * compacts the array when the dropped prefix grows; returns the new head.
 */
function dropUntil(times: number[], head: number, start: number): number {
  while (head < times.length && times[head]! <= start) head++;
  if (head === times.length) {
    times.length = 0;
    return 0;
  }
  if (head > 64) {
    times.splice(0, head);
    return 0;
  }
  return head;
}

/** A group limit times `rate_limit_factor` (floor, at least 1). */
function scaledLimit(limit: number, factor: number): number {
  return Math.max(1, Math.floor(limit * factor));
}

/** Which group names `Remaining-Req` carries: the documented ones, or {@linkcode ALTERNATIVE_GROUP_NAMES}. */
export type GroupNaming = "documented" | "alternative";

/**
 * Names other than the documented ones for the quotation groups (inferred). Third-party captures
 * show `candles`, `market`, `ticker` and `origin` in `Remaining-Req`, without saying for which
 * calls; this mapping gives each quotation group a name that differs from its own and names
 * another group where it can, so a client that pauses the group the header names pauses the wrong
 * one. Exchange groups keep their names.
 */
export const ALTERNATIVE_GROUP_NAMES: Readonly<Record<string, string>> = {
  market: "origin",
  candle: "candles",
  trade: "market",
  ticker: "origin",
  orderbook: "ticker",
};

/**
 * `Remaining-Req: group=<g>; min=<60×per-second limit>; sec=<left>` (§3.2; `min` is a fixed legacy
 * value: 30 for `order-cancel-all`, 6 for `origin`). `naming` picks the group name written.
 */
export function remainingReqHeader(
  decision: RateDecision,
  naming: GroupNaming = "documented",
): string {
  const spec = GROUP_LIMITS[decision.group] ?? GROUP_LIMITS.default!;
  const perSecond = decision.limit * 1000 / spec.windowMs;
  const sec = decision.kind === "allowed" ? decision.remaining : 0;
  const name = naming === "alternative"
    ? ALTERNATIVE_GROUP_NAMES[decision.group] ?? decision.group
    : decision.group;
  return `group=${name}; min=${Math.round(60 * perSecond)}; sec=${sec}`;
}

/** How a refusal is written: see the `rate_refusal_format` fault. */
export type RefusalFormat = "json" | "text";

/**
 * Response for a refused request. `json`: 429 carries a JSON error rather than pyupbit's plain text
 * `Too many API requests.` (§3.3 [L/?]), as every other error does, and 418's body and
 * `Retry-After` state the ban length. `text`: both in plain text, the 418's ban length only in
 * Korean and no `Retry-After` (the 418's format is undocumented upstream): clients must accept both.
 */
export function refusal(
  decision: RateDecision,
  naming: GroupNaming = "documented",
  format: RefusalFormat = "json",
): Response {
  const headers = { "Remaining-Req": remainingReqHeader(decision, naming) };
  if (format === "text") {
    const text = { ...headers, "Content-Type": "text/plain; charset=utf-8" };
    if (decision.kind === "banned") {
      const seconds = Math.ceil(decision.banMs / 1000);
      return new Response(`요청 수 제한을 초과하여 ${seconds}초 동안 차단되었습니다.`, {
        status: 418,
        headers: text,
      });
    }
    return new Response("Too many API requests.", { status: 429, headers: text });
  }
  if (decision.kind === "banned") {
    const seconds = Math.ceil(decision.banMs / 1000);
    return Response.json(
      {
        error: {
          name: "too_many_requests_banned",
          message: `Too many requests after 429; blocked for ${seconds} s.`,
          ban_ms: decision.banMs,
        },
      },
      { status: 418, headers: { ...headers, "Retry-After": String(seconds) } },
    );
  }
  return Response.json(
    { error: { name: "too_many_requests", message: "Too many API requests." } },
    { status: 429, headers },
  );
}

/** websocket-message limits of §3.1, per connection. */
export const WS_MESSAGE_LIMITS = { perSecond: 5, perMinute: 100 } as const;

/**
 * The websocket-message budget of one connection (§3.1): at most 5 request messages in any second
 * and 100 in any minute, both scaled by `rate_limit_factor`. Counted over sliding windows, which is
 * at least as strict as Upbit's counting whatever it is. Refused messages are not counted (they are
 * ignored, so they use nothing up).
 */
export class WsMessageBudget {
  /** Times of the accepted requests of the last minute, oldest first, from `#head` on. */
  #accepted: number[] = [];
  #head = 0;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Counts one request message; false when it is past either limit (it is then not counted). */
  take(factor = 1): boolean {
    const now = this.#now();
    const times = this.#accepted;
    while (this.#head < times.length && times[this.#head]! <= now - 60_000) this.#head++;
    if (this.#head > 256) {
      times.splice(0, this.#head);
      this.#head = 0;
    }
    if (times.length - this.#head >= scaledLimit(WS_MESSAGE_LIMITS.perMinute, factor)) return false;
    const perSecond = scaledLimit(WS_MESSAGE_LIMITS.perSecond, factor);
    let lastSecond = 0;
    for (let i = times.length - 1; i >= this.#head && times[i]! > now - 1000; i--) {
      if (++lastSecond >= perSecond) return false;
    }
    times.push(now);
    return true;
  }
}

/**
 * The error frame for a request past the websocket-message limit. §7.9 lists the name as
 * "Too Many Requests" in prose; the wire spelling is not documented [?]. `TOO_MANY_REQUESTS` follows
 * the other WebSocket error names (`WRONG_FORMAT`, `NO_TICKET`, …); clients should match the name
 * loosely.
 */
export const WS_TOO_MANY_REQUESTS_FRAME = JSON.stringify({
  error: {
    name: "TOO_MANY_REQUESTS",
    message: "Too Many Requests: websocket-message limit exceeded; the request was ignored.",
  },
});
