/**
 * @module Client-side rate-limit discipline for Upbit REST (§3): per-group budgets from the
 * documented limits, tightened by every `Remaining-Req` answer, a pause of a whole window after
 * `sec=0` or a 429, and a growing stop of every call after a 418.
 *
 * One {@linkcode UpbitRequestBudget} belongs to one `UpbitRest` and is shared by all its calls. Upbit
 * counts quotation groups per IP and exchange groups per pocket: several processes using the same
 * key or host share the server's budget but not this one, so they must keep their own rates low.
 */
import { UpbitBanActiveError } from "./errors.ts";

/** The rate-limit groups of §3.1. */
export type RateLimitGroup =
  | "market"
  | "candle"
  | "trade"
  | "ticker"
  | "orderbook"
  | "default"
  | "order"
  | "order-test"
  | "order-cancel-all";

/** A budget: at most `limit` requests in any `windowMs`. */
export interface GroupBudget {
  limit: number;
  windowMs: number;
}

/** Documented budgets (§3.1). `order` is 12/s since 2026-08-21 (§3.4; 8/s before). */
export const DEFAULT_BUDGETS: Readonly<Record<RateLimitGroup, GroupBudget>> = Object.freeze({
  market: { limit: 10, windowMs: 1000 },
  candle: { limit: 10, windowMs: 1000 },
  trade: { limit: 10, windowMs: 1000 },
  ticker: { limit: 10, windowMs: 1000 },
  orderbook: { limit: 10, windowMs: 1000 },
  default: { limit: 30, windowMs: 1000 },
  order: { limit: 12, windowMs: 1000 },
  "order-test": { limit: 8, windowMs: 1000 },
  "order-cancel-all": { limit: 1, windowMs: 2000 },
});

/**
 * The rate-limit group of a REST call (§3.1).
 *
 * @example
 * ```ts
 * rateLimitGroupOf("POST", "/v1/orders"); // "order"
 * ```
 */
export function rateLimitGroupOf(method: string, path: string): RateLimitGroup {
  if (path === "/v1/market/all") return "market";
  if (path.startsWith("/v1/candles/")) return "candle";
  if (path === "/v1/trades/ticks") return "trade";
  if (path === "/v1/ticker" || path === "/v1/ticker/all") return "ticker";
  if (path.startsWith("/v1/orderbook")) return "orderbook";
  if (method === "POST" && (path === "/v1/orders" || path === "/v1/orders/cancel_and_new")) {
    return "order";
  }
  if (method === "POST" && path === "/v1/orders/test") return "order-test";
  if (method === "DELETE" && path === "/v1/orders/open") return "order-cancel-all";
  return "default";
}

/**
 * A parsed `Remaining-Req` header (§3.2). `min` is deprecated and ignored. `group` is what the
 * server named, which may differ from the documented names (captures show `candles`, `market`,
 * `ticker`, `origin`): callers apply it to the group of the request that got it, not to this name.
 */
export interface RemainingReq {
  group: string;
  sec: number;
}

/** A quiet time after the last ban ends that starts the default ban length over (ms). */
export const BAN_COUNT_RESET_MS = 3_600_000;

const REMAINING_REQ = /group=([A-Za-z0-9_-]+);\s*min=(\d+);\s*sec=(\d+)/;

/**
 * Parses `group=default; min=1800; sec=29`; `null` when absent or unreadable.
 *
 * @example
 * ```ts
 * parseRemainingReq("group=order; min=720; sec=0"); // { group: "order", sec: 0 }
 * ```
 */
export function parseRemainingReq(header: string | null): RemainingReq | null {
  if (!header) return null;
  const m = REMAINING_REQ.exec(header);
  if (!m) return null;
  return { group: m[1] as string, sec: Number(m[3]) };
}

