/**
 * @module The supervisor: runs each actor in its own Deno Web Worker with least-privilege
 * permissions, routes messages between actors, and restarts failures, modelled on Erlang/OTP
 * supervisors and Akka backoff supervision.
 *
 * - Restart policy per child: `permanent` (always restarted), `transient` (restarted only after
 *   a crash, not after a normal `exit`), `temporary` (never restarted).
 * - Restart delays back off exponentially with jitter between a minimum and a maximum, and the
 *   backoff resets once an incarnation has run for `restartResetAfterMs`.
 * - Restart intensity: more than `maxRestarts` restarts within `restartWindowMs` and the child
 *   is `failed` for good. If it is `critical` (executor, order_poller) trading is HALTED: the
 *   supervisor broadcasts `trading.halt`, calls `onTradingHalt` and reports unhealthy.
 * - Heartbeats: a worker that does not answer pings for `heartbeatTimeoutMs` (a busy loop) is
 *   terminated and restarted like a crash. So are `error` / `messageerror` events, fatal
 *   `error` messages and a missing `ready` after `startTimeoutMs`.
 * - Ordered start (each child acks `ready`, or fails, before the next starts) and reverse-order
 *   graceful stop with a per-child shutdown timeout, then terminate.
 * - Messages for an actor that is starting or restarting are buffered up to `mailboxLimit`
 *   (the oldest is dropped beyond it) and delivered once it is ready; messages for a stopped
 *   or failed actor are dropped. Both are counted in its `dropped`. Dropping is safe because
 *   the database holds the truth: application messages only inform and wake.
 * - `upbit.ban` sent to `supervisor` (an actor's Upbit client drew a 418) is broadcast to every
 *   other actor, whose runtime applies it to its rate limiters at once.
 */
import { createLogger, loggingSettings, type LogLevel, type LogSettings } from "../log.ts";
import { checkBackoffOptions, restartDelayMs } from "./backoff.ts";
import {
  ActorName,
  type ActorStats,
  type AppMessage,
  type AppMessageOf,
  describeIssues,
  SUPERVISOR,
  type ToActor,
  ToSupervisor,
} from "./messages.ts";
import { actorPermissions } from "./permissions.ts";

/** When a child is restarted after it ends. */
export type RestartPolicy = "permanent" | "transient" | "temporary";

/** Lifecycle state of one actor. */
export type ActorState = "starting" | "running" | "restarting" | "stopping" | "stopped" | "failed";

/** Whether the supervisor lets the pipeline trade. */
export type TradingState = "active" | "halted";

/** One child of the supervisor. */
export interface ActorSpec {
  /** Unique name, lower snake_case (`order_poller`); also the routing address. */
  name: string;
  /** The actor module, e.g. `new URL("../actors/feed.ts", import.meta.url)`. */
  module: string | URL;
  /** The actor's configuration slice, sent in its start message. Must be structured-cloneable. */
  config?: unknown;
  /** Worker permissions; default: none at all (see {@linkcode actorPermissions}). */
  permissions?: Deno.PermissionOptionsObject;
  /** @default {"permanent"} */
  restart?: RestartPolicy;
  /** If this actor fails for good, trading is halted. @default {false} */
  critical?: boolean;
  /** Overrides {@linkcode SupervisorOptions.startTimeoutMs} for this actor. */
  startTimeoutMs?: number;
  /** Overrides {@linkcode SupervisorOptions.shutdownTimeoutMs} for this actor. */
  shutdownTimeoutMs?: number;
}

/** Something that happened to the supervisor or a child; passed to `onEvent`. */
export type SupervisorEvent =
  | { type: "actor.started"; actor: string; incarnation: number }
  | { type: "actor.crashed"; actor: string; error: string }
  | { type: "actor.exited"; actor: string; reason: string }
  | { type: "actor.restarting"; actor: string; delayMs: number; restarts: number }
  | { type: "actor.failed"; actor: string; error: string }
  | { type: "actor.stopped"; actor: string; graceful: boolean }
  | { type: "trading.halted"; reason: string; actor: string | null };

