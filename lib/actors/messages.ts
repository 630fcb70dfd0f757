/**
 * @module The one message protocol between actors and the supervisor: zod schemas, with the
 * TypeScript types inferred from them.
 *
 * Three groups, all discriminated by `type`:
 * - {@linkcode AppMessage}: what actors say to each other (`bars.final`, `wake`, `trading.halt`,
 *   `upbit.ban`).
 *   Adding one is a one-place change: add its schema to `APP_MESSAGE_SCHEMAS`; routing,
 *   validation and the typed handler map of `runActor` follow from it.
 * - {@linkcode ToActor}: supervisor to worker (`start`, `stop`, `ping`, `log.level`, `deliver`).
 * - {@linkcode ToSupervisor}: worker to supervisor (`ready`, `pong`, `error`, `exit`, `stopped`,
 *   `send`).
 *
 * Every message is validated with `safeParse` where it crosses a worker boundary, in both
 * directions. An invalid message is logged with its sender, counted and dropped.
 */
import { z } from "zod";
import { MarketCode } from "../domain.ts";

/** An actor's name: lower snake_case, e.g. `order_poller`. `supervisor` is reserved. */
export const ActorName = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/);

/** The address of the main-thread supervisor, usable as a `send` target. */
export const SUPERVISOR = "supervisor";

// zod 4 numbers reject NaN and Infinity.
const finite = z.number();

/**
 * One final 1-second bar as it travels inside a `bars.final` message (the wire schema; the
 * strategy's own type is `Bar` in lib/strategy/bars.ts). `ts` is the bar's start, epoch ms.
 */
export const BarMessage = z.object({
  ts: z.number().int().nonnegative(),
  open: finite,
  high: finite,
  low: finite,
  close: finite,
  volume: finite,
  quoteVolume: finite,
  tradeCount: z.number().int().nonnegative(),
  buyVolume: finite,
  sellVolume: finite,
});
/** One final 1-second bar inside a `bars.final` message. */
export type BarMessage = z.infer<typeof BarMessage>;

/**
 * `bars.final`: feed to evaluator, bars already written to the database, batched per market
 * (the feed sends one message per market per flush, never one per bar).
 */
export const BarsFinal = z.object({
  type: z.literal("bars.final"),
  market: MarketCode,
  bars: z.array(BarMessage).min(1).max(10_000),
});

/**
 * `wake`: "new rows in `topic`, look at the database". It only wakes and informs; the database
 * holds the truth, so a lost or duplicated wake is harmless (the receiver also polls).
 */
export const Wake = z.object({
  type: z.literal("wake"),
  topic: z.enum(["paper_trades", "order_attempts", "account", "trading_state"]),
});

/**
 * `trading.halt`: stop placing orders. The supervisor broadcasts it when a critical actor has
 * failed for good; an actor may send it to `supervisor` to request a halt.
 */
export const TradingHalt = z.object({
  type: z.literal("trading.halt"),
  reason: z.string().min(1).max(500),
});

/**
 * `upbit.ban`: an actor's Upbit client drew a 418 (§3.3); every REST call is refused until
 * `untilMs` (epoch ms). Sent to `supervisor`, which broadcasts it to every other actor; the actor
 * runtime applies it at once to the actor's rate limiters (see `lib/actors/upbit_bans.ts`).
 */
export const UpbitBan = z.object({
  type: z.literal("upbit.ban"),
  untilMs: z.number().int().positive(),
});

/**
 * `fault.inject`: test-only. The actor runtime acts it out as a fault of this incarnation: `throw`
 * (a message handler throws), `hang` (a handler spins forever, so heartbeats stop), `exit` (the
 * worker calls `Deno.exit`, ending without a word) or `oom` (a handler allocates until a bounded
 * cap, then fails with a RangeError as V8 does when out of memory; Deno workers have no
 * `resourceLimits`). Honoured only when the supervisor was created with `faultInjection: true`;
 * otherwise dropped and counted as unhandled.
 */
export const FaultInject = z.object({
  type: z.literal("fault.inject"),
  fault: z.enum(["throw", "hang", "exit", "oom"]),
});

/** Every application message. Add a new one here (and only here). */
const APP_MESSAGE_SCHEMAS = [BarsFinal, Wake, TradingHalt, UpbitBan, FaultInject] as const;

/** Any message one actor sends another. */
export const AppMessage = z.discriminatedUnion("type", APP_MESSAGE_SCHEMAS);
/** Any message one actor sends another. */
export type AppMessage = z.infer<typeof AppMessage>;
/** The `type` tag of an application message. */
export type AppMessageType = AppMessage["type"];
/** The application message with tag `T`. */
export type AppMessageOf<T extends AppMessageType> = Extract<AppMessage, { type: T }>;

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
  /** Whether trading is already halted when this actor (re)starts. */
  tradingHalted: z.boolean(),
  haltReason: z.string().nullable(),
  /** Test-only: act out `fault.inject` messages (absent in production). */
  faultInjection: z.boolean().optional(),
});

/** `stop`: finish up and answer `stopped` before the shutdown timeout. */
export const StopMessage = z.object({ type: z.literal("stop"), reason: z.string() });

/** `ping`: heartbeat; the runtime answers `pong` from the event loop, ahead of the mailbox. */
export const PingMessage = z.object({ type: z.literal("ping"), seq: z.number().int() });

/** `log.level`: change this worker's log level at run time. */
export const LogLevelMessage = z.object({ type: z.literal("log.level"), level: LogLevelSchema });

/** `deliver`: an application message from another actor (or from `supervisor`). */
export const DeliverMessage = z.object({
  type: z.literal("deliver"),
  from: z.string(),
  message: AppMessage,
});

/** Every message the supervisor sends a worker. */
export const ToActor = z.discriminatedUnion("type", [
  StartMessage,
  StopMessage,
  PingMessage,
  LogLevelMessage,
  DeliverMessage,
]);
/** Every message the supervisor sends a worker. */
export type ToActor = z.infer<typeof ToActor>;

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
  /** Wakes merged into an identical wake already waiting in the mailbox. */
  coalesced: z.number().int().nonnegative(),
  /** Messages waiting in the mailbox right now. */
  mailbox: z.number().int().nonnegative(),
});
/** Counters a worker keeps about itself. */
export type ActorStats = z.infer<typeof ActorStats>;

/** Actor-defined gauges (e.g. `bars_written`), shown in the status as they are. */
export const ActorMetrics = z.record(
  z.string(),
  z.union([z.number(), z.string(), z.boolean(), z.null()]),
);
/** Actor-defined gauges. */
export type ActorMetrics = z.infer<typeof ActorMetrics>;

/** `ready`: start finished; the supervisor now delivers messages and starts the next actor. */
export const ReadyMessage = z.object({ type: z.literal("ready") });

/** `pong`: heartbeat answer with the worker's counters and metrics. */
export const PongMessage = z.object({
  type: z.literal("pong"),
  seq: z.number().int(),
  stats: ActorStats,
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
export const SendMessage = z.object({
  type: z.literal("send"),
  to: z.string(),
  message: AppMessage,
});

/** Every message a worker sends the supervisor. */
export const ToSupervisor = z.discriminatedUnion("type", [
  ReadyMessage,
  PongMessage,
  ErrorMessage,
  ExitMessage,
  StoppedMessage,
  SendMessage,
]);
/** Every message a worker sends the supervisor. */
export type ToSupervisor = z.infer<typeof ToSupervisor>;

/** Every message of the protocol, both directions. */
export type ProtocolMessage = ToActor | ToSupervisor;

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
