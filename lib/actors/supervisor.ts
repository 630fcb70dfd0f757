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
 *   is `failed`; the {@linkcode SupervisorPolicy} hears of it (upbot halts trading when the child
 *   is `critical`: `lib/pipeline/runtime.ts`). A failed non-critical child stays failed. A failed
 *   critical child is tried again every `failedCriticalRetryMs`, its restart budget new: in upbot
 *   the critical actors are the ones that close live positions, an obligation that outlasts any
 *   restart budget; the escalation (the halt, which stays until a person resumes) stands.
 * - Heartbeats: a worker that does not answer pings for `heartbeatTimeoutMs` (a busy loop) is
 *   terminated and restarted like a crash. So are `error` / `messageerror` events, fatal
 *   `error` messages and a missing `ready` after `startTimeoutMs`.
 * - Ordered start (each child acks `ready`, or fails, before the next starts) and reverse-order
 *   graceful stop with a per-child shutdown timeout, then terminate.
 * - Messages for an actor that is starting or restarting are buffered up to `mailboxLimit`
 *   (the oldest is dropped beyond it) and delivered once it is ready; messages for a stopped
 *   or failed actor are dropped. Both are counted in its `dropped`. Dropping is safe because
 *   the database holds the truth: application messages only inform and wake.
 *
 * It is generic over the application's messages (the `protocol` option) and knows none of them:
 * messages sent to `supervisor`, a child failing for good and a new incarnation becoming ready go
 * to the application's {@linkcode SupervisorPolicy}, which may answer by sending messages.
 */
import { createLogger, loggingSettings, type LogLevel, type LogSettings, redact } from "../log.ts";
import { checkBackoffOptions, restartDelayMs } from "./backoff.ts";
import {
  type ActorMemory,
  ActorName,
  type ActorStats,
  type DeliverMessage,
  describeIssues,
  type Fault,
  type FaultInjectMessage,
  type Message,
  type Protocol,
  SUPERVISOR,
  type ToActor,
} from "./protocol.ts";
import { actorPermissions } from "./permissions.ts";

/** When a child is restarted after it ends. */
export type RestartPolicy = "permanent" | "transient" | "temporary";

/** Lifecycle state of one actor. */
export type ActorState = "starting" | "running" | "restarting" | "stopping" | "stopped" | "failed";

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
  /**
   * Whether this actor failing for good is grave: passed to the policy's `childFailed` (upbot
   * halts trading). @default {false}
   */
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
  | { type: "actor.stopped"; actor: string; graceful: boolean };

/** What a {@linkcode SupervisorPolicy} may do with the supervisor. */
export interface SupervisorControl<M extends Message, E> {
  /**
   * Sends `message` from `supervisor` to the actor `to`: delivered, buffered while it (re)starts,
   * or dropped, as any message.
   */
  send(to: string, message: M): void;
  /** Every child's name, state and `critical` flag, in start order. */
  children(): { name: string; state: ActorState; critical: boolean }[];
  /** Passes an application event to `onEvent`. */
  emit(event: E): void;
}

/**
 * The application's rules inside the supervisor (upbot's: trading halts and Upbit bans,
 * `lib/pipeline/runtime.ts`). Every hook is optional; a throwing hook is logged and ignored.
 * `E` is the type of the events it emits.
 */
export interface SupervisorPolicy<M extends Message, E = never> {
  /** Called once, by the supervisor's constructor, with what the policy may do. */
  attach?(control: SupervisorControl<M, E>): void;
  /**
   * The application state sent in each start message (structured-cloneable); `incarnation` is
   * the number of the incarnation it starts (as in `actor.started`).
   */
  startState?(actor: string, incarnation: number): unknown;
  /**
   * A message addressed to `supervisor` from actor `from` (or from the main thread). Returns true
   * when the policy took it; otherwise it goes to `onMessage`.
   */
  message?(message: M, from: string): boolean;
  /** A child failed for good (its restarts are exhausted, or it may not be restarted). */
  childFailed?(actor: string, critical: boolean, error: string): void;
  /** A new incarnation of `actor` is ready and got its buffered messages. */
  childReady?(actor: string): void;
  /**
   * The worker of `actor`'s incarnation was terminated without a clean stop: a crash, a stop past
   * its shutdown timeout, or (`hung`) no pong within the heartbeat timeout. What it held outside
   * its isolate may outlive it: a worker busy in JavaScript keeps running on its thread after
   * `terminate()`, its sockets open (Deno up to at least 2.9.6, denoland/deno#35657).
   */
  childTerminated?(actor: string, hung: boolean): void;
  /** False when the application is unhealthy (`health().healthy`). */
  healthy?(): boolean;
  /** Fields of the application's state for the periodic `actors status` log line. */
  statusFields?(): Record<string, unknown>;
}

