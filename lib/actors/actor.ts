/**
 * @module The worker side of an actor: {@linkcode runActor} installs the message handler
 * synchronously (before any `await`, so no message is lost), validates every inbound message,
 * answers heartbeats ahead of the mailbox, runs application messages one at a time, and reports
 * errors to the supervisor as plain data.
 *
 * It is generic: the application gives its protocol and hooks as an {@linkcode ActorRuntime}
 * (upbot's is `lib/pipeline/runtime.ts`), and each actor its {@linkcode ActorDefinition}.
 *
 * @example An actor module (`actors/echo.ts`) of an application whose runtime is `appRuntime`
 * ```ts ignore
 * import { z } from "zod";
 * import { runActor } from "../lib/actors/actor.ts";
 *
 * runActor(appRuntime, {
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
  describeIssues,
  type FaultInjectMessage,
  type Message,
  type MessageOf,
  type Protocol,
  type StartMessage,
  SUPERVISOR,
  toErrorData,
  type ToSupervisor,
} from "./protocol.ts";

/** What a handler can see and do. */
export interface ActorContext<M extends Message, C> {
  /** This actor's name, e.g. `executor`. */
  readonly name: string;
  /** This actor's configuration slice, validated with the actor's schema. */
  readonly config: C;
  /** A logger whose lines carry this actor's name. */
  readonly log: Logger;
  /** Aborted when the supervisor asks this actor to stop; pass it to fetch, timers, loops. */
  readonly signal: AbortSignal;
  /**
   * Sends `message` to the actor named `to` (or to `"supervisor"`). Fire and forget: if `to`
   * is restarting the supervisor buffers it (bounded); see docs/actors.md.
   */
  send(to: string, message: M): void;
  /** Replaces this actor's metrics, shown in the status after the next heartbeat. */
  setMetrics(metrics: ActorMetrics): void;
  /** Records a non-fatal error as this actor's last error (no restart). */
  reportError(err: unknown): void;
  /** Ends this actor normally (a `transient` actor is not restarted after it). */
  exit(reason?: string): void;
}

/** Handlers by message type; messages without a handler are counted as unhandled. */
export type MessageHandlers<M extends Message, X> = {
  [T in M["type"]]?: (message: MessageOf<M, T>, from: string, ctx: X) => void | Promise<void>;
};

/**
 * What an application gives every one of its actors: its protocol and the hooks that carry its
 * own rules into the worker (upbot's: `lib/pipeline/runtime.ts`). `E` is what the application adds
 * to the context its handlers see.
 */
export interface ActorRuntime<M extends Message, E extends object> {
  /** The application's protocol ({@linkcode defineProtocol}). */
  protocol: Protocol<M>;
  /**
   * Builds the application's part of the context from the start message's `appState`; runs once
   * per incarnation, after the config is validated and before the actor's `start`. Its property
   * descriptors (getters included) are copied onto the context.
   */
  context(base: ActorContext<M, unknown>, appState: unknown): E;
  /**
   * Runs for each delivered message on arrival, ahead of the mailbox (e.g. a ban that queued
   * handlers must not send into). Returns true when that is all the message needs: an actor
   * without a handler for it then does not count it as unhandled.
   */
  urgent?(message: M, from: string): boolean;
}

/** The definition of one actor, passed to {@linkcode runActor}. */
export interface ActorDefinition<M extends Message, E extends object, S extends z.ZodType> {
  /** Schema of this actor's configuration slice (from the start message). */
  config: S;
  /**
   * Runs once per incarnation. The actor is reported ready when it resolves; throwing (or
   * rejecting) is a crash. Long-running loops belong in the background, watching `ctx.signal`.
   */
  start?(ctx: ActorContext<M, z.output<S>> & E): void | Promise<void>;
  /**
   * Runs once per incarnation right after the actor is reported ready, as the first item of its
   * mailbox: messages wait behind it, like OTP's `handle_continue`. For start-up work that the
   * actors started after this one need not wait for (the supervisor starts them as soon as this
   * one is ready, and the start timeout does not cover it). Throwing is a crash; a stop aborts
   * `ctx.signal` and waits for it to return.
   */
  afterStart?(ctx: ActorContext<M, z.output<S>> & E): void | Promise<void>;
  /** Application message handlers, run one at a time in arrival order. Throwing is a crash. */
  messages?: MessageHandlers<M, ActorContext<M, z.output<S>> & E>;
  /** Graceful stop: close connections, flush. Must finish within the shutdown timeout. */
  stop?(ctx: ActorContext<M, z.output<S>> & E, reason: string): void | Promise<void>;
}

/** Bytes held by an `oom` fault before it fails: bounded, so a drill cannot starve the host. */
const OOM_CAP_BYTES = 128 * 1024 * 1024;

/**
 * How long a `hang` fault spins before it fails: far past any heartbeat timeout, and bounded
 * because a terminated worker busy in JavaScript keeps running (Deno, denoland/deno#35657): an
 * endless one would keep a core busy until the process ends.
 */
const HANG_CAP_MS = 20_000;

