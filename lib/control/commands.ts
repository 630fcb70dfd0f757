/**
 * @module Control commands (halt, resume, flatten, lost-order, conflict-order): their wire schema,
 * shared by the command-line tools and the running upbot, and how one is applied to the database.
 *
 * The HTTP controls (later) apply the same commands through {@linkcode applyControlCommand}.
 */
import { z } from "zod";
import { atomically, type Sql } from "../db/connect.ts";
import {
  GLOBAL_SCOPE,
  haltEntries,
  type LiftedHalt,
  requestFlatten,
  resumeEntries,
  TradingStateRefusedError,
  type TradingStateRow,
  tradingStates,
} from "./trading_state.ts";
import {
  LostOrderHintRefusedError,
  ORDER_UUID,
  recordLostOrderHint,
  UPBOT_IDENTIFIER,
} from "./lost_order_hint.ts";
import {
  CONFLICT_VERDICTS,
  type ConflictVerdict,
  ConflictVerdictRefusedError,
  recordConflictVerdict,
} from "./conflict_verdict.ts";

/** "global" or a market code such as "KRW-BTC". */
const Scope = z.union([
  z.literal(GLOBAL_SCOPE),
  z.string().regex(/^[A-Z0-9]+-[A-Z0-9]+$/, "must be a market code such as KRW-BTC"),
]);

const Reason = z.string().trim().min(1, "must not be empty").max(500);

/** An identifier upbot made (the one the `order_lost` or `identifier_conflict` alarm names). */
const Identifier = z.string().max(64).regex(
  UPBOT_IDENTIFIER,
  "must be an identifier upbot made, such as paper-abcd2345-17-EXIT_LONG",
);

/** An Upbit order uuid, lowercase. */
const OrderUuid = z.string().regex(ORDER_UUID, "must be an Upbit order uuid (8-4-4-4-12 hex)");

/** What a command carries besides its action: an id to match the acknowledgement, and when. */
const Envelope = {
  /** Version of this format; a newer tool against an older upbot is refused, not guessed at. */
  version: z.literal(1),
  /** Random id (UUID) naming the command and its acknowledgement. */
  id: z.uuid(),
  /** When the tool wrote it (ISO 8601). */
  issued_at: z.iso.datetime(),
};

/** One control command as written to the control directory. */
export const ControlCommand = z.discriminatedUnion("action", [
  z.object({ ...Envelope, action: z.literal("halt"), scope: Scope, reason: Reason }).strict(),
  z.object({ ...Envelope, action: z.literal("resume"), scope: Scope }).strict(),
  z.object({ ...Envelope, action: z.literal("flatten"), reason: Reason }).strict(),
  z.object({
    ...Envelope,
    action: z.literal("lost-order"),
    identifier: Identifier,
    uuid: OrderUuid,
  }).strict(),
  z.object({
    ...Envelope,
    action: z.literal("conflict-order"),
    identifier: Identifier,
    verdict: z.enum(CONFLICT_VERDICTS),
  }).strict(),
]);

/** One control command as written to the control directory. */
export type ControlCommand = z.infer<typeof ControlCommand>;

/** A command without its envelope: what a person asks for. */
export type ControlRequest =
  | { action: "halt"; scope: string; reason: string }
  | { action: "resume"; scope: string }
  | { action: "flatten"; reason: string }
  /** A person's uuid for a lost order (`lib/control/lost_order_hint.ts`). */
  | { action: "lost-order"; identifier: string; uuid: string }
  /** A person's verdict on a live sell in conflict (`lib/control/conflict_verdict.ts`). */
  | { action: "conflict-order"; identifier: string; verdict: ConflictVerdict };

/** The trading state of one scope as the acknowledgement reports it. */
const AckState = z.object({
  scope: z.string(),
  halted: z.boolean(),
  reason: z.string().nullable(),
  by: z.string(),
  since: z.string(),
});

/** What the running upbot answers to one command. */
export const ControlAck = z.object({
  id: z.uuid(),
  /** False when the command was refused (malformed); `message` says why. */
  ok: z.boolean(),
  /** One sentence: what was done, or why nothing was. */
  message: z.string(),
  applied_at: z.iso.datetime(),
  /** The flatten request's id, for `flatten`. */
  flatten_id: z.number().int().nullable(),
  /** Every stored scope after the command. */
  states: z.array(AckState),
});

/** What the running upbot answers to one command. */
export type ControlAck = z.infer<typeof ControlAck>;

/** Wraps `request` into a command with a fresh id. */
export function newControlCommand(request: ControlRequest, now = new Date()): ControlCommand {
  return ControlCommand.parse({
    version: 1,
    id: crypto.randomUUID(),
    issued_at: now.toISOString(),
    ...request,
  });
}