/** Options of {@linkcode Supervisor}. Every duration is in milliseconds. */
export interface SupervisorOptions<M extends Message, E = never> {
  /** The application's protocol ({@linkcode defineProtocol}); the actors must use the same. */
  protocol: Protocol<M>;
  /** The application's rules. @default {none: messages to `supervisor` go to `onMessage`} */
  policy?: SupervisorPolicy<M, E>;
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
  /**
   * A failed critical child is started again after this long (a slow retry, not a loop: the
   * failure was escalated first); 0 leaves it failed. @default {60000}
   */
  failedCriticalRetryMs?: number;
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
  /** Called for every {@linkcode SupervisorEvent} and every event of the policy. */
  onEvent?: (event: SupervisorEvent | E) => void;
  /** Application messages that actors send to `"supervisor"` and the policy did not take. */
  onMessage?: (message: M, from: string) => void;
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
   * Test-only: actors act out the faults (throw, hang, exit, oom) sent with
   * {@linkcode Supervisor.injectFault}, for fault drills (tests/worker_faults_test.ts). Never set
   * in production; unset, the actors drop them. @default {false}
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
  /** What ended or troubled the actor last, secrets masked (see {@linkcode redact}). */
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
  /** Messages the actor merged into an equal queued one (reported by the worker). */
  coalesced: number;
  /** Messages in the actor's mailbox at its last heartbeat; null when not running. */
  mailbox: number | null;
  /** Invalid messages this actor sent, dropped by the supervisor. */
  invalidOut: number;
  /**
   * The worker isolate's own V8 heap at its last heartbeat, bytes; null when not running or before
   * its first heartbeat.
   */
  memory: ActorMemory | null;
  /** Actor-defined metrics from its last heartbeat; empty until this incarnation's first. */
  metrics: Record<string, number | string | boolean | null>;
}

/** The supervisor's health, for `/healthz`. */
export interface SupervisorHealth {
  /** False when the policy says so (upbot: once trading is halted). */
  healthy: boolean;
  /** Names of actors that failed for good. */
  failed: string[];
}

/** What waits in a buffer for an actor that is (re)starting. */
type Buffered<M extends Message> = DeliverMessage<M> | FaultInjectMessage;

