/**
 * @module The exchange half of the Upbit simulator: authenticated REST (§2, §4), the order engine
 * and the private WebSocket (§7.8). The server composition (`sim/server.ts`) routes requests here
 * and applies rate limits and faults other than `offline_markets` around {@linkcode ExchangeHandler}.
 *
 * @example Usage
 * ```ts ignore
 * const exchange = createExchange({ market, accessKey, secretKey, krw: 10_000_000, seed: 1, faults });
 * if (exchange.handles(req.method, new URL(req.url).pathname)) return exchange.handle(req);
 * ```
 */
import { Authenticator, hashedBodyString, hashedQueryString, isAuthFailure } from "./_auth.ts";
import { type Dec, formatDec, ZERO } from "./_decimal.ts";
import {
  type ApiError,
  Engine,
  FEE_RATE_TEXT,
  isApiError,
  lockedOf,
  type Order,
  remainingVolume,
} from "./_engine.ts";
import { createLogger } from "../lib/log.ts";
import { countedUuids, mulberry32 } from "./_ids.ts";
import { loadState, saveState } from "./_state_file.ts";
import { accountJson, kstTime, orderJson } from "./_order_json.ts";
import { maxTotal, minTotal } from "./_price_rules.ts";
import { PrivateStreams } from "./_private_ws.ts";
import type { ExchangeHandler, ExchangeOptions } from "./contract.ts";

type Query = URLSearchParams;
type Body = Record<string, unknown>;
type Route = (query: Query, body: Body) => Response;

const log = createLogger("sim.exchange");
const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };
const DAY_MS = 24 * 3600 * 1000;

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: JSON_HEADERS });
}

/** The exchange error envelope of §5.1. */
function errorResponse(error: ApiError): Response {
  return json({ error: { name: error.name, message: error.message } }, error.status);
}

const apiError = (status: number, name: string, message: string): ApiError => ({
  status,
  name,
  message,
});

const invalid = (message: string) => apiError(400, "invalid_parameter", message);
const missing = (message: string) => apiError(400, "validation_error", message);
const notFound = () => apiError(404, "order_not_found", "주문을 찾지 못했습니다.");

/** Sort by creation time (then uuid, for equal times), `desc` by default. */
function sortOrders(orders: Order[], orderBy: string | null): Order[] | ApiError {
  if (orderBy !== null && orderBy !== "asc" && orderBy !== "desc") {
    return invalid("order_by는 asc 또는 desc여야 합니다.");
  }
  const sign = orderBy === "asc" ? 1 : -1;
  const position = new Map(orders.map((o, i) => [o.uuid, i]));
  return [...orders].sort((a, b) =>
    sign * (a.createdAtMs - b.createdAtMs || position.get(a.uuid)! - position.get(b.uuid)!)
  );
}