/** Options of {@linkcode Supervisor}. Every duration is in milliseconds. */
export interface SupervisorOptions {
  /** The children, in start order (stopped in reverse). */
  actors: readonly ActorSpec[];
  /** Log settings sent to every worker. @default {the main thread's settings} */
  log?: LogSettings;
  /**
   * Secret values of the whole config (`secretValues(config)`). Each worker is told to mask
   * only the ones that occur in its own config slice, so no secret reaches an actor that
   * does not already have it.
   */
  secrets?: readonly string[];
  /** Restarts allowed within `restartWindowMs` before the child is failed. @default {5} */
  maxRestarts?: number;
  /** @default {60000} */
  restartWindowMs?: number;
  /** @default {500} */
  restartMinDelayMs?: number;
  /** @default {30000} */
  restartMaxDelayMs?: number;
  /** Random extra of up to this fraction of each delay. @default {0.2} */
  restartJitter?: number;
  /** An incarnation that ran this long resets the backoff. @default {60000} */
  restartResetAfterMs?: number;
  /** @default {1000} */
  heartbeatIntervalMs?: number;
  /** No pong for this long: the worker is hung and is restarted. @default {5000} */
  heartbeatTimeoutMs?: number;
  /** @default {15000} */
  startTimeoutMs?: number;
  /** @default {5000} */
  shutdownTimeoutMs?: number;
  /** Messages buffered per actor while it (re)starts. @default {1000} */
  mailboxLimit?: number;
  /** How often a status summary is logged; 0 disables it. @default {60000} */
  statusLogIntervalMs?: number;
  /** Called for every {@linkcode SupervisorEvent}. */
  onEvent?: (event: SupervisorEvent) => void;
  /** Called once when trading becomes halted. */
  onTradingHalt?: (reason: string, actor: string | null) => void;
  /** Application messages that actors send to `"supervisor"` (other than `trading.halt`). */
  onMessage?: (message: AppMessage, from: string) => void;
  /** Aborting it stops the supervisor (e.g. wire it to SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Clock for uptime, heartbeat ages and the restart window. @default {Date.now} */
  now?: () => number;
  /** Random source for the jitter. @default {Math.random} */
  random?: () => number;
  /**
   * Create every actor's first Worker when {@linkcode Supervisor.start} begins, so their modules
   * load (each in its own thread) while the actors before them start; the `start` messages still
   * go out one by one in order, each after the previous actor's `ready`. A Worker that reports
   * anything before its `start` is dropped and its actor gets a fresh one at its turn, as
   * without this option. @default {true}
   */
  loadModulesAhead?: boolean;
  /**
   * Test-only: actors act out `fault.inject` messages (throw, hang, exit, oom) sent with
   * {@linkcode Supervisor.send}, for fault drills (tests/worker_faults_test.ts). Never set in
   * production; unset, such messages are dropped. @default {false}
   */
  faultInjection?: boolean;
}

/** The status of one actor, as served by `GET /api/actors`. */
export interface ActorStatus {
  name: string;
  state: ActorState;
  restartPolicy: RestartPolicy;
  critical: boolean;
  /** Restarts since the supervisor started. */
  restarts: number;
  lastError: string | null;
  /** ISO time of `lastError`. */
  lastErrorAt: string | null;
  /** Time since the last pong (or since ready), ms; null when not running. */
  lastHeartbeatAgeMs: number | null;
  /** Time since the current incarnation became ready, ms; null when not running. */
  uptimeMs: number | null;
  /** Application messages delivered to this actor. */
  messagesIn: number;
  /** Application messages this actor sent. */
  messagesOut: number;
  /** Messages addressed to this actor that were dropped (buffer full, stopped or failed). */
  dropped: number;
  /** Messages waiting for this actor to become ready. */
  buffered: number;
  /** Invalid messages this actor received (reported by the worker), dropped. */
  invalidIn: number;
  /** Wakes the actor merged into an identical queued wake (reported by the worker). */
  coalesced: number;
  /** Messages in the actor's mailbox at its last heartbeat; null when not running. */
  mailbox: number | null;
  /** Invalid messages this actor sent, dropped by the supervisor. */
  invalidOut: number;
  /** Actor-defined metrics from its last heartbeat. */
  metrics: Record<string, number | string | boolean | null>;
}

/** The supervisor's health, for `/healthz`. */
export interface SupervisorHealth {
  /** False once trading is halted. */
  healthy: boolean;
  tradingState: TradingState;
  haltReason: string | null;
  /** Names of actors that failed for good. */
  failed: string[];
}

