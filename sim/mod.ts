/**
 * @module Upbit-compatible exchange simulator (REST + WebSocket + faults), importable by tests.
 *
 * CONTRACT (shared by the simulator, the client library and the pipeline tests; keep it stable):
 * `startSimulator(options)` listens (port 0 by default) and returns a handle.
 */
import { createExchange } from "./exchange.ts";
import { FaultStore, parseFaultsPatch } from "./faults.ts";
import { SimMarket } from "./market.ts";
import { DEFAULT_MARKETS } from "./market_specs.ts";
import { PublicWebSocketHub } from "./public_ws.ts";
import { SimRateLimits } from "./rate_limit.ts";
import { createSimServer } from "./server.ts";
import { createRng } from "./_rng.ts";

import type { Faults, SimOrderSummary, SimTrade } from "./contract.ts";

export { StateFileError } from "./_state_file.ts";
export type { Faults, SimOrderSummary, SimTrade } from "./contract.ts";

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
  /** Generated trades per second across all markets; 0 = none (tests inject trades). @default {200} */
  rate?: number;
  /**
   * Whole days (0-31) of backdated market history generated at start, so that `/v1/trades/ticks`
   * with `days_ago` and day candles have earlier UTC dates. @default {0}
   */
  historyDays?: number;
  /** Trades per second across all markets in the backdated history. @default {2} */
  historyRate?: number;
  /**
   * Multiplier on every market's documented one-minute volatility (`sim/market_specs.ts`). A test
   * knob for tests that need take-profit / stop-loss exits within seconds; 1 is the realistic
   * market. @default {1}
   */
  volatilityScale?: number;
  /** The market's clock (epoch ms), for tests that cross 00:00 UTC. @default {Date.now} */
  now?: () => number;
  /** Test keys. */
  accessKey?: string;
  secretKey?: string;
  /** Starting KRW balance. @default {10_000_000} */
  krw?: number;
  /**
   * Coins the account holds at start (the owner's coins, not bought through the API), by market:
   * `{ "KRW-BTC": "0.5" }`. Each gets the market's starting price as `avg_buy_price`.
   */
  balances?: Record<string, string | number>;
  /**
   * Coins of markets Upbit no longer lists (delisted), by market: `{ "KRW-XYZ": "10" }`. The
   * account still holds them (Upbit keeps them until withdrawn: `/v1/accounts` lists them), but
   * the market is unknown to quotation (ticker 404) and orders. Must not be a simulated market.
   */
  delisted?: Record<string, string | number>;
  /**
   * State file: accounts, orders with their fills, used identifiers and the uuid stream survive a
   * restart. Loaded when it exists (then `krw` and `balances` are ignored); a corrupt file makes
   * the start fail with {@linkcode StateFileError}. Rewritten atomically after every change.
   */
  stateFile?: string;
  /**
   * Expiry of the test key (epoch ms), as `GET /v1/api_keys` shows it; from then on requests signed
   * with it are refused with 401 `expired_access_key`. @default {one year from start}
   */
  apiKeyExpireAtMs?: number;
  faults?: Partial<Faults>;
  /** Idle timeout of the public and private WebSocket (§7.9), for tests. @default {120_000} */
  wsIdleTimeoutMs?: number;
  /**
   * Interval of the `{"status":"UP"}` frames a WebSocket gets after its first `PING` (§7.9), for
   * tests. @default {10_000}
   */
  wsStatusIntervalMs?: number;
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

/** Default test access key (documented; never a real Upbit key). */
export const DEFAULT_ACCESS_KEY = "sim-access-key";
/** Default test secret key (documented; never a real Upbit key). */
export const DEFAULT_SECRET_KEY = "sim-secret-key";
/** Default generation rate of {@linkcode startSimulator} (trades per second across markets). */
export const DEFAULT_RATE = 200;

/**
 * Starts a simulator: the market generator, quotation and exchange REST, both WebSockets and the
 * `/_sim/` admin endpoints, listening on `options.port` (0 = an ephemeral port).
 *
 * @example
 * ```ts ignore
 * const sim = await startSimulator({ rate: 0, seed: 7 });
 * sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "BID" });
 * await sim.close();
 * ```
 */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const seed = options.seed ?? 1;
  const accessKey = options.accessKey ?? DEFAULT_ACCESS_KEY;
  const secretKey = options.secretKey ?? DEFAULT_SECRET_KEY;
  const initialFaults = parseFaultsPatch(options.faults ?? {});
  if (!initialFaults.ok) {
    throw new RangeError(`Cannot start simulator: bad faults: ${initialFaults.error}`);
  }
  const faults = new FaultStore(initialFaults.value);
  const market = new SimMarket({
    seed,
    markets: options.markets ?? DEFAULT_MARKETS,
    rate: options.rate ?? DEFAULT_RATE,
    historyDays: options.historyDays,
    historyRate: options.historyRate,
    volatilityScale: options.volatilityScale,
    now: options.now,
    bidless: (code) => faults.current().bookless_markets.includes(code),
  });
  const exchange = createExchange({
    market,
    accessKey,
    secretKey,
    krw: options.krw ?? 10_000_000,
    balances: options.balances ?? {},
    delisted: options.delisted ?? {},
    stateFile: options.stateFile,
    seed,
    apiKeyExpireAtMs: options.apiKeyExpireAtMs,
    faults: () => faults.current(),
    wsIdleTimeoutMs: options.wsIdleTimeoutMs,
    wsStatusIntervalMs: options.wsStatusIntervalMs,
  });
  // Fault randomness has its own stream so that switching faults never changes the market.
  const publicWs = new PublicWebSocketHub({
    market,
    faults: () => faults.current(),
    rng: createRng(seed ^ 0x5eed_fa17),
    idleTimeoutMs: options.wsIdleTimeoutMs,
    statusIntervalMs: options.wsStatusIntervalMs,
  });
  const composed = createSimServer({
    market,
    exchange,
    faults,
    publicWs,
    limiter: new SimRateLimits(),
    rng: createRng(seed ^ 0x0bad_cafe),
  });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, composed.handler);
  const addr = await listening;
  market.start();
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  return {
    restUrl: `http://${host}:${addr.port}`,
    wsUrl: `ws://${host}:${addr.port}/websocket/v1`,
    accessKey,
    secretKey,
    setFaults(patch) {
      const parsed = parseFaultsPatch(patch);
      if (!parsed.ok) throw new RangeError(`Cannot set faults: ${parsed.error}`);
      faults.merge(parsed.value);
    },
    faults: () => faults.get(),
    orders: () => exchange.orders(),
    injectTrade: (trade) => {
      const printed = market.inject(trade);
      return {
        market: printed.market,
        price: printed.price,
        volume: printed.volume,
        side: printed.side,
        timestampMs: printed.timestampMs,
        sequentialId: printed.sequentialId,
      };
    },
    dropWebSockets() {
      publicWs.dropAll();
      exchange.dropWebSockets();
    },
    close() {
      closing ??= (async () => {
        market.stop();
        composed.close();
        publicWs.close();
        exchange.close();
        await server.shutdown();
      })();
      return closing;
    },
  };
}
