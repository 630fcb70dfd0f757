/** @module A fixed-capacity ring buffer that drops its oldest entry when full. */

/** Fixed-capacity buffer, newest entries kept. */
export class Ring<T> {
  readonly #items: (T | undefined)[];
  #head = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#items = new Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    this.#items[this.#head] = item;
    this.#head = (this.#head + 1) % this.#items.length;
    if (this.#size < this.#items.length) this.#size++;
  }

  newest(): T | undefined {
    if (this.#size === 0) return undefined;
    return this.#items[(this.#head - 1 + this.#items.length) % this.#items.length];
  }

  *newestFirst(): Generator<T> {
    const n = this.#items.length;
    for (let k = 0; k < this.#size; k++) {
      yield this.#items[(this.#head - 1 - k + 2 * n) % n] as T;
    }
  }
}
