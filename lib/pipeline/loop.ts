/**
 * @module The work loop of a pipeline actor: run a pass, sleep until the next tick or a wake,
 * repeat until stopped. A failing pass is retried with backoff; after too many failures in a row
 * the error escalates (the actor crashes and its supervisor decides), instead of looping forever.
 */
import { backoffDelayMs } from "../backoff.ts";
import type { Logger } from "../log.ts";

/** Options of {@linkcode WorkLoop}. */
export interface WorkLoopOptions {
  /** One pass; returns true when work remains (run again at once). */
  pass: () => Promise<boolean | void>;
  /** Sleep between passes when idle, ms. */
  intervalMs: number;
  signal: AbortSignal;
  log: Logger;
  /** Called for each failed pass (e.g. `ctx.reportError`). */
  onError?: (err: unknown) => void;
  /** Consecutive failures before the loop gives up and rejects. @default {10} */
  maxFailures?: number;
  /** Longest sleep after failures, ms. @default {30000} */
  maxBackoffMs?: number;
}

/** A pass loop that can be woken early. */
export class WorkLoop {
  #options: WorkLoopOptions;
  #wake: (() => void) | null = null;
  #woken = false;
  #running: Promise<void> = Promise.resolve();

  constructor(options: WorkLoopOptions) {
    this.#options = options;
  }

  /** Runs the next pass now (or right after the current one). */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /**
   * Runs in the background. Giving up after `maxFailures` is rethrown as an uncaught error, which
   * crashes the worker: the supervisor then restarts it per its policy (escalation, not a loop).
   */
  start(): void {
    this.#running = this.run().catch((err) => {
      queueMicrotask(() => {
        throw err;
      });
    });
  }

  /** Wakes the loop (the signal must be aborted already) and resolves when it has ended. */
  async stopped(): Promise<void> {
    this.wake();
    await this.#running;
  }

  /** Runs until the signal aborts; rejects after `maxFailures` failed passes in a row. */
  async run(): Promise<void> {
    let failures = 0;
    const max = this.#options.maxFailures ?? 10;
    while (!this.#options.signal.aborted) {
      let again = false;
      try {
        this.#woken = false;
        again = (await this.#options.pass()) === true;
        failures = 0;
      } catch (err) {
        if (this.#options.signal.aborted) return;
        failures++;
        this.#options.onError?.(err);
        this.#options.log.warn(`pass failed (${failures}/${max})`, {
          error: (err as Error).message,
        });
        if (failures >= max) throw err;
      }
      if (this.#options.signal.aborted) return;
      const delay = failures > 0
        // No jitter: one loop per process, nothing to spread.
        ? backoffDelayMs(failures, {
          baseMs: this.#options.intervalMs,
          maxMs: this.#options.maxBackoffMs ?? 30_000,
          jitter: 0,
        })
        : (again ? 0 : this.#options.intervalMs);
      if (delay > 0 && !this.#woken) await this.#sleep(delay);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#options.signal.removeEventListener("abort", done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#options.signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }
}
