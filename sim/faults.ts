/**
 * @module Fault settings of the simulator: defaults, the zod schema of `POST /_sim/faults` and
 * `--faults`, and the live, mergeable store read on every request.
 */
import { z } from "zod";
import { MarketCode } from "../lib/domain.ts";
import type { SimResult } from "./contract.ts";

const share = z.number().min(0).max(1);

/** Fault settings, all switchable while running (also via `POST /_sim/faults`). */
export const FaultsSchema = z.strictObject({
  /** Added delay before every REST answer, in ms. */
  latency_ms: z.number().int().min(0).max(600_000),
  /** Share (0..1) of REST requests answered with a 5xx before the exchange sees them. */
  error_rate: share,
  /**
   * Share (0..1) of real order creations (`POST /v1/orders`, `cancel_and_new`) that succeed (the
   * order exists) but are answered with a 500.
   */
  server_error_after_create_rate: share,
  /**
   * Share (0..1) of real order creations answered with a 500 that create nothing but use up the
   * identifier (§4.3: an identifier is burnt even when the create fails).
   */
  server_error_burn_rate: share,
  /** Share (0..1) of order creations that are accepted (the order exists) but whose answer is lost. */
  lost_response_rate: share,
  /**
   * Delay before a real order creation is processed, in ms (after `latency_ms`; look-ups are not
   * delayed): the create takes its identifier when it arrives and lands after a client with a
   * shorter timeout gave up and its look-ups by identifier found nothing, as a request queued at
   * the exchange would.
   */
  create_delay_ms: z.number().int().min(0).max(600_000),
  /** Close every WebSocket connection every N seconds (0 = never). */
  ws_disconnect_every_sec: z.number().min(0).max(86_400),
  /** Share (0..1) of WebSocket frames sent malformed. */
  malformed_frame_rate: share,
  /** Multiplier on every rate-limit group (below 1 squeezes). */
  rate_limit_factor: z.number().positive().max(1_000),
  /** Markets that answer `market_offline`. */
  offline_markets: z.array(MarketCode),
  /**
   * Markets whose book shows no bids: `GET /v1/orderbook` (and the WebSocket orderbook, trade
   * `best_bid_*`) has no bid levels, and a market sell is refused as larger than the visible book
   * (`insufficient_liquidity_ask`, §8.2); limit and `best` sells meet no bid. Models a market
   * nobody bids on (e.g. a crash or a thin listing); asks, trades and prices go on.
   */
  bookless_markets: z.array(MarketCode),
  /**
   * Group names in `Remaining-Req`: `documented`, or `alternative` names such as `candles` and
   * `origin` as seen in captures (see `ALTERNATIVE_GROUP_NAMES` in `sim/rate_limit.ts`).
   */
  remaining_req_group_names: z.enum(["documented", "alternative"]),
  /**
   * How the private WebSocket refuses a bad token: `upgrade` answers the upgrade request with HTTP
   * 401; `in_band` upgrades, sends the `INVALID_AUTH` error frame and closes.
   */
  private_ws_auth_refusal: z.enum(["upgrade", "in_band"]),
  /**
   * Concurrent private WebSocket connections per access key; more are refused with a 429 at the
   * upgrade. 0 = no limit. Inferred: Upbit advises one connection but documents no number.
   */
  private_ws_max_connections: z.number().int().min(0).max(1_000),
  /**
   * For this long (ms) after a private WebSocket connection first subscribes to `myAsset`, that
   * connection gets no `myAsset` frames: balance changes in that time are not sent (not queued);
   * the first change after it is sent as usual. 0 = no lag. §7.8: "the very first subscription may
   * lag by several minutes" (dropping, not delaying, is the least kind reading).
   */
  my_asset_first_lag_ms: z.number().int().min(0).max(3_600_000),
  /**
   * The state REST answers give an order self-trade prevention ended (§4.5 objects of create, get,
   * list and cancel; `GET /v1/orders/closed` filters on it too): `cancel` (with `prevented_volume`
   * > 0) or `prevented`. What Upbit answers over REST is uncertain [?]: §4.5 lists the REST states
   * as `wait`|`watch`|`done`|`cancel`, and `prevented` appears only in the WebSocket myOrder stream
   * (§7.8, which always says `prevented` here). The default is `cancel`: the documented list, and
   * the less kind reading, as a client keying on the state alone would miss the prevention there.
   * Under `cancel`, `states[]=prevented` is refused as an unknown state.
   */
  smp_rest_state: z.enum(["cancel", "prevented"]),
  /**
   * The error name (400) of a create refused because its identifier is used. Not documented
   * (§4.3 [?]): two third-party clients map it to `duplicated_identifier`, the default; another
   * name lets tests meet a client that would not know it.
   */
  duplicated_identifier_name: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/),
  /**
   * Delay of a real market order's fill, in ms (0 = none: it is final before the create's answer).
   * Half of the order (the funds of a `price` buy, the volume of a `market` sell) trades at once,
   * the rest this much later; meanwhile the order is `wait` with that partial `executed_volume`.
   * Inferred: Upbit documents no latency, and a client must not count on a market order being
   * final when the create is answered (§4.5 states `wait` for any accepted order).
   */
  market_fill_delay_ms: z.number().int().min(0).max(600_000),
  /**
   * How a rate-limit refusal is written. `json`: 429 and 418 carry the usual JSON error object, the
   * 418 its ban length in `Retry-After` and in the message. `text`: 429 is the plain text `Too many
   * API requests.` (as pyupbit expects, §3.3 [L/?]) and 418 is plain text stating the ban only in
   * Korean (`30초`), with no `Retry-After`: §3.3 says the 418 carries the block duration but not
   * how, and §11 that no `Retry-After` is documented, so a client must cope without reading it.
   * The default is `text`, the less kind reading: JSON with `Retry-After` is what upbot's client
   * reads best, and Upbit documents neither.
   */
  rate_refusal_format: z.enum(["json", "text"]),
});