function intParam(
  query: Query,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number | ApiError {
  const raw = query.get(name);
  if (raw === null || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) return invalid(`${name} 값이 올바르지 않습니다.`);
  return n;
}

/** `start_time` / `end_time`: ISO-8601 with offset (a raw `+` arrives as a space) or ms. */
function timeParam(query: Query, name: string): number | null | ApiError {
  const raw = query.get(name);
  if (raw === null || raw === "") return null;
  if (/^\d+$/.test(raw)) return Number(raw);
  const ms = Date.parse(raw.replace(" ", "+"));
  return Number.isNaN(ms) ? invalid(`${name} 값이 올바르지 않습니다.`) : ms;
}

/** `state` or `states[]` (exclusive), each within `allowed`. */
function statesParam(query: Query, allowed: string[], fallback: string[]): string[] | ApiError {
  const state = query.get("state");
  const states = query.getAll("states[]");
  if (state !== null && states.length > 0) {
    return invalid("state와 states[]는 함께 사용할 수 없습니다.");
  }
  const chosen = state !== null ? [state] : states.length > 0 ? states : fallback;
  for (const s of chosen) if (!allowed.includes(s)) return invalid(`잘못된 state: ${s}`);
  return chosen;
}

const BID_TYPES = ["best_fok", "best_ioc", "limit", "limit_fok", "limit_ioc", "price"];
const ASK_TYPES = ["best_fok", "best_ioc", "limit", "limit_fok", "limit_ioc", "market"];

/** Creates the exchange half of the simulator. */
export function createExchange(options: ExchangeOptions): ExchangeHandler {
  const auth = new Authenticator(new Map([[options.accessKey, options.secretKey]]));
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

  const findOrder = (query: Query): Order | ApiError => {
    const uuid = query.get("uuid");
    const identifier = query.get("identifier");
    if (!uuid && !identifier) return missing("uuid 또는 identifier가 필요합니다.");
    const order = uuid ? engine.byUuid(uuid) : engine.byIdentifier(identifier!);
    return order ?? notFound();
  };

  /** `uuids[]` xor `identifiers[]`, at most `max`. */
  const idList = (query: Query, max: number) => {
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
    return { byUuid, ids };
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

  // Keys are valid one year (§2.4); tests set a nearer expiry.
  const apiKeyExpireAtMs = options.apiKeyExpireAtMs ?? Date.now() + 365 * DAY_MS;

  const routes: Record<string, Route> = {
    "GET /v1/accounts": () => json(engine.accounts().map(accountJson)),

    // The account's keys: the simulator has one.
    "GET /v1/api_keys": () =>
      json([{ access_key: options.accessKey, expire_at: kstTime(apiKeyExpireAtMs) }]),

    "GET /v1/orders/chance": (query) => {
      const market = query.get("market");
      if (!market) return errorResponse(missing("market is missing"));
      if (!engine.hasMarket(market)) {
        return errorResponse(
          apiError(400, "notfoundmarket", `다음 마켓에 없는 종목입니다: ${market}`),
        );
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
          state: engine.isOffline(market) ? "inactive" : "active",
        },
        bid_account: accountJson(engine.account(quote)),
        ask_account: accountJson(engine.account(base)),
      });
    },

    "POST /v1/orders": (_query, body) => {
      const order = engine.create(body, "real");
      return isApiError(order) ? errorResponse(order) : json(orderJson(order), 201);
    },

    "POST /v1/orders/test": (_query, body) => {
      const order = engine.create(body, "test");
      return isApiError(order) ? errorResponse(order) : json(orderJson(order), 201);
    },

    "GET /v1/order": (query) => {
      const order = findOrder(query);
      return isApiError(order) ? errorResponse(order) : json(orderJson(order, true));
    },

    "GET /v1/orders/uuids": (query) => {
      const list = idList(query, 100);
      if (isApiError(list)) return errorResponse(list);
      const market = query.get("market");
      const found = list.ids
        .map((id) => list.byUuid ? engine.byUuid(id) : engine.byIdentifier(id))
        .filter((o): o is Order => o !== undefined && (!market || o.market === market));
      const sorted = sortOrders([...new Set(found)], query.get("order_by"));
      return isApiError(sorted) ? errorResponse(sorted) : json(sorted.map((o) => orderJson(o)));
    },

    "GET /v1/orders/open": (query) => {
      const market = query.get("market");
      const states = statesParam(query, ["wait", "watch"], ["wait"]);
      if (isApiError(states)) return errorResponse(states);
      const page = intParam(query, "page", 1, 1, 1_000_000);
      if (isApiError(page)) return errorResponse(page);
      const limit = intParam(query, "limit", 100, 1, 100);
      if (isApiError(limit)) return errorResponse(limit);
      const open = engine.allOrders().filter((o) =>
        states.includes(o.state) && (!market || o.market === market)
      );
      const sorted = sortOrders(open, query.get("order_by"));
      if (isApiError(sorted)) return errorResponse(sorted);
      return json(sorted.slice((page - 1) * limit, page * limit).map((o) => orderJson(o)));
    },

    "GET /v1/orders/closed": (query) => {
      const market = query.get("market");
      // `prevented` (SMP, since 2026-11-09) only when asked for: §4.9 documents done / cancel as
      // the states of this list, so the stricter reading keeps it out of the default.
      const states = statesParam(query, ["done", "cancel", "prevented"], ["done", "cancel"]);
      if (isApiError(states)) return errorResponse(states);
      const limit = intParam(query, "limit", 100, 1, 1000);
      if (isApiError(limit)) return errorResponse(limit);
      const start = timeParam(query, "start_time");
      if (isApiError(start)) return errorResponse(start);
      const end = timeParam(query, "end_time");
      if (isApiError(end)) return errorResponse(end);
      // §4.9: the window is at most 7 days; missing bounds extend 7 days from the other one.
      const to = end ?? (start !== null ? start + 7 * DAY_MS : Date.now());
      const from = start ?? to - 7 * DAY_MS;
      if (to - from > 7 * DAY_MS || to < from) {
        return errorResponse(invalid("조회 기간은 최대 7일입니다."));
      }
      const closed = engine.allOrders().filter((o) =>
        states.includes(o.state) && (!market || o.market === market) &&
        o.createdAtMs >= from && o.createdAtMs <= to
      );
      const sorted = sortOrders(closed, query.get("order_by"));
      if (isApiError(sorted)) return errorResponse(sorted);
      return json(sorted.slice(0, limit).map((o) => orderJson(o)));
    },

    "DELETE /v1/order": (query) => {
      const order = findOrder(query);
      if (isApiError(order)) return errorResponse(order);
      const answer = engine.requestCancel(order);
      return isApiError(answer) ? errorResponse(answer) : json(orderJson(answer));
    },

    "DELETE /v1/orders/uuids": (query) => {
      const list = idList(query, 20);
      if (isApiError(list)) return errorResponse(list);
      const results = list.ids.map((id) => {
        const order = list.byUuid ? engine.byUuid(id) : engine.byIdentifier(id);
        const ok = order !== undefined && !isApiError(engine.requestCancel(order));
        return { order, id, byUuid: list.byUuid, ok };
      });
      return json(cancelResult(results));
    },

    "DELETE /v1/orders/open": (query) => {
      const side = query.get("cancel_side") ?? "all";
      if (side !== "all" && side !== "bid" && side !== "ask") {
        return errorResponse(invalid("cancel_side는 all, ask, bid 중 하나여야 합니다."));
      }
      const list = (name: string) => {
        const raw = query.get(name);
        return raw ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : null;
      };
      const pairs = list("pairs");
      const quotes = list("quote_currencies");
      const excluded = list("excluded_pairs") ?? [];
      if (pairs && quotes) {
        return errorResponse(invalid("pairs와 quote_currencies는 함께 사용할 수 없습니다."));
      }
      if ((pairs?.length ?? 0) > 20 || excluded.length > 20) {
        return errorResponse(invalid("pairs는 최대 20개까지 지정할 수 있습니다."));
      }
      const count = intParam(query, "count", 20, 1, 300);
      if (isApiError(count)) return errorResponse(count);
      const candidates = engine.allOrders().filter((o) =>
        o.state === "wait" && !o.cancelPending && (side === "all" || o.side === side) &&
        (!pairs || pairs.includes(o.market)) && (!quotes || quotes.includes(o.quote)) &&
        !excluded.includes(o.market)
      );
      const sorted = sortOrders(candidates, query.get("order_by"));
      if (isApiError(sorted)) return errorResponse(sorted);
      const results = sorted.slice(0, count).map((order) => ({
        order,
        id: order.uuid,
        byUuid: true,
        ok: !isApiError(engine.requestCancel(order)),
      }));
      return json(cancelResult(results));
    },

    "POST /v1/orders/cancel_and_new": (_query, body) => {
      const prevUuid = body.prev_order_uuid;
      const prevIdentifier = body.prev_order_identifier;
      if (typeof prevUuid !== "string" && typeof prevIdentifier !== "string") {
        return errorResponse(missing("prev_order_uuid 또는 prev_order_identifier가 필요합니다."));
      }
      const prev = typeof prevUuid === "string"
        ? engine.byUuid(prevUuid)
        : engine.byIdentifier(prevIdentifier as string);
      if (!prev) return errorResponse(notFound());
      const newIdentifier = body.new_identifier ?? null;
      if (newIdentifier !== null && newIdentifier === prev.identifier) {
        return errorResponse(invalid("new_identifier는 이전 주문의 identifier와 달라야 합니다."));
      }
      let newVolume = body.new_volume ?? null;
      if (newVolume === "remain_only") {
        if (prev.volume === null) {
          return errorResponse(invalid("remain_only를 사용할 수 없는 주문입니다."));
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
      if (isApiError(request)) return errorResponse(request);
      const newUuid = engine.newUuid();
      const answer = engine.requestCancel(prev, () => {
        // §4.13: the new order is placed only once the cancel completed.
        if (prev.state === "cancel") engine.place(request, newUuid);
      });
      if (isApiError(answer)) return errorResponse(answer);
      return json(
        { ...orderJson(answer), new_order_uuid: newUuid, new_order_identifier: newIdentifier },
        201,
      );
    },
  };

  const routeKey = (method: string, pathname: string) => `${method.toUpperCase()} ${pathname}`;

  return {
    handles(method, pathname) {
      return routeKey(method, pathname) in routes;
    },

    rateLimitGroup(method, pathname) {
      switch (routeKey(method, pathname)) {
        case "POST /v1/orders":
        case "POST /v1/orders/cancel_and_new":
          return "order";
        case "POST /v1/orders/test":
          return "order-test";
        case "DELETE /v1/orders/open":
          return "order-cancel-all";
        default:
          return "default";
      }
    },

    async handle(req, fault) {
      const url = new URL(req.url);
      const route = routes[routeKey(req.method, url.pathname)];
      if (!route) return errorResponse(apiError(404, "not_found", "Not Found"));
      const text = req.body ? await req.text() : "";
      let body: Body = {};
      let hashed: string | null;
      if (req.method === "POST") {
        const type = req.headers.get("content-type") ?? "";
        if (/x-www-form-urlencoded|multipart\/form-data/i.test(type)) {
          return errorResponse(
            invalid("JSON 형식의 요청만 지원합니다. (Content-Type: application/json)"),
          );
        }
        if (text.trim() !== "") {
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            return errorResponse(invalid("요청 본문이 올바른 JSON이 아닙니다."));
          }
          if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
            return errorResponse(invalid("요청 본문은 JSON 객체여야 합니다."));
          }
          body = parsed as Body;
        }
        hashed = hashedBodyString(body);
      } else {
        if (req.method === "DELETE" && text !== "") {
          return errorResponse(
            apiError(
              400,
              "QUERY_PARAMETER_NOT_SUPPORTED",
              "DELETE 요청은 쿼리 파라미터만 지원합니다.",
            ),
          );
        }
        hashed = hashedQueryString(url);
      }
      const verified = await auth.verify(req.headers.get("authorization"), hashed);
      if (isAuthFailure(verified)) return errorResponse(verified);
      const response = answer(req.method, url, body, fault);
      // Let a cancel accepted by this request complete (a microtask, see requestCancel), then
      // persist before answering.
      await null;
      persist();
      return response;
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

    dropWebSockets() {
      streams.dropAll();
    },

    close() {
      streams.close();
      engine.close();
      persist();
    },
  };

  function answer(method: string, url: URL, body: Body, fault?: "burn" | "reserved"): Response {
    const route = routes[routeKey(method, url.pathname)]!;
    if (fault === "reserved" && routeKey(method, url.pathname) === "POST /v1/orders") {
      const order = engine.create(body, "real", true);
      return isApiError(order) ? errorResponse(order) : json(orderJson(order), 201);
    }
    if (fault === "burn") {
      const key = routeKey(method, url.pathname);
      const identifier = key === "POST /v1/orders"
        ? body.identifier
        : key === "POST /v1/orders/cancel_and_new"
        ? body.new_identifier
        : undefined;
      if (typeof identifier === "string") engine.burnIdentifier(identifier);
      return errorResponse(apiError(500, "server_error", "Simulated server error."));
    }
    return route(url.searchParams, body);
  }
}
