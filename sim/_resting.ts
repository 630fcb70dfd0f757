/**
 * @module Resting limit orders of one market side, kept as price levels sorted best-first with a
 * FIFO per level, so a printed trade looks only at the levels it crosses.
 */
import type { Dec } from "./_decimal.ts";

/** What the index needs to know about a resting order. */
export interface RestingOrder {
  readonly uuid: string;
  /** The limit price (exact). */
  readonly restPrice: Dec;
}

/** One price level: every resting order at `price`, oldest first. */
export interface RestingLevel<T extends RestingOrder> {
  readonly price: Dec;
  /** `price` as a number, for the cheap crossing test on every trade. */
  readonly priceNum: number;
  readonly orders: T[];
}

/** Resting orders of one side of one market: bids best = highest, asks best = lowest. */
export class RestingSide<T extends RestingOrder> {
  /** Levels, best first. */
  readonly levels: RestingLevel<T>[] = [];
  readonly #descending: boolean;

  /** `descending` is true for bids. */
  constructor(descending: boolean) {
    this.#descending = descending;
  }

  /** Index of the first level not better than `price` (binary search). */
  #search(price: Dec): number {
    let lo = 0;
    let hi = this.levels.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = this.levels[mid]!.price;
      const better = this.#descending ? p > price : p < price;
      if (better) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Adds `order` at the back of its price level. */
  add(order: T, priceNum: number): void {
    const i = this.#search(order.restPrice);
    const level = this.levels[i];
    if (level && level.price === order.restPrice) level.orders.push(order);
    else this.levels.splice(i, 0, { price: order.restPrice, priceNum, orders: [order] });
  }

  /** Removes `order`; returns false when it was not resting here. */
  remove(order: T): boolean {
    const i = this.#search(order.restPrice);
    const level = this.levels[i];
    if (!level || level.price !== order.restPrice) return false;
    const j = level.orders.findIndex((o) => o.uuid === order.uuid);
    if (j < 0) return false;
    level.orders.splice(j, 1);
    if (level.orders.length === 0) this.levels.splice(i, 1);
    return true;
  }

  /** Number of resting orders. */
  get size(): number {
    let n = 0;
    for (const level of this.levels) n += level.orders.length;
    return n;
  }
}
