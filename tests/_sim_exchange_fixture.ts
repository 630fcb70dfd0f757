/**
 * @module Test fixtures for the exchange half of the simulator: a deterministic fake MarketView
 * (books and trades set by the test), a JWT signer written from §2, and request builders.
 */
import assert from "node:assert/strict";
import type { BookLevel, ExchangeHandler, ListingState, MarketView } from "../sim/contract.ts";
import type { Faults, SimTrade } from "../sim/mod.ts";
import { createExchange } from "../sim/exchange.ts";
import { NO_FAULTS as SIM_NO_FAULTS } from "../sim/faults.ts";

export const ACCESS_KEY = "test-access-key";
export const SECRET_KEY = "test-secret-key";

/** A market whose books, last prices and trades are set by the test. */
export class FakeMarket implements MarketView {
  readonly books = new Map<string, { asks: BookLevel[]; bids: BookLevel[] }>();
  readonly last = new Map<string, number>();
  /** Listing states set by the test (ACTIVE when absent). */
  readonly states = new Map<string, ListingState>();
  readonly #listeners = new Set<(trade: SimTrade) => void>();
  #sequence = 1;

  constructor(readonly codes: string[] = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-USDT"]) {}

  markets(): string[] {
    return this.codes;
  }

  book(market: string) {
    return this.books.get(market) ?? { asks: [], bids: [] };
  }

  lastPrice(market: string): number {
    return this.last.get(market) ?? 0;
  }

  listingState(market: string): ListingState {
    return this.states.get(market) ?? "ACTIVE";
  }

  onTrade(listener: (trade: SimTrade) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Sets a book (levels best first) and the last price (default: best bid). */
  setBook(market: string, asks: [number, number][], bids: [number, number][], last?: number) {
    this.books.set(market, {
      asks: asks.map(([price, size]) => ({ price, size })),
      bids: bids.map(([price, size]) => ({ price, size })),
    });
    this.last.set(market, last ?? bids[0]?.[0] ?? asks[0]?.[0] ?? 0);
  }

  /** Prints a trade to every listener. */
  print(market: string, price: number, volume: number, side: "ASK" | "BID" = "ASK"): SimTrade {
    const trade: SimTrade = {
      market,
      price,
      volume,
      side,
      timestampMs: 1_760_000_000_000 + this.#sequence,
      sequentialId: BigInt(this.#sequence++),
    };
    this.last.set(market, price);
    for (const listener of this.#listeners) listener(trade);
    return trade;
  }
}

export const NO_FAULTS: Faults = { ...SIM_NO_FAULTS, offline_markets: [] };

/** A fresh exchange over a fake market with 10,000,000 KRW (and `balances`: coins by market). */
export function makeExchange(
  options: {
    krw?: number;
    faults?: Partial<Faults>;
    market?: FakeMarket;
    seed?: number;
    balances?: Record<string, string>;
    apiKeyExpireAtMs?: number;
  } = {},
): { exchange: ExchangeHandler; market: FakeMarket; faults: Faults } {
  const market = options.market ?? new FakeMarket();
  const faults = { ...NO_FAULTS, ...options.faults };
  const exchange = createExchange({
    market,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    krw: options.krw ?? 10_000_000,
    seed: options.seed ?? 1,
    balances: options.balances,
    apiKeyExpireAtMs: options.apiKeyExpireAtMs,
    faults: () => faults,
  });
  return { exchange, market, faults };
}

const encoder = new TextEncoder();

function base64Url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const b of data) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Lowercase hex SHA-512. */
export async function sha512(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-512", encoder.encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Signs a JWT the way §2.1 describes. */
export async function signJwt(
  payload: Record<string, unknown>,
  options: { alg?: "HS256" | "HS512"; secret?: string } = {},
): Promise<string> {
  const alg = options.alg ?? "HS512";
  const head = base64Url(JSON.stringify({ alg, typ: "JWT" }));
  const body = base64Url(JSON.stringify(payload));
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(options.secret ?? SECRET_KEY),
    { name: "HMAC", hash: alg === "HS256" ? "SHA-256" : "SHA-512" },
    false,
    ["sign"],
  );
  const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(`${head}.${body}`));
  return `${head}.${body}.${base64Url(new Uint8Array(signature))}`;
}

/**
 * A client: signs each request with a fresh nonce and sends it to the handler, or over HTTP when
 * given a simulator's REST URL.
 */
/** The body of a KRW-BTC limit buy of `volume` at `price` (with `extra` fields on top). */
export function limitBid(
  price: string,
  volume: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { market: "KRW-BTC", side: "bid", volume, price, ord_type: "limit", ...extra };
}

export class Client {
  readonly base: string;
  readonly #send: (req: Request) => Promise<Response>;

  constructor(
    target: ExchangeHandler | string,
    readonly keys: { accessKey: string; secretKey: string } = {
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
    },
  ) {
    if (typeof target === "string") {
      this.base = target;
      this.#send = (req) => fetch(req);
    } else {
      this.base = "http://sim.test";
      this.#send = (req) => target.handle(req);
    }
  }

  async token(hashed: string | null): Promise<string> {
    const payload: Record<string, unknown> = {
      access_key: this.keys.accessKey,
      nonce: crypto.randomUUID(),
    };
    if (hashed !== null) {
      payload.query_hash = await sha512(hashed);
      payload.query_hash_alg = "SHA512";
    }
    return await signJwt(payload, { secret: this.keys.secretKey });
  }

  /** GET / DELETE with `query` pairs sent in order (brackets raw, values encoded). */
  async query(
    method: "GET" | "DELETE",
    path: string,
    pairs: [string, string][] = [],
  ): Promise<Response> {
    const hashed = pairs.map(([k, v]) => `${k}=${v}`).join("&");
    const wire = pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
    const url = `${this.base}${path}${wire ? "?" + wire : ""}`;
    const token = await this.token(hashed === "" ? null : hashed);
    return await this.#send(
      new Request(url, { method, headers: { authorization: `Bearer ${token}` } }),
    );
  }

  /** JSON POST; the hash follows the body's key order. */
  async post(path: string, body: Record<string, unknown>): Promise<Response> {
    const hashed = Object.entries(body).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`)
      .join("&");
    const token = await this.token(hashed === "" ? null : hashed);
    return await this.#send(
      new Request(`${this.base}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    );
  }

