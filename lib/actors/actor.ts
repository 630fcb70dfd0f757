/**
 * @module The worker side of an actor: {@linkcode runActor} installs the message handler
 * synchronously (before any `await`, so no message is lost), validates every inbound message,
 * answers heartbeats ahead of the mailbox, runs application messages one at a time, and reports
 * errors to the supervisor as plain data.
 *
 * @example An actor module (`actors/echo.ts`)
 * ```ts ignore
 * import { z } from "zod";
 * import { runActor } from "../lib/actors/actor.ts";
 *
 * runActor({
 *   config: z.object({ pollMs: z.number() }),
 *   start(ctx) {
 *     ctx.log.info("echo started", { poll_ms: ctx.config.pollMs });
 *   },
 *   messages: {
 *     wake(msg, from, ctx) {
 *       ctx.send(from, msg);
 *     },
 *   },
 * });
 * ```
 */
import type { z } from "zod";
import { configureLogging, createLogger, type Logger, registerSecret } from "../log.ts";
import {
  type ActorMetrics,
  type ActorStats,
  type AppMessage,
  type AppMessageOf,
  type AppMessageType,
  describeIssues,
  SUPERVISOR,
  ToActor,
  toErrorData,
  type ToSupervisor,
} from "./messages.ts";
import { applyBanEverywhere, setBanAnnouncer } from "./upbit_bans.ts";

/** What a handler can see and do. */
export interface ActorContext<C> {
  /** This actor's name, e.g. `executor`. */
  readonly name: string;
  /** This actor's configuration slice, validated with the actor's schema. */
  readonly config: C;
  /** A logger whose lines carry this actor's name. */
  readonly log: Logger;
  /** Aborted when the supervisor asks this actor to stop; pass it to fetch, timers, loops. */
  readonly signal: AbortSignal;
  /** Whether trading is halted (set at start and by `trading.halt`). */
  readonly tradingHalted: boolean;
  /**
   * Sends `message` to the actor named `to` (or to `"supervisor"`). Fire and forget: if `to`
   * is restarting the supervisor buffers it (bounded); see docs/actors.md.
   */
  send(to: string, message: AppMessage): void;
  /** Replaces this actor's metrics, shown in the status after the next heartbeat. */
  setMetrics(metrics: ActorMetrics): void;
  /** Records a non-fatal error as this actor's last error (no restart). */
  reportError(err: unknown): void;
  /** Ends this actor normally (a `transient` actor is not restarted after it). */
  exit(reason?: string): void;
}

/** A handler for the application message with tag `T`. */
export type MessageHandler<T extends AppMessageType, C> = (
  message: AppMessageOf<T>,
  from: string,
  ctx: ActorContext<C>,
) => void | Promise<void>;

/** Handlers by message type; messages without a handler are counted as unhandled. */
export type MessageHandlers<C> = { [T in AppMessageType]?: MessageHandler<T, C> };

/** The definition of an actor, passed to {@linkcode runActor}. */
export interface ActorDefinition<S extends z.ZodType> {
  /** Schema of this actor's configuration slice (from the start message). */
  config: S;
  /**
   * Runs once per incarnation. The actor is reported ready when it resolves; throwing (or
   * rejecting) is a crash. Long-running loops belong in the background, watching `ctx.signal`.
   */
  start?(ctx: ActorContext<z.output<S>>): void | Promise<void>;
  /** Application message handlers, run one at a time in arrival order. Throwing is a crash. */
  messages?: MessageHandlers<z.output<S>>;
  /** Graceful stop: close connections, flush. Must finish within the shutdown timeout. */
  stop?(ctx: ActorContext<z.output<S>>, reason: string): void | Promise<void>;
}

/** Bytes held by an `oom` fault before it fails: bounded, so a drill cannot starve the host. */
const OOM_CAP_BYTES = 128 * 1024 * 1024;

/** Acts out a `fault.inject` message (only when the supervisor enabled fault injection). */
function actOutFault(message: AppMessageOf<"fault.inject">): void {
  switch (message.fault) {
    case "throw":
      throw new Error("injected fault: handler threw");
    case "hang":
      // Spins on the worker's only thread: no pong is answered again.
      for (;;) { /* hang */ }
    case "exit":
      Deno.exit(70);
      break;
    case "oom": {
      const held: Uint8Array[] = [];
      for (let total = 0; total < OOM_CAP_BYTES; total += 16 * 1024 * 1024) {
        held.push(new Uint8Array(16 * 1024 * 1024).fill(1));
      }
      throw new RangeError(`injected fault: out of memory after holding ${held.length * 16} MB`);
    }
  }
}

/** The parts of the worker global scope the runtime uses. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<unknown>) => void) | null;
  postMessage(message: ToSupervisor): void;
  close(): void;
}

/**
 * Runs this worker as an actor. Call it once, at the top level of the actor module, before
 * any `await`.
 */
