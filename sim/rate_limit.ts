/**
 * @module Per-group request limits of §3: a fixed 1-second window per (group, client), the
 * `Remaining-Req` header, 429 past the limit and a growing 418 ban for clients that keep sending.
 */

/** Per-second limit of each group (§3.1); `order-cancel-all` is 1 per 2 s. */
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
};

/** Requests past the limit within one window before a 429 turns into a 418 ban. */
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

interface Counter {
  windowStart: number;
  count: number;
  banUntil: number;
  banLevel: number;
  lastBanEnd: number;
}

/** Counts requests per (group, client). */
export class RateLimiter {
  readonly #counters = new Map<string, Counter>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Counts one request of `client` in `group`; `factor` scales the limit (floor, at least 1). */
  check(group: string, client: string, factor = 1): RateDecision {
    const spec = GROUP_LIMITS[group] ?? GROUP_LIMITS.default!;
    const limit = Math.max(1, Math.floor(spec.limit * factor));
    const now = this.#now();
    const key = `${group}\u0000${client}`;
    let c = this.#counters.get(key);
    if (!c) {
      c = { windowStart: 0, count: 0, banUntil: 0, banLevel: 0, lastBanEnd: 0 };
      this.#counters.set(key, c);
      if (this.#counters.size > 100_000) this.#prune(now);
    }
    if (now < c.banUntil) return { kind: "banned", group, limit, banMs: c.banUntil - now };
    const windowStart = Math.floor(now / spec.windowMs) * spec.windowMs;
    if (windowStart !== c.windowStart) {
      c.windowStart = windowStart;
      c.count = 0;
    }
    c.count++;
    if (c.count <= limit) return { kind: "allowed", group, limit, remaining: limit - c.count };
    if (c.count - limit > BAN_AFTER_EXTRA_REQUESTS) {
      if (c.lastBanEnd > 0 && now - c.lastBanEnd > BAN_MEMORY_MS) c.banLevel = 0;
      const banMs = Math.min(FIRST_BAN_MS * 2 ** c.banLevel, MAX_BAN_MS);
      c.banLevel++;
      c.banUntil = now + banMs;
      c.lastBanEnd = c.banUntil;
      c.count = 0;
      return { kind: "banned", group, limit, banMs };
    }
    return { kind: "limited", group, limit };
  }

  #prune(now: number): void {
    for (const [key, c] of this.#counters) {
      if (c.banUntil < now && now - c.windowStart > BAN_MEMORY_MS) this.#counters.delete(key);
    }
  }
}

/** `Remaining-Req: group=<g>; min=<60×limit>; sec=<left>` (§3.2; `min` is a fixed legacy value). */
export function remainingReqHeader(decision: RateDecision): string {
  const perSecond = decision.group === "order-cancel-all" ? 0.5 : decision.limit;
  const sec = decision.kind === "allowed" ? decision.remaining : 0;
  return `group=${decision.group}; min=${Math.round(60 * perSecond)}; sec=${sec}`;
}

/**
 * Response for a refused request. 429 carries a JSON error rather than pyupbit's plain text
 * `Too many API requests.` (§3.3 [L/?]): JSON is what every other error uses and clients must accept
 * both. 418's body states the ban length (undocumented upstream).
 */
export function refusal(decision: RateDecision): Response {
  const headers = { "Remaining-Req": remainingReqHeader(decision) };
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
