/**
 * @module Alerts out: when `ALERT_WEBHOOK_URL` is set, every halt and resume, alarm (raised or
 * raised again), finished live fill and a daily summary (after midnight KST, for the KST day
 * that ended) is POSTed there as JSON. The main thread finds them in the database every few
 * seconds (the stores are the single source of truth, whoever wrote them: the CLI, the HTTP
 * controls, the supervisor, the executor) and delivers them in order from a bounded queue,
 * retrying with backoff; an alert refused through every attempt is dropped and raises the alarm
 * `alert_webhook_failing` (cleared by the next alert taken). Trading never waits for it: the
 * actors run in their own workers and nothing here is awaited by them. Payloads are built from
 * stored facts passed through the log's secret mask; the URL itself is a secret (never logged).
 *
 * Where delivery stands is stored (`actor_state` "alert_webhook"): every fact before a time was
 * delivered or dropped, and the KST day whose summary comes next. A start resumes from there, so
 * an alert queued at a crash or a stop, a fact stored while upbot was down (a halt applied from
 * the control directory, an alarm raised by another process) and a daily summary due meanwhile are
 * still sent: at least once (the minute before the stored time may be sent again), and no further
 * back than {@linkcode CATCH_UP_MS}. The very first start sends nothing already stored.
 */
import { z } from "zod";
import { backoffDelayMs } from "../backoff.ts";
import type { Sql } from "../db/connect.ts";
import { type Logger, redact } from "../log.ts";
import { loadActorState, saveActorState } from "../store/actor_state.ts";
import { clearAlarm, raiseAlarm } from "../store/alarms.ts";

/**
 * The alarm raised when the webhook refused or left unanswered an alert through every attempt (the
 * alert is dropped); cleared by the next alert it takes.
 */
export const ALERT_WEBHOOK_FAILING = "alert_webhook_failing";

/** One alert as POSTed. */
export interface Alert {
  type: "halt" | "resume" | "flatten" | "alarm" | "live_fill" | "daily_summary";
  /** Unix ms of the fact. */
  ts: number;
  /** One sentence for a chat channel. */
  text: string;
  [field: string]: unknown;
}

/** Options of {@linkcode AlertWebhook}. */
export interface AlertWebhookOptions {
  sql: Sql;
  url: string;
  log: Logger;
  /** How often the database is read. @default {2000} */
  pollMs?: number;
  /** Delivery attempts per alert before it is dropped (and logged). @default {6} */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt up to 60 s. @default {1000} */
  retryBaseMs?: number;
  /** Alerts kept waiting at most; older ones are dropped first. @default {1000} */
  queueLimit?: number;
  /**
   * This process's clock: the KST day, and the stamps of fills (written by this process's
   * executor and poller). Tests cross midnight KST with it. @default {Date.now}
   */
  now?: () => number;
}

const KST_OFFSET_MS = 9 * 3_600_000;

/**
 * Rows are read again for this long after the newest one seen: a transaction that started
 * earlier (its timestamps are its start time) may commit after a later one was already read.
 */
const OVERLAP_MS = 60_000;

/**
 * How far back a start looks for facts not delivered before the last stop: after a longer
 * downtime, older ones are not sent (the dashboard and the alarms list still show them).
 */
export const CATCH_UP_MS = 24 * 3_600_000;

/** The `actor_state` name of where delivery stands. */
export const ALERT_WEBHOOK_STATE = "alert_webhook";

/** The stores alerts come from. */
const SOURCES = ["history", "alarms", "fills"] as const;
type SourceName = typeof SOURCES[number];

/** Where delivery stands, as stored. */
const DeliveryState = z.object({
  /**
   * Per store: every fact stamped at or before this time (Unix ms; the database's clock, the
   * process's for fills) is delivered or dropped.
   */
  through: z.object({
    history: z.number().finite(),
    alarms: z.number().finite(),
    fills: z.number().finite(),
  }),
  /** The KST day (`YYYY-MM-DD`) whose summary is sent next, once that day has ended. */
  summaryDay: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  /**
   * The facts after `through` already delivered or dropped (`history:7`, `alarms:3/2`,
   * `fills:12`, with their fact time): a start does not send them again.
   */
  seen: z.array(z.tuple([z.string(), z.number().finite()])).max(100_000),
});
type DeliveryState = z.infer<typeof DeliveryState>;

