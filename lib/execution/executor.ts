/**
 * @module The executor's logic: paper trades (read from the database with a persistent cursor) ->
 * order attempts in shadow, test or live mode, idempotent per identifier `paper-{id}-{action}`.
 *
 * The attempt row is written before any request. A create whose answer is lost is resolved by
 * identifier (`GET /v1/order?identifier=`) before anything else; it is never resent blindly, and
 * Upbit's own identifier uniqueness backs this up, so one identifier never becomes two orders.
 * The worker shell (`actors/executor.ts`) only wakes this logic; the database holds the truth.
 */
import type { Sql } from "../db.ts";
import type { Logger } from "../log.ts";
import { loadActorState, saveActorState } from "../store/actor_state.ts";
import {
  attemptByIdentifier,
  type AttemptRow,
  exchangeAttemptsSince,
  insertAttempt,
  liveEntriesWithoutExit,
  retriableAttempts,
  unresolvedAttempts,
  updateAttempt,
} from "../store/order_attempts.ts";
import { paperTradeById, type PaperTradeRow, paperTradesAfter } from "../store/paper_trades.ts";
import { type CallMeta, UpbitBannedError } from "../upbit/errors.ts";
import type { OrderRequest, PostOrderResult, UpbitRest } from "../upbit/rest.ts";
import type { GuardDecision, TradeMode } from "./guard.ts";

/** Upbit's minimum order total on KRW markets (§8.2). */
export const MIN_ORDER_KRW = 5000;

/** Settings of the executor (its slice of the configuration). */
export interface ExecutorSettings {
  orderKrwAmount: number;
  maxOrdersPerMin: number;
  maxRetries: number;
  shadowEnabled: boolean;
  maxSignalAgeSec: number;
}

/** What the executor needs. */
export interface ExecutorOptions {
  sql: Sql;
  /** The Upbit client; required in test and live modes. */
  rest: UpbitRest | null;
  decision: GuardDecision;
  settings: ExecutorSettings;
  log: Logger;
  /** Called after a live order was submitted (wakes the order-poller). */
  onSubmitted?: () => void;
  /**
   * How long after a lost answer to wait before asking Upbit by identifier: a request that timed
   * out here may still be on its way there. @default {3000}
   */
  unknownSettleMs?: number;
  now?: () => number;
}

const CURSOR_KEY = "executor.cursor";
const DONE_STATUSES = new Set(["logged", "test_ok", "submitted", "done", "skipped"]);

/** `paper-{id}-{action}`: the client order id of a paper trade's order. */
export function identifierFor(paperTradeId: number, action: string): string {
  return `paper-${paperTradeId}-${action}`;
}

/** Formats a volume for Upbit: at most 8 decimals, truncated (never rounded up past what we hold). */
export function formatVolume(volume: number | string): string {
  const s = typeof volume === "string" ? volume : volume.toFixed(12);
  const [int, frac = ""] = s.split(".");
  const trimmed = frac.slice(0, 8).replace(/0+$/, "");
  return trimmed ? `${int}.${trimmed}` : int!;
}

/** Result of one {@linkcode Executor.runOnce}. */
export interface RunSummary {
  /** Paper trades handled (attempt written or skipped). */
  handled: number;
  /** true when work remains (rate cap hit, an entry still filling). */
  more: boolean;
}

/** Turns paper trades into order attempts. */
export class Executor {
  readonly mode: TradeMode;
  #o: ExecutorOptions;
  #cursor = 0;
  #now: () => number;
  #capLogged = false;
  #banLogged = false;

  constructor(options: ExecutorOptions) {
    this.#o = options;
    this.mode = options.decision.effective;
    this.#now = options.now ?? Date.now;
    if (this.mode !== "shadow" && !options.rest) {
      throw new Error(`Cannot create Executor in ${this.mode} mode without an Upbit client`);
    }
  }

  /** The last paper trade id fully handled. */
  get cursor(): number {
    return this.#cursor;
  }

