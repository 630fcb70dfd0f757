/**
 * @module Hostile input never crashes or corrupts: seeded fuzz of the public and private
 * WebSocket frame parsers and of the REST response parsers, through their public interfaces
 * (`UpbitPublicWs` / `UpbitPrivateWs` fed by a local WebSocket server, `UpbitRest` with its
 * `fetch` option answering fuzzed bodies). Frames are valid templates mutated by bit flips,
 * truncation, wrong types, huge strings, deep nesting, numbers past 2^53 and NaN-ish text, plus
 * frames of several MB. Every frame is counted, none makes a parser throw, every delivered value
 * satisfies what the parser promises, and ids and amounts past 2^53 / float precision stay exact.
 *
 * `FUZZ_SEED=<n>` reruns one seed (each failure message names its seed and case).
 */
import assert from "node:assert/strict";
import { z } from "zod";
import type { Logger } from "../lib/log.ts";
import {
  UpbitApiError,
  UpbitBanActiveError,
  UpbitResponseError,
  UpbitTransportError,
} from "../lib/upbit/errors.ts";
import { type PostOrderResult, UpbitRest } from "../lib/upbit/rest.ts";
import type { RateLimitGroup } from "../lib/upbit/rate_limiter.ts";
import { type TradeEvent, UpbitPublicWs } from "../lib/upbit/ws_public.ts";
import { type MyAssetEvent, type MyOrderEvent, UpbitPrivateWs } from "../lib/upbit/ws_private.ts";
import { mulberry32 } from "../lib/random.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));

