/**
 * @module The simulator's private WebSocket (`/websocket/v1/private`, §7.8): JWT in the upgrade
 * request's `Authorization` header (verified like REST, without query_hash), a §7.2 request of
 * `myOrder` / `myAsset`, binary UTF-8 JSON frames in DEFAULT / SIMPLE (and LIST) formats, `PING`
 * answered with `{"status":"UP"}` (then every 10 s, §7.9), the 120 s idle timeout and the
 * websocket-message limit (§3.1).
 */
import type { Authenticator, AuthFailure } from "./_auth.ts";
import { type Dec, toNumber } from "./_decimal.ts";
import {
  type Engine,
  type EngineEvent,
  type Fill,
  lockedOf,
  type Order,
  preventedLocked,
  remainingFee,
  remainingVolume,
} from "./_engine.ts";
import { type Random, uuidGenerator } from "./_ids.ts";
import { avgPrice } from "./_order_json.ts";
import { createLogger } from "../lib/log.ts";
import type { Faults, SimResult } from "./contract.ts";
import { WS_TOO_MANY_REQUESTS_FRAME } from "./rate_limit.ts";
import { WS_IDLE_TIMEOUT_MS, WS_STATUS_INTERVAL_MS, WsSession } from "./_ws_session.ts";

const log = createLogger("sim.private_ws");
const encoder = new TextEncoder();

type Format = "DEFAULT" | "SIMPLE" | "JSON_LIST" | "SIMPLE_LIST";

interface Subscription {
  /** null = every market. */
  myOrder: string[] | null | undefined;
  myAsset: boolean;
  format: Format;
}

interface Connection {
  socket: WebSocket;
  /** The verified key; null for a refused token (in_band refusal). */
  accessKey: string | null;
  authorized: Promise<boolean>;
  subscription: Subscription | null;
  session: WsSession;
  /**
   * Until when (epoch ms) `myAsset` frames are withheld (`my_asset_first_lag_ms`), set at the
   * connection's first `myAsset` subscription; undefined before it.
   */
  myAssetQuietUntil: number | undefined;
}

/** DEFAULT → SIMPLE keys of §7.8. */
const SIMPLE_KEYS: Record<string, string> = {
  type: "ty",
  code: "cd",
  uuid: "uid",
  ask_bid: "ab",
  order_type: "ot",
  state: "s",
  trade_uuid: "tuid",
  price: "p",
  avg_price: "ap",
  volume: "v",
  remaining_volume: "rv",
  executed_volume: "ev",
  trades_count: "tc",
  reserved_fee: "rsf",
  remaining_fee: "rmf",
  paid_fee: "pf",
  locked: "l",
  executed_funds: "ef",
  time_in_force: "tif",
  trade_fee: "tf",
  is_maker: "im",
  identifier: "id",
  smp_type: "smpt",
  prevented_volume: "pv",
  prevented_locked: "pl",
  trade_timestamp: "ttms",
  order_timestamp: "otms",
  timestamp: "tms",
  stream_type: "st",
  asset_uuid: "astuid",
  assets: "ast",
  currency: "cu",
  balance: "b",
  asset_timestamp: "asttms",
};

function simplify(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(simplify);
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    // `locked` is `l` both in myOrder and in myAsset's asset entries.
    out[SIMPLE_KEYS[k] ?? k] = simplify(v);
  }
  return out;
}

const num = (value: Dec | null): number | null => value === null ? null : toNumber(value);

