/**
 * @module The executor's logic: paper trades (read from the database with a persistent cursor) ->
 * order attempts in shadow, test or live mode, each moved through the order state machine
 * (`order_state.ts`) and sent under an identifier unique forever:
 * `paper-{installation}-{paper_trade_id}-{action}`, with `-r{n}` only when a fresh one is needed.
 *
 * The attempt row is written before any request. An attempt that may have reached Upbit (sent,
 * answer lost, or left pending by a crash) is looked up by every identifier it ever used before
 * anything is sent again; an order found is adopted only if it is the order the attempt asked for.
 * Halts stop entries only: exits, resolution and retries of exits go on (reduce-only). The actor
 * (`lib/pipeline/executor_actor.ts`) only wakes this logic; the database holds the truth.
 */
import { parseConfig } from "../config.ts";
import { entryHaltReason, haltEntries } from "../control/trading_state.ts";
import type { Client } from "../db/connect.ts";
import { dec, formatDec, minDec, ZERO } from "../decimal.ts";
import type { Logger } from "../log.ts";
import { clearAlarm, raiseAlarm } from "../store/alarms.ts";
import { loadActorState, saveActorState } from "../store/actor_state.ts";
import {
  attemptForPaperTrade,
  type AttemptPatch,
  type AttemptRow,
  exchangeAttemptsInLastMinute,
  hasLiveAttempts,
  identifiersOf,
  insertAttempt,
  installationId,
  liveEntriesWithoutExit,
  type NewAttempt,
  rotateIdentifier,
  sentOrderBody,
  transitionAttempt,
  unfinishedLiveSells,
  unresolvedAttempts,
} from "../store/order_attempts.ts";
import {
  paperTradeById,
  type PaperTradeRow,
  paperTradesWithAttemptAfter,
  type PaperTradeWithAttempt,
  type ReadPast,
} from "../store/paper_trades.ts";
import { backoffDelayMs } from "../upbit/backoff.ts";
import { type CallMeta, UpbitBanActiveError } from "../upbit/errors.ts";
import type { OrderRequest, PostOrderResult, UpbitRest } from "../upbit/rest.ts";
import type { Order } from "../upbit/schemas.ts";
import type { GuardDecision, TradeMode } from "./guard.ts";
import { orderMismatch } from "./exchange_order.ts";
import { identifierFor, rotatedIdentifier } from "./identifiers.ts";
import type { OrderState } from "./order_state.ts";
import { PositionClosing } from "./position_closing.ts";
import { ledgerPosition, ledgerPositions } from "./position_ledger.ts";
import { reconcile } from "./reconcile.ts";
import {
  gateOrder,
  type MarketRefusal,
  type RiskLimits,
  riskLimits,
  type RiskOrder,
} from "./risk_gate.ts";
import { reportSecondOrder, secondOrder } from "./second_orders.ts";
import { closeReconciliationGate, reconciliationGate } from "./system_gate.ts";

export { closeIdentifierFor, identifierFor, MAX_IDENTIFIER_LENGTH } from "./identifiers.ts";

/** Upbit's minimum order total on KRW markets (§8.2). */
export const MIN_ORDER_KRW = 5000;

/** Settings of the executor (its slice of the configuration). */
export interface ExecutorSettings {
  orderKrwAmount: number;
  maxOrdersPerMin: number;
  /** Re-sends of an ENTRY after a failure; exits are retried for as long as the position is open. */
  maxRetries: number;
  shadowEnabled: boolean;
  maxSignalAgeSec: number;
  /**
   * `EXECUTOR_LANDING_WAIT_SEC`: how long a create whose answer never came may still land at
   * Upbit (used when `rotationWaitMs` is not given). @default {60}
   */
  landingWaitSec?: number;
  /** `RECONCILE_RETRY_SEC`: pause after a failed reconciliation before the next. @default {10} */
  reconcileRetrySec?: number;
  /**
   * `RECONCILE_INTERVAL_MIN`: minutes between routine reconciliations while the gate is open
   * (live mode; 0: none). @default {60}
   */
  reconcileIntervalMin?: number;
  /**
   * `MARKETS`: the markets the evaluator trades. A live position of another market gets no paper
   * exit, so the closer sells it. When absent every market counts as configured.
   */
  markets?: readonly string[];
}

/** Failed reconciliations in a row that raise `reconciliation_failing`. */
export const RECONCILE_FAILURES_ALARM = 3;

/** Minutes a live sell may go unjudged by the risk gate before `exit_failing` says so. */
const UNJUDGED_SELL_ALARM_MIN = 5;

/** Reasons a pending attempt carries when its last create may still be processed at Upbit. */
const MAY_STILL_LAND = /^(not_created|lost_response|server_error|http_5\d\d)$/;

/**
 * Reasons an attempt carries when its current identifier has never been sent: written (an entry or
 * exit, a close of the ledger or of a flatten) or just rotated. Any other reason (a refusal that
 * may pass, a lost answer, a local ban, one this list does not know) may follow a send under it.
 */
const FRESH_IDENTIFIER_REASONS: ReadonlySet<string | null> = new Set([
  null,
  "identifier_rotated",
  "ledger_open",
  "flatten",
]);

/**
 * Reasons of an `unknown` attempt whose identifier Upbit would not take again: refused as used
 * (`duplicated_identifier`), or a re-send under it refused for good by another name
 * (`resend_refused`). Resolved by identifier; moved to a fresh one only after the landing wait.
 */
const USED_IDENTIFIER_REASONS: ReadonlySet<string> = new Set([
  "duplicated_identifier",
  "resend_refused",
]);

/** What the executor needs. */
export interface ExecutorOptions {
  sql: Client;
  /** The Upbit client; required in test and live modes. */
  rest: UpbitRest | null;
  decision: GuardDecision;
  settings: ExecutorSettings;
  log: Logger;
  /** Called after a live order was submitted or adopted (wakes the order-poller). */
  onSubmitted?: () => void;
  /**
   * Why entries are halted by the supervisor (a critical actor failed), or null. Checked with the
   * database's own halts (`entryHaltReason`); exits never are.
   */
  supervisorHalt?: () => string | null;
  /**
   * How long after a lost answer to wait before asking Upbit by identifier: a request that timed
   * out here may still be on its way there. @default {3000}
   */
  unknownSettleMs?: number;
  /**
   * How long a create whose answer never came may still land at Upbit, in ms: the attempt moves
   * to a fresh identifier only after it (see `#resolve`), and an entry is not given up before it
   * (see `#gate`). @default {settings.landingWaitSec, 60 s}
   */
  rotationWaitMs?: number;
  /** Backoff of a re-send after a refusal that may pass (429, 418, 5xx, maintenance). */
  retryBackoff?: { baseMs: number; maxMs: number };
  /**
   * A live executor that only closes: it resolves and re-sends live attempts (an entry is never
   * sent: it is skipped as halted), runs the position closer and handles no paper trade (the
   * executor of the mode in force does, and keeps the cursor). Made by a shadow or test executor
   * with an Upbit client, never by callers (see {@linkcode Executor.start}).
   */
  closesOnly?: boolean;
  /**
   * The risk gate every live order passes right before the wire (`risk_gate.ts`).
   * @default {the settings' defaults, no market warnings}
   */
  risk?: { limits: RiskLimits; marketRefusal?: MarketRefusal };
  now?: () => number;
}