/** Time and timers, injectable so that the bookkeeping is tested without waiting. */
export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(id: unknown): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Options of {@linkcode UpbitRequestBudget}. */
export interface UpbitRequestBudgetOptions {
  /** Overrides of {@linkcode DEFAULT_BUDGETS}. */
  budgets?: Partial<Record<RateLimitGroup, GroupBudget>>;
  /** Extra wait added to every window and pause, against clock skew and latency jitter. @default {50} */
  marginMs?: number;
  /** First ban length when a 418 carries no duration; doubles on each repeat. @default {60000} */
  banBaseMs?: number;
  /** Cap on a ban we compute ourselves. @default {3600000} */
  banMaxMs?: number;
  /** A 429-free period after which a lowered budget grows back by one. @default {10000} */
  recoverAfterMs?: number;
  clock?: Clock;
  /**
   * Called when this limiter learns of a ban from an answer (a 418), with the ban's end (epoch
   * ms), so that other clients can be told ({@linkcode UpbitRequestBudget.applyBan}). Not called for bans
   * applied from outside.
   */
  onBan?: (untilMs: number) => void;
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface GroupState {
  budget: GroupBudget;
  /** Effective limit: the budget, lowered by 429s, grown back slowly. */
  limit: number;
  /** Send times inside the current window, oldest first. */
  sends: number[];
  pausedUntil: number;
  last429: number;
  queue: Waiter[];
  timer: unknown;
}

/** Counters of a {@linkcode UpbitRequestBudget}, for logs and tests. */
export interface UpbitRequestBudgetStats {
  /** Requests let through, per group. */
  granted: Record<string, number>;
  /** 429 answers seen. */
  rateLimited: number;
  /** 418 answers seen. */
  bans: number;
  /** End of the running ban (epoch ms), or 0. */
  bannedUntilMs: number;
}

/**
 * The client's per-group request budgets (Upbit's side, as simulated, is `SimRateLimits` in sim/),
 * shared by all calls of one client. `acquire(group)` waits until a
 * request may be sent; the client reports each answer with `observe`, `onRateLimited` (429) and
 * `onBanned` (418).
 */
export class UpbitRequestBudget {
  readonly #groups = new Map<string, GroupState>();
  readonly #budgets: Record<string, GroupBudget>;
  readonly #marginMs: number;
  readonly #banBaseMs: number;
  readonly #banMaxMs: number;
  readonly #recoverAfterMs: number;
  readonly #clock: Clock;
  readonly #onBan: ((untilMs: number) => void) | undefined;
  #bannedUntil = 0;
  #banCount = 0;
  #rateLimited = 0;
  readonly #granted: Record<string, number> = {};

  /** @throws {RangeError} for a budget whose limit or window is not a positive number. */
  constructor(options: UpbitRequestBudgetOptions = {}) {
    this.#budgets = { ...DEFAULT_BUDGETS, ...options.budgets };
    for (const [group, b] of Object.entries(this.#budgets)) {
      if (!(Number.isInteger(b.limit) && b.limit > 0 && b.windowMs > 0)) {
        throw new RangeError(
          `Cannot create UpbitRequestBudget as budget '${group}' must have an integer limit > 0 and windowMs > 0: current value is ${
            JSON.stringify(b)
          }`,
        );
      }
    }
    this.#marginMs = options.marginMs ?? 50;
    this.#banBaseMs = options.banBaseMs ?? 60_000;
    this.#banMaxMs = options.banMaxMs ?? 3_600_000;
    this.#recoverAfterMs = options.recoverAfterMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
    this.#onBan = options.onBan;
  }

  #group(name: string): GroupState {
    let g = this.#groups.get(name);
    if (!g) {
      const budget = this.#budgets[name] ?? this.#budgets.default as GroupBudget;
      g = {
        budget,
        limit: budget.limit,
        sends: [],
        pausedUntil: 0,
        last429: 0,
        queue: [],
        timer: undefined,
      };
      this.#groups.set(name, g);
    }
    return g;
  }

  /**
   * Waits until one request of `group` may be sent, and counts it as sent.
   *
   * @throws {UpbitBanActiveError} at once while a 418 ban runs (also for waiters when a ban starts).
   * @throws the signal's reason when `signal` aborts while waiting.
   */
  acquire(group: RateLimitGroup | string, signal?: AbortSignal): Promise<void> {
    const now = this.#clock.now();
    if (now < this.#bannedUntil) {
      return Promise.reject(new UpbitBanActiveError(this.#bannedUntil, now));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const g = this.#group(group);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const i = g.queue.indexOf(waiter);
          if (i >= 0) g.queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      g.queue.push(waiter);
      this.#pump(group, g);
    });
  }

  /** When the next request of `g` may go out (≤ now = at once). */
  #readyAt(g: GroupState, now: number): number {
    const windowMs = g.budget.windowMs + this.#marginMs;
    while (g.sends.length > 0 && (g.sends[0] as number) + windowMs <= now) g.sends.shift();
    this.#recover(g, now);
    let at = g.pausedUntil;
    if (g.sends.length >= g.limit) {
      at = Math.max(at, (g.sends[g.sends.length - g.limit] as number) + windowMs);
    }
    return at;
  }

  #recover(g: GroupState, now: number): void {
    while (g.limit < g.budget.limit && now - g.last429 >= this.#recoverAfterMs) {
      g.limit += 1;
      g.last429 += this.#recoverAfterMs; // grow back one step per quiet period
    }
  }

