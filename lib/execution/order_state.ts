/**
 * @module The order state machine: the named states of an order attempt and the only moves
 * between them (modelled on NautilusTrader's `OrderStatus::transition`). Every state write in
 * `lib/store/order_attempts.ts` goes through {@linkcode transition}; an illegal move throws.
 *
 * ```
 * pending -> sent -> open -> partially_filled -> filled | cancelled | prevented
 *    ^        |  \-> rejected (definite refusal)      \-> unknown (lost by the poller)
 *    |        |\--> conflict (found under our identifier, not what we asked for)
 *    |        \--> unknown (answer lost, or identifier already used)
 *    \--------- unknown / sent (Upbit asked: no order exists; or a refusal that may pass later)
 * ```
 *
 * Terminal states (filled, cancelled, prevented, rejected, failed, conflict, skipped, logged,
 * test_ok) have no way out, whatever a setting says: raising `EXECUTOR_MAX_RETRIES` cannot revive
 * an attempt that was refused for good.
 */

/** Every state of an order attempt. */
export const ORDER_STATES = [
  "pending", // written; not sent yet (or sent and refused with nothing created: send again)
  "sent", // the request is on its way; no answer recorded yet
  "unknown", // the answer was lost: ask Upbit by identifier before anything else
  "open", // Upbit holds the order, no fill seen yet
  "partially_filled", // Upbit holds the order, some of it filled
  "filled", // final: Upbit's `done`
  "cancelled", // final: Upbit's `cancel` (executed_volume may be > 0)
  "prevented", // final: Upbit's SMP `prevented` (executed_volume counts like a partial fill)
  "rejected", // final: Upbit refused it for good (reason = Upbit's error code)
  "failed", // final: given up without an order (reason says why)
  "conflict", // final: an order with our identifier exists but is not ours to adopt
  "skipped", // final: decided not to send (reason says why)
  "logged", // final: shadow mode, no API call
  "test_ok", // final: test mode, `POST /v1/orders/test` accepted it
] as const;

/** A state of an order attempt. */
export type OrderState = typeof ORDER_STATES[number];

/**
 * States an attempt may be created in. `sent`: a new live attempt the risk gate let go, written
 * once right before its request (the row is durable before the request, as after pending -> sent).
 */
export const INITIAL_STATES: ReadonlySet<OrderState> = new Set([
  "pending",
  "sent",
  "skipped",
  "logged",
]);

const TABLE: Record<OrderState, readonly OrderState[]> = {
  pending: ["pending", "sent", "unknown", "open", "conflict", "skipped", "failed"],
  // sent -> conflict: a row left `sent` (a crash before its answer was recorded) is resolved by
  // identifier, and what is found there may not be the order it asked for.
  sent: ["pending", "unknown", "open", "conflict", "rejected", "test_ok"],
  unknown: ["pending", "open", "conflict", "skipped", "failed"],
  open: ["open", "partially_filled", "filled", "cancelled", "prevented", "unknown"],
  partially_filled: ["partially_filled", "filled", "cancelled", "prevented", "unknown"],
  filled: [],
  cancelled: [],
  prevented: [],
  rejected: [],
  failed: [],
  conflict: [],
  skipped: [],
  logged: [],
  test_ok: [],
};

/** States with no way out. */
export const TERMINAL_STATES: ReadonlySet<OrderState> = new Set(
  ORDER_STATES.filter((s) => TABLE[s].length === 0),
);

/** States whose order may exist at Upbit but is not resolved yet: ask before sending again. */
export const UNRESOLVED_STATES: readonly OrderState[] = ["pending", "sent", "unknown"];

/** States of an order Upbit holds and the poller tracks. */
export const OPEN_STATES: readonly OrderState[] = ["open", "partially_filled"];

/** Thrown for a move the table does not allow. */
export class IllegalTransitionError extends Error {
  readonly from: string;
  readonly to: string;
  constructor(from: string, to: string) {
    super(`Cannot move an order attempt from ${from} to ${to}`);
    this.name = "IllegalTransitionError";
    this.from = from;
    this.to = to;
  }
}

/** Whether `s` is one of {@linkcode ORDER_STATES}. */
export function isOrderState(s: string): s is OrderState {
  return (ORDER_STATES as readonly string[]).includes(s);
}

/**
 * Checks the move `from -> to` and returns `to`.
 *
 * @throws {IllegalTransitionError} when the table does not allow it (every move out of a terminal
 *   state, and every unknown state name).
 * @example
 * ```ts
 * transition("sent", "open"); // "open"
 * // transition("rejected", "pending") throws IllegalTransitionError
 * ```
 */
export function transition(from: string, to: string): OrderState {
  if (!isOrderState(from) || !isOrderState(to) || !TABLE[from].includes(to)) {
    throw new IllegalTransitionError(from, to);
  }
  return to;
}

/** Whether `s` is terminal. */
export function isTerminal(s: OrderState): boolean {
  return TERMINAL_STATES.has(s);
}

/** The seed's `status` for `state` (the migration's generated column computes the same). */
export function statusOf(state: OrderState): string {
  switch (state) {
    case "pending":
    case "sent":
      return "pending";
    case "open":
    case "partially_filled":
      return "submitted";
    case "filled":
    case "cancelled":
    case "prevented":
      return "done";
    case "rejected":
    case "failed":
    case "conflict":
      return "error";
    default:
      return state;
  }
}

/** What {@linkcode stateOfExchangeOrder} reads of an order Upbit reports (§4.5). */
export interface ExchangeOrderState {
  state: string;
  executed_volume: string | number;
  /** §4.5 `prevented_volume`: what self-trade prevention cancelled (absent on older answers). */
  prevented_volume?: string | number | null;
}

/**
 * The state an order Upbit reports puts an open attempt in: `wait`/`watch` are open (partially
 * filled once something executed), `done` filled, `cancel` cancelled, `prevented` prevented.
 *
 * A `cancel` with `prevented_volume` > 0 is `prevented` too. Whether Upbit's REST answers say
 * `prevented` for an order self-trade prevention ended is uncertain [?]: §4.5 lists the REST
 * states as `wait`|`watch`|`done`|`cancel`, and `prevented` appears only in the WebSocket myOrder
 * stream (§7.8). The safe reading handles both: the closer's backoff and its `close_prevented`
 * alarm key on the stored `prevented`, so a sell prevention stopped must be stored so whichever
 * way Upbit says it. (An order prevention took part of and the owner then cancelled also reads
 * `prevented`: prevention did stop it, and the executed part counts the same either way.) This is
 * the one place the rule lives: every stored attempt state taken from an Upbit order comes here.
 *
 * @throws {Error} for a state Upbit does not document.
 */
export function stateOfExchangeOrder(order: ExchangeOrderState): OrderState {
  switch (order.state) {
    case "wait":
    case "watch":
      return Number(order.executed_volume) > 0 ? "partially_filled" : "open";
    case "done":
      return "filled";
    case "cancel":
      return Number(order.prevented_volume ?? 0) > 0 ? "prevented" : "cancelled";
    case "prevented":
      return "prevented";
  }
  throw new Error(`Upbit reported an order state upbot does not know: ${order.state}`);
}