/** What applying a command did. */
export interface ControlOutcome {
  /** One sentence for the log and the acknowledgement. */
  message: string;
  flattenId: number | null;
  states: TradingStateRow[];
}

function scopeText(scope: string): string {
  return scope === GLOBAL_SCOPE ? "on every market" : `on ${scope}`;
}

/** A command refused for the state of things (nothing changed); its message says why. */
function isRefusal(err: unknown): err is Error {
  return err instanceof TradingStateRefusedError || err instanceof LostOrderHintRefusedError ||
    err instanceof ConflictVerdictRefusedError;
}

/**
 * Applies `command` to the database as `by` (the tools' commands: "cli").
 *
 * @throws {TradingStateRefusedError} for a resume while a flatten is pending (nothing changed).
 * @throws {LostOrderHintRefusedError} for a lost-order naming no lost, unresolved live order
 *   (nothing changed).
 * @throws {ConflictVerdictRefusedError} for a conflict-order naming no undecided live sell in
 *   conflict (nothing changed).
 * @throws {Error} when the database refuses (the caller keeps the command to retry).
 */
export async function applyControlCommand(
  sql: Sql,
  command: ControlRequest,
  by: string,
): Promise<ControlOutcome> {
  let message: string;
  let flattenId: number | null = null;
  switch (command.action) {
    case "halt":
      await haltEntries(sql, { scope: command.scope, reason: command.reason, by });
      message = `New entries halted ${scopeText(command.scope)} (exits go on): ${command.reason}`;
      break;
    case "resume": {
      const lifted = await resumeEntries(sql, { scope: command.scope, by });
      message = `Entries resumed ${scopeText(command.scope)}` + liftedText(lifted) +
        // The daily loss limit counts realised losses since the KST day began or the last global
        // resume (risk_gate.ts lossWindowStart): say so, a resume lifts that limit too.
        (command.scope === GLOBAL_SCOPE ? "; the daily loss limit counts from now" : "");
      break;
    }
    case "flatten":
      flattenId = await requestFlatten(sql, { reason: command.reason, by });
      message =
        `Flatten requested (#${flattenId}): entries halted on every market and every ledger position is to be closed now: ${command.reason}`;
      break;
    case "lost-order": {
      const hint = await recordLostOrderHint(sql, command);
      message =
        `Lost order ${hint.identifier} (${hint.market} ${hint.side}) will be checked at Upbit under uuid ${hint.uuid} at the order-poller's next pass; it is adopted only if it is the order upbot asked for and final (alarm lost_order_found), else refused (alarm lost_order_hint_refused); its market stays held until then`;
      break;
    }
    case "conflict-order": {
      const v = await recordConflictVerdict(sql, {
        identifier: command.identifier,
        verdict: command.verdict,
        by,
      });
      const order = v.foundUuid ?? "(none recorded)";
      message = v.verdict === "not-ours"
        ? `Conflict sell ${v.identifier} (${v.market}) judged not ours: the order ${order} under its identifier is someone else's and the sell never executed; ${v.market}'s sells are no longer held, so the closer sells its position again under a new identifier (${v.identifier} is never used again); it lifts no halt (the conflict's halt stays until deno task resume)`
        : `Conflict sell ${v.identifier} (${v.market}) judged ours: the order-poller reads the order ${order} at Upbit at its next pass and adopts its fills once it is final, only if it is a ${v.market} sell under one of ${v.identifier}'s identifiers and no other order's of upbot (alarm conflict_resolved), else refuses it (alarm conflict_verdict_refused); ${v.market}'s sells stay held until then; it lifts no halt (the conflict's halt stays until deno task resume)`;
      break;
    }
    default: {
      const unknownCommand: never = command;
      throw new Error(`Unknown control command: ${JSON.stringify(unknownCommand)}`);
    }
  }
  const states = await tradingStates(sql);
  return { message: message + stillHalted(command, states), flattenId, states };
}

/** The halts a resume lifted, as a sentence tail (each of them, not only the newest reason). */
function liftedText(lifted: readonly LiftedHalt[]): string {
  if (lifted.length === 0) return "";
  const each = lifted.map((h) =>
    `by ${h.by} at ${h.at.toISOString()}: ${h.reason ?? "(no reason)"}`
  );
  return `; lifted ${lifted.length === 1 ? "the halt" : `${lifted.length} halts`} ${
    each.join("; ")
  }`;
}