  #pump(name: string, g: GroupState): void {
    if (g.timer !== undefined) {
      this.#clock.clearTimer(g.timer);
      g.timer = undefined;
    }
    while (g.queue.length > 0) {
      const now = this.#clock.now();
      if (now < this.#bannedUntil) {
        const err = new UpbitBanActiveError(this.#bannedUntil, now);
        for (const w of g.queue.splice(0)) this.#settle(w, err);
        return;
      }
      const at = this.#readyAt(g, now);
      if (at > now) {
        g.timer = this.#clock.setTimer(() => {
          g.timer = undefined;
          this.#pump(name, g);
        }, at - now);
        return;
      }
      const w = g.queue.shift() as Waiter;
      g.sends.push(now);
      this.#granted[name] = (this.#granted[name] ?? 0) + 1;
      this.#settle(w);
    }
  }

  #settle(w: Waiter, err?: unknown): void {
    if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
    if (err === undefined) w.resolve();
    else w.reject(err);
  }

  /**
   * Reports a `Remaining-Req` answer: `sec=0` pauses the group for a whole window from now.
   * §3.2 reads "wait for the next second", which holds for a fixed window; whether Upbit's window
   * is fixed or sliding is not documented (§9.10), and under a sliding one the requests that used
   * it up still count until a window after them: the safe reading waits the whole window.
   * `group` is the group of the request that got the answer, whatever name the header carries.
   */
  observe(group: RateLimitGroup | string, remaining: RemainingReq | null): void {
    if (!remaining || remaining.sec > 0) return;
    const g = this.#group(group);
    const now = this.#clock.now();
    g.pausedUntil = Math.max(g.pausedUntil, now + g.budget.windowMs + this.#marginMs);
    this.#pump(group, g);
  }

  /**
   * Reports a 429: pauses the group for a whole window from now (the server's window may be
   * sliding) and lowers its budget by one (grown back after a quiet period). Returns the pause in ms.
   */
  onRateLimited(group: RateLimitGroup | string): number {
    const g = this.#group(group);
    const now = this.#clock.now();
    this.#rateLimited++;
    g.limit = Math.max(1, g.limit - 1);
    g.last429 = now;
    g.pausedUntil = Math.max(g.pausedUntil, now + g.budget.windowMs + this.#marginMs);
    this.#pump(group, g);
    return g.pausedUntil - now;
  }

  /**
   * Reports a 418: every call of this client is refused until the ban ends. The ban lasts
   * `serverBanMs` when the answer said so (the server grows it on repeats), else `banBaseMs`
   * doubling with each repeat. Returns it.
   */
  onBanned(serverBanMs?: number): number {
    const now = this.#clock.now();
    // A 418 of a request sent before the ban began (one burst) is the same ban, not a repeat; a
    // quiet hour after the last ban starts the count again (it only ever grew: an hour-long
    // default for every ban of a long-running process).
    if (this.#bannedUntil > 0 && now - this.#bannedUntil > BAN_COUNT_RESET_MS) this.#banCount = 0;
    if (now >= this.#bannedUntil) this.#banCount++;
    const banMs = serverBanMs !== undefined && serverBanMs > 0
      ? serverBanMs
      : Math.min(this.#banMaxMs, this.#banBaseMs * 2 ** (Math.max(1, this.#banCount) - 1));
    const before = this.#bannedUntil;
    this.#bannedUntil = Math.max(this.#bannedUntil, now + banMs);
    for (const [name, g] of this.#groups) this.#pump(name, g);
    // Concurrent 418s of one burst tell the same ban: announce a new ban or a much longer one.
    const news = before <= now || this.#bannedUntil - before >= 1000;
    try {
      if (news) this.#onBan?.(this.#bannedUntil);
    } catch {
      // Telling others is best effort: this client is stopped either way.
    }
    return banMs;
  }

  /**
   * Applies a ban another client learned (`untilMs`, epoch ms): every call of this client is
   * refused until then, without sending. A ban already running longer is kept. Returns whether
   * it is in force now.
   */
  applyBan(untilMs: number): boolean {
    if (!Number.isFinite(untilMs) || untilMs <= this.#clock.now()) return false;
    if (untilMs <= this.#bannedUntil) return true;
    this.#bannedUntil = untilMs;
    for (const [name, g] of this.#groups) this.#pump(name, g);
    return true;
  }

  /** End of the running ban (epoch ms), or 0 when none runs. */
  bannedUntil(): number {
    return this.#bannedUntil > this.#clock.now() ? this.#bannedUntil : 0;
  }

  /** Effective limit of `group` right now. */
  limitOf(group: RateLimitGroup | string): number {
    const g = this.#group(group);
    this.#recover(g, this.#clock.now());
    return g.limit;
  }

  /** Counters since creation. */
  stats(): UpbitRequestBudgetStats {
    return {
      granted: { ...this.#granted },
      rateLimited: this.#rateLimited,
      bans: this.#banCount,
      bannedUntilMs: this.bannedUntil(),
    };
  }

  /** Rejects every waiter and clears timers (the client is closing). */
  close(reason: unknown = new Error("UpbitRequestBudget closed")): void {
    for (const g of this.#groups.values()) {
      if (g.timer !== undefined) this.#clock.clearTimer(g.timer);
      g.timer = undefined;
      for (const w of g.queue.splice(0)) this.#settle(w, reason);
    }
  }
}