/** The seeded stream of lib/random.ts with the picks the fuzz needs. */
function prng(seed: number) {
  const next = mulberry32(seed);
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof prng>;

const HUGE_STRING = "x".repeat(1 << 20);
const DEEP = "[".repeat(20_000) + "]".repeat(20_000);
const DEEP_OBJECT = '{"a":'.repeat(5_000) + "1" + "}".repeat(5_000);

/** Raw JSON text put in place of one field's value (some are not JSON at all). */
const NASTY_VALUES: readonly string[] = [
  "null",
  "true",
  "[]",
  "{}",
  '""',
  '"NaN"',
  '"Infinity"',
  '"-Infinity"',
  "NaN",
  "Infinity",
  "-0",
  "1e400",
  "-1e400",
  "1e-400",
  "9007199254740993",
  "18446744073709551617",
  "123456789012345678901234567890.123456789",
  "-1",
  "0.1",
  '"0x10"',
  '"1e5"',
  '" 1"',
  '"1.5.5"',
  '"\\u0000"',
  '"\\ud800"',
  `"${HUGE_STRING}"`,
  DEEP,
  DEEP_OBJECT,
  '{"__proto__":{"polluted":1}}',
  '"constructor"',
];

/**
 * One hostile variant of `template`: a field set to a nasty value or removed, characters flipped,
 * the text truncated, wrapped, duplicated or replaced by garbage.
 */
function mutate(rng: Rng, template: Record<string, unknown>): string {
  const keys = Object.keys(template);
  const text = JSON.stringify(template);
  switch (rng.int(9)) {
    case 0:
    case 1: { // a field gets a nasty value
      const key = rng.pick(keys);
      return JSON.stringify({ ...template, [key]: "__FUZZ__" }).replace(
        '"__FUZZ__"',
        () => rng.pick(NASTY_VALUES),
      );
    }
    case 2: { // a field is missing
      const copy = { ...template };
      delete copy[rng.pick(keys)];
      return JSON.stringify(copy);
    }
    case 3: { // bit flips in 1..8 characters
      const chars = [...text];
      for (let i = 1 + rng.int(8); i > 0; i--) {
        const at = rng.int(chars.length);
        chars[at] = String.fromCharCode(chars[at]!.charCodeAt(0) ^ (1 << rng.int(7)));
      }
      return chars.join("");
    }
    case 4: // truncated
      return text.slice(0, rng.int(text.length));
    case 5: // an array of variants, some valid
      return `[${text},${mutate(rng, template)},${text}]`;
    case 6: // a field of another type entirely
      return JSON.stringify({
        ...template,
        [rng.pick(keys)]: rng.pick([[1, 2], { x: 1 }, 5, "s"]),
      });
    case 7: // garbage
      return rng.pick([
        "",
        " ",
        "PONG",
        "null",
        "[]",
        '[null,1,"x"]',
        "{",
        "}{",
        '{"type":',
        "\u0000\u0001",
        "[".repeat(100),
      ]);
    default: // untouched: valid frames go through too
      return text;
  }
}

/** A capture logger: every line, with its level. */
function captureLogger(name: string): Logger & { lines: string[] } {
  const lines: string[] = [];
  const write = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push(
      `${level} ${msg} ${
        JSON.stringify(fields ?? {}, (_k, v) =>
          typeof v === "bigint"
            ? String(v)
            : typeof v === "string" && v.length > 200
            ? v.slice(0, 200)
            : v)
      }`,
    );
  return {
    actor: name,
    lines,
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
  };
}

/** A WebSocket server that, on a client's first message (its subscription), sends `frames`. */
function serveFrames(frames: readonly string[]): { url: string; close: () => Promise<void> } {
  const sockets: WebSocket[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    sockets.push(socket);
    let sent = false;
    socket.onmessage = () => {
      if (sent) return;
      sent = true;
      for (const frame of frames) socket.send(frame);
    };
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/websocket/v1`,
    async close() {
      for (const s of sockets) {
        try {
          s.close();
        } catch { /* gone */ }
      }
      await server.shutdown();
    },
  };
}

async function until(what: () => string, check: () => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `ws` and waits until it received every frame; none may have broken the connection or
 * made the parser (or a callback) throw. Answers its stats and a context for failure messages.
 */
async function receiveAll<S extends { received: number; reconnects: number }>(
  ws: { start(): void; stats(): S },
  frames: string[],
  log: { lines: string[] },
): Promise<{ stats: S; context: string }> {
  ws.start();
  await until(
    () => `seed ${SEED}: ${ws.stats().received} of ${frames.length} frames`,
    () => ws.stats().received >= frames.length,
  );
  const stats = ws.stats();
  const context = `seed ${SEED}, stats ${JSON.stringify(stats)}`;
  assert.equal(stats.received, frames.length, context);
  assert.equal(stats.reconnects, 0, `no frame broke the connection; ${context}`);
  assert.deepEqual(
    log.lines.filter((l) => l.startsWith("error")),
    [],
    `no frame made the parser (or a callback) throw; ${context}`,
  );
  return { stats, context };
}

const finite = z.number().finite();

/** What `UpbitPublicWs` promises about each trade it delivers. */
const TradeEventOut = z.strictObject({
  type: z.literal("trade"),
  market: z.string(),
  price: finite,
  volume: finite,
  side: z.enum(["ASK", "BID"]),
  timestampMs: finite,
  sequentialId: z.bigint().nonnegative(),
  streamType: z.enum(["SNAPSHOT", "REALTIME", "BACKFILL"]),
});

const DECIMAL = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;
const dec = z.string().regex(DECIMAL);

/** What `UpbitPrivateWs` promises about each order event: amounts are exact decimal strings. */
const MyOrderEventOut = z.object({
  type: z.literal("myOrder"),
  market: z.string(),
  uuid: z.string(),
  side: z.enum(["bid", "ask"]),
  state: z.enum(["wait", "watch", "trade", "done", "cancel", "prevented"]),
  price: dec.nullable(),
  avgPrice: dec.nullable(),
  volume: dec.nullable(),
  remainingVolume: dec.nullable(),
  executedVolume: dec,
  tradesCount: z.number().int(),
  paidFee: dec.nullable(),
  executedFunds: dec.nullable(),
  identifier: z.string().nullable(),
  timestampMs: finite,
});

const MyAssetEventOut = z.object({
  type: z.literal("myAsset"),
  assets: z.array(z.object({ currency: z.string(), balance: dec, locked: dec })),
  timestampMs: finite,
});

function tradeTemplate(rng: Rng, i: number): Record<string, unknown> {
  return {
    type: "trade",
    code: rng.pick(["KRW-BTC", "KRW-ETH"]),
    trade_price: 100_000_000 + rng.int(1000) * 1000,
    trade_volume: rng.int(10_000) / 1e6,
    ask_bid: rng.pick(["ASK", "BID"]),
    trade_timestamp: 1_764_000_000_000 + i,
    sequential_id: 1_764_000_000_000_000 + i,
    stream_type: "REALTIME",
  };
}

function publicTemplates(rng: Rng, i: number): Record<string, unknown> {
  const code = rng.pick(["KRW-BTC", "KRW-ETH"]);
  return rng.pick([
    tradeTemplate(rng, i),
    {
      type: "ticker",
      code,
      trade_price: 1000,
      opening_price: 990,
      high_price: 1010,
      low_price: 980,
      prev_closing_price: 995,
      change: "RISE",
      signed_change_rate: 0.005,
      acc_trade_price_24h: 1e12,
      acc_trade_volume_24h: 1e4,
      timestamp: 1_764_000_000_000 + i,
      stream_type: "REALTIME",
    },
    {
      type: "orderbook",
      code,
      total_ask_size: 1.5,
      total_bid_size: 2.5,
      orderbook_units: [{ ask_price: 1001, bid_price: 999, ask_size: 0.5, bid_size: 0.7 }],
      timestamp: 1_764_000_000_000 + i,
      stream_type: "SNAPSHOT",
    },
    {
      type: "candle.1s",
      code,
      candle_date_time_utc: "2026-12-01T00:00:01",
      opening_price: 1,
      high_price: 2,
      low_price: 0.5,
      trade_price: 1.5,
      candle_acc_trade_volume: 3,
      candle_acc_trade_price: 4.5,
      timestamp: 1_764_000_000_000 + i,
      stream_type: "REALTIME",
    },
  ]);
}

Deno.test(`fuzz: public WebSocket frames never crash the parser or deliver an invalid trade [seed ${SEED}]`, async () => {
  const rng = prng(SEED);
  const frames: string[] = [];
  for (let i = 0; i < 4_000; i++) frames.push(mutate(rng, publicTemplates(rng, i)));
  // Ids past 2^53, sent as JSON numbers, one per market so each can be found.
  const exactIds = [2n ** 53n + 1n, 17_303_368_620_470_001n, 2n ** 63n + 7n];
  exactIds.forEach((id, k) =>
    frames.push(
      JSON.stringify({ ...tradeTemplate(rng, 0), code: `KRW-EXACT${k}`, sequential_id: "ID" })
        .replace('"ID"', String(id)),
    )
  );
  // Frames of several MB: 20,000 valid trades in one array, and 5 MB that is not JSON.
  const big = Array.from(
    { length: 20_000 },
    (_, k) => ({ ...tradeTemplate(rng, k), code: "KRW-HUGE", sequential_id: 1_000_000 + k }),
  );
  frames.push(JSON.stringify(big));
  frames.push("{" + "x".repeat(5 << 20));
  const server = serveFrames(frames);
  const log = captureLogger("fuzz-ws");
  const trades: TradeEvent[] = [];
  const ws = new UpbitPublicWs({
    url: server.url,
    trades: ["KRW-BTC", "KRW-ETH"],
    tickers: ["KRW-BTC"],
    onTrades: (batch) => trades.push(...batch),
    logger: log,
  });
  try {
    const { stats, context } = await receiveAll(ws, frames, log);
    assert.ok(stats.malformed > 100, `mutations were seen as malformed; ${context}`);
    assert.ok(stats.trades > 20_000, `valid frames still went through; ${context}`);
    for (const [i, t] of trades.entries()) {
      const check = TradeEventOut.safeParse(t);
      assert.ok(
        check.success,
        `seed ${SEED}, trade ${i}: ${JSON.stringify(t, big2s)} ${check.error}`,
      );
    }
    exactIds.forEach((id, k) => {
      const got = trades.filter((t) => t.market === `KRW-EXACT${k}`).map((t) => t.sequentialId);
      assert.deepEqual(got, [id], `seed ${SEED}: id ${id} exact`);
    });
    assert.equal(trades.filter((t) => t.market === "KRW-HUGE").length, 20_000);
  } finally {
    await ws.close();
    await server.close();
  }
});

function big2s(_key: string, v: unknown): unknown {
  return typeof v === "bigint" ? `${v}n` : typeof v === "string" && v.length > 100 ? "…" : v;
}

function privateTemplates(rng: Rng, i: number): Record<string, unknown> {
  return rng.pick([
    {
      type: "myOrder",
      code: "KRW-BTC",
      uuid: `uuid-${i}`,
      ask_bid: rng.pick(["ASK", "BID"]),
      order_type: "limit",
      state: rng.pick(["wait", "trade", "done", "cancel"]),
      trade_uuid: null,
      price: 100_000_000,
      avg_price: 100_000_000.5,
      volume: 0.0001,
      remaining_volume: 0,
      executed_volume: 0.0001,
      trades_count: 1,
      reserved_fee: 5.0,
      remaining_fee: 0,
      paid_fee: 5.0000001,
      locked: 0,
      executed_funds: 10000.5,
      trade_fee: null,
      is_maker: false,
      identifier: `paper-${i}-ENTER_LONG`,
      trade_timestamp: 1_764_000_000_000,
      order_timestamp: 1_764_000_000_000,
      timestamp: 1_764_000_000_000 + i,
    },
    {
      type: "myAsset",
      asset_uuid: `asset-${i}`,
      assets: [{ currency: "KRW", balance: 1000000.123, locked: 0 }],
      asset_timestamp: 1_764_000_000_000,
      timestamp: 1_764_000_000_000 + i,
    },
  ]);
}

Deno.test(`fuzz: private WebSocket frames never crash the parser; amounts stay exact decimals [seed ${SEED}]`, async () => {
  const rng = prng(SEED ^ 0x5a5a);
  const frames: string[] = [];
  for (let i = 0; i < 4_000; i++) frames.push(mutate(rng, privateTemplates(rng, i)));
  // An amount no float can hold, and one past 2^53, sent as JSON numbers.
  const exactOrderFrame = {
    ...privateTemplates(prng(1), 0),
    type: "myOrder",
    code: "KRW-EXACT",
    uuid: "u-exact",
    ask_bid: "BID",
    order_type: "limit",
    state: "done",
    executed_volume: "V1",
    paid_fee: "V2",
    trades_count: 1,
    timestamp: 1,
  };
  frames.push(
    JSON.stringify(exactOrderFrame)
      .replace('"V1"', "0.12345678901234567890123")
      .replace('"V2"', "9007199254740993"),
  );
  frames.push(JSON.stringify(Array.from({ length: 5_000 }, (_, k) => privateTemplates(rng, k))));
  frames.push("[" + '"y",'.repeat(1 << 20) + "1]");
  const server = serveFrames(frames);
  const log = captureLogger("fuzz-ws-private");
  const orders: MyOrderEvent[] = [];
  const assets: MyAssetEvent[] = [];
  const ws = new UpbitPrivateWs({
    url: server.url + "/private",
    accessKey: "fuzz-access",
    secretKey: "fuzz-secret",
    onOrder: (e) => orders.push(e),
    onAsset: (e) => assets.push(e),
    logger: log,
  });
  try {
    const { stats, context } = await receiveAll(ws, frames, log);
    assert.equal(stats.authFailed, false, context);
    assert.ok(stats.malformed > 100 && stats.orders > 1000 && stats.assets > 1000, context);
    for (const [i, e] of orders.entries()) {
      const check = MyOrderEventOut.safeParse(e);
      assert.ok(
        check.success,
        `seed ${SEED}, order ${i}: ${JSON.stringify(e, big2s)} ${check.error}`,
      );
    }
    for (const [i, e] of assets.entries()) {
      const check = MyAssetEventOut.safeParse(e);
      assert.ok(
        check.success,
        `seed ${SEED}, asset ${i}: ${JSON.stringify(e, big2s)} ${check.error}`,
      );
    }
    const exactOrder = orders.find((o) => o.uuid === "u-exact");
    assert.equal(exactOrder?.executedVolume, "0.12345678901234567890123");
    assert.equal(exactOrder?.paidFee, "9007199254740993");
  } finally {
    await ws.close();
    await server.close();
  }
});

const OPEN_BUDGETS = Object.fromEntries(
  [
    "market",
    "candle",
    "trade",
    "ticker",
    "orderbook",
    "default",
    "order",
    "order-test",
    "order-cancel-all",
  ].map((g) => [g, { limit: 1_000_000, windowMs: 1000 }]),
) as Record<RateLimitGroup, { limit: number; windowMs: number }>;

const TICK = {
  market: "KRW-BTC",
  trade_date_utc: "2026-12-01",
  trade_time_utc: "00:00:01",
  timestamp: 1_764_000_000_000,
  trade_price: 100_000_000,
  trade_volume: 0.001,
  prev_closing_price: 99_000_000,
  change_price: 1_000_000,
  ask_bid: "BID",
  sequential_id: 1_764_000_000_000_001,
};
const ACCOUNT = {
  currency: "KRW",
  balance: "1000000.0",
  locked: "0",
  avg_buy_price: "0",
  avg_buy_price_modified: false,
  unit_currency: "KRW",
};
const ORDER = {
  uuid: "9ca023a5-851b-4fec-9f0a-48cd83c2eaae",
  side: "bid",
  ord_type: "limit",
  price: "100000000",
  state: "wait",
  market: "KRW-BTC",
  created_at: "2026-12-01T09:00:00+09:00",
  volume: "0.0001",
  remaining_volume: "0.0001",
  reserved_fee: "5",
  remaining_fee: "5",
  paid_fee: "0",
  locked: "10005",
  executed_volume: "0",
  trades_count: 0,
  identifier: "paper-1-ENTER_LONG",
};

/** What the REST client promises: a result that still satisfies the wire schema's output. */
const TickOut = z.object({
  market: z.string(),
  timestamp: finite,
  trade_price: finite,
  trade_volume: finite,
  ask_bid: z.enum(["ASK", "BID"]),
  sequential_id: z.bigint().nonnegative(),
});
const AccountOut = z.object({
  currency: z.string(),
  balance: dec,
  locked: dec,
  avg_buy_price: dec,
});
const OrderOut = z.object({
  uuid: z.string().min(1),
  side: z.enum(["bid", "ask"]),
  state: z.enum(["wait", "watch", "done", "cancel", "prevented"]),
  price: dec.nullish(),
  volume: dec.nullish(),
  executed_volume: dec,
});

Deno.test(`fuzz: REST answers never crash the client or yield an invalid value; a garbled order answer is "unknown" [seed ${SEED}]`, async () => {
  const rng = prng(SEED ^ 0x1234);
  let body = "";
  let status = 200;
  const rest = new UpbitRest({
    baseUrl: "http://127.0.0.1:9",
    accessKey: "fuzz-access",
    secretKey: "fuzz-secret",
    maxAttempts: 1,
    rateLimiter: { budgets: OPEN_BUDGETS, marginMs: 0 },
    fetch: () => Promise.resolve(new Response(body, { status })),
    logger: captureLogger("fuzz-rest"),
  });
  const outcomes = { ok: 0, refused: 0 };
  try {
    for (let i = 0; i < 2_000; i++) {
      const kind = rng.int(4);
      const where = `seed ${SEED}, case ${i}`;
      status = rng.pick([200, 200, 200, 201, 400, 404, 500]);
      if (kind === 0) {
        body = rng.int(3) === 0 ? `[${mutate(rng, TICK)}]` : mutate(rng, TICK);
        if (rng.int(10) === 0) {
          body = `[${Array.from({ length: 10_000 }, () => JSON.stringify(TICK)).join(",")}]`;
        }
      } else if (kind === 1) body = `[${mutate(rng, ACCOUNT)}]`;
      else body = mutate(rng, ORDER);
      try {
        if (kind === 0) {
          const { data } = await rest.getTradesTicks({ market: "KRW-BTC" });
          for (const t of data) {
            assert.ok(TickOut.safeParse(t).success, `${where}: ${body.slice(0, 300)}`);
          }
        } else if (kind === 1) {
          const { data } = await rest.getAccounts();
          for (const a of data) {
            assert.ok(AccountOut.safeParse(a).success, `${where}: ${body.slice(0, 300)}`);
          }
        } else if (kind === 2) {
          const { data } = await rest.getOrder({ uuid: ORDER.uuid });
          assert.ok(OrderOut.safeParse(data).success, `${where}: ${body.slice(0, 300)}`);
        } else {
          const result: PostOrderResult = await rest.postOrder({
            market: "KRW-BTC",
            side: "bid",
            ord_type: "limit",
            price: "100000000",
            volume: "0.0001",
            identifier: `fuzz-${i}`,
          });
          if (status < 300) {
            // A 2xx means the order may exist: never "rejected", whatever the body.
            assert.notEqual(result.kind, "rejected", `${where}: ${body.slice(0, 300)}`);
          }
          if (status >= 500) assert.equal(result.kind, "unknown", where);
          if (result.kind === "accepted") {
            assert.ok(OrderOut.safeParse(result.order).success, `${where}: ${body.slice(0, 300)}`);
          }
        }
        outcomes.ok++;
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(
          err instanceof UpbitResponseError || err instanceof UpbitApiError ||
            err instanceof UpbitTransportError || err instanceof UpbitBanActiveError,
          `${where}: ${String(err)} for ${body.slice(0, 300)}`,
        );
        if (status < 300) assert.ok(err instanceof UpbitResponseError, `${where}: ${String(err)}`);
        outcomes.refused++;
      }
    }
    assert.ok(outcomes.ok > 200 && outcomes.refused > 200, JSON.stringify(outcomes));
    // A sequential_id past 2^53 stays exact through REST.
    status = 200;
    body = JSON.stringify([TICK]).replace(
      String(TICK.sequential_id),
      "17640000000000000001",
    );
    const { data } = await rest.getTradesTicks({ market: "KRW-BTC" });
    assert.equal(data[0]?.sequential_id, 17_640_000_000_000_000_001n);
  } finally {
    rest.close();
  }
});
