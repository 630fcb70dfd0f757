/**
 * @module The order-poller's logic: every live attempt Upbit holds (`open`, `partially_filled`)
 * is polled (batched through `GET /v1/orders/uuids` when several are open) until Upbit reports
 * `done`, `cancel` or `prevented`, whatever the executor's mode; every observed state is stored in
 * `upbit_order_snapshots`, and the attempt moves through the order state machine. At the poll
 * limit the order is cancelled and that is recorded (`cancel_requested_at`). An order Upbit does
 * not return in as many passes in a row as the poll limit goes back to `unknown` for the executor
 * to look up by identifier. Test-mode uuids never get here: the executor stores no uuid for them.
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { raiseAlarm } from "../store/alarms.ts";
import {
  type AttemptRow,
  insertSnapshot,
  openLiveAttempts,
  patchAttempt,
  transitionAttempt,
} from "../store/order_attempts.ts";
import { UpbitApiError } from "../upbit/errors.ts";
import type { Order } from "../upbit/schemas.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { averagePrice } from "./exchange_order.ts";
import { adoptConflictSells } from "./conflict_orders.ts";
import { recheckLostOrders } from "./lost_orders.ts";
import { isTerminal, stateOfExchangeOrder } from "./order_state.ts";

/** What the poller needs. */
export interface OrderPollerOptions {
  sql: Sql;
  rest: UpbitRest;
  /** Polls of one order before it is cancelled as stuck (`LIVE_ORDER_MAX_POLLS`). */
  maxPolls: number;
  log: Logger;
  now?: () => number;
}

/** What one {@linkcode OrderPoller.pollOnce} did. */
export interface PollSummary {
  /** Orders still open after this pass. */
  open: number;
  /** Orders that reached done or cancel in this pass. */
  finalised: number;
}

/** Polls live orders to their final state. */
export class OrderPoller {
  #options: OrderPollerOptions;
  #now: () => number;
  #lastSnapshotTs = 0;
  /**
   * Passes in a row in which Upbit did not return an order, by attempt id. `poll_count` counts
   * every pass of an order's life (and a myOrder wake is a pass), so it cannot tell one missed
   * answer after many good ones from an order Upbit does not know. Kept in memory: a restart
   * starts the count again, which only waits longer before the look-up by identifier.
   */
  #misses = new Map<number, number>();

