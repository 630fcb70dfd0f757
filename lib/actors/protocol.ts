/**
 * @module The message protocol between actors and the supervisor, generic over the application's
 * messages: zod schemas, with the TypeScript types inferred from them.
 *
 * The runtime knows only its own control messages. What actors say to each other is the
 * application's: a zod discriminated union on `type`, given to {@linkcode defineProtocol}, which
 * builds the two directions around it:
 * - {@linkcode ToActor}: supervisor to worker (`start`, `stop`, `ping`, `log.level`,
 *   `fault.inject`, `deliver`).
 * - {@linkcode ToSupervisor}: worker to supervisor (`ready`, `pong`, `error`, `exit`, `stopped`,
 *   `send`).
 *
 * Every message is validated with `safeParse` where it crosses a worker boundary, in both
 * directions. An invalid message is logged with its sender, counted and dropped.
 */
import { z } from "zod";

/** An actor's name: lower snake_case, e.g. `order_poller`. `supervisor` is reserved. */
export const ActorName = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/);

/** The address of the main-thread supervisor, usable as a `send` target. */
export const SUPERVISOR = "supervisor";

/** What every application message has: its `type` tag. */
export interface Message {
  readonly type: string;
}

/** The message of union `M` with tag `T`. */
export type MessageOf<M extends Message, T extends M["type"]> = Extract<M, { type: T }>;

/** An error as plain data (Errors do not survive structured clone with their fields). */
export const ErrorData = z.object({
  name: z.string(),
  message: z.string(),
  stack: z.string().optional(),
});
/** An error as plain data. */
export type ErrorData = z.infer<typeof ErrorData>;

const LogLevelSchema = z.enum(["debug", "info", "warn", "error"]);

// ---- supervisor -> worker ----

/** `start`: the first message a worker gets: its name, its config slice, how to log. */
export const StartMessage = z.object({
  type: z.literal("start"),
  actor: ActorName,
  /** The actor's slice of the configuration; the actor validates it with its own schema. */
  config: z.unknown(),
  log: z.object({ level: LogLevelSchema, format: z.enum(["json", "pretty"]) }),
  /** Values to mask in this actor's log lines (only secrets present in its own slice). */
  secrets: z.array(z.string()),
  /**
   * The application's state at this (re)start, opaque to the runtime: the supervisor policy's
   * `startState` makes it, the actor runtime's `context` hook reads it.
   */
  appState: z.unknown(),
  /** Test-only: act out `fault.inject` messages (absent in production). */
  faultInjection: z.boolean().optional(),
});
/** `start`: the first message a worker gets. */
export type StartMessage = z.infer<typeof StartMessage>;

/** `stop`: finish up and answer `stopped` before the shutdown timeout. */
export const StopMessage = z.object({ type: z.literal("stop"), reason: z.string() });

/** `ping`: heartbeat; the runtime answers `pong` from the event loop, ahead of the mailbox. */
export const PingMessage = z.object({ type: z.literal("ping"), seq: z.number().int() });

/** `log.level`: change this worker's log level at run time. */
export const LogLevelMessage = z.object({ type: z.literal("log.level"), level: LogLevelSchema });

/** The faults `fault.inject` can act out. */
export const Fault = z.enum(["throw", "hang", "exit", "oom"]);
/** A fault `fault.inject` can act out. */
export type Fault = z.infer<typeof Fault>;

/**
 * `fault.inject`: test-only. The actor runtime acts it out from the mailbox, as a message handler
 * of this incarnation: `throw` (the handler throws), `hang` (it spins forever, so heartbeats stop),
 * `exit` (the worker calls `Deno.exit`, ending without a word) or `oom` (it allocates until a
 * bounded cap, then fails with a RangeError as V8 does when out of memory; Deno workers have no
 * `resourceLimits`). Honoured only when the supervisor was created with `faultInjection: true`;
 * otherwise dropped and counted as unhandled.
 */
export const FaultInjectMessage = z.object({ type: z.literal("fault.inject"), fault: Fault });
/** `fault.inject`: test-only fault drill. */
export type FaultInjectMessage = z.infer<typeof FaultInjectMessage>;

/** `deliver`: an application message from another actor (or from `supervisor`). */
export interface DeliverMessage<M extends Message> {
  type: "deliver";
  from: string;
  message: M;
}

/** Every message the supervisor sends a worker. */
export type ToActor<M extends Message> =
  | StartMessage
  | z.infer<typeof StopMessage>
  | z.infer<typeof PingMessage>
  | z.infer<typeof LogLevelMessage>
  | FaultInjectMessage
  | DeliverMessage<M>;

// ---- worker -> supervisor ----

/** Counters a worker keeps about itself, reported with each `pong`. */
export const ActorStats = z.object({
  /** Application messages handled (delivered to a handler). */
  received: z.number().int().nonnegative(),
  /** Application messages sent. */
  sent: z.number().int().nonnegative(),
  /** Inbound messages that failed validation and were dropped. */
  invalid: z.number().int().nonnegative(),
  /** Inbound messages with no handler, dropped. */
  unhandled: z.number().int().nonnegative(),
  /** Messages merged into an equal one already waiting in the mailbox (`coalesceKey`). */
  coalesced: z.number().int().nonnegative(),
  /** Messages waiting in the mailbox right now. */
  mailbox: z.number().int().nonnegative(),
});
/** Counters a worker keeps about itself. */
export type ActorStats = z.infer<typeof ActorStats>;

