/**
 * @module The exchange half of the Upbit simulator: authenticated REST (§2, §4), the order engine
 * and the private WebSocket (§7.8). The server composition (`sim/server.ts`) routes requests here
 * and applies rate limits and faults other than `offline_markets` around {@linkcode ExchangeHandler}.
 * Requests are routed by a Hono router built from one table of routes (method, path, rate-limit
 * group, handler).
 *
 * @example Usage
 * ```ts ignore
 * const exchange = createExchange({ market, accessKey, secretKey, krw: 10_000_000, seed: 1, faults });
 * if (exchange.handles(req.method, new URL(req.url).pathname)) return exchange.handle(req);
 * ```
 */
import { type Context, Hono } from "hono";
import { Authenticator, hashedBodyString, hashedQueryString } from "./_auth.ts";
import { type Dec, formatDec, ZERO } from "./_decimal.ts";
import { Engine, FEE_RATE_TEXT, lockedOf, type Order, remainingVolume } from "./_engine.ts";
import { createLogger } from "../lib/log.ts";
import { countedUuids, mulberry32 } from "./_ids.ts";
import { loadState, saveState } from "./_state_file.ts";
import {
  accountJson,
  kstTime,
  orderJson as orderJsonOf,
  type OrderJsonShape,
  restState,
} from "./_order_json.ts";
import { maxTotal, minTotal } from "./_price_rules.ts";
import { PrivateStreams } from "./_private_ws.ts";
import {
  type ExchangeHandler,
  type ExchangeOptions,
  MAX_RECEIPTS,
  ok,
  refused,
  type SimError,
  type SimResult,
} from "./contract.ts";

type Query = URLSearchParams;
type Body = Record<string, unknown>;

/** One authenticated REST call of the exchange. */
interface ExchangeRoute {
  method: "GET" | "POST" | "DELETE";
  path: string;
  /** Rate-limit group (§3.1). */
  group: "default" | "order" | "order-test" | "order-cancel-all";
  /** Body field naming the identifier a real create uses up (the `burn` fault). */
  burns?: "identifier" | "new_identifier";
  answer: (query: Query, body: Body) => Response;
}

/** What the router's handlers get besides the request: the fault to apply. */
type RouterEnv = {
  Bindings: { fault?: "burn" | "reserved" | "refused"; arrivedAtMs?: number };
  Variables: { body: Body; query: Query };
};

const log = createLogger("sim.exchange");
const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };
const DAY_MS = 24 * 3600 * 1000;

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: JSON_HEADERS });
}

/** The exchange error envelope of §5.1. */
function errorResponse(error: SimError): Response {
  return json({ error: { name: error.name, message: error.message } }, error.status);
}

/** The answer to a result: its value as JSON, or the error envelope. */
function answerOf<T>(result: SimResult<T>, body: (value: T) => unknown, status = 200): Response {
  return result.ok ? json(body(result.value), status) : errorResponse(result.error);
}

const invalid = (message: string) => refused(400, "invalid_parameter", message);
const missing = (message: string) => refused(400, "validation_error", message);
const notFound = () => refused(404, "order_not_found", "주문을 찾지 못했습니다.");

/** Sort by creation time (then uuid, for equal times), `desc` by default. */
function sortOrders(orders: Order[], orderBy: string | null): SimResult<Order[]> {
  if (orderBy !== null && orderBy !== "asc" && orderBy !== "desc") {
    return invalid("order_by는 asc 또는 desc여야 합니다.");
  }
  const sign = orderBy === "asc" ? 1 : -1;
  const position = new Map(orders.map((o, i) => [o.uuid, i]));
  return ok(
    [...orders].sort((a, b) =>
      sign * (a.createdAtMs - b.createdAtMs || position.get(a.uuid)! - position.get(b.uuid)!)
    ),
  );
}

function intParam(
  query: Query,
  name: string,
  fallback: number,
  min: number,
  max: number,
): SimResult<number> {
  const raw = query.get(name);
  if (raw === null || raw === "") return ok(fallback);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) return invalid(`${name} 값이 올바르지 않습니다.`);
  return ok(n);
}

/**
 * `start_time` / `end_time`: ISO-8601 with offset, or ms. A `+` sent raw arrives as a space and is
 * not turned back (§2.2: it must be sent as `%2B`), so such a time is refused.
 */