/** The §7.8 myOrder message (DEFAULT keys, JSON numbers). */
export function myOrderMessage(order: Order, fill: Fill | null, timestampMs: number) {
  return {
    type: "myOrder",
    code: order.market,
    uuid: order.uuid,
    ask_bid: order.side === "bid" ? "BID" : "ASK",
    order_type: order.ordType,
    state: fill ? "trade" : order.state,
    trade_uuid: fill ? fill.uuid : null,
    price: fill ? toNumber(fill.price) : num(order.price),
    avg_price: toNumber(avgPrice(order)),
    volume: fill ? toNumber(fill.volume) : num(order.volume),
    remaining_volume: order.volume === null ? null : toNumber(remainingVolume(order)),
    executed_volume: toNumber(order.executedVolume),
    trades_count: order.fills.length,
    reserved_fee: toNumber(order.reservedFee),
    remaining_fee: toNumber(remainingFee(order)),
    paid_fee: toNumber(order.paidFee),
    locked: toNumber(lockedOf(order)),
    executed_funds: toNumber(order.executedFunds),
    time_in_force: order.timeInForce,
    trade_fee: fill ? toNumber(fill.fee) : null,
    is_maker: fill ? fill.isMaker : null,
    identifier: order.identifier,
    smp_type: order.smpType,
    prevented_volume: toNumber(order.preventedVolume),
    prevented_locked: toNumber(preventedLocked(order)),
    trade_timestamp: fill ? fill.timestampMs : null,
    order_timestamp: order.createdAtMs,
    timestamp: timestampMs,
    stream_type: "REALTIME",
  };
}

const authError = {
  error: { name: "INVALID_AUTH", message: "인증 정보가 올바르지 않습니다." },
};

/** The error frame of a refused WebSocket request (§7.10). */
type WsErrorFrame = { error: { name: string; message: string } };

const wsError = (name: string, message: string): WsErrorFrame => ({ error: { name, message } });

/** Parses a §7.2 request for the private endpoint; returns the subscription or an error frame. */
export function parsePrivateRequest(text: string): SimResult<Subscription, WsErrorFrame> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, error: wsError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.") };
  }
  if (!Array.isArray(parsed) || parsed.length === 0) {
    return { ok: false, error: wsError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.") };
  }
  const objects = parsed.filter((x): x is Record<string, unknown> =>
    typeof x === "object" && x !== null && !Array.isArray(x)
  );
  if (objects.length !== parsed.length) {
    return { ok: false, error: wsError("WRONG_FORMAT", "요청 형식이 올바르지 않습니다.") };
  }
  const ticket = objects.find((o) => "ticket" in o);
  if (!ticket || typeof ticket.ticket !== "string" || ticket.ticket === "") {
    return { ok: false, error: wsError("NO_TICKET", "ticket이 없습니다.") };
  }
  const subscription: Subscription = { myOrder: undefined, myAsset: false, format: "DEFAULT" };
  let types = 0;
  for (const o of objects) {
    if ("format" in o) {
      const f = o.format;
      if (f !== "DEFAULT" && f !== "SIMPLE" && f !== "JSON_LIST" && f !== "SIMPLE_LIST") {
        return { ok: false, error: wsError("WRONG_FORMAT", "지원하지 않는 format입니다.") };
      }
      subscription.format = f;
    }
    if (!("type" in o)) continue;
    types++;
    if (o.type === "myOrder") {
      const codes = o.codes;
      if (codes === undefined || codes === null) subscription.myOrder = null;
      else if (Array.isArray(codes) && codes.every((c) => typeof c === "string")) {
        subscription.myOrder = codes.length === 0 ? null : codes.map((c) => c.toUpperCase());
      } else {return {
          ok: false,
          error: wsError("WRONG_FORMAT", "codes 형식이 올바르지 않습니다."),
        };}
    } else if (o.type === "myAsset") {
      // §7.2: codes are forbidden for myAsset.
      if ("codes" in o) {
        return {
          ok: false,
          error: wsError("WRONG_FORMAT", "myAsset은 codes를 지원하지 않습니다."),
        };
      }
      subscription.myAsset = true;
    } else {
      return {
        ok: false,
        error: wsError("INVALID_PARAM", `지원하지 않는 type입니다: ${String(o.type)}`),
      };
    }
  }
  if (types === 0) return { ok: false, error: wsError("NO_TYPE", "type이 없습니다.") };
  return { ok: true, value: subscription };
}

/** Options of {@linkcode PrivateStreams}. */
export interface PrivateStreamsOptions {
  engine: Engine;
  auth: Authenticator;
  /** Seeded stream for asset uuids and malformed-frame dice. */
  random: Random;
  faults: () => Faults;
  /** Close a connection after this long without traffic either way. @default {120_000} */
  idleTimeoutMs?: number;
  /** Interval of `{"status":"UP"}` after a client's `PING`. @default {10_000} */
  statusIntervalMs?: number;
}

