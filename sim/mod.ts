/**
 * @module Upbit-compatible exchange simulator (REST + WebSocket + faults), importable by tests.
 *
 * CONTRACT (shared by the simulator, the client library and the pipeline tests; keep it stable):
 * `startSimulator(options)` listens (port 0 by default) and returns a handle.
 */

/** Fault settings, all switchable while running (also via `POST /_sim/faults`). */
export interface Faults {
  /** Added delay before every REST answer, in ms. */
  latency_ms: number;
  /** Share (0..1) of REST requests answered with a 5xx. */
  error_rate: number;
  /** Share (0..1) of order creations that are accepted (the order exists) but whose answer is lost. */
  lost_response_rate: number;
  /** Close every WebSocket connection every N seconds (0 = never). */
  ws_disconnect_every_sec: number;
  /** Share (0..1) of WebSocket frames sent malformed. */
  malformed_frame_rate: number;
  /** Multiplier on every rate-limit group (below 1 squeezes). */
  rate_limit_factor: number;
  /** Markets that answer `market_offline`. */
  offline_markets: string[];
}

/** Options of {@linkcode startSimulator}. */
export interface SimulatorOptions {
  /** @default {0} (an ephemeral port) */
  port?: number;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** Seed of every random choice. @default {1} */
  seed?: number;
  /** Markets to simulate. @default a dozen KRW markets */
  markets?: string[];
  /** Generated trades per second across all markets; 0 = none (tests inject trades). */
  rate?: number;
  /** Test keys. */
  accessKey?: string;
  secretKey?: string;
  /** Starting KRW balance. @default {10_000_000} */
  krw?: number;
  faults?: Partial<Faults>;
}

/** One order as listed by `GET /_sim/orders`. */
export interface SimOrderSummary {
  uuid: string;
  identifier: string | null;
  market: string;
  side: "bid" | "ask";
  ord_type: string;
  state: string;
  executed_volume: string;
}

/** A trade printed by the simulated market. */
export interface SimTrade {
  market: string;
  price: number;
  volume: number;
  side: "ASK" | "BID";
  timestampMs: number;
  sequentialId: number;
}

/** A running simulator. */
export interface Simulator {
  /** e.g. `http://127.0.0.1:40123` */
  readonly restUrl: string;
  /** e.g. `ws://127.0.0.1:40123/websocket/v1` (private: + `/private`) */
  readonly wsUrl: string;
  readonly accessKey: string;
  readonly secretKey: string;
  setFaults(faults: Partial<Faults>): void;
  faults(): Faults;
  orders(): SimOrderSummary[];
  /** Prints a trade now: WebSocket `trade` message, `/v1/trades/ticks`, candles, and order matching. */
  injectTrade(trade: {
    market: string;
    price: number;
    volume: number;
    side: "ASK" | "BID";
    timestampMs?: number;
  }): SimTrade;
  /** Closes every open WebSocket connection now (reconnect tests). */
  dropWebSockets(): void;
  close(): Promise<void>;
}

/** Starts a simulator. */
export function startSimulator(_options: SimulatorOptions = {}): Promise<Simulator> {
  throw new Error("simulator not implemented yet");
}