export function runActor<S extends z.ZodType>(definition: ActorDefinition<S>): void {
  const scope = globalThis as unknown as WorkerScope;
  type C = z.output<S>;
  const stats: ActorStats = {
    received: 0,
    sent: 0,
    invalid: 0,
    unhandled: 0,
    coalesced: 0,
    mailbox: 0,
  };
  let metrics: ActorMetrics = {};
  let ctx: ActorContext<C> | undefined;
  let log: Logger = createLogger("actor");
  let halted = false;
  let stopping = false;
  let faultInjection = false;
  const abort = new AbortController();
  // The mailbox: application messages run strictly one after another.
  let tail: Promise<void> = Promise.resolve();
  // Wake topics queued but not yet handled: a second identical wake adds nothing.
  const queuedWakes = new Set<string>();

  const post = (message: ToSupervisor): void => scope.postMessage(message);

  const crash = (err: unknown): void => {
    // This incarnation is over: handle nothing more while the supervisor terminates it.
    stopping = true;
    post({ type: "error", error: toErrorData(err), fatal: true });
  };

  const enqueue = (message: AppMessage, from: string): void => {
    const handler =
      (message.type === "fault.inject" && faultInjection
        ? actOutFault
        : definition.messages?.[message.type]) as
          | MessageHandler<AppMessageType, C>
          | undefined;
    if (message.type === "trading.halt") halted = true;
    // At once, ahead of the mailbox: a queued handler must not send into the ban.
    if (message.type === "upbit.ban") {
      applyBanEverywhere(message.untilMs);
      if (handler === undefined) return;
    }
    if (handler === undefined) {
      stats.unhandled++;
      log.debug("message without handler dropped", { type: message.type, from });
      return;
    }
    if (message.type === "wake") {
      if (queuedWakes.has(message.topic)) {
        stats.coalesced++;
        return;
      }
      queuedWakes.add(message.topic);
    }
    stats.mailbox++;
    tail = tail.then(async () => {
      stats.mailbox--;
      if (message.type === "wake") queuedWakes.delete(message.topic);
      if (stopping || ctx === undefined) return;
      stats.received++;
      try {
        await handler(message as AppMessageOf<AppMessageType>, from, ctx);
      } catch (err) {
        log.error("handler failed", { type: message.type, from, error: err });
        crash(err);
      }
    });
  };

  const start = async (message: Extract<ToActor, { type: "start" }>): Promise<void> => {
    configureLogging(message.log);
    for (const secret of message.secrets) registerSecret(secret);
    log = createLogger(message.actor);
    halted = message.tradingHalted;
    faultInjection = message.faultInjection === true;
    const parsed = definition.config.safeParse(message.config);
    if (!parsed.success) {
      throw new TypeError(`invalid config for ${message.actor}: ${describeIssues(parsed.error)}`);
    }
    const name = message.actor;
    ctx = {
      name,
      config: parsed.data,
      log,
      signal: abort.signal,
      get tradingHalted() {
        return halted;
      },
      send(to, appMessage) {
        stats.sent++;
        post({ type: "send", to, message: appMessage });
      },
      setMetrics(next) {
        metrics = { ...next };
      },
      reportError(err) {
        post({ type: "error", error: toErrorData(err), fatal: false });
      },
      exit(reason = "done") {
        stopping = true;
        abort.abort(new Error(`exit: ${reason}`));
        post({ type: "exit", reason });
      },
    };
    // A ban this actor's Upbit clients draw is announced to every other actor.
    setBanAnnouncer((untilMs) => {
      stats.sent++;
      post({ type: "send", to: SUPERVISOR, message: { type: "upbit.ban", untilMs } });
    });
    await definition.start?.(ctx);
    post({ type: "ready" });
  };

  const stop = async (reason: string): Promise<void> => {
    try {
      if (ctx !== undefined) await definition.stop?.(ctx, reason);
    } catch (err) {
      log.error("stop failed", { error: err });
    }
    post({ type: "stopped" });
    scope.close();
  };

  scope.onmessage = (event: MessageEvent<unknown>) => {
    const parsed = ToActor.safeParse(event.data);
    if (!parsed.success) {
      stats.invalid++;
      const from = typeof event.data === "object" && event.data !== null && "from" in event.data
        ? String((event.data as { from: unknown }).from)
        : SUPERVISOR;
      // Sparse: the first ten, then every power of ten (the count is in the status).
      if (stats.invalid <= 10 || Number.isInteger(Math.log10(stats.invalid))) {
        log.warn("invalid message dropped", {
          from,
          problem: describeIssues(parsed.error),
          invalid: stats.invalid,
        });
      }
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case "start":
        if (ctx !== undefined) {
          log.warn("duplicate start ignored");
          return;
        }
        start(message).catch(crash);
        return;
      case "ping":
        post({ type: "pong", seq: message.seq, stats: { ...stats }, metrics });
        return;
      case "deliver":
        enqueue(message.message, message.from);
        return;
      case "log.level":
        configureLogging({ level: message.level });
        return;
      case "stop":
        // The running handler finishes (it sees ctx.signal aborted); queued ones are skipped,
        // which is safe because the database, not the mailbox, holds the truth.
        stopping = true;
        abort.abort(new Error(`stop: ${message.reason}`));
        tail = tail.then(() => stop(message.reason));
        return;
      default: {
        const unknownMessage: never = message;
        throw new Error(`Unknown message type: ${JSON.stringify(unknownMessage)}`);
      }
    }
  };
}