const CURSOR_KEY = "executor.cursor";

/** Upbit refusals that may pass by waiting: nothing was created, send again later. */
const PASSING_REFUSALS = new Set(["market_offline"]);

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
  /** true when work remains (rate cap hit, an entry still filling, an answer to settle). */
  more: boolean;
}

type Outcome = "handled" | "seen" | "wait" | "capped";

/** Turns paper trades into order attempts. */
export class Executor {
  readonly mode: TradeMode;
  #options: ExecutorOptions;
  #cursor = 0;
  /**
   * In memory only (a restart reads again from the durable cursor): the paper trades this
   * executor need not read again. Every trade up to `through` is handled, except those of a
   * market of `heldFrom` from its id on, held back behind one that waits. Without it, a market
   * that waits for long (a lost sell waits for a person) pins the cursor, and every pass would
   * read every later trade of every market again.
   */
  #readPast: ReadPast = { through: 0, heldFrom: new Map() };
  #now: () => number;
  #installation = "";
  #capLogged = false;
  #reconcileRetryAt = 0;
  /** Attempts whose risk gate could not be judged: tries so far, and when to judge again. */
  #gateWaits = new Map<number, { n: number; until: number }>();
  /** Reconciliations failed in a row (gate or routine). */
  #reconcileFailures = 0;
  /** When the next routine reconciliation is due (process clock, ms); 0 until the first pass. */
  #routineReconcileAt = 0;
  #banLogged = false;
  #closer: PositionClosing | null = null;
  /** The unmanaged live positions last reported (shadow / test mode). */
  #unmanagedReported = "";
  /**
   * Shadow / test mode with an Upbit client on a database that has sent live orders: the live
   * executor that keeps closing what upbot bought (a live position outlives a mode change).
   */
  #liveCloser: Executor | null = null;