/** Every private WebSocket connection and the engine events fanned out to them. */
export class PrivateStreams {
  readonly #connections = new Set<Connection>();
  /** Upgraded, authorized connections not open yet. */
  readonly #pending = new Set<Connection>();
  readonly #engine: Engine;
  readonly #auth: Authenticator;
  readonly #random: Random;
  readonly #nextUuid: () => string;
  readonly #faults: () => Faults;
  readonly #idleTimeoutMs: number;
  readonly #statusIntervalMs: number;
  #unsubscribe: (() => void) | null = null;
  #closed = false;

  /** Creates the fan-out (it subscribes to the engine while a connection is open). */
  constructor(options: PrivateStreamsOptions) {
    this.#engine = options.engine;
    this.#auth = options.auth;
    this.#random = options.random;
    this.#nextUuid = uuidGenerator(options.random);
    this.#faults = options.faults;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? WS_IDLE_TIMEOUT_MS;
    this.#statusIntervalMs = options.statusIntervalMs ?? WS_STATUS_INTERVAL_MS;
  }

  /**
   * Upgrades the request. A bad or missing token is refused per `private_ws_auth_refusal`: HTTP 401
   * with the §5.2 error at the upgrade, or the INVALID_AUTH frame and a close after it. Past
   * `private_ws_max_connections` open connections of one key, the upgrade gets a 429 (inferred).
   */
  async handle(req: Request): Promise<Response> {
    // Headers are unreadable once the request is upgraded.
    const verified = await this.#auth
      .verify(req.headers.get("authorization"), undefined)
      .catch((): SimResult<never, AuthFailure> => ({
        ok: false,
        error: { status: 401, name: "jwt_verification", message: "Jwt 토큰 검증에 실패했습니다." },
      }));
    const faults = this.#faults();
    if (!verified.ok && faults.private_ws_auth_refusal === "upgrade") {
      return Response.json(
        { error: { name: verified.error.name, message: verified.error.message } },
        { status: 401 },
      );
    }
    const accessKey = verified.ok ? verified.value.accessKey : null;
    const max = faults.private_ws_max_connections;
    if (accessKey !== null && max > 0 && this.#openOf(accessKey) >= max) {
      return Response.json(
        {
          error: {
            name: "too_many_connections",
            message: `Too many private WebSocket connections for this key (at most ${max}).`,
          },
        },
        { status: 429 },
      );
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const authorized = accessKey !== null;
    const verdict = Promise.resolve(authorized);
    const connection: Connection = {
      socket,
      accessKey,
      authorized: verdict,
      subscription: null,
      myAssetQuietUntil: undefined,
      session: new WsSession({
        idleTimeoutMs: this.#idleTimeoutMs,
        statusIntervalMs: this.#statusIntervalMs,
        sendStatus: () => this.#sendStatus(connection),
        closeIdle: () => this.#drop(connection, 1000, "idle timeout"),
      }),
    };
    // Counted from the upgrade on, so that concurrent upgrades cannot pass the limit together.
    if (authorized) this.#pending.add(connection);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      this.#pending.delete(connection);
      // An upgrade that completes after close() must not start timers.
      if (this.#closed) return this.#drop(connection, 1001, "simulator closed");
      if (authorized) {
        this.#connections.add(connection);
        this.#unsubscribe ??= this.#engine.subscribe((event) => this.#onEvent(event));
        connection.session.start();
      } else {
        this.#send(socket, authError, false);
        socket.close(1008, "INVALID_AUTH");
      }
    };
    socket.onmessage = async (event) => {
      connection.session.touch();
      const text = typeof event.data === "string"
        ? event.data
        : new TextDecoder().decode(event.data as ArrayBuffer);
      if (text.trim() === "PING") {
        // A keepalive, not a request: websocket-message (§3.1) counts request messages only, so a
        // PING is never refused. It is answered now and then every statusIntervalMs (§7.9), once
        // the connection is authorized (timers run only for connections in the set).
        this.#sendStatus(connection);
        if ((await verdict) && this.#connections.has(connection)) connection.session.pinged();
        return;
      }
      if (!connection.session.admit(this.#faults().rate_limit_factor)) {
        // Past the limit the request is ignored; the connection and its subscription stay.
        return this.#sendText(socket, WS_TOO_MANY_REQUESTS_FRAME);
      }
      if (!(await verdict)) return;
      const parsed = parsePrivateRequest(text);
      if (!parsed.ok) return this.#send(socket, parsed.error, false);
      connection.subscription = parsed.value;
      if (parsed.value.myAsset && connection.myAssetQuietUntil === undefined) {
        // §7.8: the very first myAsset subscription may lag (by minutes, the docs say).
        connection.myAssetQuietUntil = Date.now() + this.#faults().my_asset_first_lag_ms;
      }
    };
    socket.onclose = () => this.#forget(connection);
    socket.onerror = () => this.#forget(connection);
    return response;
  }

  /** Open (or opening) authorized connections of `accessKey`. */
  #openOf(accessKey: string): number {
    let n = 0;
    for (const c of this.#connections) if (c.accessKey === accessKey) n++;
    for (const c of this.#pending) if (c.accessKey === accessKey) n++;
    return n;
  }

  #forget(connection: Connection): void {
    connection.session.stop();
    this.#pending.delete(connection);
    this.#connections.delete(connection);
    if (this.#connections.size === 0 && this.#unsubscribe) {
      this.#unsubscribe();
      this.#unsubscribe = null;
    }
  }

  /** Closes one connection and forgets it (its timers stop now, not at the close event). */
  #drop(connection: Connection, code: number, reason: string): void {
    this.#forget(connection);
    try {
      connection.socket.close(code, reason);
    } catch {
      // already closing
    }
  }

  #sendStatus(connection: Connection): void {
    connection.session.touch();
    this.#send(connection.socket, { status: "UP" }, false);
  }

  #send(socket: WebSocket, message: unknown, faultable = true): void {
    let text = JSON.stringify(message);
    const rate = this.#faults().malformed_frame_rate;
    if (faultable && rate > 0 && this.#random() < rate) text = text.slice(0, text.length >> 1);
    this.#sendText(socket, text);
  }

  #sendText(socket: WebSocket, text: string): void {
    if (socket.readyState !== WebSocket.OPEN) return;
    try {
      socket.send(encoder.encode(text));
    } catch (error) {
      log.warn("private frame not sent", { error: String(error) });
    }
  }

