/**
 * @module HTTP composition of the simulator: routes quotation REST, exchange REST, both WebSockets
 * and the `/_sim/` admin endpoints, and applies rate limits and faults around every `/v1` call, the
 * websocket-connect limit to WebSocket upgrades and the `Origin` throttle to both.
 */
import { type ExchangeHandler, simClockMs } from "./contract.ts";
import type { SimMarket } from "./market.ts";
import type { PublicWebSocketHub } from "./public_ws.ts";
import type { Rng } from "./_rng.ts";
import { type FaultStore, parseFaultsPatch } from "./faults.ts";
import { MarketStatusBody, marketStatusOf } from "./market_status.ts";
import { handleQuotation, quotationError, quotationGroup } from "./quotation.ts";
import { refusal, remainingReqHeader, type SimRateLimits } from "./rate_limit.ts";

/** How long a "lost" order response is held before the server gives up with a 504. */
export const LOST_RESPONSE_HOLD_MS = 30_000;

/** Parts the handler composes. */
export interface SimServerParts {
  market: SimMarket;
  exchange: ExchangeHandler;
  faults: FaultStore;
  publicWs: PublicWebSocketHub;
  limiter: SimRateLimits;
  /** Randomness of fault decisions (error_rate, lost_response_rate). */
  rng: Rng;
}

