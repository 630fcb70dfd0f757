/**
 * @module upbot's supervisor: the generic one of `lib/actors/` with upbot's protocol and its policy
 * for trading halts and Upbit bans ({@linkcode TradingPolicy}).
 *
 * - A `critical` actor (executor, order_poller) that fails for good HALTS trading: the policy
 *   broadcasts `trading.halt` to the running and starting actors (restarting ones learn it from
 *   their start message), emits `trading.halted`, calls `onTradingHalt`, and `/healthz` turns
 *   unhealthy. An actor may request a halt by sending `trading.halt` to `supervisor`. There is no
 *   automatic resume: a person resumes the stored halt, and upbot then lifts this one too
 *   ({@linkcode TradingPolicy.resume}, broadcasting `trading.resume`).
 * - `upbit.ban` sent to `supervisor` (an actor's Upbit client drew a 418) is broadcast to every
 *   other actor, and replayed to each new incarnation while the ban runs.
 * - Each incarnation's database sessions carry its own `application_name`; an incarnation
 *   terminated without a clean stop has them ended, and a hung one raises `onActorHung`
 *   (`lib/pipeline/actor_sessions.ts`).
 */
import { SUPERVISOR } from "../actors/protocol.ts";
import {
  Supervisor,
  type SupervisorControl,
  type SupervisorEvent,
  type SupervisorHealth,
  type SupervisorOptions,
  type SupervisorPolicy,
} from "../actors/supervisor.ts";
import { createLogger } from "../log.ts";
import { ActorSessions, type ActorSessionsOptions } from "./actor_sessions.ts";
import type { UpbotMessage, UpbotMessageOf } from "./messages.ts";
import { upbotProtocol, type UpbotStartState } from "./runtime.ts";

/** Whether the supervisor lets the pipeline trade. */
export type TradingState = "active" | "halted";

/** Trading was halted (`actor`: who caused or asked for it; null: the main thread). */
export interface TradingHaltedEvent {
  type: "trading.halted";
  reason: string;
  actor: string | null;
}

/** Trading was resumed after a halt (a person lifted the stored halt). */
export interface TradingResumedEvent {
  type: "trading.resumed";
  /** What lifted it, for the log. */
  by: string;
}

/** upbot's own supervisor events. */
export type TradingEvent = TradingHaltedEvent | TradingResumedEvent;

/** Every event of upbot's supervisor. */
export type UpbotSupervisorEvent = SupervisorEvent | TradingEvent;

/** upbot's supervisor health, for `/healthz`. */
export interface UpbotHealth extends SupervisorHealth {
  /** False once trading is halted. */
  healthy: boolean;
  tradingState: TradingState;
  haltReason: string | null;
}

const log = createLogger(SUPERVISOR);

/**
 * The tag of a supervisor given none (tests without a database): with no `endSessions` no name
 * is ever ended, so it need not be unique.
 */
const NO_PROCESS_TAG = "local";

/**
 * upbot's rules in the supervisor: trading halts and Upbit bans, and each incarnation's database
 * sessions ({@linkcode ActorSessions}).
 */
export class TradingPolicy implements SupervisorPolicy<UpbotMessage, TradingEvent> {
  #control: SupervisorControl<UpbotMessage, TradingEvent> | undefined;
  #state: TradingState = "active";
  #haltReason: string | null = null;
  /** End of the latest Upbit ban an actor announced (epoch ms, wall clock like the workers'). */
  #banUntil = 0;
  #onTradingHalt: ((reason: string, actor: string | null) => void) | undefined;
  #sessions: ActorSessions;