interface Child {
  spec: ActorSpec;
  policy: RestartPolicy;
  critical: boolean;
  state: ActorState;
  worker: Worker | undefined;
  incarnation: number;
  readyAt: number | null;
  lastPongAt: number;
  pingSeq: number;
  restarts: number;
  restartTimes: number[];
  backoffAttempt: number;
  restartTimer: Timer | undefined;
  startTimer: Timer | undefined;
  lastError: string | null;
  lastErrorAt: number | null;
  messagesIn: number;
  messagesOut: number;
  dropped: number;
  invalidOut: number;
  /** Worker-reported counters of earlier incarnations, and the latest of this one. */
  statsPrevious: { invalid: number; coalesced: number };
  stats: ActorStats | null;
  metrics: Record<string, number | string | boolean | null>;
  buffer: { from: string; message: AppMessage }[];
  /** Resolved when the child leaves `starting` (ready, crashed or failed). */
  settled: (() => void)[];
  /** Resolved when a stopping child answered `stopped` or died. */
  stoppedAck: ((graceful: boolean) => void) | undefined;
  /** Its first Worker, created ahead (`loadModulesAhead`) and not yet sent `start`. */
  ahead: { worker: Worker; spoiled: boolean } | undefined;
}

type Timer = ReturnType<typeof setTimeout>;

const DEFAULTS = {
  maxRestarts: 5,
  restartWindowMs: 60_000,
  restartMinDelayMs: 500,
  restartMaxDelayMs: 30_000,
  restartJitter: 0.2,
  restartResetAfterMs: 60_000,
  heartbeatIntervalMs: 1_000,
  heartbeatTimeoutMs: 5_000,
  startTimeoutMs: 15_000,
  shutdownTimeoutMs: 5_000,
  mailboxLimit: 1_000,
  statusLogIntervalMs: 60_000,
  loadModulesAhead: true,
};

const log = createLogger(SUPERVISOR);

/**
 * Runs and supervises the actors.
 *
 * @example Usage
 * ```ts ignore
 * const supervisor = new Supervisor({
 *   actors: [{ name: "feed", module: new URL("../actors/feed.ts", import.meta.url) }],
 *   onTradingHalt: (reason) => log.error("trading halted", { reason }),
 * });
 * await supervisor.start();
 * // ...
 * await supervisor.stop("SIGTERM");
 * ```
 */
export class Supervisor {
  #options: typeof DEFAULTS & SupervisorOptions;
  #children = new Map<string, Child>();
  #order: Child[] = [];
  #now: () => number;
  #random: () => number;
  #phase: "idle" | "running" | "stopping" | "stopped" = "idle";
  #tradingState: TradingState = "active";
  #haltReason: string | null = null;
  /** End of the latest Upbit ban an actor announced (epoch ms, wall clock like the workers'). */
  #upbitBanUntil = 0;
  #heartbeatTimer: Timer | undefined;
  #lastTickAt = 0;
  #statusTimer: Timer | undefined;
  #stopPromise: Promise<void> | undefined;
  #onAbort = () => void this.stop("signal");

  /** @throws {RangeError} on bad options or duplicate / invalid actor names. */
  constructor(options: SupervisorOptions) {
    this.#options = { ...DEFAULTS, ...stripUndefined(options), actors: options.actors };
    // Monotonic by default, so heartbeat ages and windows survive wall-clock jumps.
    this.#now = options.now ??
      (() => Math.round(performance.timeOrigin + performance.now()));
    this.#random = options.random ?? Math.random;
    const o = this.#options;
    checkBackoffOptions({
      minDelayMs: o.restartMinDelayMs,
      maxDelayMs: o.restartMaxDelayMs,
      jitter: o.restartJitter,
    });
    for (
      const key of [
        "restartWindowMs",
        "heartbeatIntervalMs",
        "heartbeatTimeoutMs",
        "startTimeoutMs",
        "shutdownTimeoutMs",
      ] as const
    ) {
      if (!(o[key] > 0)) {
        throw new RangeError(
          `Cannot create supervisor as '${key}' must be > 0: current value is ${o[key]}`,
        );
      }
    }
    for (const key of ["maxRestarts", "mailboxLimit", "statusLogIntervalMs"] as const) {
      if (!(Number.isInteger(o[key]) && o[key] >= 0)) {
        throw new RangeError(
          `Cannot create supervisor as '${key}' must be a non-negative integer: current value is ${
            o[key]
          }`,
        );
      }
    }
    for (const spec of options.actors) {
      if (!ActorName.safeParse(spec.name).success || spec.name === SUPERVISOR) {
        throw new RangeError(
          `Cannot create supervisor as actor name '${spec.name}' is not lower snake_case`,
        );
      }
      if (this.#children.has(spec.name)) {
        throw new RangeError(`Cannot create supervisor as actor '${spec.name}' is listed twice`);
      }
      const child: Child = {
        spec,
        policy: spec.restart ?? "permanent",
        critical: spec.critical ?? false,
        state: "stopped",
        worker: undefined,
        incarnation: 0,
        readyAt: null,
        lastPongAt: 0,
        pingSeq: 0,
        restarts: 0,
        restartTimes: [],
        backoffAttempt: 0,
        restartTimer: undefined,
        startTimer: undefined,
        lastError: null,
        lastErrorAt: null,
        messagesIn: 0,
        messagesOut: 0,
        dropped: 0,
        invalidOut: 0,
        statsPrevious: { invalid: 0, coalesced: 0 },
        stats: null,
        metrics: {},
        buffer: [],
        settled: [],
        stoppedAck: undefined,
        ahead: undefined,
      };
      this.#children.set(spec.name, child);
      this.#order.push(child);
    }
  }