/**
 * The worker isolate's own V8 heap, bytes (`Deno.memoryUsage()` inside the worker; its `rss` is the
 * whole process's and is left out).
 */
export const ActorMemory = z.object({
  heapUsed: z.number().int().nonnegative(),
  heapTotal: z.number().int().nonnegative(),
  external: z.number().int().nonnegative(),
});
/** The worker isolate's own V8 heap, bytes. */
export type ActorMemory = z.infer<typeof ActorMemory>;

/** Actor-defined gauges (e.g. `bars_written`), shown in the status as they are. */
export const ActorMetrics = z.record(
  z.string(),
  z.union([z.number(), z.string(), z.boolean(), z.null()]),
);
/** Actor-defined gauges. */
export type ActorMetrics = z.infer<typeof ActorMetrics>;

/** `ready`: start finished; the supervisor now delivers messages and starts the next actor. */
export const ReadyMessage = z.object({ type: z.literal("ready") });

/** `pong`: heartbeat answer with the worker's counters, heap and metrics. */
export const PongMessage = z.object({
  type: z.literal("pong"),
  seq: z.number().int(),
  stats: ActorStats,
  memory: ActorMemory,
  metrics: ActorMetrics,
});

/** `error`: `fatal` ends this incarnation (the supervisor restarts it per policy). */
export const ErrorMessage = z.object({
  type: z.literal("error"),
  error: ErrorData,
  fatal: z.boolean(),
});

/** `exit`: the actor finished normally (a transient actor is then not restarted). */
export const ExitMessage = z.object({ type: z.literal("exit"), reason: z.string() });

/** `stopped`: answer to `stop`; the supervisor then terminates the worker. */
export const StoppedMessage = z.object({ type: z.literal("stopped") });

/** `send`: route `message` to the actor named `to` (or to `supervisor`). */
export interface SendMessage<M extends Message> {
  type: "send";
  to: string;
  message: M;
}

/** Every message a worker sends the supervisor. */
export type ToSupervisor<M extends Message> =
  | z.infer<typeof ReadyMessage>
  | z.infer<typeof PongMessage>
  | z.infer<typeof ErrorMessage>
  | z.infer<typeof ExitMessage>
  | z.infer<typeof StoppedMessage>
  | SendMessage<M>;

/** The protocol of one application: its messages and the two directions built around them. */
export interface Protocol<M extends Message> {
  /** The application's messages. */
  readonly app: z.ZodType<M>;
  /** Every message the supervisor sends a worker. */
  readonly toActor: z.ZodType<ToActor<M>>;
  /** Every message a worker sends the supervisor. */
  readonly toSupervisor: z.ZodType<ToSupervisor<M>>;
  /**
   * Messages with the same key are one: a second one while the first still waits (in an actor's
   * mailbox, or in the supervisor's buffer for a restarting actor) is dropped as coalesced.
   * `undefined`: never coalesced.
   */
  readonly coalesceKey: (message: M) => string | undefined;
}

/** Options of {@linkcode defineProtocol}. */
export interface ProtocolOptions<M extends Message> {
  /** See {@linkcode Protocol.coalesceKey}. @default {no message is coalesced} */
  coalesceKey?: (message: M) => string | undefined;
}

/** The zod schema of an application's messages: a discriminated union on `type`. */
// deno-lint-ignore no-explicit-any
export type AppMessageSchema = z.ZodDiscriminatedUnion<readonly any[], "type">;

/**
 * The protocol of an application whose messages are `app`, a zod discriminated union on `type`.
 * Build it once per module (workers build their own copy; schemas do not cross the boundary).
 *
 * @throws {TypeError} when `app` is not discriminated on `type`.
 */
export function defineProtocol<S extends AppMessageSchema>(
  app: S,
  options: ProtocolOptions<z.output<S>> = {},
): Protocol<z.output<S>> {
  if (app.def.discriminator !== "type") {
    throw new TypeError("Cannot define protocol as the application messages are not keyed by type");
  }
  const deliver = z.object({ type: z.literal("deliver"), from: z.string(), message: app });
  const send = z.object({ type: z.literal("send"), to: z.string(), message: app });
  const toActor = z.discriminatedUnion("type", [
    StartMessage,
    StopMessage,
    PingMessage,
    LogLevelMessage,
    FaultInjectMessage,
    deliver,
  ]);
  const toSupervisor = z.discriminatedUnion("type", [
    ReadyMessage,
    PongMessage,
    ErrorMessage,
    ExitMessage,
    StoppedMessage,
    send,
  ]);
  return {
    app: app as z.ZodType<z.output<S>>,
    toActor: toActor as unknown as z.ZodType<ToActor<z.output<S>>>,
    toSupervisor: toSupervisor as unknown as z.ZodType<ToSupervisor<z.output<S>>>,
    coalesceKey: options.coalesceKey ?? (() => undefined),
  };
}

/** Converts anything thrown into {@linkcode ErrorData}. */
export function toErrorData(err: unknown): ErrorData {
  if (err instanceof Error) {
    return err.stack === undefined
      ? { name: err.name, message: err.message }
      : { name: err.name, message: err.message, stack: err.stack };
  }
  return { name: "Error", message: String(err) };
}

/** A short description of a zod failure for a log line (paths and messages, no values). */
export function describeIssues(error: z.ZodError): string {
  return error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}