/** Rows per read of a store; a full page is followed by the next one, from its last row. */
export const PAGE_ROWS = 1000;

/** Where a paged read stopped: the last row's time (whole microseconds since 1970, exact) and id. */
interface Cursor {
  us: string;
  id: number;
}

/**
 * Every row `page` answers, page after page, each from the (time, id) of the previous page's last
 * row, until a short page: however many rows share the reading window, all are read.
 */
async function readPaged<R extends Cursor>(
  page: (after: Cursor | null) => Promise<readonly R[]>,
): Promise<R[]> {
  const all: R[] = [];
  let after: Cursor | null = null;
  for (;;) {
    const rows = await page(after);
    all.push(...rows);
    if (rows.length < PAGE_ROWS) return all;
    const last = rows.at(-1)!;
    after = { us: last.us, id: last.id };
  }
}

/** The condition "after `cursor`" on rows ordered by (`column`, id); nothing for the first page. */
function after(sql: Sql, column: string, cursor: Cursor | null) {
  return cursor === null ? sql`` : sql`
    and (${sql(column)}, id) > (timestamptz 'epoch' + ${cursor.us}::int8 * interval '1 microsecond',
                               ${cursor.id})`;
}

/** Keys already sent, with their fact time, forgotten once well behind the reading window. */
class SeenKeys {
  #keys = new Map<string, number>();
  /** Newest fact time seen, or the start of the newest read when later (Unix ms). */
  newest = 0;
  /** True the first time `key` is offered. */
  add(key: string, at: number): boolean {
    this.newest = Math.max(this.newest, at);
    if (this.#keys.has(key)) return false;
    this.#keys.set(key, at);
    return true;
  }
  /** Marks `key` sent (a restart restoring what the last run sent); the reading window stays. */
  remember(key: string, at: number): void {
    this.#keys.set(key, at);
  }
  /** Every key still kept, with its fact time. */
  entries(): [string, number][] {
    return [...this.#keys];
  }
  /**
   * The lower bound of the next read. Keys well behind it are forgotten, but none at or after
   * `keepFrom` (the oldest alert of this store still waiting: a restart reads again from there).
   */
  since(keepFrom = Infinity): Date {
    const forgetBefore = Math.min(this.newest - 2 * OVERLAP_MS, keepFrom);
    for (const [k, at] of this.#keys) if (at < forgetBefore) this.#keys.delete(k);
    return new Date(this.newest - OVERLAP_MS);
  }
}

/** The KST calendar day (`YYYY-MM-DD`) of `ms`. */
export function kstDay(ms: number): string {
  return new Date(ms + KST_OFFSET_MS).toISOString().slice(0, 10);
}

/** Start (Unix ms) of the KST day `day`. */
function kstDayStart(day: string): number {
  return Date.parse(`${day}T00:00:00Z`) - KST_OFFSET_MS;
}

/** The summary of one KST day: paper trades and pnl, live fills, alarms raised, halts. */
export async function dailySummary(sql: Sql, day: string): Promise<Alert> {
  const from = new Date(kstDayStart(day));
  const to = new Date(kstDayStart(day) + 86_400_000);
  const [paper] = await sql<{ entries: number; exits: number; pnl: number }[]>`
    select count(*) filter (where action = 'ENTER_LONG')::int as entries,
           count(*) filter (where action = 'EXIT_LONG')::int as exits,
           coalesce(sum(pnl), 0)::float8 as pnl
    from paper_trades where ts >= ${from} and ts < ${to}`;
  const [live] = await sql<{ fills: number; attempts: number }[]>`
    select count(*) filter (where executed_volume > 0)::int as fills, count(*)::int as attempts
    from upbit_order_attempts where mode = 'live' and ts >= ${from} and ts < ${to}`;
  const [alarms] = await sql<{ raised: number; active: number }[]>`
    select count(*) filter (where first_at >= ${from} and first_at < ${to})::int as raised,
           count(*) filter (where cleared_at is null)::int as active
    from alarms`;
  const [halts] = await sql<{ n: number }[]>`
    select count(*)::int as n from trading_state_history
    where action = 'halt' and at >= ${from} and at < ${to}`;
  const p = paper!, l = live!, a = alarms!;
  return {
    type: "daily_summary",
    ts: to.getTime(),
    day_kst: day,
    paper_entries: p.entries,
    paper_exits: p.exits,
    paper_pnl: p.pnl,
    live_attempts: l.attempts,
    live_fills: l.fills,
    alarms_raised: a.raised,
    alarms_active: a.active,
    halts: halts!.n,
    text: `upbot ${day} (KST): ${p.entries} paper entries, ${p.exits} exits, paper pnl ${
      p.pnl.toFixed(0)
    } KRW; ${l.fills} live fills of ${l.attempts} live attempts; ${a.raised} alarms raised, ${a.active} active; ${
      halts!.n
    } halts`,
  };
}

/** Finds alerts in the database and delivers them to the webhook. */
export class AlertWebhook {
  readonly #options: Required<Omit<AlertWebhookOptions, "now">> & { now: () => number };
  #queue: Alert[] = [];
  #history = new SeenKeys();
  #alarms = new SeenKeys();
  #fills = new SeenKeys();
  readonly #sources: Record<SourceName, SeenKeys> = {
    history: this.#history,
    alarms: this.#alarms,
    fills: this.#fills,
  };
  /** The store and seen key of each queued alert of a stored fact. */
  #queuedKeys = new Map<Alert, { source: SourceName; key: string }>();
  /** The delivery position last stored (JSON), so that an unchanged one is not written again. */
  #savedState = "";
  #summaryDay = "";
  #timer: ReturnType<typeof setInterval> | undefined;
  #polling: Promise<void> | null = null;
  #delivering: Promise<void> | null = null;
  #stopped = false;
  #abort = new AbortController();
  /** Alerts delivered (answered 2xx). */
  delivered = 0;
  /** Alerts dropped: refused or unanswered through every attempt, or pushed out of a full queue. */
  dropped = 0;
  /** Whether {@linkcode ALERT_WEBHOOK_FAILING} is raised (null: not known since the start). */
  #failing: boolean | null = null;

  constructor(options: AlertWebhookOptions) {
    this.#options = {
      pollMs: 2000,
      maxAttempts: 6,
      retryBaseMs: 1000,
      queueLimit: 1000,
      now: Date.now,
      ...options,
    };
  }

  /**
   * Starts where the last run's delivery stood (stored), else from now: the first start sends no
   * fact already stored. Facts the last run delivered or dropped are not sent again (but for one
   * delivered right before a crash, before its position was stored).
   */
  async start(): Promise<void> {
    const stored = await this.#loadState();
    const [t] = await this.#options.sql<{ now: Date }[]>`select now() as now`;
    const dbNow = t!.now.getTime();
    if (stored) {
      // Facts after the stored times are read again; those the last run sent are marked seen.
      const from = { ...stored.through };
      for (const name of SOURCES) {
        const now = name === "fills" ? this.#options.now() : dbNow;
        from[name] = Math.max(from[name], now - CATCH_UP_MS);
        this.#sources[name].newest = from[name] + OVERLAP_MS;
      }
      for (const [seenKey, at] of stored.seen) {
        const colon = seenKey.indexOf(":");
        const name = seenKey.slice(0, colon) as SourceName;
        if (SOURCES.includes(name) && at > from[name]) {
          this.#sources[name].remember(seenKey.slice(colon + 1), at);
        }
      }
      this.#summaryDay = stored.summaryDay;
      await this.#findNew(true);
    } else {
      for (const name of SOURCES) {
        this.#sources[name].newest = name === "fills" ? this.#options.now() : dbNow;
      }
      // What the overlap would read again was stored before this start: mark it seen.
      await this.#findNew(false);
      this.#summaryDay = kstDay(this.#options.now());
      await this.#saveState();
    }
    this.#timer = setInterval(() => void this.poll(), this.#options.pollMs);
  }

  /**
   * Stops polling and retrying; waits for a poll in flight. Undelivered alerts stay undelivered
   * in the stored position: the next start sends them.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#abort.abort();
    await this.#polling;
    await this.#delivering;
  }

  /** One look at the database (also run by the timer); queues what is new and delivers. */
  poll(): Promise<void> {
    this.#polling ??= this.#findNew()
      .catch((err) =>
        this.#options.log.warn("Alert webhook: reading the database failed", {
          error: (err as Error).message,
        })
      )
      .finally(() => {
        this.#polling = null;
      });
    return this.#polling;
  }

  async #findNew(send = true): Promise<void> {
    const { sql } = this.#options;
    // Queued in time order once every store is read (a catch-up spans all three).
    const found: { alert: Alert; source?: SourceName; key?: string }[] = [];
    const enqueue = (alert: Alert, source?: SourceName, key?: string): void => {
      if (send) found.push({ alert, ...(source ? { source, key } : {}) });
    };
    // Taken before the reads: every fact of a transaction that began before `readAt - overlap`
    // is read below, so the window may move up to there even when nothing is new. Fills are
    // stamped by this process's clock (the executor's and poller's writes), the rest by the
    // database's.
    const processReadAt = this.#options.now();
    const [t] = await sql<{ now: Date }[]>`select now() as now`;
    const readAt = { history: t!.now.getTime(), alarms: t!.now.getTime(), fills: processReadAt };
    const historySince = this.#history.since(this.#oldestQueued("history"));
    const history = await readPaged((cursor) =>
      sql<
        {
          id: number;
          us: string;
          at: Date;
          scope: string;
          action: string;
          reason: string | null;
          by: string;
        }[]
      >`
        select id::float8 as id, (extract(epoch from at) * 1000000)::int8::text as us, at, scope,
               action, reason, changed_by as by
        from trading_state_history where at > ${historySince} ${after(sql, "at", cursor)}
        order by at, id limit ${PAGE_ROWS}`
    );
    for (const h of history) {
      if (!this.#history.add(String(h.id), h.at.getTime())) continue;
      const type = h.action === "halt" ? "halt" : h.action === "resume" ? "resume" : "flatten";
      const what = h.action === "halt"
        ? `entries HALTED (${h.scope}) by ${h.by}: ${h.reason ?? ""}`
        : h.action === "resume"
        ? `entries resumed (${h.scope}) by ${h.by}`
        : `${h.action.replace("_", " ")} by ${h.by}${h.reason ? `: ${h.reason}` : ""}`;
      enqueue(
        {
          type,
          ts: h.at.getTime(),
          scope: h.scope,
          by: h.by,
          reason: h.reason === null ? null : redact(h.reason),
          text: redact(`upbot: ${what}`),
        },
        "history",
        String(h.id),
      );
    }
    const alarmsSince = this.#alarms.since(this.#oldestQueued("alarms"));
    const alarms = await readPaged((cursor) =>
      sql<
        {
          id: number;
          us: string;
          code: string;
          market: string | null;
          message: string;
          count: number;
          last_at: Date;
        }[]
      >`
        select id::float8 as id, (extract(epoch from last_at) * 1000000)::int8::text as us, code,
               market, message, count, last_at
        from alarms where last_at > ${alarmsSince} ${after(sql, "last_at", cursor)}
        order by last_at, id limit ${PAGE_ROWS}`
    );
    for (const a of alarms) {
      // Raised again: the same alarm with a higher count is news.
      if (!this.#alarms.add(`${a.id}/${a.count}`, a.last_at.getTime())) continue;
      enqueue(
        {
          type: "alarm",
          ts: a.last_at.getTime(),
          code: a.code,
          market: a.market,
          count: a.count,
          message: redact(a.message),
          text: redact(`upbot ALARM ${a.code}${a.market ? ` ${a.market}` : ""}: ${a.message}`),
        },
        "alarms",
        `${a.id}/${a.count}`,
      );
    }
    const fillsSince = this.#fills.since(this.#oldestQueued("fills"));
    const fills = await readPaged((cursor) =>
      sql<
        {
          id: number;
          us: string;
          updated_at: Date;
          symbol: string;
          action: string;
          side: string;
          identifier: string;
          final_state: string;
          executed_volume: string;
          avg_price: string | null;
          paid_fee: string | null;
        }[]
      >`
      select id::float8 as id, (extract(epoch from updated_at) * 1000000)::int8::text as us,
             updated_at, symbol, action, side, identifier, final_state, executed_volume::text,
             avg_price::text, paid_fee::text
      from upbit_order_attempts
      where mode = 'live' and final_state is not null and executed_volume > 0
        and updated_at > ${fillsSince} ${after(sql, "updated_at", cursor)}
      order by updated_at, id limit ${PAGE_ROWS}`
    );
    for (const f of fills) {
      if (!this.#fills.add(String(f.id), f.updated_at.getTime())) continue;
      enqueue(
        {
          type: "live_fill",
          ts: f.updated_at.getTime(),
          market: f.symbol,
          action: f.action,
          side: f.side,
          identifier: f.identifier,
          final_state: f.final_state,
          executed_volume: f.executed_volume,
          avg_price: f.avg_price,
          paid_fee: f.paid_fee,
          text: `upbot live ${
            f.side === "bid" ? "buy" : "sell"
          } ${f.symbol}: ${f.executed_volume} at ${
            f.avg_price ?? "?"
          } (${f.final_state}, ${f.identifier})`,
        },
        "fills",
        String(f.id),
      );
    }
    const today = kstDay(this.#options.now());
    if (send && today !== this.#summaryDay) {
      // The day moves on once its summary is made: after a failed read the next poll tries again
      // (and the alerts found meanwhile are delivered).
      try {
        enqueue(await dailySummary(sql, this.#summaryDay));
        this.#summaryDay = today;
      } catch (err) {
        this.#options.log.warn("Alert webhook: the daily summary's read failed, tried again", {
          day_kst: this.#summaryDay,
          error: (err as Error).message,
        });
      }
    }
    for (const name of SOURCES) {
      this.#sources[name].newest = Math.max(this.#sources[name].newest, readAt[name]);
    }
    if (send) {
      found.sort((a, b) => a.alert.ts - b.alert.ts);
      for (const { alert, source, key } of found) {
        this.#enqueue(alert);
        if (source && key !== undefined) this.#queuedKeys.set(alert, { source, key });
      }
      await this.#saveState();
      this.#deliverAll();
    }
  }

  /** Where delivery stands now: what a start would resume from. */
  #deliveryState(): DeliveryState {
    const through = {} as Record<SourceName, number>;
    for (const name of SOURCES) {
      // Stamps may be whole milliseconds: a waiting alert's own time must stay after `through`.
      through[name] = Math.min(
        this.#sources[name].newest - OVERLAP_MS,
        this.#oldestQueued(name) - 1,
      );
    }
    let summaryDay = this.#summaryDay;
    for (const alert of this.#queue) {
      const day = alert.type === "daily_summary" ? String(alert.day_kst) : null;
      if (day !== null && day < summaryDay) summaryDay = day;
    }
    const queued = new Set([...this.#queuedKeys.values()].map((q) => `${q.source}:${q.key}`));
    const seen: [string, number][] = [];
    for (const name of SOURCES) {
      for (const [key, at] of this.#sources[name].entries()) {
        const seenKey = `${name}:${key}`;
        if (at > through[name] && !queued.has(seenKey)) seen.push([seenKey, at]);
      }
    }
    return { through, summaryDay, seen };
  }

  /** The fact time of the oldest alert of `source` still queued, or Infinity. */
  #oldestQueued(source: SourceName): number {
    let oldest = Infinity;
    for (const [alert, q] of this.#queuedKeys) {
      if (q.source === source) oldest = Math.min(oldest, alert.ts);
    }
    return oldest;
  }

  /** Stores {@linkcode #deliveryState} when it moved; a failed write is logged and tried again. */
  async #saveState(): Promise<void> {
    const state = this.#deliveryState();
    const text = JSON.stringify(state);
    if (text === this.#savedState) return;
    try {
      await saveActorState(this.#options.sql, ALERT_WEBHOOK_STATE, state);
      this.#savedState = text;
    } catch (err) {
      this.#options.log.warn("Alert webhook: storing where delivery stands failed", {
        error: (err as Error).message,
      });
    }
  }

  async #loadState(): Promise<DeliveryState | null> {
    const raw = await loadActorState<unknown>(this.#options.sql, ALERT_WEBHOOK_STATE);
    if (raw === null) return null;
    const parsed = DeliveryState.safeParse(raw);
    if (parsed.success) return parsed.data;
    this.#options.log.warn(
      "Alert webhook: the stored delivery position is not valid; starting from now",
      { problem: parsed.error.issues[0]?.message },
    );
    return null;
  }

  #enqueue(alert: Alert): void {
    this.#queue.push(alert);
    if (this.#queue.length > this.#options.queueLimit) {
      const dropped = this.#queue.shift()!;
      this.#queuedKeys.delete(dropped);
      void this.#dropped(dropped, `the queue of ${this.#options.queueLimit} alerts was full`);
    }
  }

  #deliverAll(): void {
    this.#delivering ??= (async () => {
      while (this.#queue.length > 0 && !this.#stopped) {
        const alert = this.#queue[0]!;
        await this.#deliver(alert);
        // Still queued when stopped mid-delivery: the next start sends it.
        if (this.#stopped) break;
        if (this.#queue[0] === alert) this.#queue.shift();
        this.#queuedKeys.delete(alert);
        await this.#saveState();
      }
    })().finally(() => {
      this.#delivering = null;
    });
  }

  /** An alert taken by the webhook: counted, and the failing alarm cleared if raised. */
  async #took(): Promise<void> {
    this.delivered++;
    if (this.#failing === false) return;
    try {
      await clearAlarm(this.#options.sql, ALERT_WEBHOOK_FAILING);
      this.#failing = false;
    } catch (err) {
      this.#options.log.warn("Alert webhook: clearing its alarm failed", {
        error: (err as Error).message,
      });
    }
  }

  /**
   * An alert dropped after every attempt: counted, logged, and the failing alarm raised (once: its
   * own alert may not get through either, and is not to raise it again).
   */
  async #dropped(alert: Alert, problem: string, attempts?: number): Promise<void> {
    this.dropped++;
    this.#options.log.error(
      attempts === undefined
        ? "Alert webhook: alert dropped, the queue was full"
        : "Alert webhook: alert dropped after retries",
      { type: alert.type, attempts, problem },
    );
    if (this.#failing === true) return;
    try {
      await raiseAlarm(this.#options.sql, {
        code: ALERT_WEBHOOK_FAILING,
        message: `The alert webhook did not take a ${alert.type} alert ` +
          (attempts === undefined ? "" : `in ${attempts} attempts `) +
          `(${problem}); it was dropped, and alerts are lost while the webhook fails. ` +
          `Cleared by the next alert it takes.`,
        details: { type: alert.type, attempts: attempts ?? null, problem },
      });
      this.#failing = true;
    } catch (err) {
      this.#options.log.warn("Alert webhook: raising its alarm failed", {
        error: (err as Error).message,
      });
    }
  }

  /** POSTs `alert`, retrying with backoff; gives up (and logs) after `maxAttempts`. */
  async #deliver(alert: Alert): Promise<void> {
    for (let attempt = 1; attempt <= this.#options.maxAttempts && !this.#stopped; attempt++) {
      let problem: string;
      try {
        const res = await fetch(this.#options.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(alert),
          signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(10_000)]),
        });
        await res.body?.cancel();
        if (res.ok) {
          await this.#took();
          return;
        }
        problem = `HTTP ${res.status}`;
      } catch (err) {
        problem = (err as Error).name === "TimeoutError" ? "timed out" : "unreachable";
      }
      if (this.#stopped) return;
      if (attempt === this.#options.maxAttempts) {
        await this.#dropped(alert, problem, attempt);
        return;
      }
      // No jitter: one webhook per process.
      const delay = backoffDelayMs(attempt - 1, {
        baseMs: this.#options.retryBaseMs,
        maxMs: 60_000,
        jitter: 0,
      });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#abort.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  }
}
