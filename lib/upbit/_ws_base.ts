/**
 * @module A WebSocket connection to Upbit that stays up: subscribes on every open, keeps alive with
 * the `PING` text message (§7.9), declares a silent connection dead, and reconnects with
 * exponential backoff and jitter, never while a known ban runs nor within a window of an upgrade
 * refused with 429. Frames are handed over as text (binary frames decoded, §7.3).
 *
 * Private to `lib/upbit/`; the public and private stream clients build on it.
 */
import type { Logger } from "../log.ts";
import { backoffDelayMs, type BackoffOptions } from "../backoff.ts";

/** Options of {@linkcode ReconnectingSocket}. */
export interface ReconnectingSocketOptions {
  url: string;
  /** Headers of each upgrade request (called per connect: fresh tokens). */
  headers?: () => Promise<Record<string, string>> | Record<string, string>;
  /** The request message sent on every open (§7.2). */
  subscription: () => string;
  /** Every text frame, in order. Must not throw (errors are caught, counted and logged). */
  onFrame: (text: string) => void;
  /** After each open and subscribe; `reconnect` is false only for the first. */
  onOpen?: (reconnect: boolean) => void;
  /** After each unexpected close (before the reconnect is scheduled). */
  onDrop?: () => void;
  /**
   * The server answered the upgrade request with this HTTP status instead of switching protocols
   * (read from the runtime's error text). Return true to stop for good instead of reconnecting.
   */
  onUpgradeRefused?: (status: number) => boolean;
  /**
   * Epoch ms before which no connection attempt is made (a running 418 ban: an upgrade then is
   * refused and, at Upbit, may lengthen the ban, §3.3). Asked before every attempt.
   */
  notBefore?: () => number;
  /** Interval of `PING` messages, in ms. @default {30000} */
  keepaliveMs: number;
  /** A connection without any frame for this long is closed and replaced, in ms. */
  staleAfterMs: number;
  reconnect: BackoffOptions;
  logger: Logger;
}

/** Connection counters. */
export interface SocketStats {
  connected: boolean;
  /** Successful opens after the first. */
  reconnects: number;
  /** Frames received (all kinds). */
  frames: number;
  /** `onFrame` threw (a bug in a parser); the frame was skipped. */
  handlerErrors: number;
}

const decoder = new TextDecoder();

/**
 * After an upgrade refused with 429, no attempt for this long: websocket-connect's window is 1 s
 * (§3.1) and may slide with the refused attempt counted in it, so a retry within the window can be
 * refused again and count towards a 418 (§3.3); plus a margin against clock skew.
 */
export const UPGRADE_429_HOLD_MS = 1050;

/** A self-healing WebSocket. Call `start()` once and `close()` at the end. */
export class ReconnectingSocket {
  readonly #options: ReconnectingSocketOptions;
  #ws: WebSocket | undefined;
  #closing = false;
  #opened = 0;
  #failures = 0;
  #lastFrameAt = 0;
  /** No connection attempt before this (epoch ms): a window after an upgrade refused with 429. */
  #holdUntil = 0;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #closed: Promise<void> = Promise.resolve();
  #resolveClosed: (() => void) | undefined;
  readonly stats: SocketStats = { connected: false, reconnects: 0, frames: 0, handlerErrors: 0 };

  constructor(options: ReconnectingSocketOptions) {
    this.#options = options;
  }

