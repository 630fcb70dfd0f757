/**
 * @module Housekeeping of one simulator WebSocket connection, shared by the public and private
 * endpoints: the idle timeout and the periodic `{"status":"UP"}` after a `PING` (§7.9), and the
 * websocket-message budget (§3.1).
 */
import { WsMessageBudget } from "./rate_limit.ts";

/** Default idle timeout of both WebSocket endpoints (§7.9). */
export const WS_IDLE_TIMEOUT_MS = 120_000;
/** Default interval of `{"status":"UP"}` after a client's `PING` (§7.9). */
export const WS_STATUS_INTERVAL_MS = 10_000;

/** Options of {@linkcode WsSession}. */
export interface WsSessionOptions {
  /** Close after this long without traffic either way. */
  idleTimeoutMs: number;
  /** After a `PING`, send `{"status":"UP"}` this often until the connection closes. */
  statusIntervalMs: number;
  /** Sends `{"status":"UP"}` on the connection (the owner calls {@linkcode WsSession.touch}). */
  sendStatus: () => void;
  /** Closes the connection for idleness (the owner then calls {@linkcode WsSession.stop}). */
  closeIdle: () => void;
}

/** Timers and counters of one connection. Call `start()` when open and `stop()` when closed. */
export class WsSession {
  readonly #options: WsSessionOptions;
  readonly #budget = new WsMessageBudget();
  #lastActivityMs = Date.now();
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #statusTimer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(options: WsSessionOptions) {
    this.#options = options;
  }

  /** Starts the idle clock. */
  start(): void {
    if (this.#stopped) return;
    this.#lastActivityMs = Date.now();
    this.#armIdle(this.#options.idleTimeoutMs);
  }

  /** Traffic either way (a received message or a sent frame). Cheap: called per frame. */
  touch(): void {
    this.#lastActivityMs = Date.now();
  }

  /** A `PING` arrived: from now on `{"status":"UP"}` goes out every `statusIntervalMs`. */
  pinged(): void {
    if (this.#stopped || this.#statusTimer !== undefined) return;
    this.#statusTimer = setInterval(
      () => this.#options.sendStatus(),
      this.#options.statusIntervalMs,
    );
  }

  /** Counts a request message; false when it is past the websocket-message limit. */
  admit(factor: number): boolean {
    return this.#budget.take(factor);
  }

  /** Clears every timer (idempotent). */
  stop(): void {
    this.#stopped = true;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    if (this.#statusTimer !== undefined) clearInterval(this.#statusTimer);
    this.#idleTimer = undefined;
    this.#statusTimer = undefined;
  }

  /** One timer per connection, re-armed lazily for the time still left (no work per frame). */
  #armIdle(ms: number): void {
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#stopped) return;
      const idle = Date.now() - this.#lastActivityMs;
      if (idle >= this.#options.idleTimeoutMs) {
        this.stop();
        this.#options.closeIdle();
      } else this.#armIdle(this.#options.idleTimeoutMs - idle);
    }, ms);
  }
}