  constructor(options: ExecutorOptions) {
    this.#options = options;
    this.mode = options.closesOnly ? "live" : options.decision.effective;
    this.#now = options.now ?? Date.now;
    if (this.mode !== "shadow" && !options.rest) {
      throw new Error(`Cannot create Executor in ${this.mode} mode without an Upbit client`);
    }
    if (this.mode === "live") {
      this.#closer = new PositionClosing({
        sql: options.sql,
        rest: options.rest!,
        log: options.log,
        installation: () => this.#installation,
        handledThrough: () => this.#cursor,
        underCap: () => this.#underCap(),
        // The cap was checked when the close was written (it counts itself then).
        send: (attempt) => this.#send(attempt, true),
        retryDelayMs: (refusals) => this.#retryAt(refusals).getTime() - this.#now(),
        now: this.#now,
        ...(options.settings.markets ? { markets: options.settings.markets } : {}),
      });
    }
  }

  /** The last paper trade id fully handled. */
  get cursor(): number {
    return this.#cursor;
  }

  /** This installation's id (known after {@linkcode start}). */
  get installation(): string {
    return this.#installation;
  }

  /**
   * Logs the start line (every guard condition), loads the cursor and the installation id.
   * Outside live mode, with an Upbit client, on a database that has sent live orders, it also
   * starts the live closer: what upbot bought live is still sold (paper exits' positions, closes,
   * a flatten), after a reconciliation, and no entry goes out.
   */
  async start(): Promise<void> {
    if (this.#options.closesOnly) return await this.#startClosesOnly();
    const d = this.#options.decision;
    const liveEnabled = d.conditions.find((c) => c.name === "LIVE_TRADING_ENABLED")?.value;
    this.#installation = await installationId(this.#options.sql);
    this.#options.log.info(
      `Executor started (effective_mode=${d.effective} live_enabled=${liveEnabled} trade_mode=${d.requested})`,
      {
        installation: this.#installation,
        guard: Object.fromEntries(
          d.conditions.map((c) => [c.name, `${c.ok ? "ok" : "no"} (${c.value})`]),
        ),
      },
    );
    if (d.downgradeReasons.length > 0) {
      this.#options.log.warn(
        `Executor downgraded ${d.requested} -> ${d.effective}: ${d.downgradeReasons.join(", ")}`,
      );
    }
    if (d.effective === "shadow" && !this.#options.settings.shadowEnabled) {
      this.#options.log.info(
        "Executor: SHADOW_ENABLED=false, paper trades are not recorded as attempts",
      );
    }
    if (this.mode !== "live" && this.#options.rest && await hasLiveAttempts(this.#options.sql)) {
      this.#liveCloser = new Executor({ ...this.#options, closesOnly: true });
      await this.#liveCloser.start();
    } else if (this.mode !== "live") await this.#reportUnmanagedPositions();
    // Live mode manages (closes) every ledger position again.
    else await clearAlarm(this.#options.sql, "live_positions_unmanaged");
    if (this.mode === "live") {
      // Nothing goes out before the database has been compared with the exchange.
      await closeReconciliationGate(this.#options.sql, "live start: reconcile before any order");
    }
    const stored = await loadActorState<{ lastId: number }>(this.#options.sql, CURSOR_KEY);
    this.#cursor = stored?.lastId ?? 0;
    this.#readPast = { through: 0, heldFrom: new Map() };
    this.#options.log.info(`Executor cursor init: last_id=${this.#cursor}`);
  }

  /** The live closer's start: no paper trade is handled, so only the closing half of start. */
  async #startClosesOnly(): Promise<void> {
    const mode = this.#options.decision.effective;
    this.#installation = await installationId(this.#options.sql);
    this.#options.log.warn(
      `Live closer started beside the ${mode} executor: live positions upbot bought are still sold (exits, closes, a flatten); no entry is sent`,
    );
    await clearAlarm(this.#options.sql, "live_positions_unmanaged");
    // As at a live start: nothing is sold before the database has been compared with the exchange
    // (a restored backup's ledger may hold coins upbot sold since).
    await closeReconciliationGate(
      this.#options.sql,
      `${mode} start: reconcile before closing live positions`,
    );
  }

  /**
   * In shadow / test mode without an Upbit client nothing is sent: live positions wait for live
   * mode. Say so loudly, at the start and again on any pass that finds another position: a live
   * order still in flight when the mode changed may fill later (the poller records it), and that
   * position is as unmanaged as the ones held at the start.
   */
  async #reportUnmanagedPositions(): Promise<void> {
    const held = (await ledgerPositions(this.#options.sql)).filter((p) => dec(p.openVolume) > ZERO);
    const markets = held.map((p) => `${p.symbol} ${p.openVolume}`);
    const seen = markets.join(", ");
    if (held.length === 0 || seen === this.#unmanagedReported) return;
    this.#unmanagedReported = seen;
    const open = await liveEntriesWithoutExit(this.#options.sql);
    const message =
      `${held.length} live position(s) bought by upbot have no live exit (${seen}); in ${this.mode} mode nothing will sell them: they are closed when live mode returns`;
    this.#options.log.error(message, { identifiers: open.map((a) => a.identifier), markets });
    await raiseAlarm(this.#options.sql, {
      code: "live_positions_unmanaged",
      message,
      details: { positions: held.map((p) => ({ market: p.symbol, volume: p.openVolume })) },
    });
  }

  /**
   * One pass: resolve and (re)send attempts that may have reached Upbit or wait to be sent, then
   * handle new paper trades in id order, advancing the durable cursor after each.
   */
  async runOnce(): Promise<RunSummary> {
    if (!this.#installation) this.#installation = await installationId(this.#options.sql);
    let more = false;
    const sql = this.#options.sql;
    // The pass's first reads go out together: the gate, the unresolved attempts and the first
    // batch of new paper trades (the cursor moves only in this pass's loop below). A read not
    // used (the pass ends early) is dropped.
    const firstBatch = settled(
      this.#options.closesOnly
        ? Promise.resolve([])
        : paperTradesWithAttemptAfter(sql, this.#cursor, 50, this.#readPast),
    );
    if (this.mode !== "shadow") {
      // During a 418 ban the client refuses every call locally: sending would only burn retries.
      const bannedUntil = this.#options.rest!.rateLimiter.bannedUntil();
      if (bannedUntil > 0) {
        if (!this.#banLogged) {
          this.#options.log.warn(
            `Upbit ban in force until ${new Date(bannedUntil).toISOString()}; waiting`,
          );
        }
        this.#banLogged = true;
        return { handled: 0, more: true };
      }
      this.#banLogged = false;
      const unresolved = settled(unresolvedAttempts(sql, this.mode, new Date(this.#now())));
      if (this.mode === "live") {
        const gate = await this.#reconciled();
        if (!gate) return { handled: 0, more: true };
        await this.#routineReconciliation(gate === "reconciled");
        // A reconciliation that just ran may have changed attempts: read them again.
        if (gate === "reconciled") {
          unresolved.value = unresolvedAttempts(sql, this.mode, new Date(this.#now()));
        }
      }
      const settle = this.#options.unknownSettleMs ?? 3000;
      const open = await unresolved.value;
      // An attempt resolved another way (adopted, given up) needs its back-off no more.
      const ids = new Set(open.map((a) => a.id));
      for (const id of this.#gateWaits.keys()) if (!ids.has(id)) this.#gateWaits.delete(id);
      for (const a of open) {
        const gateWait = this.#gateWaits.get(a.id);
        if (gateWait && this.#now() < gateWait.until) {
          more = true; // its risk gate could not be judged lately: backing off
          continue;
        }
        if (this.#now() - a.updated_at.getTime() < settle) {
          more = true; // too early to trust a "not found"
          continue;
        }
        const r = await this.#resolve(a);
        if (r === "capped") return { handled: 0, more: true };
        if (r === "more") more = true;
      }
    }
    // New paper trades in id order. One that must wait (an exit whose entry is still filling)
    // holds back the later trades of its own market only; the durable cursor advances over the
    // handled prefix, and a handled trade seen again is skipped by its attempt row. Trades read
    // past in an earlier pass (#readPast) are not read again.
    let handled = 0;
    let after = this.#cursor;
    /** Market -> its first trade that waits in this pass. */
    const waiting = new Map<string, number>();
    for (let first = true; !this.#options.closesOnly; first = false) {
      const batch = first
        ? await firstBatch.value
        : await paperTradesWithAttemptAfter(sql, after, 50, this.#readPast);
      if (batch.length === 0) {
        // Read to the end: from now on only new trades and the waiting markets' are read. A
        // pass left early (capped, thrown) keeps the old #readPast: it only reads more again.
        const through = Math.max(this.#readPast.through, after);
        this.#readPast = { through, heldFrom: waiting };
        if (waiting.size === 0 && through > this.#cursor) {
          // Trades not read again in this pass were handled in an earlier one.
          this.#cursor = through;
          await saveActorState(this.#options.sql, CURSOR_KEY, { lastId: through });
        }
        break;
      }
      for (const paper of batch) {
        after = paper.id;
        let outcome: Outcome = "wait";
        if (!waiting.has(paper.symbol)) outcome = await this.#handle(paper);
        if (outcome === "capped") return { handled, more: true };
        if (outcome === "wait") {
          if (!waiting.has(paper.symbol)) waiting.set(paper.symbol, paper.id);
          continue;
        }
        if (outcome === "handled") handled++;
        if (waiting.size === 0) {
          // Every trade up to here is handled: read in this pass, or in an earlier one.
          this.#cursor = paper.id;
          await saveActorState(this.#options.sql, CURSOR_KEY, { lastId: paper.id });
        }
      }
    }
    if (this.#closer && await this.#closer.closeOnce()) more = true;
    if (this.#liveCloser) {
      // The live closer follows this executor's cursor: exits not handled yet hold their
      // positions.
      this.#liveCloser.#cursor = this.#cursor;
      if ((await this.#liveCloser.runOnce()).more) more = true;
    } else if (this.mode !== "live") await this.#reportUnmanagedPositions();
    return { handled, more: more || waiting.size > 0 };
  }

  /**
   * Whether the reconciliation gate is open; while it is closed (live start, a connection lost
   * for more than a minute) a reconciliation runs first and no order of any kind goes out.
   */
  async #reconciled(): Promise<"open" | "reconciled" | false> {
    const gate = await reconciliationGate(this.#options.sql);
    if (gate.open) return "open";
    // After a failed run, wait a little: every run is stored, and the exchange may be down.
    if (this.#now() < this.#reconcileRetryAt) return false;
    this.#options.log.info(`Reconciliation gate closed (${gate.reason}); reconciling`);
    try {
      const run = await reconcile(this.#options.sql, this.#options.rest!, this.#options.log);
      if (run.renewedInstallation) this.#installation = run.renewedInstallation;
      await this.#reconcileSucceeded();
      return run.gateOpen ? "reconciled" : false;
    } catch (err) {
      this.#reconcileRetryAt = this.#now() +
        (this.#options.settings.reconcileRetrySec ?? 10) * 1000;
      this.#options.log.warn("Reconciliation failed; no live order until it completes", {
        error: (err as Error).message,
      });
      await this.#reconcileFailed(
        `the reconciliation gate is closed (${gate.reason}): no order of any kind goes out, exits and closes included`,
        err as Error,
      );
      return false;
    }
  }

  /**
   * Counts a failed reconciliation; from the {@linkcode RECONCILE_FAILURES_ALARM}th in a row on,
   * alarm `reconciliation_failing` says so (with the gate closed nothing is sent, exits included;
   * a routine run failing leaves upbot without its check). Cleared by the next completed run.
   */
  async #reconcileFailed(consequence: string, err: Error): Promise<void> {
    this.#reconcileFailures++;
    if (this.#reconcileFailures < RECONCILE_FAILURES_ALARM) return;
    await raiseAlarm(this.#options.sql, {
      code: "reconciliation_failing",
      message:
        `Reconciliation with Upbit failed ${this.#reconcileFailures} times in a row (last: ${err.message}); ${consequence}. Check the network, the keys and Upbit's status`,
    });
  }

  /** A completed run clears the alarm, whoever raised it (an earlier process, the other upbot). */
  async #reconcileSucceeded(): Promise<void> {
    this.#reconcileFailures = 0;
    await clearAlarm(this.#options.sql, "reconciliation_failing");
  }

  /**
   * Live mode, with the gate open: every `reconcileIntervalMin` a reconciliation runs without
   * closing the gate (orders of upbot's the database does not record, such as a create that
   * landed after two landing waits; balances below the ledger). Its findings halt and alarm as
   * at a start; a failed run is only logged (orders go on) and tried again after
   * `reconcileRetrySec`. The first is due an interval after this executor's first pass, or
   * after any completed run (`justRan`).
   */
  async #routineReconciliation(justRan: boolean): Promise<void> {
    const everyMs = (this.#options.settings.reconcileIntervalMin ?? 60) * 60_000;
    if (everyMs <= 0) return;
    const now = this.#now();
    if (justRan || this.#routineReconcileAt === 0) {
      this.#routineReconcileAt = now + everyMs;
      return;
    }
    if (now < this.#routineReconcileAt) return;
    try {
      const run = await reconcile(this.#options.sql, this.#options.rest!, this.#options.log, {
        routine: true,
      });
      if (run.renewedInstallation) this.#installation = run.renewedInstallation;
      this.#routineReconcileAt = this.#now() + everyMs;
      await this.#reconcileSucceeded();
    } catch (err) {
      const retrySec = this.#options.settings.reconcileRetrySec ?? 10;
      this.#routineReconcileAt = this.#now() + retrySec * 1000;
      this.#options.log.warn(
        `Routine reconciliation failed; orders go on, tried again in ${retrySec} s`,
        { error: (err as Error).message },
      );
      await this.#reconcileFailed(
        "orders go on, but unrecorded orders and missing coins go unnoticed meanwhile",
        err as Error,
      );
    }
  }

  #isStale(paper: PaperTradeRow): boolean {
    return (this.#now() - paper.ts.getTime()) / 1000 > this.#options.settings.maxSignalAgeSec;
  }

  /** Why a new entry on `market` must not be sent now, or null. */
  async #entryHalt(market: string): Promise<string | null> {
    if (this.#options.closesOnly) {
      return `no entry is sent in ${this.#options.decision.effective} mode (live positions are only closed)`;
    }
    const supervisor = this.#options.supervisorHalt?.() ?? null;
    if (supervisor) return supervisor;
    return await entryHaltReason(this.#options.sql, market);
  }

  async #underCap(): Promise<boolean> {
    const n = await exchangeAttemptsInLastMinute(this.#options.sql);
    const under = n < this.#options.settings.maxOrdersPerMin;
    if (!under && !this.#capLogged) {
      this.#options.log.warn(`Order rate cap reached (${n} in the last minute); waiting`, {
        max_orders_per_min: this.#options.settings.maxOrdersPerMin,
      });
    }
    this.#capLogged = !under;
    return under;
  }

  async #handle(paper: PaperTradeWithAttempt): Promise<Outcome> {
    if (paper.attempt_identifier !== null) {
      // One attempt per paper trade, whatever its mode: the resolution pass owns it from here.
      // (Read with the batch; a later writer is stopped by insertAttempt's own check.)
      this.#options.log.debug(
        `Skip paper trade ${paper.id}: attempt ${paper.attempt_identifier} exists`,
      );
      return "seen";
    }
    if (this.mode === "shadow" && !this.#options.settings.shadowEnabled) return "handled";
    const identifier = identifierFor(this.#installation, paper.id, paper.action);
    const order = await this.#orderFor(paper, identifier);
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
      await this.#insertSkipped(base, order.skip, order.why);
      return "handled";
    }
    const request = order.request;
    const judge = () =>
      this.#judge({
        action: paper.action,
        side: base.side,
        symbol: paper.symbol,
        identifier,
        request: { ...request },
        signalTs: paper.ts.getTime(),
      });
    // A live order's risk gate (a balance request over the network, the longest step before the
    // wire) starts together with the halt and rate-cap reads, not after them; its judgement is
    // dropped when either stops the order. Not started ahead when the answer is known to be no
    // (the supervisor's halt for an entry, the cap hit at the last look).
    const judging = this.mode === "live" && !this.#capLogged &&
        !(paper.action === "ENTER_LONG" && this.#options.supervisorHalt?.())
      ? settled(judge())
      : null;
    // The halt and the rate cap are read together (the cap only outside shadow mode).
    const [halt, under] = await Promise.all([
      paper.action === "ENTER_LONG" ? this.#entryHalt(paper.symbol) : null,
      this.mode === "shadow" ? true : this.#underCap(),
    ]);
    if (halt) {
      // Skipped, not held back: by the time entries resume the signal would be stale anyway.
      // In shadow mode too: shadow logs what live would do, and live would not enter.
      await this.#insertSkipped(base, "entries_halted", halt);
      return "handled";
    }
    if (this.mode === "shadow") {
      await insertAttempt(this.#options.sql, {
        ...base,
        price: request.price ?? null,
        volume: request.volume ?? null,
        state: "logged",
        request_json: { ...request },
      });
      const amount = request.volume !== undefined
        ? `volume=${request.volume}`
        : `price=${request.price}`;
      this.#options.log.info(
        `Shadow [${paper.action}]: side=${request.side} ord_type=${request.ord_type} ${amount} (no API call)`,
        { identifier, paper_trade_id: paper.id, market: paper.symbol },
      );
      return "handled";
    }
    if (!under) return "capped";
    const fresh = {
      ...base,
      price: request.price ?? null,
      volume: request.volume ?? null,
      request_json: { ...request },
    };
    if (this.mode === "live") return await this.#sendFresh(fresh, judging?.value ?? judge());
    const attempt = await insertAttempt(this.#options.sql, { ...fresh, state: "pending" });
    if (!attempt) return "handled"; // another writer won the paper trade: never send twice
    await this.#send(attempt, true, paper);
    return "handled";
  }

  /**
   * A new live attempt: judged by the risk gate first, then written once, as `sent` (durable
   * before the request, one commit instead of `pending` then `sent`), and sent. Refused: written
   * `skipped` with the gate's reason. Not judgeable now (balances unreadable): written `pending`,
   * which the resolution pass sends later, through the gate again.
   */
  async #sendFresh(
    fresh: Omit<NewAttempt, "state">,
    judging: Promise<Judgement>,
  ): Promise<Outcome> {
    const risk = await judging;
    if ("wait" in risk) {
      await insertAttempt(this.#options.sql, { ...fresh, state: "pending" });
      return "handled";
    }
    if ("refused" in risk) {
      await insertAttempt(this.#options.sql, {
        ...fresh,
        state: "skipped",
        reason: risk.refused.code,
        error_msg: risk.refused.detail,
      });
      this.#logRefusal(fresh.action, fresh.identifier, fresh.symbol, risk.refused);
      return "handled";
    }
    // The gate read the balances over the network (and the halts alongside): a halt, the
    // supervisor's or the database's, may have come meanwhile. Looked at again, last thing
    // before the write that sends.
    const lateHalt = fresh.action === "ENTER_LONG" ? await this.#entryHalt(fresh.symbol) : null;
    if (lateHalt) {
      await this.#insertSkipped(fresh, "entries_halted", lateHalt);
      return "handled";
    }
    const attempt = await insertAttempt(this.#options.sql, {
      ...fresh,
      request_json: risk.request_json ?? fresh.request_json,
      state: "sent",
    });
    if (!attempt) return "handled"; // another writer won the paper trade: never send twice
    await this.#post(attempt);
    return "handled";
  }

  async #insertSkipped(
    base: Omit<NewAttempt, "state" | "price" | "volume" | "request_json">,
    reason: string,
    why: string,
  ): Promise<void> {
    await insertAttempt(this.#options.sql, {
      ...base,
      price: null,
      volume: null,
      state: "skipped",
      reason,
      request_json: {},
      error_msg: why,
    });
    this.#options.log.warn(`Skip [${base.action}] ${base.identifier}: ${reason} (${why})`);
  }

  /** Builds the order for a paper trade, or says why it is skipped, or to wait. */
  async #orderFor(
    paper: PaperTradeRow,
    identifier: string,
  ): Promise<{ request: OrderRequest } | { skip: string; why: string } | "wait"> {
    if (paper.action === "ENTER_LONG") {
      // Only entries go stale: an exit must be sent however late, or a live position stays open.
      if (this.mode !== "shadow" && this.#isStale(paper)) {
        return { skip: "stale_signal", why: this.#staleWhy(paper) };
      }
      return {
        request: {
          market: paper.symbol,
          side: "bid",
          ord_type: "price",
          price: String(this.#options.settings.orderKrwAmount),
          identifier,
        },
      };
    }
    let volume = formatVolume(paper.qty);
    if (this.mode === "live") {
      // Sell what the live entry really bought, not the paper quantity. The entry and the
      // unsettled sells are read at once; the ledger only after them (below).
      const [entry, sells] = await Promise.all([
        paper.entry_id === null ? null : attemptForPaperTrade(this.#options.sql, paper.entry_id),
        unfinishedLiveSells(this.#options.sql, paper.symbol),
      ]);
      if (!entry || entry.mode !== "live") {
        return { skip: "no_live_entry", why: "no live entry for this exit" };
      }
      // An entry not final yet may still buy (unsent, unresolved, open, or waiting to retry).
      if (["pending", "sent", "unknown", "open", "partially_filled"].includes(entry.state)) {
        return "wait";
      }
      const bought = Number(entry.executed_volume ?? "0");
      if (!(bought > 0)) {
        return {
          skip: "entry_bought_nothing",
          why: `live entry ${entry.identifier} bought nothing (${entry.state})`,
        };
      }
      // Another sell of this market is not settled (a close in flight, or lost and not found
      // again): its outcome changes what is left.
      if (sells.length > 0) return "wait";
      // Never more than the ledger still holds (a flatten or a close may have sold it already):
      // selling more could sell the owner's own coins. Read after the unsettled sells, as the
      // closer does: a sell that settled meanwhile was seen unsettled or has its fills here (the
      // poller stores them with its final state); read beside them, this could be the older
      // answer, and the sell's volume sold again.
      const ledger = await ledgerPosition(this.#options.sql, paper.symbol);
      const held = ledger?.openVolume ?? "0";
      const sell = minDec(dec(entry.executed_volume!), dec(held));
      if (sell <= ZERO) {
        return { skip: "position_closed", why: `the ledger holds no ${paper.symbol} any more` };
      }
      volume = formatVolume(formatDec(sell));
    }
    // Live: the risk gate judges the minimum on the market's prices (the highest recent close,
    // the best bid). The paper exit's price is one bar's close, perhaps a wick: a live exit
    // skipped on it would leave the closer to judge what the entry bought.
    const price = Number(paper.exit_price ?? paper.entry_price);
    if (this.mode !== "live" && Number(volume) * price < MIN_ORDER_KRW) {
      return {
        skip: "under_min_total",
        why: `under min total ${MIN_ORDER_KRW} KRW (volume=${volume} at ${price})`,
      };
    }
    return {
      request: { market: paper.symbol, side: "ask", ord_type: "market", volume, identifier },
    };
  }

  /** How long a create whose answer never came may still land at Upbit, in ms. */
  #landingWaitMs(): number {
    return this.#options.rotationWaitMs ?? (this.#options.settings.landingWaitSec ?? 60) * 1000;
  }

  #staleWhy(paper: PaperTradeRow): string {
    const ageSec = Math.round((this.#now() - paper.ts.getTime()) / 1000);
    return `signal is ${ageSec}s old (limit ${this.#options.settings.maxSignalAgeSec}s)`;
  }

  /**
   * A `pending` attempt about to be sent: an entry is sent only while its signal is fresh, entries
   * are not halted and it has retries left; exits and closes always are. Returns the `sent` row,
   * or null when it was not sent (skipped, failed, capped: see the result).
   */
  async #gate(
    a: AttemptRow,
    capChecked: boolean,
    known?: PaperTradeRow,
  ): Promise<AttemptRow | "capped" | null> {
    if (
      MAY_STILL_LAND.test(a.reason ?? "") &&
      this.#now() - a.updated_at.getTime() < this.#landingWaitMs()
    ) {
      // Its last create may still be processed at Upbit (no answer, or a 5xx). Judged again now,
      // an entry could be given up (stale, halted, out of retries, refused by the risk gate) and
      // leave coins bought that nothing manages; a sell could be skipped or capped by a free
      // balance its own late fill just emptied, and the closer would then sell again (the
      // owner's coins). Held, and looked up again on every pass (adopted if it lands), until the
      // landing wait is over; a re-send is not needed meanwhile (Upbit would refuse it as used).
      return null;
    }
    let paper: PaperTradeRow | null = null;
    if (a.action === "ENTER_LONG") {
      paper = known ??
        (a.paper_trade_id === null
          ? null
          : await paperTradeById(this.#options.sql, a.paper_trade_id));
      if (paper && this.#isStale(paper)) {
        await this.#move(a, "skipped", {
          reason: "stale_signal",
          error_msg: this.#staleWhy(paper),
        });
        this.#options.log.warn(`Skip [ENTER_LONG] ${a.identifier}: stale_signal, not sent again`);
        return null;
      }
      const halt = await this.#entryHalt(a.symbol);
      if (halt) {
        await this.#move(a, "skipped", { reason: "entries_halted", error_msg: halt });
        this.#options.log.warn(`Skip [ENTER_LONG] ${a.identifier}: entries_halted, not sent again`);
        return null;
      }
      if (a.retry_count > this.#options.settings.maxRetries) {
        await this.#move(a, "failed", {
          reason: "retries_exhausted",
          error_msg: `gave up after ${a.retry_count} failed sends (${a.error_msg ?? a.reason})`,
        });
        this.#options.log.warn(`Give up [ENTER_LONG] ${a.identifier}: retries_exhausted`);
        return null;
      }
    }
    if (!capChecked && !(await this.#underCap())) return "capped";
    let patch: AttemptPatch = {};
    if (this.mode === "live") {
      const risk = await this.#risk(a, paper);
      // Not judged now: this attempt waits for a later pass; the others go on (one market's
      // unreadable price must not hold every other exit and close).
      if (risk === "wait") return null;
      if (risk === "refused") return null;
      patch = risk;
    }
    // The risk gate read the balances over the network (and the halts alongside): a halt, the
    // supervisor's or the database's, may have come meanwhile. Looked at again, last thing.
    const lateHalt = this.mode === "live" && a.action === "ENTER_LONG"
      ? await this.#entryHalt(a.symbol)
      : null;
    if (lateHalt) {
      await this.#move(a, "skipped", { reason: "entries_halted", error_msg: lateHalt });
      this.#options.log.warn(`Skip [ENTER_LONG] ${a.identifier}: entries_halted, not sent again`);
      return null;
    }
    return await this.#move(a, "sent", { retry_at: null, ...patch });
  }

  /**
   * The risk gate for a live order: an entry against every entry rule, an exit or close only
   * against the coin's free balance (the volume is capped to it) and the minimum total. Returns
   * the patch to send with (a capped volume), the refusal, or "wait": the gate could not be judged
   * now (balances unreadable).
   */
  async #judge(o: {
    action: string;
    side: "bid" | "ask";
    symbol: string;
    identifier: string;
    request: Record<string, string>;
    signalTs: number;
    attemptId?: number;
  }): Promise<Judgement> {
    const order: RiskOrder = o.side === "bid"
      ? { side: "bid", market: o.symbol, krw: Number(o.request.price), signalTs: o.signalTs }
      : { side: "ask", market: o.symbol, volume: o.request.volume ?? "0" };
    const risk = this.#options.risk ?? {
      limits: {
        ...riskLimits(parseConfig({})),
        maxSignalAgeSec: this.#options.settings.maxSignalAgeSec,
      },
    };
    let d;
    try {
      d = await gateOrder(this.#options.sql, order, risk.limits, {
        rest: this.#options.rest,
        marketRefusal: risk.marketRefusal,
        attemptId: o.attemptId,
        nowMs: this.#now(),
      });
    } catch (err) {
      this.#options.log.warn(`Risk gate for ${o.identifier} could not be judged; will try again`, {
        error: (err as Error).message,
      });
      return { wait: (err as Error).message };
    }
    if (!d.ok) return { refused: { code: d.code, detail: d.detail } };
    if (d.capped && d.volume) {
      this.#options.log.warn(
        `Capped [${o.action}] ${o.identifier}: ${o.request.volume} -> ${d.volume} (${
          d.capped === "free_balance" ? "free balance" : "visible bids"
        })`,
      );
      return { request_json: { ...o.request, volume: d.volume } };
    }
    return {};
  }

  #logRefusal(
    action: string,
    identifier: string,
    market: string,
    r: { code: string; detail: string },
  ): void {
    this.#options.log.warn(`Refused [${action}] ${identifier}: ${r.code} (${r.detail})`, {
      market,
    });
  }

  /**
   * The risk gate for a written live attempt ({@linkcode #judge}). A refused attempt is skipped
   * with the gate's reason code (an exit's position stays in the ledger, where the closer finds
   * it).
   */
  async #risk(
    a: AttemptRow,
    paper: PaperTradeRow | null,
  ): Promise<AttemptPatch | "refused" | "wait"> {
    const signalPaper = a.side === "bid" && !paper && a.paper_trade_id !== null
      ? await paperTradeById(this.#options.sql, a.paper_trade_id)
      : paper;
    const d = await this.#judge({
      action: a.action,
      side: a.side as "bid" | "ask",
      symbol: a.symbol,
      identifier: a.identifier,
      request: a.request_json ?? {},
      signalTs: (signalPaper?.ts ?? a.ts).getTime(),
      attemptId: a.id,
    });
    if ("wait" in d) {
      // Judged again after a backoff (1 s doubling to 60 s), not every pass: each try spends
      // requests of the shared budget.
      const n = (this.#gateWaits.get(a.id)?.n ?? 0) + 1;
      this.#gateWaits.set(a.id, {
        n,
        until: this.#now() + backoffDelayMs(n - 1, { baseMs: 1000, maxMs: 60_000, jitter: 0 }),
      });
      // A sell that cannot be judged for long (its market's price or book unreadable) is a
      // position not being worked on: said, as a failing sell is.
      const minutes = Math.floor((this.#now() - a.ts.getTime()) / 60_000);
      if (a.side === "ask" && minutes >= UNJUDGED_SELL_ALARM_MIN) {
        await this.#exitFailing(
          a,
          `its risk gate could not be judged for ${minutes} min: ${d.wait}`,
        );
      }
      return "wait";
    }
    this.#gateWaits.delete(a.id);
    if ("refused" in d) {
      await this.#move(a, "skipped", { reason: d.refused.code, error_msg: d.refused.detail });
      this.#logRefusal(a.action, a.identifier, a.symbol, d.refused);
      // No visible bids: nothing sells until the book comes back, and only the closer's backoff
      // would tell. Said as a failing sell (cleared by the next sell accepted).
      if (a.side === "ask" && d.refused.code === "no_bids") {
        await this.#exitFailing(a, d.refused.detail);
      }
      return "refused";
    }
    return d;
  }

  /**
   * Sends a `pending` attempt (through the gate) and records the outcome. `capChecked`: the rate
   * cap was checked just before the attempt was written (it counts itself now).
   */
  async #send(
    pending: AttemptRow,
    capChecked = false,
    paper?: PaperTradeRow,
  ): Promise<"capped" | void> {
    const gated = await this.#gate(pending, capChecked, paper);
    if (gated === "capped") return "capped";
    if (!gated) return;
    await this.#post(gated);
  }

  /** POSTs a `sent` attempt (written durably before this call) and records the outcome. */
  async #post(gated: AttemptRow): Promise<void> {
    if (gated.retry_count > 0) {
      const limit = gated.action === "ENTER_LONG" ? `/${this.#options.settings.maxRetries}` : "";
      this.#options.log.info(`Retry ${gated.identifier} (${gated.retry_count}${limit})`);
    }
    const rest = this.#options.rest!;
    const body = sentOrderBody(gated);
    let result: PostOrderResult;
    if (this.mode === "test") {
      // §4.4: whether a test call burns an identifier is undocumented; send none (safe reading),
      // our own row keeps the identifier.
      const { identifier: _unused, ...testBody } = body;
      result = await rest.postOrderTest(testBody);
    } else {
      result = await rest.postOrder(body);
    }
    await this.#record(gated, result);
  }

  /** Moves `a` to `to`; logs and returns null when another writer moved it first. */
  async #move(a: AttemptRow, to: OrderState, patch: AttemptPatch = {}): Promise<AttemptRow | null> {
    const row = await transitionAttempt(this.#options.sql, a.id, a.state, to, patch);
    if (!row) {
      this.#options.log.warn(
        `Attempt ${a.identifier} left ${a.state} meanwhile; not moved to ${to}`,
      );
    }
    return row;
  }

  #retryAt(failures: number): Date {
    const { baseMs, maxMs } = this.#options.retryBackoff ?? { baseMs: 1000, maxMs: 60_000 };
    return new Date(
      this.#now() + backoffDelayMs(Math.max(0, failures - 1), { baseMs, maxMs, jitter: 0.2 }),
    );
  }

  async #record(attempt: AttemptRow, result: PostOrderResult): Promise<void> {
    const tag = `${
      this.mode === "test" ? "Test" : "Live"
    } [${attempt.action}] ${attempt.identifier}`;
    const sells = attempt.side === "ask" && this.mode === "live";
    switch (result.kind) {
      case "accepted": {
        const to = result.test ? "test_ok" : "open";
        await this.#move(attempt, to, {
          reason: null,
          // Test uuids are not real orders: never store one where the poller would look.
          uuid: result.test ? null : result.order.uuid,
          response_json: result.order,
          error_msg: null,
          ...metaFields(result.meta),
        });
        this.#options.log.info(`${tag}: ${to}`, {
          uuid: result.test ? undefined : result.order.uuid,
          ...metaFields(result.meta),
        });
        if (sells) {
          // A sell of this market went through: its earlier failures are history.
          await clearAlarm(this.#options.sql, "exit_failing", attempt.symbol);
          await clearAlarm(this.#options.sql, "exit_refused", attempt.symbol);
        }
        if (!result.test) this.#options.onSubmitted?.();
        return;
      }
      case "rejected": {
        const err = result.error;
        if (err instanceof UpbitBanActiveError) {
          // Refused locally during a ban: nothing was sent, no retry used. Sent again (after a
          // look-up by identifier) once the ban is over.
          await this.#move(attempt, "pending", {
            reason: "banned",
            error_msg: `not sent: ${err.message}`,
          });
          this.#options.log.warn(`${tag}: not sent (${err.message})`);
          return;
        }
        // A plain-text refusal (e.g. the 429 body) has no error name: the HTTP status is the code.
        const code = err.code || `http_${err.httpStatus}`;
        if (!result.test && code === "duplicated_identifier") {
          // The identifier exists at Upbit: an earlier try may have created the order. Find out
          // on a later pass, once that try cannot still be in flight.
          await this.#move(attempt, "unknown", {
            reason: "duplicated_identifier",
            error_msg: `${code}: ${err.message}`,
          });
          this.#options.log.warn(
            `${tag}: identifier already used at Upbit; will resolve by identifier`,
          );
          return;
        }
        // A refusal that may pass later (rate limit, ban, server trouble, maintenance) is sent
        // again with backoff; a definite 4xx (funds, price, minimum, ...) is final.
        const passing = err.httpStatus === 429 || err.httpStatus === 418 ||
          err.httpStatus >= 500 || PASSING_REFUSALS.has(code);
        const meta = result.meta ? metaFields(result.meta) : {};
        if (!result.test && !passing && !FRESH_IDENTIFIER_REASONS.has(attempt.reason)) {
          // A re-send under an identifier an earlier send may have used, refused for good by
          // another name. §4.3 does not document the name of the "identifier used" refusal (two
          // clients say duplicated_identifier [?]), nor the order of Upbit's checks (a re-send of
          // a create that landed may meet insufficient funds first): this refusal says nothing
          // about the earlier send, whose order may exist. Never final without asking: resolved by
          // identifier like duplicated_identifier (adopted if found; a fresh identifier only
          // after the landing wait).
          await this.#move(attempt, "unknown", {
            reason: "resend_refused",
            error_msg: `${code}: ${err.message}`,
            ...meta,
          });
          this.#options.log.warn(
            `${tag}: re-send refused ${code}; an earlier send may have created the order; will resolve by identifier`,
            { message: err.message, ...meta },
          );
          if (sells) await this.#exitFailing(attempt, `${code}: ${err.message}`);
          return;
        }
        if (passing) {
          const failures = attempt.retry_count + 1;
          await this.#move(attempt, "pending", {
            reason: code,
            error_msg: `${code}: ${err.message}`,
            retry_count: failures,
            retry_at: this.#retryAt(failures),
            ...meta,
          });
          this.#options.log.warn(`${tag}: refused ${code}; will send again`, {
            message: err.message,
            ...meta,
          });
          if (sells) await this.#exitFailing(attempt, `${code}: ${err.message}`);
          return;
        }
        await this.#move(attempt, "rejected", {
          reason: code,
          error_msg: `${code}: ${err.message}`,
          ...meta,
        });
        this.#options.log.warn(`${tag}: rejected ${code} (final)`, {
          message: err.message,
          ...meta,
        });
        if (sells) await this.#positionLeftOpen(attempt, `${code}: ${err.message}`);
        return;
      }
      case "unknown": {
        const meta = result.meta ? metaFields(result.meta) : {};
        const failures = attempt.retry_count + 1;
        if (result.test) {
          // A test call creates nothing: an unknown outcome is simply a failed test, sent again.
          await this.#move(attempt, "pending", {
            reason: "lost_response",
            error_msg: `no answer: ${result.reason}`,
            retry_count: failures,
            retry_at: this.#retryAt(failures),
            ...meta,
          });
          this.#options.log.warn(`${tag}: no answer (${result.reason})`);
          return;
        }
        // Resolved by identifier on a later pass, once the request cannot still be in flight.
        await this.#move(attempt, "unknown", {
          reason: "lost_response",
          error_msg: `outcome unknown: ${result.reason}`,
          retry_count: failures,
          ...meta,
        });
        this.#options.log.warn(
          `${tag}: outcome unknown (${result.reason}); will resolve by identifier`,
        );
        if (sells) await this.#exitFailing(attempt, `outcome unknown: ${result.reason}`);
        return;
      }
    }
  }

  /**
   * An attempt that may have reached Upbit or waits to be sent: look it up under every identifier
   * it ever used; adopt what is found if it is ours, else send it (again) through the gate.
   */
  async #resolve(attempt: AttemptRow): Promise<"capped" | "more" | void> {
    if (this.mode === "test") {
      // Nothing real can exist for a test call: send it (again).
      const pending = attempt.state === "pending"
        ? attempt
        : await this.#move(attempt, "pending", { reason: attempt.reason ?? "not_created" });
      return pending ? await this.#send(pending) : undefined;
    }
    const rest = this.#options.rest!;
    let found: { order: Order; identifier: string } | null = null;
    // Every identifier it ever used, the current one included even for a row written without
    // the history (by hand or by older code).
    const identifiers = new Set([
      ...(await identifiersOf(this.#options.sql, attempt.id)),
      attempt.identifier,
    ]);
    for (const identifier of identifiers) {
      try {
        const r = await rest.resolveUnknownOrder(identifier);
        if (r.kind === "found") {
          // Under an earlier identifier, with the attempt's uuid known: another create (a second
          // order), reported and never adopted; its own order is under the current identifier.
          const second = secondOrder(attempt, r.order, identifier);
          if (second) {
            await reportSecondOrder(
              this.#options.sql,
              this.#options.log,
              attempt,
              r.order,
              second,
              "executor",
            );
            continue;
          }
          found = { order: r.order, identifier };
          break;
        }
      } catch (err) {
        this.#options.log.warn(`Resolve ${identifier} failed; will try again`, {
          error: (err as Error).message,
        });
        return "more";
      }
    }
    if (found) return await this.#adopt(attempt, found.order, found.identifier);
    if (attempt.state === "unknown" && attempt.reason === "order_not_found") {
      // Upbit gave this order a uuid, then forgot the uuid and every identifier: never re-send
      // (it was created once); a person must look.
      await this.#move(attempt, "failed", {
        reason: "order_lost",
        error_msg: `order ${attempt.uuid} not found at Upbit by uuid nor by identifier`,
      });
      const message =
        `Order ${attempt.identifier} (uuid=${attempt.uuid}) is unknown to Upbit by uuid and identifier; asked again every minute, its market held: look for it in Upbit's order history and, if found, give its uuid with deno task lost-order --identifier ${attempt.identifier} --uuid <uuid>`;
      this.#options.log.error(message);
      await raiseAlarm(this.#options.sql, { code: "order_lost", market: attempt.symbol, message });
      return;
    }
    let pending: AttemptRow | null = attempt;
    if (attempt.state === "unknown" && USED_IDENTIFIER_REASONS.has(attempt.reason ?? "")) {
      // Upbit refused the identifier as used (or refused a re-send under it for good by another
      // name), and no order is found under it. That means "burnt,
      // no order" only once no create of ours under it can still be processed: a create whose
      // answer we never got (a timeout, a lost answer) may have taken the identifier when it
      // arrived and make its order later, after this look-up. A fresh identifier is the one send
      // Upbit's identifier check cannot stop, so sent now it could buy (or sell) twice. Every such
      // create arrived before the refusal: wait rotationWaitMs after the refusal, looking again on
      // every pass, before moving on. (Re-sends under the same identifier need no such wait.)
      if (this.#now() - attempt.updated_at.getTime() < this.#landingWaitMs()) return "more";
      const seq = attempt.identifier_seq + 1;
      const fresh = rotatedIdentifier(attempt.identifier, seq);
      pending = await rotateIdentifier(this.#options.sql, attempt, fresh, seq);
      this.#options.log.warn(
        `Identifier ${attempt.identifier} is used at Upbit by no order; sending as ${fresh}`,
      );
    } else if (attempt.state !== "pending") {
      pending = await this.#move(attempt, "pending", { reason: "not_created" });
      this.#options.log.warn(`Resolved ${attempt.identifier}: no order exists`);
    } else {
      this.#options.log.info(`Resolved ${attempt.identifier}: no order exists; sending`);
    }
    if (!pending) return;
    return await this.#send(pending);
  }

  /** Adopts `order` for `attempt` if it is the order the attempt asked for; else a conflict. */
  async #adopt(attempt: AttemptRow, order: Order, identifier: string): Promise<void> {
    const mismatch = orderMismatch(attempt.request_json ?? {}, order, attempt.ts);
    if (mismatch) {
      await this.#move(attempt, "conflict", {
        reason: "identifier_conflict",
        error_msg: `order ${order.uuid} under ${identifier} is not this attempt's: ${mismatch}`,
        response_json: order,
      });
      // A sell stays unsettled (view live_orders_unsettled): the order may be that sell.
      const held = attempt.side === "ask"
        ? `, sells of ${attempt.symbol} held until a person checks it at Upbit and says deno task conflict-order --identifier ${attempt.identifier} --ours or --not-ours`
        : "";
      const message =
        `Identifier ${identifier} belongs to order ${order.uuid} that upbot did not ask for (${mismatch}); not adopted, entries halted${held}`;
      this.#options.log.error(message, { attempt: attempt.id, uuid: order.uuid });
      await raiseAlarm(this.#options.sql, {
        code: "identifier_conflict",
        market: attempt.symbol,
        message,
        details: { identifier, uuid: order.uuid, mismatch },
      });
      await haltEntries(this.#options.sql, {
        scope: "global",
        reason: `identifier conflict on ${identifier}`,
        by: "executor",
      });
      return;
    }
    const row = await this.#move(attempt, "open", {
      uuid: order.uuid,
      response_json: order,
      reason: null,
      error_msg: null,
    });
    if (!row) return;
    this.#options.log.info(`Resolved ${identifier}: order exists (uuid=${order.uuid})`);
    this.#options.onSubmitted?.();
  }

  /** A live sell failed and will be sent again: an alarm people see until it goes through. */
  async #exitFailing(attempt: AttemptRow, why: string): Promise<void> {
    await raiseAlarm(this.#options.sql, {
      code: "exit_failing",
      market: attempt.symbol,
      message: `Live sell ${attempt.identifier} of ${attempt.symbol} failed (${why}); retrying`,
    });
  }

  /** A live sell refused for good leaves coins on the exchange: say so loudly. */
  async #positionLeftOpen(attempt: AttemptRow, why: string): Promise<void> {
    const message =
      `Live position of ${attempt.symbol} stays open: ${attempt.identifier} was refused (${why})`;
    this.#options.log.error(message, { volume: attempt.volume });
    await raiseAlarm(this.#options.sql, { code: "exit_refused", market: attempt.symbol, message });
  }
}

/** The risk gate's answer on one order: go (with a capped volume), refused, or judge later. */
type Judgement = AttemptPatch | { refused: { code: string; detail: string } } | { wait: string };

/**
 * A read started ahead of its use: a rejection is not unhandled if the pass ends before awaiting
 * it (it is then dropped), and still throws where it is awaited.
 */
function settled<T>(promise: Promise<T>): { value: Promise<T> } {
  promise.catch(() => {});
  return { value: promise };
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