  constructor(options: OrderPollerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * One pass over every open live order (and the slow re-check of lost ones, whose failure is
   * logged and leaves the open orders polled).
   */
  async pollOnce(): Promise<PollSummary> {
    // Lost orders are never forgotten: asked about again at a slow rate (lost_orders.ts). A
    // failed re-check must not stop the open orders' fills from being recorded: the next pass
    // tries it again.
    try {
      await recheckLostOrders(this.#options.sql, this.#options.rest, this.#options.log, {
        nowMs: this.#now(),
      });
    } catch (err) {
      this.#options.log.warn("Re-check of lost orders failed; polling the open orders anyway", {
        error: (err as Error).message,
      });
    }
    // Conflict sells a person judged ours: their orders' fills adopted once final
    // (conflict_orders.ts). Like the re-check, a failure leaves the open orders polled.
    try {
      await adoptConflictSells(this.#options.sql, this.#options.rest, this.#options.log, {
        nowMs: this.#now(),
      });
    } catch (err) {
      this.#options.log.warn(
        "Adoption of conflict sells judged ours failed; polling the open orders anyway",
        { error: (err as Error).message },
      );
    }
    const open = await openLiveAttempts(this.#options.sql);
    // Counts of orders no longer open (final, or moved by the executor) are dropped.
    for (const id of this.#misses.keys()) {
      if (!open.some((a) => a.id === id)) this.#misses.delete(id);
    }
    if (open.length === 0) return { open: 0, finalised: 0 };
    const orders = await this.#fetch(open);
    let finalised = 0;
    for (const attempt of open) {
      const order = orders.get(attempt.uuid!);
      const polls = attempt.poll_count + 1;
      if (!order) {
        // Upbit does not know this uuid (or keeps leaving it out). After the poll limit of passes
        // in a row the executor looks the order up by identifier (never re-sent: it was created
        // once).
        const misses = (this.#misses.get(attempt.id) ?? 0) + 1;
        this.#misses.set(attempt.id, misses);
        if (misses >= this.#options.maxPolls) {
          this.#misses.delete(attempt.id);
          await transitionAttempt(this.#options.sql, attempt.id, attempt.state, "unknown", {
            poll_count: polls,
            reason: "order_not_found",
            error_msg: `order ${attempt.uuid} not found at Upbit in ${misses} polls in a row`,
          });
          const message =
            `Order ${attempt.identifier} (uuid=${attempt.uuid}) not found at Upbit in ${misses} polls in a row; looking it up by identifier`;
          this.#options.log.error(message);
          await raiseAlarm(this.#options.sql, {
            code: "order_not_found",
            market: attempt.symbol,
            message,
          });
        } else {
          await patchAttempt(this.#options.sql, attempt.id, { poll_count: polls });
          this.#options.log.warn(
            `Order ${attempt.uuid} (${attempt.identifier}) not returned by Upbit`,
          );
        }
        continue;
      }
      this.#misses.delete(attempt.id);
      await insertSnapshot(this.#options.sql, {
        ts: this.#snapshotTs(),
        symbol: order.market,
        uuid: order.uuid,
        state: order.state,
        side: order.side,
        ord_type: order.ord_type,
        price: order.price ?? null,
        volume: order.volume ?? null,
        remaining_volume: order.remaining_volume ?? null,
        executed_volume: order.executed_volume,
        paid_fee: order.paid_fee,
        raw_json: order,
      });
      const to = stateOfExchangeOrder(order);
      const fills = {
        executed_volume: order.executed_volume,
        paid_fee: order.paid_fee,
        avg_price: averagePrice(order),
        poll_count: polls,
      };
      if (isTerminal(to)) {
        const row = await transitionAttempt(this.#options.sql, attempt.id, attempt.state, to, {
          ...fills,
          final_state: order.state as "done" | "cancel" | "prevented",
          response_json: order,
        });
        if (!row) continue; // moved by another writer meanwhile: the next pass sees it
        finalised++;
        this.#options.log.info(
          `Order final [${attempt.action}] ${attempt.identifier}: state=${order.state} executed_volume=${order.executed_volume} paid_fee=${order.paid_fee}`,
          { uuid: order.uuid, polls },
        );
        continue;
      }
      await transitionAttempt(this.#options.sql, attempt.id, attempt.state, to, fills);
      if (polls >= this.#options.maxPolls && attempt.cancel_requested_at === null) {
        await this.#cancelStuck(attempt, polls);
      }
    }
    return { open: open.length - finalised, finalised };
  }

  /** Snapshot timestamps are unique per order (UNIQUE (uuid, ts)): never reuse a millisecond. */
  #snapshotTs(): Date {
    const t = Math.max(this.#now(), this.#lastSnapshotTs + 1);
    this.#lastSnapshotTs = t;
    return new Date(t);
  }

  async #fetch(open: AttemptRow[]): Promise<Map<string, Order>> {
    const out = new Map<string, Order>();
    const uuids = open.map((a) => a.uuid!);
    if (uuids.length === 1) {
      try {
        const { data } = await this.#options.rest.getOrder({ uuid: uuids[0]! });
        out.set(data.uuid, data);
      } catch (err) {
        // 404: not returned, like a uuid missing from a batch answer; anything else fails the pass.
        if (!(err instanceof UpbitApiError && err.code === "order_not_found")) throw err;
      }
      return out;
    }
    for (let i = 0; i < uuids.length; i += 100) {
      const { data } = await this.#options.rest.getOrdersByUuids({
        uuids: uuids.slice(i, i + 100),
      });
      for (const o of data) out.set(o.uuid, o);
    }
    return out;
  }

  async #cancelStuck(attempt: AttemptRow, polls: number): Promise<void> {
    try {
      await this.#options.rest.deleteOrder({ uuid: attempt.uuid! });
      await patchAttempt(this.#options.sql, attempt.id, {
        cancel_requested_at: new Date(this.#now()),
        error_msg: `cancel requested after ${polls} polls`,
      });
      this.#options.log.warn(
        `Order ${attempt.identifier} still open after ${polls} polls: cancel requested`,
        {
          uuid: attempt.uuid,
        },
      );
    } catch (err) {
      // Already done / cancelled in the meantime, or a transient error: the next poll tells.
      await patchAttempt(this.#options.sql, attempt.id, {
        error_msg: `cancel after ${polls} polls failed: ${(err as Error).message}`,
      });
      this.#options.log.warn(`Cancel of ${attempt.identifier} failed`, {
        error: (err as Error).message,
      });
    }
  }
}