  /** Whether trading is allowed (`active`) or `halted`. */
  get tradingState(): TradingState {
    return this.#tradingState;
  }

  /** Why trading was halted, or null. */
  get haltReason(): string | null {
    return this.#haltReason;
  }

  /**
   * Starts the actors in order: each must answer `ready` (or crash, or time out) before the
   * next starts. An actor that fails to start goes through its restart policy as usual, and
   * the others still start.
   *
   * @throws {Error} when called twice.
   */
  async start(): Promise<void> {
    if (this.#phase !== "idle") throw new Error("Cannot start supervisor twice");
    this.#phase = "running";
    this.#options.signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#lastTickAt = this.#now();
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), this.#options.heartbeatIntervalMs);
    if (this.#options.statusLogIntervalMs > 0) {
      this.#statusTimer = setInterval(
        () => this.logStatus(),
        this.#options.statusLogIntervalMs,
      );
    }
    log.info("supervisor starting", { actors: this.#order.map((c) => c.spec.name) });
    if (this.#options.loadModulesAhead) {
      for (const child of this.#order) this.#createAhead(child);
    }
    for (const child of this.#order) {
      if (this.#phase !== "running") break;
      const settled = new Promise<void>((resolve) => child.settled.push(resolve));
      this.#spawn(child);
      await settled;
    }
    if (this.#phase === "running") {
      log.info("supervisor started", { states: this.#stateSummary() });
    }
  }

  /**
   * Stops every actor in reverse start order: `stop`, then wait up to its shutdown timeout for
   * `stopped`, then terminate. Pending restarts are cancelled. Safe to call more than once.
   */
  stop(reason = "stop"): Promise<void> {
    this.#stopPromise ??= this.#stopAll(reason);
    return this.#stopPromise;
  }

  async #stopAll(reason: string): Promise<void> {
    const wasRunning = this.#phase === "running";
    this.#phase = "stopping";
    this.#options.signal?.removeEventListener("abort", this.#onAbort);
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#statusTimer);
    if (wasRunning) log.info("supervisor stopping", { reason });
    for (const child of this.#order) this.#dropAhead(child);
    for (const child of [...this.#order].reverse()) {
      await this.#stopChild(child, reason);
    }
    this.#phase = "stopped";
    if (wasRunning) log.info("supervisor stopped", { states: this.#stateSummary() });
  }

  /** The status of every actor, in start order. */
  status(): ActorStatus[] {
    const now = this.#now();
    return this.#order.map((c) => {
      const live = c.state === "running" || c.state === "stopping";
      return {
        name: c.spec.name,
        state: c.state,
        restartPolicy: c.policy,
        critical: c.critical,
        restarts: c.restarts,
        lastError: c.lastError,
        lastErrorAt: c.lastErrorAt === null ? null : new Date(c.lastErrorAt).toISOString(),
        lastHeartbeatAgeMs: live ? Math.max(0, now - c.lastPongAt) : null,
        uptimeMs: live && c.readyAt !== null ? Math.max(0, now - c.readyAt) : null,
        messagesIn: c.messagesIn,
        messagesOut: c.messagesOut,
        dropped: c.dropped,
        buffered: c.buffer.length,
        invalidIn: c.statsPrevious.invalid + (c.stats?.invalid ?? 0),
        coalesced: c.statsPrevious.coalesced + (c.stats?.coalesced ?? 0),
        mailbox: live ? c.stats?.mailbox ?? 0 : null,
        invalidOut: c.invalidOut,
        metrics: { ...c.metrics },
      };
    });
  }

  /** Health for `/healthz`: unhealthy once trading is halted. */
  health(): SupervisorHealth {
    return {
      healthy: this.#tradingState === "active",
      tradingState: this.#tradingState,
      haltReason: this.#haltReason,
      failed: this.#order.filter((c) => c.state === "failed").map((c) => c.spec.name),
    };
  }

  /** Logs one line summarising every actor (also done every `statusLogIntervalMs`). */
  logStatus(): void {
    const actors: Record<string, string> = {};
    for (const s of this.status()) {
      actors[s.name] =
        `${s.state} restarts=${s.restarts} in=${s.messagesIn} out=${s.messagesOut} dropped=${s.dropped}` +
        (s.lastHeartbeatAgeMs === null ? "" : ` hb_age_ms=${s.lastHeartbeatAgeMs}`);
    }
    log.info("actors status", { trading: this.#tradingState, actors });
  }

  /**
   * Halts trading: records the reason, broadcasts `trading.halt` to every actor and calls
   * `onTradingHalt`. Idempotent; there is no automatic resume (a person restarts the bot).
   */
  halt(reason: string, actor: string | null = null): void {
    if (this.#tradingState === "halted") return;
    this.#tradingState = "halted";
    this.#haltReason = reason;
    log.error("trading HALTED", { reason, source: actor ?? SUPERVISOR });
    this.#emit({ type: "trading.halted", reason, actor });
    // Running actors get it now, starting ones once ready; restarting ones see it in `start`.
    for (const child of this.#order) {
      if (child.state === "running" || child.state === "starting") {
        // The schema caps a reason at 500 characters; the full one is in the log and status.
        const message = { type: "trading.halt", reason: reason.slice(0, 500) } as const;
        this.#route(SUPERVISOR, child.spec.name, message);
      }
    }
    try {
      this.#options.onTradingHalt?.(reason, actor);
    } catch (err) {
      log.error("onTradingHalt callback failed", { error: err });
    }
  }

  /**
   * Terminates the worker of the actor `name` at once, without a graceful stop, and handles it
   * as a crash: its restart policy applies and it counts towards the restart intensity. For
   * fault drills and tests: whatever the actor was doing is cut off mid-way, as by a real crash,
   * and recovery must come from the database.
   *
   * @returns true when a worker was killed; false when the actor had none (restarting, stopped
   *   or failed).
   * @throws {RangeError} when there is no actor called `name`.
   */
  kill(name: string, reason = "killed by request"): boolean {
    const child = this.#children.get(name);
    if (child === undefined) throw new RangeError(`Cannot kill actor as '${name}' is unknown`);
    if (child.worker === undefined || child.state === "stopping") return false;
    this.#crashed(child, reason);
    return true;
  }

  /** Sends an application message from the main thread to the actor named `to`. */
  send(to: string, message: AppMessage): void {
    this.#route(SUPERVISOR, to, message);
  }

  /** Changes the log level of every running worker (the main thread's is the caller's job). */
  setLogLevel(level: LogLevel): void {
    for (const child of this.#order) {
      if (child.worker) this.#post(child, { type: "log.level", level });
    }
  }

  // ---- lifecycle ----

  /** The Worker of `child`'s actor module with its permissions (loading starts at once). */
  #newWorker(child: Child): Worker {
    return new Worker(child.spec.module, {
      type: "module",
      name: child.spec.name,
      deno: { permissions: child.spec.permissions ?? actorPermissions() },
    });
  }

  /**
   * Creates `child`'s first Worker ahead of its turn (`loadModulesAhead`). Until `#spawn` adopts
   * it, any event from it (an actor sends nothing before `start`) spoils it: it is then dropped
   * and `#spawn` creates a fresh one, which goes through the usual crash handling.
   */
  #createAhead(child: Child): void {
    let worker: Worker;
    try {
      worker = this.#newWorker(child);
    } catch {
      return; // `#spawn` tries again and reports the failure
    }
    const ahead = { worker, spoiled: false };
    worker.onmessage = () => ahead.spoiled = true;
    worker.onmessageerror = () => ahead.spoiled = true;
    worker.onerror = (event: ErrorEvent) => {
      // Without preventDefault the error would take down the main thread.
      event.preventDefault();
      ahead.spoiled = true;
    };
    child.ahead = ahead;
  }

  /** Terminates `child`'s Worker created ahead, if it was never adopted. */
  #dropAhead(child: Child): void {
    child.ahead?.worker.terminate();
    child.ahead = undefined;
  }

  #spawn(child: Child): void {
    const name = child.spec.name;
    const incarnation = ++child.incarnation;
    child.state = "starting";
    child.readyAt = null;
    child.statsPrevious.invalid += child.stats?.invalid ?? 0;
    child.statsPrevious.coalesced += child.stats?.coalesced ?? 0;
    child.stats = null;
    const ahead = child.ahead;
    child.ahead = undefined;
    if (ahead?.spoiled) ahead.worker.terminate();
    let worker: Worker;
    try {
      worker = ahead && !ahead.spoiled ? ahead.worker : this.#newWorker(child);
    } catch (err) {
      child.worker = undefined;
      this.#ended(child, `worker creation failed: ${errorText(err)}`, true);
      return;
    }
    child.worker = worker;
    worker.onmessage = (event: MessageEvent<unknown>) => {
      if (child.incarnation === incarnation) this.#onWorkerMessage(child, event.data);
    };
    worker.onerror = (event: ErrorEvent) => {
      // Handled here; without preventDefault the error would take down the main thread.
      event.preventDefault();
      if (child.incarnation !== incarnation) return;
      const where = event.filename ? ` (${event.filename}:${event.lineno})` : "";
      this.#crashed(child, `uncaught error: ${event.message}${where}`);
    };
    worker.onmessageerror = () => {
      if (child.incarnation === incarnation) {
        this.#crashed(child, "message from worker could not be deserialized");
      }
    };
    const timeoutMs = child.spec.startTimeoutMs ?? this.#options.startTimeoutMs;
    child.startTimer = setTimeout(() => {
      child.startTimer = undefined;
      if (child.incarnation === incarnation && child.state === "starting") {
        this.#crashed(child, `no ready within ${timeoutMs} ms`);
      }
    }, timeoutMs);
    this.#post(child, {
      type: "start",
      actor: name,
      config: child.spec.config ?? {},
      log: this.#options.log ?? loggingSettings(),
      secrets: secretsInConfig(child.spec.config, this.#options.secrets ?? []),
      tradingHalted: this.#tradingState === "halted",
      haltReason: this.#haltReason,
      ...(this.#options.faultInjection ? { faultInjection: true } : {}),
    });
  }

  #onWorkerMessage(child: Child, data: unknown): void {
    const parsed = ToSupervisor.safeParse(data);
    if (!parsed.success) {
      child.invalidOut++;
      if (worthLogging(child.invalidOut)) {
        log.warn("invalid message from actor dropped", {
          from: child.spec.name,
          problem: describeIssues(parsed.error),
          invalid_out: child.invalidOut,
        });
      }
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case "ready":
        this.#onReady(child);
        return;
      case "pong":
        child.lastPongAt = this.#now();
        child.stats = message.stats;
        child.metrics = message.metrics;
        return;
      case "send":
        child.messagesOut++;
        this.#route(child.spec.name, message.to, message.message);
        return;
      case "error": {
        const text = `${message.error.name}: ${message.error.message}`;
        if (message.fatal) {
          this.#crashed(child, text);
        } else {
          child.lastError = text;
          child.lastErrorAt = this.#now();
          log.warn("actor reported an error", { from: child.spec.name, error: text });
        }
        return;
      }
      case "exit":
        this.#exited(child, message.reason);
        return;
      case "stopped":
        child.stoppedAck?.(true);
        return;
      default: {
        const unknownMessage: never = message;
        throw new Error(`Unknown message type: ${JSON.stringify(unknownMessage)}`);
      }
    }
  }

  #onReady(child: Child): void {
    if (child.state !== "starting") return;
    clearTimeout(child.startTimer);
    child.startTimer = undefined;
    const now = this.#now();
    child.state = "running";
    child.readyAt = now;
    child.lastPongAt = now;
    log.info("actor started", { name: child.spec.name, incarnation: child.incarnation });
    this.#emit({ type: "actor.started", actor: child.spec.name, incarnation: child.incarnation });
    const buffered = child.buffer;
    child.buffer = [];
    for (const { from, message } of buffered) this.#deliver(child, from, message);
    // A new incarnation learns a ban still running (a duplicate of a buffered one is harmless).
    if (this.#upbitBanUntil > Date.now()) {
      this.#deliver(child, SUPERVISOR, { type: "upbit.ban", untilMs: this.#upbitBanUntil });
    }
    this.#settle(child);
  }

  #heartbeat(): void {
    const now = this.#now();
    const sinceTickMs = now - this.#lastTickAt;
    this.#lastTickAt = now;
    if (sinceTickMs > this.#options.heartbeatTimeoutMs) {
      // The main thread itself was blocked, so pongs may sit unread in its queue: judge the
      // actors afresh rather than restart them all.
      log.warn("heartbeat tick late; main thread was blocked", { late_ms: sinceTickMs });
      for (const child of this.#order) if (child.state === "running") child.lastPongAt = now;
    }
    for (const child of this.#order) {
      if (child.state !== "running") continue;
      const silentMs = now - child.lastPongAt;
      if (silentMs > this.#options.heartbeatTimeoutMs) {
        this.#crashed(child, `heartbeat timeout: no pong for ${silentMs} ms (hung?)`);
      } else {
        this.#post(child, { type: "ping", seq: ++child.pingSeq });
      }
    }
  }

  /** The current incarnation crashed (or hung): terminate it and apply the restart policy. */
  #crashed(child: Child, error: string): void {
    if (child.worker === undefined) return;
    this.#terminate(child);
    child.lastError = error;
    child.lastErrorAt = this.#now();
    if (child.state === "stopping") {
      child.stoppedAck?.(false);
      return;
    }
    log.error("actor crashed", { name: child.spec.name, error });
    this.#emit({ type: "actor.crashed", actor: child.spec.name, error });
    this.#ended(child, error, true);
  }

  #exited(child: Child, reason: string): void {
    if (child.worker === undefined) return;
    this.#terminate(child);
    if (child.state === "stopping") {
      child.stoppedAck?.(true);
      return;
    }
    log.info("actor exited", { name: child.spec.name, reason });
    this.#emit({ type: "actor.exited", actor: child.spec.name, reason });
    this.#ended(child, reason, false);
  }

  /** After an incarnation ended: restart with backoff, or stop, or fail and escalate. */
  #ended(child: Child, reason: string, abnormal: boolean): void {
    if (this.#phase !== "running") {
      this.#setStopped(child);
      return;
    }
    if (child.policy === "temporary" || (child.policy === "transient" && !abnormal)) {
      if (abnormal) this.#fail(child, reason);
      else this.#setStopped(child);
      return;
    }
    const now = this.#now();
    child.restartTimes = child.restartTimes.filter((t) => now - t < this.#options.restartWindowMs);
    if (child.restartTimes.length >= this.#options.maxRestarts) {
      this.#fail(
        child,
        `restart intensity exceeded: ${child.restartTimes.length} restarts within ${this.#options.restartWindowMs} ms; last error: ${reason}`,
      );
      return;
    }
    if (child.readyAt !== null && now - child.readyAt >= this.#options.restartResetAfterMs) {
      child.backoffAttempt = 0;
    }
    const delayMs = restartDelayMs(child.backoffAttempt++, {
      minDelayMs: this.#options.restartMinDelayMs,
      maxDelayMs: this.#options.restartMaxDelayMs,
      jitter: this.#options.restartJitter,
    }, this.#random);
    child.restartTimes.push(now);
    child.restarts++;
    child.state = "restarting";
    log.warn("actor restarting", {
      name: child.spec.name,
      delay_ms: delayMs,
      restarts: child.restarts,
    });
    this.#emit({
      type: "actor.restarting",
      actor: child.spec.name,
      delayMs,
      restarts: child.restarts,
    });
    child.restartTimer = setTimeout(() => {
      child.restartTimer = undefined;
      if (this.#phase === "running" && child.state === "restarting") this.#spawn(child);
    }, delayMs);
    this.#settle(child);
  }