interface Child<M extends Message> {
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
  memory: ActorMemory | null;
  metrics: Record<string, number | string | boolean | null>;
  buffer: Buffered<M>[];
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
  failedCriticalRetryMs: 60_000,
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
 *   protocol: appProtocol,
 *   actors: [{ name: "feed", module: new URL("../actors/feed.ts", import.meta.url) }],
 * });
 * await supervisor.start();
 * // ...
 * await supervisor.stop("SIGTERM");
 * ```
 */
export class Supervisor<M extends Message, E = never> {
  #options: typeof DEFAULTS & SupervisorOptions<M, E>;
  #protocol: Protocol<M>;
  #policy: SupervisorPolicy<M, E>;
  #children = new Map<string, Child<M>>();
  #order: Child<M>[] = [];
  #now: () => number;
  #random: () => number;
  #phase: "idle" | "running" | "stopping" | "stopped" = "idle";
  #heartbeatTimer: Timer | undefined;
  #lastTickAt = 0;
  #statusTimer: Timer | undefined;
  #stopPromise: Promise<void> | undefined;
  #onAbort = () => void this.stop("signal");

  /** @throws {RangeError} on bad options or duplicate / invalid actor names. */
  constructor(options: SupervisorOptions<M, E>) {
    this.#options = {
      ...DEFAULTS,
      ...stripUndefined(options),
      actors: options.actors,
      protocol: options.protocol,
    };
    this.#protocol = options.protocol;
    this.#policy = options.policy ?? {};
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
      const child: Child<M> = {
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
        memory: null,
        metrics: {},
        buffer: [],
        settled: [],
        stoppedAck: undefined,
        ahead: undefined,
      };
      this.#children.set(spec.name, child);
      this.#order.push(child);
    }
    this.#callPolicy("attach", () =>
      this.#policy.attach?.({
        send: (to, message) => this.#route(SUPERVISOR, to, message),
        children: () =>
          this.#order.map((c) => ({ name: c.spec.name, state: c.state, critical: c.critical })),
        emit: (event) => this.#emit(event),
      }));
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
        memory: live && c.memory !== null ? { ...c.memory } : null,
        metrics: { ...c.metrics },
      };
    });
  }

  /** Health for `/healthz`: unhealthy when the policy says so. */
  health(): SupervisorHealth {
    return {
      healthy: this.#callPolicy("healthy", () => this.#policy.healthy?.()) ?? true,
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
    const fields = this.#callPolicy("statusFields", () => this.#policy.statusFields?.());
    log.info("actors status", { ...fields, actors });
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

  /**
   * Sends an application message from the main thread to the actor named `to` (or to
   * `supervisor`, i.e. the policy).
   */
  send(to: string, message: M): void {
    this.#route(SUPERVISOR, to, message);
  }

  /**
   * Test-only: asks the actor `to` to act out `fault` from its mailbox, in order with its
   * messages (buffered while it restarts, like them). Acted out only when the supervisor was
   * created with `faultInjection: true`; otherwise the actor drops it. See
   * {@linkcode FaultInjectMessage}.
   */
  injectFault(to: string, fault: Fault): void {
    const target = this.#children.get(to);
    if (target === undefined) throw new RangeError(`Cannot inject fault as '${to}' is unknown`);
    this.#toChild(target, { type: "fault.inject", fault });
  }

  /** Changes the log level of every running worker (the main thread's is the caller's job). */
  setLogLevel(level: LogLevel): void {
    for (const child of this.#order) {
      if (child.worker) this.#post(child, { type: "log.level", level });
    }
  }

  // ---- lifecycle ----

  /** The Worker of `child`'s actor module with its permissions (loading starts at once). */
  #newWorker(child: Child<M>): Worker {
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
  #createAhead(child: Child<M>): void {
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
  #dropAhead(child: Child<M>): void {
    child.ahead?.worker.terminate();
    child.ahead = undefined;
  }

  #spawn(child: Child<M>): void {
    const name = child.spec.name;
    const incarnation = ++child.incarnation;
    child.state = "starting";
    child.readyAt = null;
    child.statsPrevious.invalid += child.stats?.invalid ?? 0;
    child.statsPrevious.coalesced += child.stats?.coalesced ?? 0;
    child.stats = null;
    child.memory = null;
    // Metrics belong to an incarnation: the last one's (a feed "connected" and "backfilled")
    // must not speak for this one before its first heartbeat.
    child.metrics = {};
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
    // Pinged while it starts too (the runtime answers pings outside the mailbox): a start that
    // times out silent was a thread busy in JavaScript, which terminate() does not stop.
    child.lastPongAt = this.#now();
    child.startTimer = setTimeout(() => {
      child.startTimer = undefined;
      if (child.incarnation === incarnation && child.state === "starting") {
        const hung = this.#silent(child);
        this.#crashed(child, `no ready within ${timeoutMs} ms${hung ? " (hung?)" : ""}`, hung);
      }
    }, timeoutMs);
    this.#post(child, {
      type: "start",
      actor: name,
      config: child.spec.config ?? {},
      log: this.#options.log ?? loggingSettings(),
      secrets: secretsInConfig(child.spec.config, this.#options.secrets ?? []),
      appState: this.#callPolicy(
        "startState",
        () => this.#policy.startState?.(name, incarnation),
      ),
      ...(this.#options.faultInjection ? { faultInjection: true } : {}),
    });
  }

  #onWorkerMessage(child: Child<M>, data: unknown): void {
    const parsed = this.#protocol.toSupervisor.safeParse(data);
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
        child.memory = message.memory;
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
          this.#recordError(child, text);
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

  #onReady(child: Child<M>): void {
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
    for (const message of buffered) {
      if (message.type === "deliver") this.#deliver(child, message.from, message.message);
      else this.#post(child, message);
    }
    this.#callPolicy("childReady", () => this.#policy.childReady?.(child.spec.name));
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
      for (const child of this.#order) {
        if (child.state === "running" || child.state === "starting" || child.state === "stopping") {
          child.lastPongAt = now;
        }
      }
    }
    for (const child of this.#order) {
      if ((child.state === "starting" || child.state === "stopping") && child.worker) {
        // No timeout here (the start and shutdown timeouts apply); only whether it answers.
        this.#post(child, { type: "ping", seq: ++child.pingSeq });
      }
      if (child.state !== "running") continue;
      const silentMs = now - child.lastPongAt;
      if (silentMs > this.#options.heartbeatTimeoutMs) {
        this.#crashed(child, `heartbeat timeout: no pong for ${silentMs} ms (hung?)`, true);
      } else {
        this.#post(child, { type: "ping", seq: ++child.pingSeq });
      }
    }
  }

  /** Whether `child` has answered no ping for longer than the heartbeat timeout. */
  #silent(child: Child<M>): boolean {
    return this.#now() - child.lastPongAt > this.#options.heartbeatTimeoutMs;
  }

  /** The current incarnation crashed (or hung): terminate it and apply the restart policy. */
  #crashed(child: Child<M>, error: string, hung = false): void {
    if (child.worker === undefined) return;
    this.#terminate(child);
    this.#recordError(child, error);
    if (child.state === "stopping") {
      child.stoppedAck?.(false); // `#stopChild` reports the termination
      return;
    }
    this.#callPolicy(
      "childTerminated",
      () => this.#policy.childTerminated?.(child.spec.name, hung),
    );
    log.error("actor crashed", { name: child.spec.name, error });
    this.#emit({ type: "actor.crashed", actor: child.spec.name, error });
    this.#ended(child, error, true);
  }

  #exited(child: Child<M>, reason: string): void {
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
  #ended(child: Child<M>, reason: string, abnormal: boolean): void {
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
    child.state = "restarting";
    this.#restartIn(child, delayMs);
    log.warn("actor restarting", {
      name: child.spec.name,
      delay_ms: delayMs,
      restarts: child.restarts,
    });
    this.#settle(child);
  }

  /**
   * Starts `child` again in `delayMs`, unless by then the supervisor has stopped or `child` has
   * left the state it waits in: `restarting` after an incarnation ended, `failed` for the retry of
   * a failed critical child. The restart is counted and reported (`actor.restarting`) as it is
   * scheduled, except the retry: a failed child stays failed, its restart budget spent, until the
   * retry renews the budget and only then counts.
   */
  #restartIn(child: Child<M>, delayMs: number): void {
    const waiting = child.state;
    const count = () => {
      child.restarts++;
      this.#emit({
        type: "actor.restarting",
        actor: child.spec.name,
        delayMs,
        restarts: child.restarts,
      });
    };
    if (waiting !== "failed") count();
    child.restartTimer = setTimeout(() => {
      child.restartTimer = undefined;
      if (this.#phase !== "running" || child.state !== waiting) return;
      if (waiting === "failed") {
        child.restartTimes = [];
        child.backoffAttempt = 0;
        count();
      }
      this.#spawn(child);
    }, delayMs);
  }

  #fail(child: Child<M>, error: string): void {
    child.state = "failed";
    this.#recordError(child, error);
    this.#dropBuffer(child);
    log.error("actor FAILED", { name: child.spec.name, critical: child.critical, error });
    this.#emit({ type: "actor.failed", actor: child.spec.name, error });
    this.#settle(child);
    this.#callPolicy(
      "childFailed",
      () => this.#policy.childFailed?.(child.spec.name, child.critical, error),
    );
    const retryMs = this.#options.failedCriticalRetryMs;
    if (child.critical && retryMs > 0 && this.#phase === "running") {
      log.warn("failed critical actor will be started again", {
        name: child.spec.name,
        delay_ms: retryMs,
      });
      this.#restartIn(child, retryMs);
    }
  }

  /**
   * Records `error` as `child`'s last error, with the secrets registered in this thread masked
   * (`redact`, as in the log): an error may quote one (a connection error with the database URL),
   * and the status goes out over HTTP (`/api/actors`, `/api/status`).
   */
  #recordError(child: Child<M>, error: string): void {
    child.lastError = redact(error);
    child.lastErrorAt = this.#now();
  }

  #setStopped(child: Child<M>): void {
    child.state = "stopped";
    this.#dropBuffer(child);
    this.#settle(child);
  }

  async #stopChild(child: Child<M>, reason: string): Promise<void> {
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
    const hung = !graceful && this.#silent(child);
    this.#terminate(child);
    if (!graceful) {
      this.#callPolicy(
        "childTerminated",
        () => this.#policy.childTerminated?.(child.spec.name, hung),
      );
    }
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

  #terminate(child: Child<M>): void {
    clearTimeout(child.startTimer);
    child.startTimer = undefined;
    const worker = child.worker;
    child.worker = undefined;
    // A later message or error from the old worker no longer matches the incarnation.
    child.incarnation++;
    worker?.terminate();
  }

  #settle(child: Child<M>): void {
    const waiters = child.settled;
    child.settled = [];
    for (const resolve of waiters) resolve();
  }

  // ---- messaging ----

  #route(from: string, to: string, message: M): void {
    if (to === SUPERVISOR) {
      if (this.#callPolicy("message", () => this.#policy.message?.(message, from)) === true) {
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
    this.#toChild(target, { type: "deliver", from, message });
  }

  /** Delivers now, buffers while `target` (re)starts, or drops. */
  #toChild(target: Child<M>, message: Buffered<M>): void {
    switch (target.state) {
      case "running":
        if (message.type === "deliver") this.#deliver(target, message.from, message.message);
        else this.#post(target, message);
        return;
      case "starting":
      case "restarting": {
        // Coalescible messages are idempotent: one buffered per key is enough.
        const key = message.type === "deliver"
          ? this.#protocol.coalesceKey(message.message)
          : undefined;
        if (
          key !== undefined &&
          target.buffer.some((b) =>
            b.type === "deliver" && this.#protocol.coalesceKey(b.message) === key
          )
        ) {
          return;
        }
        target.buffer.push(message);
        if (target.buffer.length > this.#options.mailboxLimit) {
          target.buffer.shift();
          this.#countDrop(target, "buffer full");
        }
        return;
      }
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

  #deliver(child: Child<M>, from: string, message: M): void {
    child.messagesIn++;
    this.#post(child, { type: "deliver", from, message });
  }

  #countDrop(child: Child<M>, why: string): void {
    child.dropped++;
    // Sparse warnings keep a dead actor from flooding the log; the status has the count.
    if (worthLogging(child.dropped)) {
      log.warn("messages to actor dropped", { name: child.spec.name, why, dropped: child.dropped });
    }
  }

  #dropBuffer(child: Child<M>): void {
    for (let i = 0; i < child.buffer.length; i++) this.#countDrop(child, child.state);
    child.buffer = [];
  }

  #post(child: Child<M>, message: ToActor<M>): void {
    try {
      child.worker?.postMessage(message);
    } catch (err) {
      // Only a non-cloneable config can get here; treat it as a crash of that actor.
      this.#crashed(child, `cannot post ${message.type}: ${errorText(err)}`);
    }
  }

  #emit(event: SupervisorEvent | E): void {
    try {
      this.#options.onEvent?.(event);
    } catch (err) {
      log.error("onEvent callback failed", { error: err });
    }
  }

  /** Runs a policy hook; a throwing hook is logged and yields undefined. */
  #callPolicy<T>(hook: keyof SupervisorPolicy<M, E>, call: () => T): T | undefined {
    try {
      return call();
    } catch (err) {
      log.error("supervisor policy failed", { hook, error: err });
      return undefined;
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

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * The secrets that occur in some string of `config` (searched deeply), as written or
 * percent-decoded: the ones an actor with this config slice already holds, and so the only ones
 * it is told to mask (a worker is never handed a secret it does not hold). The decoded form counts:
 * an actor holding `DATABASE_URL` holds its decoded password too (its client decodes it, and an
 * error may quote it).
 */
export function secretsInConfig(config: unknown, secrets: readonly string[]): string[] {
  const strings: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "string") {
      strings.push(v);
      try {
        const decoded = decodeURIComponent(v);
        if (decoded !== v) strings.push(decoded);
      } catch { /* not percent-encoded text */ }
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(config);
  return secrets.filter((s) => s !== "" && strings.some((str) => str.includes(s)));
}
