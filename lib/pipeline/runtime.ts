/**
 * @module upbot's actor runtime, the worker side: upbot's messages and rules given to the generic
 * runtime of `lib/actors/`. Every actor module runs with {@linkcode runUpbotActor}.
 *
 * - Protocol: {@linkcode upbotProtocol}, built from `UpbotMessage`; wakes of one topic coalesce.
 * - Trading halt: `ctx.tradingHalted` is true once the start message said so (a restarted actor
 *   learns a halt that happened before) or a `trading.halt` arrived, ahead of the mailbox; false
 *   again once `trading.resume` arrived.
 * - Upbit bans: a 418 this worker's clients draw is sent to `supervisor` as `upbit.ban`; a received
 *   `upbit.ban` is applied to every limiter of this worker at once, ahead of the mailbox
 *   (`lib/pipeline/upbit_bans.ts`), so no queued handler sends into the ban.
 *
 * The main-thread side (halt and ban policy of the supervisor) is `lib/pipeline/supervisor.ts`.
 */
import { z } from "zod";
import {
  type ActorContext,
  type ActorDefinition,
  type ActorRuntime,
  runActor,
} from "../actors/actor.ts";
import { defineProtocol, SUPERVISOR } from "../actors/protocol.ts";
import { UpbotMessage } from "./messages.ts";
import { applyBanEverywhere, setBanAnnouncer } from "./upbit_bans.ts";

/** upbot's protocol: its messages inside the runtime's; wakes of one topic coalesce. */
export const upbotProtocol = defineProtocol(UpbotMessage, {
  coalesceKey: (message) => message.type === "wake" ? `wake:${message.topic}` : undefined,
});

/**
 * The application state of each start message (the supervisor policy's `startState`): whether
 * trading is already halted when this actor (re)starts, and the `application_name` of this
 * incarnation's database sessions (`lib/pipeline/actor_sessions.ts`).
 */
export const UpbotStartState = z.object({
  tradingHalted: z.boolean(),
  haltReason: z.string().nullable(),
  // PostgreSQL keeps 63 bytes of an application_name.
  dbApplicationName: z.string().min(1).max(63),
});
/** The application state of each start message. */
export type UpbotStartState = z.infer<typeof UpbotStartState>;

/** What upbot adds to every actor's context. */
export interface UpbotContextExtras {
  /** Whether trading is halted (set at start and by `trading.halt`). */
  readonly tradingHalted: boolean;
  /**
   * The `application_name` every database client of this incarnation must use (`connect`'s
   * `applicationName`): unique to it, so that the supervisor can end its sessions should its
   * worker be terminated with them still open.
   */
  readonly dbApplicationName: string;
}

/** The context an upbot actor's handlers see. */
export type UpbotContext<C> = ActorContext<UpbotMessage, C> & UpbotContextExtras;

/** The definition of one upbot actor. */
export type UpbotActorDefinition<S extends z.ZodType> = ActorDefinition<
  UpbotMessage,
  UpbotContextExtras,
  S
>;

// Per worker: each actor is its own isolate.
let halted = false;

/** upbot's hooks in every actor worker. */
export const upbotActorRuntime: ActorRuntime<UpbotMessage, UpbotContextExtras> = {
  protocol: upbotProtocol,
  context(base, appState) {
    const start = UpbotStartState.parse(appState);
    halted = start.tradingHalted;
    // A ban this actor's Upbit clients draw is announced to every other actor.
    setBanAnnouncer((untilMs) => base.send(SUPERVISOR, { type: "upbit.ban", untilMs }));
    return {
      get tradingHalted() {
        return halted;
      },
      dbApplicationName: start.dbApplicationName,
    };
  },
  urgent(message) {
    if (message.type === "trading.halt") halted = true;
    if (message.type === "trading.resume") halted = false;
    if (message.type === "upbit.ban") {
      // At once, ahead of the mailbox: a queued handler must not send into the ban.
      applyBanEverywhere(message.untilMs);
      return true;
    }
    return false;
  },
};

/**
 * Runs this worker as an upbot actor. Call it once, at the top level of the actor module, before
 * any `await`.
 *
 * @example An actor module (`actors/echo.ts`)
 * ```ts ignore
 * runUpbotActor({
 *   config: z.object({ pollMs: z.number() }),
 *   messages: {
 *     wake(msg, from, ctx) {
 *       ctx.send(from, msg);
 *     },
 *   },
 * });
 * ```
 */
export function runUpbotActor<S extends z.ZodType>(definition: UpbotActorDefinition<S>): void {
  runActor(upbotActorRuntime, definition);
}