  #fail(child: Child, error: string): void {
    child.state = "failed";
    child.lastError = error;
    child.lastErrorAt = this.#now();
    this.#dropBuffer(child);
    log.error("actor FAILED", { name: child.spec.name, critical: child.critical, error });
    this.#emit({ type: "actor.failed", actor: child.spec.name, error });
    this.#settle(child);
    if (child.critical) {
      this.halt(`critical actor ${child.spec.name} failed: ${error}`, child.spec.name);
    }
  }

  #setStopped(child: Child): void {
    child.state = "stopped";
    this.#dropBuffer(child);
    this.#settle(child);
  }

  async #stopChild(child: Child, reason: string): Promise<void> {
    clearTimeout(child.restartTimer);
    child.restartTimer = undefined;
    if (child.worker === undefined) {
      if (child.state !== "failed") this.#setStopped(child);
      return;
    }
    child.state = "stopping";
    const timeoutMs = child.spec.shutdownTimeoutMs ?? this.#options.shutdownTimeoutMs;
    let timer: Timer | undefined;
    const graceful = await new Promise<boolean>((resolve) => {
      child.stoppedAck = resolve;
      timer = setTimeout(() => resolve(false), timeoutMs);
      this.#post(child, { type: "stop", reason });
    });
    clearTimeout(timer);
    child.stoppedAck = undefined;
    this.#terminate(child);
    this.#setStopped(child);
    if (graceful) {
      log.info("actor stopped", { name: child.spec.name });
    } else {
      log.warn("actor did not stop in time; terminated", {
        name: child.spec.name,
        timeout_ms: timeoutMs,
      });
    }
    this.#emit({ type: "actor.stopped", actor: child.spec.name, graceful });
  }

  #terminate(child: Child): void {
    clearTimeout(child.startTimer);
    child.startTimer = undefined;
    const worker = child.worker;
    child.worker = undefined;
    // A later message or error from the old worker no longer matches the incarnation.
    child.incarnation++;
    worker?.terminate();
  }

  #settle(child: Child): void {
    const waiters = child.settled;
    child.settled = [];
    for (const resolve of waiters) resolve();
  }

  // ---- messaging ----

  #route(from: string, to: string, message: AppMessage): void {
    if (to === SUPERVISOR) {
      if (message.type === "trading.halt") {
        this.halt(message.reason, from);
        return;
      }
      if (message.type === "upbit.ban") {
        this.#broadcastBan(from, message);
        return;
      }
      try {
        this.#options.onMessage?.(message, from);
      } catch (err) {
        log.error("onMessage callback failed", { from, type: message.type, error: err });
      }
      return;
    }
    const target = this.#children.get(to);
    if (target === undefined) {
      const sender = this.#children.get(from);
      const count = sender ? ++sender.invalidOut : 1;
      if (worthLogging(count)) {
        log.warn("message to unknown actor dropped", { from, to, type: message.type });
      }
      return;
    }
    switch (target.state) {
      case "running":
        this.#deliver(target, from, message);
        return;
      case "starting":
      case "restarting":
        // Wakes are idempotent: one buffered wake per topic is enough.
        if (message.type === "wake" && target.buffer.some((b) => sameWake(b.message, message))) {
          return;
        }
        target.buffer.push({ from, message });
        if (target.buffer.length > this.#options.mailboxLimit) {
          target.buffer.shift();
          this.#countDrop(target, "buffer full");
        }
        return;
      case "stopping":
      case "stopped":
      case "failed":
        this.#countDrop(target, target.state);
        return;
      default: {
        const unknownState: never = target.state;
        throw new Error(`Unknown state ${unknownState}`);
      }
    }
  }

  /**
   * One actor's client drew a 418: every other actor's limiters learn it now, so none of them
   * sends into the ban (Upbit bans the IP or pocket, not one client).
   */
  #broadcastBan(from: string, message: AppMessageOf<"upbit.ban">): void {
    this.#upbitBanUntil = Math.max(this.#upbitBanUntil, message.untilMs);
    log.warn("Upbit ban (418): every actor refuses Upbit calls until it ends", {
      source: from,
      until: new Date(message.untilMs).toISOString(),
    });
    for (const child of this.#order) {
      if (child.spec.name === from) continue;
      if (child.state === "running" || child.state === "starting" || child.state === "restarting") {
        this.#route(SUPERVISOR, child.spec.name, message);
      }
    }
  }

  #deliver(child: Child, from: string, message: AppMessage): void {
    child.messagesIn++;
    this.#post(child, { type: "deliver", from, message });
  }

  #countDrop(child: Child, why: string): void {
    child.dropped++;
    // Sparse warnings keep a dead actor from flooding the log; the status has the count.
    if (worthLogging(child.dropped)) {
      log.warn("messages to actor dropped", { name: child.spec.name, why, dropped: child.dropped });
    }
  }

  #dropBuffer(child: Child): void {
    for (let i = 0; i < child.buffer.length; i++) this.#countDrop(child, child.state);
    child.buffer = [];
  }

  #post(child: Child, message: ToActor): void {
    try {
      child.worker?.postMessage(message);
    } catch (err) {
      // Only a non-cloneable config can get here; treat it as a crash of that actor.
      this.#crashed(child, `cannot post ${message.type}: ${errorText(err)}`);
    }
  }

  #emit(event: SupervisorEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch (err) {
      log.error("onEvent callback failed", { event: event.type, error: err });
    }
  }

  #stateSummary(): Record<string, ActorState> {
    return Object.fromEntries(this.#order.map((c) => [c.spec.name, c.state]));
  }
}

/** Whether the `count`th occurrence is logged: the first ten, then every power of ten. */
function worthLogging(count: number): boolean {
  return count <= 10 || Number.isInteger(Math.log10(count));
}

function sameWake(a: AppMessage, b: AppMessage): boolean {
  return a.type === "wake" && b.type === "wake" && a.topic === b.topic;
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The secrets that occur in some string of `config` (searched deeply): the ones an actor with
 * this config slice already holds, and so the only ones it is told to mask.
 */
export function secretsInConfig(config: unknown, secrets: readonly string[]): string[] {
  const strings: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "string") strings.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(config);
  return secrets.filter((s) => s !== "" && strings.some((str) => str.includes(s)));
}