/** Acts out a `fault.inject` message (only when the supervisor enabled fault injection). */
function actOutFault(message: FaultInjectMessage): void {
  switch (message.fault) {
    case "throw":
      throw new Error("injected fault: handler threw");
    case "hang": {
      // Spins on the worker's only thread: no pong is answered meanwhile.
      const end = Date.now() + HANG_CAP_MS;
      while (Date.now() < end) { /* hang */ }
      throw new Error(`injected fault: hung for ${HANG_CAP_MS} ms`);
    }
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
interface WorkerScope<M extends Message> {
  onmessage: ((event: MessageEvent<unknown>) => void) | null;
  postMessage(message: ToSupervisor<M>): void;
  close(): void;
}

/**
 * Runs this worker as an actor of the application whose runtime is `runtime`. Call it once, at
 * the top level of the actor module, before any `await`.
 */
export function runActor<M extends Message, E extends object, S extends z.ZodType>(
  runtime: ActorRuntime<M, E>,
  definition: ActorDefinition<M, E, S>,
): void {
  const scope = globalThis as unknown as WorkerScope<M>;
  const { protocol } = runtime;
  type X = ActorContext<M, z.output<S>> & E;
  type Handler = (message: M, from: string, ctx: X) => void | Promise<void>;
  const stats: ActorStats = {
    received: 0,
    sent: 0,
    invalid: 0,
    unhandled: 0,
    coalesced: 0,
    mailbox: 0,
  };
  let metrics: ActorMetrics = {};
  let ctx: X | undefined;
  let log: Logger = createLogger("actor");
  let stopping = false;
  let faultInjection = false;
  const abort = new AbortController();
  // The mailbox: application messages run strictly one after another.
  let tail: Promise<void> = Promise.resolve();
  // Coalescing keys of messages queued but not yet handled: a second equal one adds nothing.
  const queuedKeys = new Set<string>();

  const post = (message: ToSupervisor<M>): void => scope.postMessage(message);

  const crash = (err: unknown): void => {
    // This incarnation is over: handle nothing more while the supervisor terminates it.
    stopping = true;
    post({ type: "error", error: toErrorData(err), fatal: true });
  };

  /** Queues `run` on the mailbox; `key` (if any) is released when it starts. */
  const queue = (
    type: string,
    from: string,
    key: string | undefined,
    run: (ctx: X) => void | Promise<void>,
  ): void => {
    stats.mailbox++;
    tail = tail.then(async () => {
      stats.mailbox--;
      if (key !== undefined) queuedKeys.delete(key);
      if (stopping || ctx === undefined) return;
      stats.received++;
      try {
        await run(ctx);
      } catch (err) {
        log.error("handler failed", { type, from, error: err });
        crash(err);
      }
    });
  };

  const dropUnhandled = (type: string, from: string): void => {
    stats.unhandled++;
    log.debug("message without handler dropped", { type, from });
  };

  const enqueue = (message: M, from: string): void => {
    const handlers = definition.messages as Record<string, Handler | undefined> | undefined;
    const handler = handlers?.[message.type];
    const done = runtime.urgent?.(message, from) === true;
    if (handler === undefined) {
      if (!done) dropUnhandled(message.type, from);
      return;
    }
    const key = protocol.coalesceKey(message);
    if (key !== undefined) {
      if (queuedKeys.has(key)) {
        stats.coalesced++;
        return;
      }
      queuedKeys.add(key);
    }
    queue(message.type, from, key, (c) => handler(message, from, c));
  };

  const start = async (message: StartMessage): Promise<void> => {
    configureLogging(message.log);
    for (const secret of message.secrets) registerSecret(secret);
    log = createLogger(message.actor);
    faultInjection = message.faultInjection === true;
    const parsed = definition.config.safeParse(message.config);
    if (!parsed.success) {
      throw new TypeError(`invalid config for ${message.actor}: ${describeIssues(parsed.error)}`);
    }
    const base: ActorContext<M, z.output<S>> = {
      name: message.actor,
      config: parsed.data,
      log,
      signal: abort.signal,
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
    const extra = runtime.context(base, message.appState);
    ctx = Object.defineProperties(base, Object.getOwnPropertyDescriptors(extra)) as X;
    await definition.start?.(ctx);
    post({ type: "ready" });
    const afterStart = definition.afterStart;
    if (afterStart !== undefined) {
      const started = ctx;
      tail = tail.then(async () => {
        if (stopping) return;
        try {
          await afterStart(started);
        } catch (err) {
          // Work cut short by the stop (a fetch given ctx.signal rejects) is not a crash.
          if (stopping) return;
          log.error("afterStart failed", { error: err });
          crash(err);
        }
      });
    }
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
    const parsed = protocol.toActor.safeParse(event.data);
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
      case "ping": {
        // This isolate's own heap (the worker's, not the process's).
        const { heapUsed, heapTotal, external } = Deno.memoryUsage();
        post({
          type: "pong",
          seq: message.seq,
          stats: { ...stats },
          memory: { heapUsed, heapTotal, external },
          metrics,
        });
        return;
      }
      case "deliver":
        enqueue(message.message, message.from);
        return;
      case "fault.inject":
        if (faultInjection) queue(message.type, SUPERVISOR, undefined, () => actOutFault(message));
        else dropUnhandled(message.type, SUPERVISOR);
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