/** After a resume, the halts that still stop entries on what was resumed, as a sentence tail. */
function stillHalted(command: ControlRequest, states: readonly TradingStateRow[]): string {
  if (command.action !== "resume") return "";
  if (command.scope === GLOBAL_SCOPE) {
    const markets = states.filter((s) => s.halted && s.scope !== GLOBAL_SCOPE).map((s) => s.scope);
    return markets.length === 0
      ? ""
      : `; still halted on their own: ${markets.join(", ")} (resume each with --market)`;
  }
  const global = states.find((s) => s.scope === GLOBAL_SCOPE && s.halted);
  return global
    ? `; entries stay halted on every market by the global halt (${global.reason}): resume it without --market`
    : "";
}

/** What {@linkcode applyControlCommandOnce} did with one command. */
export type CommandRecord =
  /** Applied now: its effect and its id were stored in one transaction. */
  | { kind: "applied"; ack: ControlAck; outcome: ControlOutcome }
  /**
   * Refused for the state of things (a resume while a flatten is pending, a lost-order naming no
   * lost order, a conflict-order naming no undecided sell in conflict): nothing changed; its id
   * was stored with the refusal (`ack.ok` false), so it is not tried again.
   */
  | { kind: "refused"; ack: ControlAck }
  /** Its id was stored before (applied or refused then): nothing was done; `ack` is the stored one. */
  | { kind: "already"; ack: ControlAck };

/**
 * Applies `command` at most once: its id goes into `applied_control_commands` in the same
 * transaction as its effect (with the acknowledgement), so a command whose files outlive the
 * effect (an acknowledgement that could not be written, a crash before the inbox file was removed)
 * is never applied again; such a command gets back the acknowledgement stored when it was applied.
 *
 * A command refused for the state of things ({@linkcode TradingStateRefusedError}: a resume while
 * a flatten is pending; {@linkcode LostOrderHintRefusedError}: a lost-order naming no lost order;
 * {@linkcode ConflictVerdictRefusedError}: a conflict-order naming no undecided sell in conflict)
 * is stored as refused, with an acknowledgement saying why.
 *
 * @throws {Error} when the database refuses (nothing is stored; the caller keeps the command).
 */
export async function applyControlCommandOnce(
  sql: Sql,
  command: ControlCommand,
  by: string,
): Promise<CommandRecord> {
  let result: CommandRecord | null;
  try {
    result = await applyOnce(sql, command, by);
  } catch (err) {
    if (!isRefusal(err)) throw err;
    const ack: ControlAck = {
      id: command.id,
      ok: false,
      message: err.message,
      applied_at: new Date().toISOString(),
      flatten_id: null,
      states: ackStates(await tradingStates(sql)),
    };
    const [stored] = await sql`
      insert into applied_control_commands (id, action, applied_by, ack)
      values (${command.id}, ${command.action}, ${by}, ${sql.json(ack)})
      on conflict (id) do nothing returning id`;
    result = stored ? { kind: "refused", ack } : null;
  }
  return result ?? { kind: "already", ack: await storedAck(sql, command.id) };
}

/** Applies `command` with its id in one transaction; null when its id was stored before. */
function applyOnce(sql: Sql, command: ControlCommand, by: string): Promise<CommandRecord | null> {
  return atomically(sql, async (tx): Promise<CommandRecord | null> => {
    // Inserted first: a second transaction with the same id waits on this row, then does nothing.
    const [claimed] = await tx`
      insert into applied_control_commands (id, action, applied_by)
      values (${command.id}, ${command.action}, ${by})
      on conflict (id) do nothing returning id`;
    if (!claimed) return null;
    const outcome = await applyControlCommand(tx, command, by);
    const ack: ControlAck = {
      id: command.id,
      ok: true,
      message: outcome.message,
      applied_at: new Date().toISOString(),
      flatten_id: outcome.flattenId,
      states: ackStates(outcome.states),
    };
    await tx`update applied_control_commands set ack = ${tx.json(ack)} where id = ${command.id}`;
    return { kind: "applied", ack, outcome };
  });
}

/** The acknowledgement stored with an applied command. */
async function storedAck(sql: Sql, id: string): Promise<ControlAck> {
  const [row] = await sql<{ ack: unknown }[]>`
    select ack from applied_control_commands where id = ${id}`;
  return ControlAck.parse(typeof row?.ack === "string" ? JSON.parse(row.ack) : row?.ack);
}

/** The states of `outcome` as the acknowledgement carries them. */
function ackStates(states: readonly TradingStateRow[]): ControlAck["states"] {
  return states.map((s) => ({
    scope: s.scope,
    halted: s.halted,
    reason: s.reason,
    by: s.by,
    since: s.since.toISOString(),
  }));
}