function timeParam(query: Query, name: string): SimResult<number | null> {
  const raw = query.get(name);
  if (raw === null || raw === "") return ok(null);
  if (/^\d+$/.test(raw)) return ok(Number(raw));
  const ms = Date.parse(raw);
  return Number.isNaN(ms) ? invalid(`${name} 값이 올바르지 않습니다.`) : ok(ms);
}

/** `state` or `states[]` (exclusive), each within `allowed`. */
function statesParam(query: Query, allowed: string[], fallback: string[]): SimResult<string[]> {
  const state = query.get("state");
  const states = query.getAll("states[]");
  if (state !== null && states.length > 0) {
    return invalid("state와 states[]는 함께 사용할 수 없습니다.");
  }
  const chosen = state !== null ? [state] : states.length > 0 ? states : fallback;
  for (const s of chosen) if (!allowed.includes(s)) return invalid(`잘못된 state: ${s}`);
  return ok(chosen);
}

const BID_TYPES = ["best_fok", "best_ioc", "limit", "limit_fok", "limit_ioc", "price"];
const ASK_TYPES = ["best_fok", "best_ioc", "limit", "limit_fok", "limit_ioc", "market"];

/** Creates the exchange half of the simulator. */
export function createExchange(options: ExchangeOptions): ExchangeHandler {
  // Keys are valid one year (§2.4); tests set a nearer expiry. Past it every request is refused.
  const apiKeyExpireAtMs = options.apiKeyExpireAtMs ?? Date.now() + 365 * DAY_MS;
  const auth = new Authenticator(
    new Map([[options.accessKey, { secret: options.secretKey, expireAtMs: apiKeyExpireAtMs }]]),
  );
  const statePath = options.stateFile;
  const saved = statePath === undefined ? undefined : loadState(statePath);
  // A resumed stream continues where it stopped, so uuids never repeat across restarts.
  const uuids = saved ? countedUuids(saved.uuidSeed, saved.uuidsDrawn) : countedUuids(options.seed);
  let dirty = false;
  let flushQueued = false;
  /** Writes the state file when something changed since the last write. */
  const persist = () => {
    if (statePath === undefined || !dirty) return;
    dirty = false;
    try {
      saveState(statePath, {
        ...engine.exportState(),
        uuidSeed: uuids.seed,
        uuidsDrawn: uuids.drawn(),
      });
    } catch (err) {
      dirty = true;
      throw err;
    }
  };
  const onChange = () => {
    if (statePath === undefined) return;
    dirty = true;
    if (flushQueued) return;
    flushQueued = true;
    // Changes outside a request (resting orders filled by market trades) are written in the same
    // turn of the event loop; a request's own changes are written before its answer (handle()).
    queueMicrotask(() => {
      flushQueued = false;
      try {
        persist();
      } catch (err) {
        // Left dirty: the next request retries the write and fails with a 500 if it still cannot.
        log.error(`cannot write state file ${statePath}: ${err}`);
      }
    });
  };
  const engine = new Engine({
    market: options.market,
    krw: options.krw,
    holdings: options.balances ?? {},
    delisted: options.delisted ?? {},
    faults: options.faults,
    nextUuid: uuids.next,
    restore: saved,
    onChange,
  });
  // Written at once: a path that cannot be written fails the start, not the first order.
  dirty = statePath !== undefined;
  persist();
  const streams = new PrivateStreams({
    engine,
    auth,
    random: mulberry32(options.seed ^ 0x5bd1e995),
    faults: options.faults,
    idleTimeoutMs: options.wsIdleTimeoutMs,
    statusIntervalMs: options.wsStatusIntervalMs,
  });

  /** The §4.5 object of `order`, its state as the `smp_rest_state` fault says. */
  const orderJson = (order: Order, shape: OrderJsonShape) =>
    orderJsonOf(order, shape, options.faults().smp_rest_state);

  const findOrder = (query: Query): SimResult<Order> => {
    const uuid = query.get("uuid");
    const identifier = query.get("identifier");
    if (!uuid && !identifier) return missing("uuid 또는 identifier가 필요합니다.");
    const order = uuid ? engine.byUuid(uuid) : engine.byIdentifier(identifier!);
    return order ? ok(order) : notFound();
  };

  /** `uuids[]` xor `identifiers[]`, at most `max`. */
  const idList = (query: Query, max: number): SimResult<{ byUuid: boolean; ids: string[] }> => {
    const uuids = query.getAll("uuids[]");
    const identifiers = query.getAll("identifiers[]");
    if (uuids.length > 0 && identifiers.length > 0) {
      return invalid("uuids[]와 identifiers[]는 함께 사용할 수 없습니다.");
    }
    if (uuids.length === 0 && identifiers.length === 0) {
      return missing("uuids[] 또는 identifiers[]가 필요합니다.");
    }
    const byUuid = uuids.length > 0;
    const ids = byUuid ? uuids : identifiers;
    if (ids.length > max) return invalid(`최대 ${max}개까지 요청할 수 있습니다.`);
    return ok({ byUuid, ids });
  };

  const cancelResult = (results: { order?: Order; id: string; byUuid: boolean; ok: boolean }[]) => {
    const entry = (r: (typeof results)[number]) => ({
      uuid: r.order?.uuid ?? (r.byUuid ? r.id : null),
      market: r.order?.market ?? null,
      identifier: r.order?.identifier ?? (r.byUuid ? null : r.id),
    });
    const success = results.filter((r) => r.ok).map(entry);
    const failed = results.filter((r) => !r.ok).map(entry);
    return {
      success: { count: success.length, orders: success },
      failed: { count: failed.length, orders: failed },
    };
  };

  const routes: ExchangeRoute[] = [
    {
      method: "GET",
      path: "/v1/accounts",
      group: "default",
      answer: () => json(engine.accounts().map(accountJson)),
    },
    {
      // The account's keys: the simulator has one.
      method: "GET",
      path: "/v1/api_keys",
      group: "default",
      answer: () => json([{ access_key: options.accessKey, expire_at: kstTime(apiKeyExpireAtMs) }]),
    },
    { method: "GET", path: "/v1/orders/chance", group: "default", answer: chance },
    {
      method: "POST",
      path: "/v1/orders",
      group: "order",
      burns: "identifier",
      answer: (_query, body) =>
        answerOf(engine.create(body, "real"), (o) => orderJson(o, "single"), 201),
    },
    {
      method: "POST",
      path: "/v1/orders/test",
      group: "order-test",
      answer: (_query, body) =>
        answerOf(engine.create(body, "test"), (o) => orderJson(o, "single"), 201),
    },
    {
      method: "GET",
      path: "/v1/order",
      group: "default",
      answer: (query) => answerOf(findOrder(query), (o) => orderJson(o, "detail")),
    },
    { method: "GET", path: "/v1/orders/uuids", group: "default", answer: ordersByIds },
    { method: "GET", path: "/v1/orders/open", group: "default", answer: openOrders },
    { method: "GET", path: "/v1/orders/closed", group: "default", answer: closedOrders },
    { method: "DELETE", path: "/v1/order", group: "default", answer: cancelOne },
    { method: "DELETE", path: "/v1/orders/uuids", group: "default", answer: cancelByIds },
    { method: "DELETE", path: "/v1/orders/open", group: "order-cancel-all", answer: cancelOpen },
    {
      method: "POST",
      path: "/v1/orders/cancel_and_new",
      group: "order",
      burns: "new_identifier",
      answer: cancelAndNew,
    },
  ];

  function chance(query: Query): Response {
    const market = query.get("market");
    if (!market) return errorResponse(missing("market is missing").error);
    if (!engine.hasMarket(market)) {
      return errorResponse({
        status: 400,
        name: "notfoundmarket",
        message: `다음 마켓에 없는 종목입니다: ${market}`,
      });
    }
    const [quote = "", base = ""] = market.split("-");
    const max = maxTotal(quote);
    return json({
      bid_fee: FEE_RATE_TEXT,
      ask_fee: FEE_RATE_TEXT,
      maker_bid_fee: FEE_RATE_TEXT,
      maker_ask_fee: FEE_RATE_TEXT,
      market: {
        id: market,
        name: `${base}/${quote}`,
        order_types: ["limit"],
        order_sides: ["ask", "bid"],
        bid_types: BID_TYPES,
        ask_types: ASK_TYPES,
        bid: { currency: quote, min_total: formatDec(minTotal(quote)) },
        ask: { currency: base, min_total: formatDec(minTotal(quote)) },
        max_total: max === undefined ? null : formatDec(max),
        state: chanceState(market),
      },
      bid_account: accountJson(engine.account(quote)),
      ask_account: accountJson(engine.account(base)),
    });
  }

  /**
   * §4.2 `market.state`: `active`, or (values undocumented, inferred) the listing state in lower
   * case for a market that is not ACTIVE, and `inactive` for one the faults take offline.
   */
  function chanceState(market: string): string {
    const listing = options.market.listingState(market);
    if (listing !== "ACTIVE") return listing.toLowerCase();
    return engine.isOffline(market) ? "inactive" : "active";
  }

  function ordersByIds(query: Query): Response {
    const listResult = idList(query, 100);
    if (!listResult.ok) return errorResponse(listResult.error);
    const list = listResult.value;
    const market = query.get("market");
    const found = list.ids
      .map((id) => list.byUuid ? engine.byUuid(id) : engine.byIdentifier(id))
      .filter((o): o is Order => o !== undefined && (!market || o.market === market));
    const sorted = sortOrders([...new Set(found)], query.get("order_by"));
    return answerOf(sorted, (orders) => orders.map((o) => orderJson(o, "list")));
  }

  function openOrders(query: Query): Response {
    const market = query.get("market");
    const statesResult = statesParam(query, ["wait", "watch"], ["wait"]);
    if (!statesResult.ok) return errorResponse(statesResult.error);
    const states = statesResult.value;
    const pageResult = intParam(query, "page", 1, 1, 1_000_000);
    if (!pageResult.ok) return errorResponse(pageResult.error);
    const page = pageResult.value;
    const limitResult = intParam(query, "limit", 100, 1, 100);
    if (!limitResult.ok) return errorResponse(limitResult.error);
    const limit = limitResult.value;
    const open = engine.allOrders().filter((o) =>
      states.includes(o.state) && (!market || o.market === market)
    );
    const sortedResult = sortOrders(open, query.get("order_by"));
    if (!sortedResult.ok) return errorResponse(sortedResult.error);
    const sorted = sortedResult.value;
    return json(sorted.slice((page - 1) * limit, page * limit).map((o) => orderJson(o, "list")));
  }

  function closedOrders(query: Query): Response {
    const market = query.get("market");
    // `prevented` (SMP, since 2026-11-09) only when asked for: §4.9 documents done / cancel as
    // the states of this list, so the stricter reading keeps it out of the default. Under
    // `smp_rest_state: "cancel"` such an order is listed (and filtered) as `cancel`, and
    // `prevented` is no state of this list.
    const smpRestState = options.faults().smp_rest_state;
    const statesResult = statesParam(
      query,
      smpRestState === "prevented" ? ["done", "cancel", "prevented"] : ["done", "cancel"],
      ["done", "cancel"],
    );
    if (!statesResult.ok) return errorResponse(statesResult.error);
    const states = statesResult.value;
    const limitResult = intParam(query, "limit", 100, 1, 1000);
    if (!limitResult.ok) return errorResponse(limitResult.error);
    const limit = limitResult.value;
    const startResult = timeParam(query, "start_time");
    if (!startResult.ok) return errorResponse(startResult.error);
    const start = startResult.value;
    const endResult = timeParam(query, "end_time");
    if (!endResult.ok) return errorResponse(endResult.error);
    const end = endResult.value;
    // §4.9: the window is at most 7 days; missing bounds extend 7 days from the other one.
    const to = end ?? (start !== null ? start + 7 * DAY_MS : Date.now());
    const from = start ?? to - 7 * DAY_MS;
    if (to - from > 7 * DAY_MS || to < from) {
      return errorResponse(invalid("조회 기간은 최대 7일입니다.").error);
    }
    const closed = engine.allOrders().filter((o) =>
      states.includes(restState(o, smpRestState)) && (!market || o.market === market) &&
      o.createdAtMs >= from && o.createdAtMs <= to
    );
    const sortedResult = sortOrders(closed, query.get("order_by"));
    if (!sortedResult.ok) return errorResponse(sortedResult.error);
    const sorted = sortedResult.value;
    return json(sorted.slice(0, limit).map((o) => orderJson(o, "list")));
  }

  function cancelOne(query: Query): Response {
    const orderResult = findOrder(query);
    if (!orderResult.ok) return errorResponse(orderResult.error);
    const order = orderResult.value;
    return answerOf(engine.requestCancel(order), (o) => orderJson(o, "single"));
  }

  function cancelByIds(query: Query): Response {
    const listResult = idList(query, 20);
    if (!listResult.ok) return errorResponse(listResult.error);
    const list = listResult.value;
    const results = list.ids.map((id) => {
      const order = list.byUuid ? engine.byUuid(id) : engine.byIdentifier(id);
      const ok = order !== undefined && engine.requestCancel(order).ok;
      return { order, id, byUuid: list.byUuid, ok };
    });
    return json(cancelResult(results));
  }

  function cancelOpen(query: Query): Response {
    const side = query.get("cancel_side") ?? "all";
    if (side !== "all" && side !== "bid" && side !== "ask") {
      return errorResponse(invalid("cancel_side는 all, ask, bid 중 하나여야 합니다.").error);
    }
    const list = (name: string) => {
      const raw = query.get(name);
      return raw ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : null;
    };
    const pairs = list("pairs");
    const quotes = list("quote_currencies");
    const excluded = list("excluded_pairs") ?? [];
    if (pairs && quotes) {
      return errorResponse(invalid("pairs와 quote_currencies는 함께 사용할 수 없습니다.").error);
    }
    if ((pairs?.length ?? 0) > 20 || excluded.length > 20) {
      return errorResponse(invalid("pairs는 최대 20개까지 지정할 수 있습니다.").error);
    }
    const countResult = intParam(query, "count", 20, 1, 300);
    if (!countResult.ok) return errorResponse(countResult.error);
    const count = countResult.value;
    const candidates = engine.allOrders().filter((o) =>
      o.state === "wait" && !o.cancelPending && (side === "all" || o.side === side) &&
      (!pairs || pairs.includes(o.market)) && (!quotes || quotes.includes(o.quote)) &&
      !excluded.includes(o.market)
    );
    const sortedResult = sortOrders(candidates, query.get("order_by"));
    if (!sortedResult.ok) return errorResponse(sortedResult.error);
    const sorted = sortedResult.value;
    const results = sorted.slice(0, count).map((order) => ({
      order,
      id: order.uuid,
      byUuid: true,
      ok: engine.requestCancel(order).ok,
    }));
    return json(cancelResult(results));
  }

  function cancelAndNew(_query: Query, body: Body): Response {
    const prevUuid = body.prev_order_uuid;
    const prevIdentifier = body.prev_order_identifier;
    const newIdentifier = body.new_identifier ?? null;
    // §4.3: an identifier is used up even when the create fails, refusals before it included.
    const refuse = (error: Parameters<typeof errorResponse>[0]): Response => {
      if (typeof newIdentifier === "string") engine.burnIdentifier(newIdentifier);
      return errorResponse(error);
    };
    if (typeof prevUuid !== "string" && typeof prevIdentifier !== "string") {
      return refuse(missing("prev_order_uuid 또는 prev_order_identifier가 필요합니다.").error);
    }
    const prev = typeof prevUuid === "string"
      ? engine.byUuid(prevUuid)
      : engine.byIdentifier(prevIdentifier as string);
    if (!prev) return refuse(notFound().error);
    if (newIdentifier !== null && newIdentifier === prev.identifier) {
      return refuse(invalid("new_identifier는 이전 주문의 identifier와 달라야 합니다.").error);
    }
    let newVolume = body.new_volume ?? null;
    if (newVolume === "remain_only") {
      if (prev.volume === null) {
        return refuse(invalid("remain_only를 사용할 수 없는 주문입니다.").error);
      }
      newVolume = formatDec(remainingVolume(prev));
    }
    const createBody: Body = {
      market: prev.market,
      side: prev.side,
      ord_type: body.new_ord_type,
      volume: newVolume,
      price: body.new_price ?? null,
      time_in_force: body.new_time_in_force ?? null,
      smp_type: body.new_smp_type ?? null,
      identifier: newIdentifier,
    };
    // The new order may use what the old one releases.
    const release: Dec = prev.state === "wait" && !prev.cancelPending ? lockedOf(prev) : ZERO;
    const request = engine.validate(createBody, release);
    if (typeof newIdentifier === "string") engine.burnIdentifier(newIdentifier);
    if (!request.ok) return errorResponse(request.error);
    const newUuid = engine.newUuid();
    const answer = engine.requestCancel(prev, () => {
      // §4.13: the new order is placed only once the cancel completed.
      if (prev.state === "cancel") engine.place(request.value, newUuid);
    });
    return answerOf(
      answer,
      (o) => ({
        ...orderJson(o, "single"),
        new_order_uuid: newUuid,
        new_order_identifier: newIdentifier,
      }),
      201,
    );
  }

  const routeKey = (method: string, pathname: string) => `${method.toUpperCase()} ${pathname}`;
  const byKey = new Map(routes.map((route) => [routeKey(route.method, route.path), route]));
  const router = new Hono<RouterEnv>();
  // Unknown paths never reach the exchange (`handles`); answered without authentication.
  router.notFound(() => errorResponse({ status: 404, name: "not_found", message: "Not Found" }));
  // An error (a state file that cannot be written) leaves the exchange as it did before routing.
  router.onError((err) => {
    throw err;
  });
  /** Arrival of each `POST /v1/orders` by identifier, oldest first (`receipts()`). */
  const receipts = new Map<string, number>();
  for (const route of routes) {
    router.on(route.method, route.path, authenticate, (c) => {
      const body = c.get("body");
      if (c.env?.fault === "refused") {
        // Refused by the rate limit (server.ts): authenticated, so tied to this account, and its
        // identifier is used up (§4.3); nothing else happens.
        const identifier = route.burns === undefined ? undefined : body[route.burns];
        if (typeof identifier === "string") engine.burnIdentifier(identifier);
        return errorResponse({
          status: 429,
          name: "too_many_requests",
          message: "Too many API requests.",
        });
      }
      const arrivedAtMs = c.env?.arrivedAtMs;
      if (
        route.path === "/v1/orders" && arrivedAtMs !== undefined &&
        typeof body.identifier === "string" && !receipts.has(body.identifier)
      ) {
        receipts.set(body.identifier, arrivedAtMs);
        if (receipts.size > MAX_RECEIPTS) receipts.delete(receipts.keys().next().value!);
      }
      if (c.env?.fault === "burn") {
        const identifier = route.burns === undefined ? undefined : body[route.burns];
        if (typeof identifier === "string") engine.burnIdentifier(identifier);
        return errorResponse({
          status: 500,
          name: "server_error",
          message: "Simulated server error.",
        });
      }
      if (c.env?.fault === "reserved" && route.burns === "identifier") {
        // This create took its identifier when it arrived (`create_delay_ms`): it may use it now.
        return answerOf(engine.create(body, "real", true), (o) => orderJson(o, "single"), 201);
      }
      return route.answer(c.get("query"), body);
    });
  }

  return {
    handles(method, pathname) {
      return byKey.has(routeKey(method, pathname));
    },

    rateLimitGroup(method, pathname) {
      return byKey.get(routeKey(method, pathname))?.group ?? "default";
    },

    handle(req, fault, arrivedAtMs) {
      return Promise.resolve(router.fetch(req, { fault, arrivedAtMs }));
    },

    reserveIdentifier(identifier) {
      const taken = engine.reserveIdentifier(identifier);
      if (taken) persist();
      return taken;
    },

    handlePrivateWebSocket(req) {
      return streams.handle(req);
    },

    orders() {
      return engine.summaries();
    },

    receipts() {
      return [...receipts].map(([identifier, ms]) => ({ identifier, received_at_ms: ms }));
    },

    dropWebSockets() {
      streams.dropAll();
    },

    close() {
      streams.close();
      engine.close();
      persist();
    },
  };

  /**
   * Reads the body (JSON objects only, never on DELETE), verifies the token over it (§2), runs the
   * route, then lets a cancel accepted by the request complete (a microtask, see requestCancel)
   * and persists before answering.
   */
  async function authenticate(
    c: Context<RouterEnv>,
    next: () => Promise<void>,
  ): Promise<Response | void> {
    const req = c.req.raw;
    const url = new URL(req.url);
    const text = req.body ? await req.text() : "";
    let body: Body = {};
    let hashed: string | null;
    if (req.method === "POST") {
      const type = req.headers.get("content-type") ?? "";
      if (/x-www-form-urlencoded|multipart\/form-data/i.test(type)) {
        return errorResponse(
          invalid("JSON 형식의 요청만 지원합니다. (Content-Type: application/json)").error,
        );
      }
      if (text.trim() !== "") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          return errorResponse(invalid("요청 본문이 올바른 JSON이 아닙니다.").error);
        }
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
          return errorResponse(invalid("요청 본문은 JSON 객체여야 합니다.").error);
        }
        body = parsed as Body;
      }
      hashed = hashedBodyString(body);
    } else {
      if (req.method === "DELETE" && text !== "") {
        return errorResponse({
          status: 400,
          name: "QUERY_PARAMETER_NOT_SUPPORTED",
          message: "DELETE 요청은 쿼리 파라미터만 지원합니다.",
        });
      }
      hashed = hashedQueryString(url);
    }
    const verified = await auth.verify(req.headers.get("authorization"), hashed);
    if (!verified.ok) return errorResponse(verified.error);
    c.set("body", body);
    c.set("query", url.searchParams);
    await next();
    await null;
    persist();
  }
}