/** The composed request handler plus what must be stopped on close. */
export interface SimServer {
  handler: (req: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;
  /** Releases held responses and pending delays, stops the disconnect timer. */
  close(): void;
}

/** Paths of real order creations (not `/v1/orders/test`). */
const CREATE_PATHS = new Set(["/v1/orders", "/v1/orders/cancel_and_new"]);
const LOST_RESPONSE_PATHS = CREATE_PATHS;

/** The injected 500 of `error_rate` and the `server_error_*` faults. */
function serverError(): Response {
  return Response.json(
    { error: { name: "server_error", message: "Simulated server error." } },
    { status: 500 },
  );
}

/** The string `identifier` of a JSON create body, or null. */
function identifierOf(text: string): string | null {
  try {
    const body = JSON.parse(text) as { identifier?: unknown };
    return typeof body?.identifier === "string" ? body.identifier : null;
  } catch {
    return null;
  }
}

/** Builds the request handler of the simulator. */
export function createSimServer(parts: SimServerParts): SimServer {
  const { market, exchange, faults, publicWs, limiter, rng } = parts;
  const pending = new Set<() => void>();
  let closed = false;
  let lastDropMs = Date.now();

  // Periodic disconnects (ws_disconnect_every_sec), checked on the generator's tick.
  const stopTick = market.onTick((nowMs) => {
    const every = faults.current().ws_disconnect_every_sec;
    if (every <= 0) {
      lastDropMs = nowMs;
      return;
    }
    if (nowMs - lastDropMs >= every * 1000) {
      lastDropMs = nowMs;
      publicWs.dropAll();
      exchange.dropWebSockets();
    }
  });

  /**
   * Waits `ms`, or less when the simulator closes. (`request.signal` is not watched: in Deno.serve it
   * also fires on successful responses unless an unstable flag is set; a client that gives up simply
   * never reads the late answer.)
   */
  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (closed) return resolve();
      const done = () => {
        clearTimeout(timer);
        pending.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      pending.add(done);
    });
  }

  async function handleV1(
    req: Request,
    url: URL,
    info: Deno.ServeHandlerInfo,
    arrivedAtMs: number,
  ): Promise<Response> {
    const path = url.pathname;
    const quotation = quotationGroup(path);
    const isExchange = quotation === undefined && exchange.handles(req.method, path);
    if (quotation === undefined && !isExchange) return quotationError(404, "Not Found");
    // A quotation call carrying an Origin header (a browser) is limited to 1 per 10 s instead (§3.1).
    const group = quotation === undefined
      ? exchange.rateLimitGroup(req.method, path)
      : req.headers.has("origin")
      ? "origin"
      : quotation;
    const client = isExchange ? accessKeyOf(req) ?? remoteIp(info) : remoteIp(info);
    const f = faults.current();
    const decision = limiter.check(group, client, f.rate_limit_factor);
    if (decision.kind !== "allowed") {
      if (isExchange && req.method === "POST" && CREATE_PATHS.has(path)) {
        // §4.3: "a value is burnt even if the create request failed". Whether a create refused
        // with 429 (or 418 while banned) burns its identifier is not said [?]; the safe reading is
        // that it does: a retry under the same identifier is then refused as used. Only a request
        // the exchange can tie to the account burns: the exchange authenticates it first, so an
        // unauthenticated (401) or unparseable one burns nothing. The exchange's answer is
        // dropped: the client gets the refusal.
        const burnt = await exchange.handle(req, "refused", arrivedAtMs);
        await burnt.body?.cancel();
      }
      return refusal(decision, f.remaining_req_group_names, f.rate_refusal_format);
    }
    const header = remainingReqHeader(decision, f.remaining_req_group_names);
    if (f.latency_ms > 0) await wait(f.latency_ms);
    if (f.error_rate > 0 && rng.next() < f.error_rate) {
      // Refused before the exchange sees it: an injected 5xx never creates an order.
      return withHeader(serverError(), header);
    }
    const isCreate = isExchange && req.method === "POST" && CREATE_PATHS.has(path);
    let reserved = false;
    if (isCreate && path === "/v1/orders" && f.create_delay_ms > 0) {
      // The exchange takes the identifier when the request arrives and creates the order later,
      // whether or not the client still waits: another request under that identifier is refused
      // as used meanwhile, and a look-up finds no order until the create is processed.
      const text = await req.text();
      const identifier = identifierOf(text);
      reserved = identifier !== null && exchange.reserveIdentifier(identifier);
      await wait(f.create_delay_ms);
      req = new Request(req.url, { method: req.method, headers: req.headers, body: text });
    }
    if (
      isCreate && f.server_error_burn_rate > 0 && rng.next() < f.server_error_burn_rate
    ) {
      // §4.3: the identifier is used up although nothing was created.
      return withHeader(await exchange.handle(req, "burn", arrivedAtMs), header);
    }
    const response = isExchange
      ? await exchange.handle(req, reserved ? "reserved" : undefined, arrivedAtMs)
      : handleQuotation(req, url, market);
    if (
      isCreate && response.status === 201 && f.server_error_after_create_rate > 0 &&
      rng.next() < f.server_error_after_create_rate
    ) {
      // The order exists (and is persisted), but the answer is a 500: only a lookup by
      // identifier tells the client what happened.
      await response.body?.cancel();
      return withHeader(serverError(), header);
    }
    if (
      isExchange && req.method === "POST" && LOST_RESPONSE_PATHS.has(path) &&
      f.lost_response_rate > 0 && rng.next() < f.lost_response_rate
    ) {
      // The order exists, but the answer never arrives in time: the response is held for
      // LOST_RESPONSE_HOLD_MS (a client's timeout fires first), then a 504 stands in for a gateway
      // timeout. Either way the client cannot learn the outcome from this call.
      await response.body?.cancel();
      await wait(LOST_RESPONSE_HOLD_MS);
      return withHeader(
        Response.json(
          { error: { name: "gateway_timeout", message: "Simulated lost response." } },
          { status: 504 },
        ),
        header,
      );
    }
    return withHeader(response, header);
  }

  async function handler(req: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    // First thing: when the request arrived (`GET /_sim/receipts`).
    const arrivedAtMs = simClockMs();
    const url = new URL(req.url);
    const path = url.pathname;
    if (path === "/websocket/v1") {
      return refuseWsConnect(req, info, false) ?? publicWs.upgrade(req);
    }
    if (path === "/websocket/v1/private") {
      return refuseWsConnect(req, info, true) ?? exchange.handlePrivateWebSocket(req);
    }
    if (path.startsWith("/_sim/")) return await handleAdmin(req, path);
    if (path.startsWith("/v1/")) return await handleV1(req, url, info, arrivedAtMs);
    return quotationError(404, "Not Found");
  }

  /**
   * Counts a WebSocket connection attempt (§3.1 websocket-connect: 5/s per IP without auth, per
   * access key with auth; a public upgrade carrying Origin counts in `origin` instead, 1 per 10 s).
   * Returns the 429 / 418 refusal, or undefined to go on. Requests that are not upgrades are not
   * counted (the endpoint answers them 426).
   */
  function refuseWsConnect(
    req: Request,
    info: Deno.ServeHandlerInfo,
    isPrivate: boolean,
  ): Response | undefined {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") return undefined;
    const group = !isPrivate && req.headers.has("origin") ? "origin" : "websocket-connect";
    const key = isPrivate ? accessKeyOf(req) : undefined;
    // With a token the attempt counts per pocket (§3.1), so the pocket's ban refuses it too.
    const f = faults.current();
    const decision = limiter.check(
      group,
      key ?? remoteIp(info),
      f.rate_limit_factor,
      key !== undefined,
    );
    return decision.kind === "allowed"
      ? undefined
      : refusal(decision, "documented", f.rate_refusal_format);
  }

  async function handleAdmin(req: Request, path: string): Promise<Response> {
    if (path === "/_sim/faults" && req.method === "GET") return Response.json(faults.get());
    if (path === "/_sim/faults" && req.method === "POST") {
      let body: unknown;
      try {
        body = await req.json();
      } catch {
        return Response.json({ error: "body must be a JSON object" }, { status: 400 });
      }
      const parsed = parseFaultsPatch(body);
      if (!parsed.ok) return Response.json({ error: parsed.error }, { status: 400 });
      faults.merge(parsed.value);
      return Response.json(faults.get());
    }
    if (path === "/_sim/orders" && req.method === "GET") return Response.json(exchange.orders());
    if (path === "/_sim/receipts" && req.method === "GET") {
      return Response.json(exchange.receipts());
    }
    if (path === "/_sim/clock" && req.method === "GET") {
      return Response.json({ now_ms: simClockMs() });
    }
    if (path === "/_sim/markets") return await handleMarketStatus(req);
    return Response.json({ error: "not found" }, { status: 404 });
  }

  /**
   * `GET /_sim/markets`: every market's warning, cautions and listing state. `POST /_sim/markets`:
   * one update `{market, warning?, caution?, market_state?, delisting_date?}` or a list of them
   * (zod-validated; unknown fields and markets refused), answered with the new states.
   */
  async function handleMarketStatus(req: Request): Promise<Response> {
    const board = marketStatusOf(market);
    const all = () => Object.fromEntries(market.markets().map((m) => [m, board.get(m)]));
    if (req.method === "GET") return Response.json(all());
    if (req.method !== "POST") {
      return Response.json({ error: "method not allowed" }, { status: 405 });
    }
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return Response.json({ error: "body must be JSON" }, { status: 400 });
    }
    const parsed = MarketStatusBody.safeParse(body);
    if (!parsed.success) {
      const error = parsed.error.issues
        .map((i) => `${i.path.join(".") || "body"}: ${i.message}`)
        .join("; ");
      return Response.json({ error }, { status: 400 });
    }
    const patches = Array.isArray(parsed.data) ? parsed.data : [parsed.data];
    const unknown = patches.find((p) => !market.has(p.market));
    if (unknown) {
      return Response.json({ error: `unknown market ${unknown.market}` }, { status: 400 });
    }
    for (const patch of patches) board.apply(patch);
    return Response.json(all());
  }

  return {
    handler,
    close() {
      closed = true;
      stopTick();
      for (const release of [...pending]) release();
    },
  };
}