/** Fault settings, inferred from {@linkcode FaultsSchema}. */
export type Faults = z.infer<typeof FaultsSchema>;

/** No faults. */
export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  latency_ms: 0,
  error_rate: 0,
  server_error_after_create_rate: 0,
  server_error_burn_rate: 0,
  create_delay_ms: 0,
  lost_response_rate: 0,
  ws_disconnect_every_sec: 0,
  malformed_frame_rate: 0,
  rate_limit_factor: 1,
  offline_markets: [],
  bookless_markets: [],
  remaining_req_group_names: "documented",
  private_ws_auth_refusal: "upgrade",
  private_ws_max_connections: 0,
  my_asset_first_lag_ms: 0,
  smp_rest_state: "cancel",
  duplicated_identifier_name: "duplicated_identifier",
  market_fill_delay_ms: 0,
  rate_refusal_format: "text",
});

/** A partial fault update: every field optional, unknown fields rejected. */
export const FaultsPatch = FaultsSchema.partial();

/** Validates a fault update; returns the patch or a readable error text. */
export function parseFaultsPatch(
  input: unknown,
): SimResult<Partial<Faults>, string> {
  const result = FaultsPatch.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  const error = result.error.issues
    .map((i) => `${i.path.join(".") || "faults"}: ${i.message}`)
    .join("; ");
  return { ok: false, error };
}

/** The fault settings in force, changed by merging partial updates. */
export class FaultStore {
  #faults: Faults;

  constructor(initial: Partial<Faults> = {}) {
    this.#faults = { ...NO_FAULTS, offline_markets: [], bookless_markets: [] };
    this.merge(initial);
  }

  /** A copy of the settings in force. */
  get(): Faults {
    return {
      ...this.#faults,
      offline_markets: [...this.#faults.offline_markets],
      bookless_markets: [...this.#faults.bookless_markets],
    };
  }

  /** The live settings object (read-only by convention; cheap, for hot paths). */
  current(): Faults {
    return this.#faults;
  }

  /** Merges an update (fields not given keep their value). */
  merge(patch: Partial<Faults>): void {
    const next: Faults = { ...this.#faults };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (next as unknown as Record<string, unknown>)[key] = value;
    }
    next.offline_markets = [...next.offline_markets];
    next.bookless_markets = [...next.bookless_markets];
    this.#faults = next;
  }
}