  #deliver(connection: Connection, message: Record<string, unknown>): void {
    connection.session.touch();
    const format = connection.subscription!.format;
    const shaped = format === "SIMPLE" || format === "SIMPLE_LIST" ? simplify(message) : message;
    this.#send(connection.socket, format.endsWith("_LIST") ? [shaped] : shaped);
  }

  #onEvent(event: EngineEvent): void {
    if (event.kind === "order") {
      let message: Record<string, unknown> | undefined;
      for (const connection of this.#connections) {
        const codes = connection.subscription?.myOrder;
        if (codes === undefined) continue;
        if (codes !== null && !codes.includes(event.order.market)) continue;
        message ??= myOrderMessage(event.order, event.fill, event.timestampMs);
        this.#deliver(connection, message);
      }
      return;
    }
    let message: Record<string, unknown> | undefined;
    for (const connection of this.#connections) {
      if (!connection.subscription?.myAsset) continue;
      // Within the first subscription's lag the change is not sent at all (never sent later).
      if (connection.myAssetQuietUntil !== undefined && Date.now() < connection.myAssetQuietUntil) {
        continue;
      }
      message ??= {
        type: "myAsset",
        asset_uuid: this.#nextUuid(),
        assets: [...new Set(event.currencies)].map((currency) => {
          const account = this.#engine.account(currency);
          return {
            currency,
            balance: toNumber(account.balance),
            locked: toNumber(account.locked),
          };
        }),
        asset_timestamp: event.timestampMs,
        timestamp: event.timestampMs,
        stream_type: "REALTIME",
      };
      this.#deliver(connection, message);
    }
  }

  /** Closes every connection now. */
  dropAll(): void {
    for (const connection of [...this.#connections]) {
      this.#drop(connection, 4000, "simulated disconnect");
    }
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  /** Closes every connection and stops listening. */
  close(): void {
    this.#closed = true;
    this.dropAll();
  }
}