function withHeader(response: Response, remainingReq: string): Response {
  // The simulator's own responses have mutable headers: set the header in place rather than copy
  // the headers and wrap the body in a new Response (which turned the body into a stream).
  try {
    response.headers.set("Remaining-Req", remainingReq);
    return response;
  } catch {
    const headers = new Headers(response.headers);
    headers.set("Remaining-Req", remainingReq);
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
}

function remoteIp(info: Deno.ServeHandlerInfo): string {
  const addr = info.remoteAddr as Deno.NetAddr;
  return addr.hostname ?? "unknown";
}

/**
 * The `access_key` claim of the bearer JWT, read WITHOUT verifying it: only to pick the rate-limit
 * bucket (exchange limits count per pocket, §3.1); the exchange verifies the token itself.
 */
export function accessKeyOf(req: Request): string | undefined {
  const auth = req.headers.get("authorization");
  const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
  const payload = token?.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replaceAll("-", "+").replaceAll("_", "/"));
    const claims: unknown = JSON.parse(json);
    if (typeof claims === "object" && claims !== null && "access_key" in claims) {
      const key = (claims as { access_key: unknown }).access_key;
      return typeof key === "string" ? `key:${key}` : undefined;
    }
  } catch {
    // not a JWT: fall back to the IP
  }
  return undefined;
}