  async json<T = Record<string, unknown>>(res: Promise<Response>): Promise<[number, T]> {
    const r = await res;
    return [r.status, await r.json() as T];
  }

  getJson<T = Record<string, unknown>>(path: string, pairs: [string, string][] = []) {
    return this.json<T>(this.query("GET", path, pairs));
  }

  deleteJson<T = Record<string, unknown>>(path: string, pairs: [string, string][] = []) {
    return this.json<T>(this.query("DELETE", path, pairs));
  }

  postJson<T = Record<string, unknown>>(path: string, body: Record<string, unknown>) {
    return this.json<T>(this.post(path, body));
  }

  /**
   * The order as `GET /v1/orders/uuids` lists it: the list endpoints carry `executed_funds`, which
   * the single-order answers leave out (§4.5).
   */
  async listed(uuid: unknown): Promise<Record<string, unknown>> {
    const [status, list] = await this.getJson<Record<string, unknown>[]>("/v1/orders/uuids", [
      ["uuids[]", uuid as string],
    ]);
    assert.equal(status, 200);
    assert.equal(list.length, 1, `order ${uuid} listed`);
    return list[0]!;
  }

  /** Current account of `currency` as decimal strings (zeros when absent). */
  async account(currency: string): Promise<{ balance: string; locked: string; avg: string }> {
    const [, list] = await this.getJson<Record<string, string>[]>("/v1/accounts");
    const a = list.find((x) => x.currency === currency);
    return { balance: a?.balance ?? "0", locked: a?.locked ?? "0", avg: a?.avg_buy_price ?? "0" };
  }
}

/** A WebSocket whose frames are queued; records whether each frame was binary. */
export class Socket {
  readonly frames: { binary: boolean; data: unknown }[] = [];
  readonly #waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  readonly ws: WebSocket;

  constructor(url: string, token?: string) {
    // Deno's WebSocket accepts request headers as a second-argument option.
    this.ws = token === undefined ? new WebSocket(url) : new WebSocket(
      url,
      { headers: { authorization: `Bearer ${token}` } } as unknown as string[],
    );
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => {
      const binary = typeof event.data !== "string";
      const text = binary ? new TextDecoder().decode(event.data as ArrayBuffer) : event.data;
      this.frames.push({ binary, data: JSON.parse(text) });
      this.#waiters.shift()?.();
    };
    this.closed = new Promise((resolve) => {
      this.ws.onclose = () => {
        resolve();
        for (const w of this.#waiters.splice(0)) w();
      };
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("socket error"));
    });
  }

  /** The next frame's JSON. */
  async next(): Promise<Record<string, unknown>> {
    while (this.frames.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("socket closed");
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    const frame = this.frames.shift()!;
    assert.equal(frame.binary, true, "server frames are binary");
    return frame.data as Record<string, unknown>;
  }

  /** Sends the request and waits until it is processed (PING answered after it). */
  async subscribe(request: unknown[]): Promise<void> {
    this.ws.send(JSON.stringify(request));
    this.ws.send("PING");
    assert.deepEqual(await this.next(), { status: "UP" });
  }

  async close(): Promise<void> {
    this.ws.close();
    await this.closed;
  }
}