  /** Connects (once). */
  start(): void {
    if (this.#ws || this.#retryTimer !== undefined || this.#closing) return;
    void this.#connect();
  }

  async #connect(): Promise<void> {
    this.#retryTimer = undefined;
    if (this.#closing) return;
    const holdMs = Math.max(this.#holdUntil, this.#options.notBefore?.() ?? 0) - Date.now();
    if (holdMs > 0) {
      this.#options.logger.info("WebSocket connect held until the rate limit allows it", {
        url: this.#options.url,
        hold_ms: holdMs,
      });
      this.#retryTimer = setTimeout(() => void this.#connect(), holdMs);
      return;
    }
    let headers: Record<string, string> | undefined;
    try {
      headers = this.#options.headers ? await this.#options.headers() : undefined;
    } catch (err) {
      this.#options.logger.error("cannot build WebSocket headers", { error: String(err) });
      this.#scheduleReconnect();
      return;
    }
    if (this.#closing) return;
    let ws: WebSocket;
    try {
      // Deno's client sends no Origin header (Origin-bearing requests are throttled, §3.1).
      ws = headers
        ? new WebSocket(this.#options.url, { headers })
        : new WebSocket(this.#options.url);
    } catch (err) {
      this.#options.logger.warn("WebSocket connect failed", { error: String(err) });
      this.#scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    let gotFrame = false;
    let gotOpen = false;
    ws.onopen = () => {
      gotOpen = true;
      this.stats.connected = true;
      this.#lastFrameAt = Date.now();
      const reconnect = this.#opened > 0;
      this.#opened++;
      if (reconnect) this.stats.reconnects++;
      try {
        ws.send(this.#options.subscription());
      } catch (err) {
        this.#options.logger.warn("WebSocket subscribe failed", { error: String(err) });
      }
      this.#startKeepalive(ws);
      this.#options.onOpen?.(reconnect);
    };
    ws.onmessage = (e: MessageEvent) => {
      this.#lastFrameAt = Date.now();
      this.stats.frames++;
      if (!gotFrame) {
        gotFrame = true;
        this.#failures = 0; // the connection works: the next drop starts the backoff over
      }
      const data = e.data;
      const text = typeof data === "string"
        ? data
        : data instanceof ArrayBuffer
        ? decoder.decode(data)
        : ArrayBuffer.isView(data)
        ? decoder.decode(data)
        : "";
      try {
        this.#options.onFrame(text);
      } catch (err) {
        this.stats.handlerErrors++;
        this.#options.logger.error("WebSocket frame handler failed", { error: String(err) });
      }
    };
    let refusedStatus: number | undefined;
    ws.onerror = (e: Event) => {
      // A close event follows. Deno reports a refused upgrade only in the error text
      // ("failed to connect to WebSocket: Invalid status code: 401 …").
      const text = e instanceof ErrorEvent ? e.message : "";
      const m = /status code:?\s*(\d{3})/i.exec(text);
      if (m && !gotOpen) refusedStatus = Number(m[1]);
    };
    ws.onclose = (e: CloseEvent) => {
      this.#stopKeepalive();
      const wasConnected = this.stats.connected;
      this.stats.connected = false;
      if (this.#ws === ws) this.#ws = undefined;
      this.#resolveClosed?.();
      if (this.#closing) return;
      if (refusedStatus !== undefined && this.#options.onUpgradeRefused?.(refusedStatus)) {
        this.#closing = true;
        return;
      }
      if (refusedStatus === 429) this.#holdUntil = Date.now() + UPGRADE_429_HOLD_MS;
      this.#options.logger.warn("WebSocket closed; reconnecting", {
        url: this.#options.url,
        code: e.code,
        was_connected: wasConnected,
        ...(refusedStatus === undefined ? {} : { upgrade_status: refusedStatus }),
      });
      if (wasConnected) this.#options.onDrop?.();
      this.#scheduleReconnect();
    };
  }

  #scheduleReconnect(): void {
    if (this.#closing) return;
    const delay = backoffDelayMs(Math.min(this.#failures, 20), this.#options.reconnect);
    this.#failures++;
    this.#retryTimer = setTimeout(() => void this.#connect(), delay);
  }

  #startKeepalive(ws: WebSocket): void {
    this.#stopKeepalive();
    const tick = Math.max(10, Math.min(this.#options.keepaliveMs, this.#options.staleAfterMs / 2));
    let lastPing = Date.now();
    this.#keepalive = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastFrameAt > this.#options.staleAfterMs) {
        this.#options.logger.warn("WebSocket silent for too long; replacing it", {
          silent_ms: now - this.#lastFrameAt,
        });
        ws.close();
        return;
      }
      if (now - lastPing >= this.#options.keepaliveMs && ws.readyState === WebSocket.OPEN) {
        lastPing = now;
        ws.send("PING");
      }
    }, tick);
  }

  #stopKeepalive(): void {
    if (this.#keepalive !== undefined) clearInterval(this.#keepalive);
    this.#keepalive = undefined;
  }

  /** Closes the current connection now; the usual reconnect follows (tests, resubscribe). */
  dropConnection(): void {
    this.#ws?.close();
  }

  /** Sends a text message on the open connection; false when not connected. */
  send(text: string): boolean {
    if (this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(text);
    return true;
  }

  /** Stops for good and waits for the socket to be closed. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#stopKeepalive();
    const ws = this.#ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      ws.close();
      await this.#closed;
    }
  }
}