  /** Logs the start line (every guard condition) and loads the cursor. */
  async start(): Promise<void> {
    const d = this.#o.decision;
    const liveEnabled = d.conditions.find((c) => c.name === "LIVE_TRADING_ENABLED")?.value;
    this.#o.log.info(
      `Executor started (effective_mode=${d.effective} live_enabled=${liveEnabled} trade_mode=${d.requested})`,
      {
        guard: Object.fromEntries(
          d.conditions.map((c) => [c.name, `${c.ok ? "ok" : "no"} (${c.value})`]),
        ),
      },
    );
    if (d.downgradeReasons.length > 0) {
      this.#o.log.warn(
        `Executor downgraded ${d.requested} -> ${d.effective}: ${d.downgradeReasons.join(", ")}`,
      );
    }
    if (d.effective === "shadow" && !this.#o.settings.shadowEnabled) {
      this.#o.log.info("Executor: SHADOW_ENABLED=false, paper trades are not recorded as attempts");
    }
    if (this.mode !== "live") {
      const open = await liveEntriesWithoutExit(this.#o.sql);
      if (open.length > 0) {
        this.#o.log.warn(
          `${open.length} live position(s) bought by upbot have no live exit; in ${this.mode} mode nothing will sell them`,
          {
            identifiers: open.map((a) => a.identifier),
            markets: [...new Set(open.map((a) => a.symbol))],
          },
        );
      }
    }
    const stored = await loadActorState<{ lastId: number }>(this.#o.sql, CURSOR_KEY);
    this.#cursor = stored?.lastId ?? 0;
    this.#o.log.info(`Executor cursor init: last_id=${this.#cursor}`);
  }

  /**
   * One pass: resolve attempts whose outcome is unknown, retry errors, then handle new paper
   * trades in id order, advancing the durable cursor after each.
   */
  async runOnce(): Promise<RunSummary> {
    let more = false;
    if (this.mode !== "shadow") {
      // During a 418 ban the client refuses every call locally: sending would only burn retries.
      const bannedUntil = this.#o.rest!.rateLimiter.bannedUntil();
      if (bannedUntil > 0) {
        if (!this.#banLogged) {
          this.#o.log.warn(
            `Upbit ban in force until ${new Date(bannedUntil).toISOString()}; waiting`,
          );
        }
        this.#banLogged = true;
        return { handled: 0, more: true };
      }
      this.#banLogged = false;
      const settle = this.#o.unknownSettleMs ?? 3000;
      for (const a of await unresolvedAttempts(this.#o.sql, this.mode)) {
        if (this.#now() - a.updated_at.getTime() < settle) {
          more = true; // too early to trust a "not found"
          continue;
        }
        await this.#resolve(a);
      }
      for (
        const a of await retriableAttempts(this.#o.sql, this.mode, this.#o.settings.maxRetries)
      ) {
        const paper = a.paper_trade_id === null
          ? null
          : await paperTradeById(this.#o.sql, a.paper_trade_id);
        if (!paper) continue;
        if (paper.action === "ENTER_LONG" && this.#isStale(paper)) {
          // An entry is only worth its signal's time; its exit will find it bought nothing.
          await updateAttempt(this.#o.sql, a.id, {
            retry_count: this.#o.settings.maxRetries,
            error_msg: `${a.error_msg ?? "error"}; not retried: signal is stale`,
          });
          continue;
        }
        if (!(await this.#underCap())) return { handled: 0, more: true };
        const updated = await updateAttempt(this.#o.sql, a.id, {
          status: "pending",
          retry_count: a.retry_count + 1,
        });
        this.#o.log.info(
          `Retry ${updated.identifier} (${updated.retry_count}/${this.#o.settings.maxRetries})`,
        );
        await this.#send(updated);
      }
    }
    // New paper trades in id order. One that must wait (an exit whose entry is still filling)
    // holds back the later trades of its own market only; the durable cursor advances over the
    // handled prefix, and a handled trade seen again is skipped by its attempt row.
    let handled = 0;
    let after = this.#cursor;
    const waiting = new Set<string>();
    for (;;) {
      const batch = await paperTradesAfter(this.#o.sql, after, 50);
      if (batch.length === 0) break;
      for (const paper of batch) {
        after = paper.id;
        let outcome: "handled" | "seen" | "wait" | "capped" = "wait";
        if (!waiting.has(paper.symbol)) outcome = await this.#handle(paper);
        if (outcome === "capped") return { handled, more: true };
        if (outcome === "wait") {
          waiting.add(paper.symbol);
          continue;
        }
        if (outcome === "handled") handled++;
        if (waiting.size === 0) {
          this.#cursor = paper.id;
          await saveActorState(this.#o.sql, CURSOR_KEY, { lastId: paper.id });
        }
      }
    }
    return { handled, more: more || waiting.size > 0 };
  }

  #isStale(paper: PaperTradeRow): boolean {
    return (this.#now() - paper.ts.getTime()) / 1000 > this.#o.settings.maxSignalAgeSec;
  }

  async #underCap(): Promise<boolean> {
    const since = new Date(this.#now() - 60_000);
    const n = await exchangeAttemptsSince(this.#o.sql, since);
    const under = n < this.#o.settings.maxOrdersPerMin;
    if (!under && !this.#capLogged) {
      this.#o.log.warn(`Order rate cap reached (${n} in the last minute); waiting`, {
        max_orders_per_min: this.#o.settings.maxOrdersPerMin,
      });
    }
    this.#capLogged = !under;
    return under;
  }

  async #handle(paper: PaperTradeRow): Promise<"handled" | "seen" | "wait" | "capped"> {
    const identifier = identifierFor(paper.id, paper.action);
    const existing = await attemptByIdentifier(this.#o.sql, identifier);
    if (existing) {
      // Idempotency: logged / test_ok / submitted / done / skipped are final for this identifier;
      // pending / unknown / error are picked up by the resolution and retry passes.
      if (DONE_STATUSES.has(existing.status)) {
        this.#o.log.debug(`Skip ${identifier}: already ${existing.status}`);
      }
      return "seen";
    }
    if (this.mode === "shadow" && !this.#o.settings.shadowEnabled) return "handled";
    const order = await this.#orderFor(paper);
    if (order === "wait") return "wait";
    const base = {
      symbol: paper.symbol,
      action: paper.action,
      mode: this.mode,
      side: paper.action === "ENTER_LONG" ? "bid" as const : "ask" as const,
      ord_type: paper.action === "ENTER_LONG" ? "price" as const : "market" as const,
      paper_trade_id: paper.id,
      identifier,
    };
    if ("skip" in order) {
      await insertAttempt(this.#o.sql, {
        ...base,
        price: null,
        volume: null,
        status: "skipped",
        request_json: {},
        error_msg: order.skip,
      });
      this.#o.log.warn(`Skip [${paper.action}] ${identifier}: ${order.skip}`);
      return "handled";
    }
    const request = order.request;
    if (this.mode === "shadow") {
      await insertAttempt(this.#o.sql, {
        ...base,
        price: request.price ?? null,
        volume: request.volume ?? null,
        status: "logged",
        request_json: { ...request },
      });
      const amount = request.volume !== undefined
        ? `volume=${request.volume}`
        : `price=${request.price}`;
      this.#o.log.info(
        `Shadow [${paper.action}]: side=${request.side} ord_type=${request.ord_type} ${amount} (no API call)`,
        { identifier, paper_trade_id: paper.id, market: paper.symbol },
      );
      return "handled";
    }
    if (!(await this.#underCap())) return "capped";
    const attempt = await insertAttempt(this.#o.sql, {
      ...base,
      price: request.price ?? null,
      volume: request.volume ?? null,
      status: "pending",
      request_json: { ...request },
    });
    if (!attempt) return "handled"; // another writer won the identifier: never send twice
    await this.#send(attempt);
    return "handled";
  }

  /** Builds the order for a paper trade, or says why it is skipped, or to wait. */
  async #orderFor(
    paper: PaperTradeRow,
  ): Promise<{ request: OrderRequest } | { skip: string } | "wait"> {
    const identifier = identifierFor(paper.id, paper.action);
    if (paper.action === "ENTER_LONG") {
      // Only entries go stale: an exit must be sent however late, or a live position stays open.
      if (this.mode !== "shadow" && this.#isStale(paper)) {
        const ageSec = Math.round((this.#now() - paper.ts.getTime()) / 1000);
        return { skip: `stale: paper trade is ${ageSec}s old` };
      }
      return {
        request: {
          market: paper.symbol,
          side: "bid",
          ord_type: "price",
          price: String(this.#o.settings.orderKrwAmount),
          identifier,
        },
      };
    }
    let volume = formatVolume(paper.qty);
    if (this.mode === "live") {
      // Sell what the live entry really bought, not the paper quantity.
      const entry = paper.entry_id === null
        ? null
        : await attemptByIdentifier(this.#o.sql, identifierFor(paper.entry_id, "ENTER_LONG"));
      if (!entry || entry.mode !== "live") return { skip: "no live entry for this exit" };
      if (entry.status === "pending" || entry.status === "unknown") return "wait";
      if (entry.status === "submitted" && entry.final_state === null) return "wait";
      // An entry that may still be retried may still buy.
      if (entry.status === "error" && entry.retry_count < this.#o.settings.maxRetries) {
        return "wait";
      }
      const bought = Number(entry.executed_volume ?? "0");
      if (!(bought > 0)) return { skip: `live entry ${entry.identifier} bought nothing` };
      volume = formatVolume(entry.executed_volume!);
    }
    const price = Number(paper.exit_price ?? paper.entry_price);
    if (Number(volume) * price < MIN_ORDER_KRW) {
      return { skip: `under min total ${MIN_ORDER_KRW} KRW (volume=${volume} at ${price})` };
    }
    return {
      request: { market: paper.symbol, side: "ask", ord_type: "market", volume, identifier },
    };
  }

  /** Sends a `pending` attempt and records the outcome. */
  async #send(attempt: AttemptRow): Promise<void> {
    const rest = this.#o.rest!;
    const body = attempt.request_json as unknown as OrderRequest;
    let result: PostOrderResult;
    if (this.mode === "test") {
      // §4.4: whether a test call burns an identifier is undocumented; send none (safe reading),
      // our own row keeps the identifier.
      const { identifier: _unused, ...testBody } = body;
      result = await rest.postOrderTest(testBody);
    } else {
      result = await rest.postOrder(body);
    }
    await this.#record(attempt, result);
  }

  async #record(attempt: AttemptRow, result: PostOrderResult): Promise<void> {
    const tag = `${
      this.mode === "test" ? "Test" : "Live"
    } [${attempt.action}] ${attempt.identifier}`;
    switch (result.kind) {
      case "accepted": {
        const status = result.test ? "test_ok" : "submitted";
        await updateAttempt(this.#o.sql, attempt.id, {
          status,
          // Test uuids are not real orders: never store one where the poller would look.
          uuid: result.test ? null : result.order.uuid,
          response_json: result.order,
          error_msg: null,
          ...metaFields(result.meta),
        });
        this.#o.log.info(`${tag}: ${status}`, {
          uuid: result.test ? undefined : result.order.uuid,
          ...metaFields(result.meta),
        });
        if (!result.test) this.#o.onSubmitted?.();
        return;
      }
      case "rejected": {
        const err = result.error;
        if (err instanceof UpbitBannedError) {
          // Refused locally during a ban: nothing was sent. Pending attempts are sent again
          // (after a check by identifier) once the ban is over, without using a retry.
          await updateAttempt(this.#o.sql, attempt.id, {
            status: "pending",
            error_msg: `not sent: ${err.message}`,
          });
          this.#o.log.warn(`${tag}: not sent (${err.message})`);
          return;
        }
        const code = err.code;
        if (!result.test && code === "duplicated_identifier") {
          // The identifier exists at Upbit: an earlier try may have created the order. Find out
          // on a later pass, once that try cannot still be in flight.
          await updateAttempt(this.#o.sql, attempt.id, { status: "unknown", error_msg: code });
          this.#o.log.warn(`${tag}: identifier already used at Upbit; will resolve by identifier`);
          return;
        }
        // Only a refusal that may pass later is retried (rate limit, ban, server trouble); a
        // definite 4xx (funds, price, minimum, ...) would be refused again.
        const retriable = err.httpStatus === 429 || err.httpStatus === 418 ||
          err.httpStatus >= 500;
        await updateAttempt(this.#o.sql, attempt.id, {
          status: "error",
          error_msg: `${code}: ${err.message}`,
          ...(retriable ? {} : { retry_count: this.#o.settings.maxRetries }),
          ...(result.meta ? metaFields(result.meta) : {}),
        });
        this.#o.log.warn(`${tag}: error ${code}${retriable ? "" : " (not retried)"}`, {
          message: err.message,
          ...(result.meta ? metaFields(result.meta) : {}),
        });
        if (!retriable) this.#positionLeftOpen(attempt, `${code}: ${err.message}`);
        return;
      }
      case "unknown": {
        await updateAttempt(this.#o.sql, attempt.id, {
          status: "unknown",
          error_msg: `outcome unknown: ${result.reason}`,
          ...(result.meta ? metaFields(result.meta) : {}),
        });
        if (result.test) {
          // A test call creates nothing: an unknown outcome is simply a failed test.
          await updateAttempt(this.#o.sql, attempt.id, { status: "error" });
          this.#o.log.warn(`${tag}: no answer (${result.reason})`);
          return;
        }
        // Resolved by identifier on a later pass, once the request cannot still be in flight.
        this.#o.log.warn(`${tag}: outcome unknown (${result.reason}); will resolve by identifier`);
        return;
      }
    }
  }

  /** Finds out whether a pending / unknown attempt became an order, by its identifier. */
  async #resolve(attempt: AttemptRow): Promise<void> {
    if (this.mode === "test") {
      // Nothing real can exist for a test call: send it (again).
      await this.#send(attempt);
      return;
    }
    const rest = this.#o.rest!;
    let found;
    try {
      found = await rest.resolveUnknownOrder(attempt.identifier);
    } catch (err) {
      this.#o.log.warn(`Resolve ${attempt.identifier} failed; will try again`, {
        error: (err as Error).message,
      });
      return;
    }
    if (found.kind === "found") {
      await updateAttempt(this.#o.sql, attempt.id, {
        status: "submitted",
        uuid: found.order.uuid,
        response_json: found.order,
        error_msg: null,
      });
      this.#o.log.info(`Resolved ${attempt.identifier}: order exists (uuid=${found.order.uuid})`);
      this.#o.onSubmitted?.();
      return;
    }
    if (attempt.status === "pending") {
      // Crash between writing the attempt and sending it: nothing reached Upbit; send now.
      if (!(await this.#underCap())) return;
      this.#o.log.info(`Resolved ${attempt.identifier}: never sent; sending`);
      await this.#send(attempt);
      return;
    }
    const burnt = attempt.error_msg === "duplicated_identifier";
    await updateAttempt(this.#o.sql, attempt.id, {
      status: "error",
      error_msg: burnt
        ? "identifier already used at Upbit and no order found; not retried"
        : "not created (resolved by identifier)",
      // A burnt identifier can never be used again: stop retrying it.
      ...(burnt ? { retry_count: this.#o.settings.maxRetries } : {}),
    });
    this.#o.log.warn(`Resolved ${attempt.identifier}: no order exists`);
    if (burnt) this.#positionLeftOpen(attempt, "identifier already used at Upbit");
  }

  /** A live sell that will not be sent again leaves coins on the exchange: say so loudly. */
  #positionLeftOpen(attempt: AttemptRow, why: string): void {
    if (this.mode !== "live" || attempt.action !== "EXIT_LONG") return;
    this.#o.log.error(
      `Live position of ${attempt.symbol} stays open: ${attempt.identifier} will not be sent again (${why}); sell it by hand or check the account`,
      { volume: attempt.volume },
    );
  }
}

function metaFields(
  meta: CallMeta,
): { http_status: number | null; latency_ms: number; remaining_req: string | null } {
  return {
    http_status: meta.http_status,
    latency_ms: Math.round(meta.latency_ms),
    remaining_req: meta.remaining_req,
  };
}