  /**
   * `onTradingHalt` is called once, when trading becomes halted; `sessions` ends a terminated
   * incarnation's database sessions (without it they are only named).
   */
  constructor(
    onTradingHalt?: (reason: string, actor: string | null) => void,
    sessions?: ActorSessionsOptions,
  ) {
    this.#onTradingHalt = onTradingHalt;
    this.#sessions = new ActorSessions(
      sessions ?? { processTag: NO_PROCESS_TAG, endSessions: () => Promise.resolve(0) },
    );
  }

  /** Whether trading is allowed (`active`) or `halted`. */
  get tradingState(): TradingState {
    return this.#state;
  }

  /** Why trading was halted, or null. */
  get haltReason(): string | null {
    return this.#haltReason;
  }

  /** Called by the supervisor. */
  attach(control: SupervisorControl<UpbotMessage, TradingEvent>): void {
    this.#control = control;
  }

  /** Each (re)started actor learns whether trading is halted, and its sessions' name. */
  startState(actor: string, incarnation: number): UpbotStartState {
    return {
      tradingHalted: this.#state === "halted",
      haltReason: this.#haltReason,
      dbApplicationName: this.#sessions.nameFor(actor, incarnation),
    };
  }

  /** A terminated incarnation's database sessions are ended. */
  childTerminated(actor: string, hung: boolean): void {
    this.#sessions.terminated(actor, hung);
  }

  /** Resolves once no terminated incarnation's sessions are being ended. */
  sessionsSettled(): Promise<void> {
    return this.#sessions.settled();
  }

  /** Takes `trading.halt` and `upbit.ban` sent to `supervisor`. */
  message(message: UpbotMessage, from: string): boolean {
    switch (message.type) {
      case "trading.halt":
        this.halt(message.reason, from);
        return true;
      case "upbit.ban":
        this.#broadcastBan(from, message);
        return true;
      default:
        return false;
    }
  }

  /** A critical actor that failed for good halts trading. */
  childFailed(actor: string, critical: boolean, error: string): void {
    if (critical) this.halt(`critical actor ${actor} failed: ${error}`, actor);
  }

  /** A new incarnation learns a ban still running (a duplicate of a buffered one is harmless). */
  childReady(actor: string): void {
    if (this.#banUntil > Date.now()) {
      this.#control?.send(actor, { type: "upbit.ban", untilMs: this.#banUntil });
    }
  }

  /** Unhealthy once trading is halted. */
  healthy(): boolean {
    return this.#state === "active";
  }

  /** The trading state leads the periodic `actors status` line. */
  statusFields(): { trading: TradingState } {
    return { trading: this.#state };
  }

  /**
   * Halts trading: records the reason, broadcasts `trading.halt` to every actor and calls
   * `onTradingHalt`. Idempotent; there is no automatic resume (see {@linkcode resume}).
   */
  halt(reason: string, actor: string | null = null): void {
    if (this.#state === "halted") return;
    this.#state = "halted";
    this.#haltReason = reason;
    log.error("trading HALTED", { reason, source: actor ?? SUPERVISOR });
    this.#control?.emit({ type: "trading.halted", reason, actor });
    // Running actors get it now, starting ones once ready; restarting ones see it in `start`.
    for (const child of this.#control?.children() ?? []) {
      if (child.state === "running" || child.state === "starting") {
        // The schema caps a reason at 500 characters; the full one is in the log and status.
        this.#control?.send(child.name, { type: "trading.halt", reason: reason.slice(0, 500) });
      }
    }
    try {
      this.#onTradingHalt?.(reason, actor);
    } catch (err) {
      log.error("onTradingHalt callback failed", { error: err });
    }
  }

  /**
   * Lifts a halt: a person resumed the stored one (upbot resumes this one only after the halt
   * was stored and then lifted; see `lib/upbot.ts`). Broadcasts `trading.resume` to every actor;
   * restarting ones learn it from their start message. A critical actor failing again halts
   * again. Idempotent.
   */
  resume(by: string): void {
    if (this.#state === "active") return;
    this.#state = "active";
    this.#haltReason = null;
    log.warn("trading RESUMED", { by });
    this.#control?.emit({ type: "trading.resumed", by });
    for (const child of this.#control?.children() ?? []) {
      if (child.state === "running" || child.state === "starting") {
        this.#control?.send(child.name, { type: "trading.resume" });
      }
    }
  }

  /**
   * One actor's client drew a 418: every other actor's limiters learn it now, so none of them
   * sends into the ban (Upbit bans the IP or pocket, not one client).
   */
  #broadcastBan(from: string, message: UpbotMessageOf<"upbit.ban">): void {
    this.#banUntil = Math.max(this.#banUntil, message.untilMs);
    log.warn("Upbit ban (418): every actor refuses Upbit calls until it ends", {
      source: from,
      until: new Date(message.untilMs).toISOString(),
    });
    for (const child of this.#control?.children() ?? []) {
      if (child.name === from) continue;
      if (child.state === "running" || child.state === "starting" || child.state === "restarting") {
        this.#control?.send(child.name, message);
      }
    }
  }
}

/** Options of {@linkcode UpbotSupervisor}: the generic ones but the protocol and policy. */
export interface UpbotSupervisorOptions
  extends Omit<SupervisorOptions<UpbotMessage, TradingEvent>, "protocol" | "policy"> {
  /** Called once when trading becomes halted. */
  onTradingHalt?: (reason: string, actor: string | null) => void;
  /** The last part of every actor session's name (`Database.processTag`). @default {"local"} */
  processTag?: string;
  /**
   * Ends every database session named `applicationName` (`Database.endSessions`): a terminated
   * actor's. Without it a hung actor's sessions stay until the idle-in-transaction limit, or
   * for good when idle.
   */
  endSessions?: (applicationName: string) => Promise<number>;
  /**
   * Called when an actor hung (its thread cannot be stopped), with every actor of this process
   * that hung so far: upbot raises an alarm.
   */
  onActorHung?: (actors: string[], message: string) => void;
}

/**
 * The supervisor of upbot's actors: {@linkcode Supervisor} with upbot's protocol and
 * {@linkcode TradingPolicy}.
 */
export class UpbotSupervisor extends Supervisor<UpbotMessage, TradingEvent> {
  #policy: TradingPolicy;

  /** @throws {RangeError} on bad options or duplicate / invalid actor names. */
  constructor(options: UpbotSupervisorOptions) {
    const { onTradingHalt, processTag, endSessions, onActorHung, ...rest } = options;
    const policy = new TradingPolicy(onTradingHalt, {
      processTag: processTag ?? NO_PROCESS_TAG,
      endSessions: endSessions ?? (() => Promise.resolve(0)),
      onHung: onActorHung,
    });
    super({ ...rest, protocol: upbotProtocol, policy });
    this.#policy = policy;
  }

  /** Whether trading is allowed (`active`) or `halted`. */
  get tradingState(): TradingState {
    return this.#policy.tradingState;
  }

  /** Why trading was halted, or null. */
  get haltReason(): string | null {
    return this.#policy.haltReason;
  }

  /**
   * Stops every actor ({@linkcode Supervisor.stop}), then waits (at most 5 s) until no
   * terminated incarnation's database sessions are being ended, so the database may close next.
   */
  override async stop(reason?: string): Promise<void> {
    await super.stop(reason);
    await this.#policy.sessionsSettled();
  }

  /** See {@linkcode TradingPolicy.halt}. */
  halt(reason: string, actor: string | null = null): void {
    this.#policy.halt(reason, actor);
  }

  /** See {@linkcode TradingPolicy.resume}. */
  resume(by: string): void {
    this.#policy.resume(by);
  }

  /** Health for `/healthz`: unhealthy once trading is halted. */
  override health(): UpbotHealth {
    return {
      ...super.health(),
      tradingState: this.#policy.tradingState,
      haltReason: this.#policy.haltReason,
    };
  }
}
