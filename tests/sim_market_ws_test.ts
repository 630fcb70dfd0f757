import assert from "node:assert/strict";
import { parseJsonExactIds } from "../lib/upbit/schemas.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";

type Msg = Record<string, unknown>;

/** A test client that records every frame (decoded) and whether it was binary. */
class Client {
  readonly socket: WebSocket;
  readonly frames: { binary: boolean; text: string }[] = [];
  readonly closed: Promise<CloseEvent>;
  #waiters: (() => void)[] = [];

  constructor(url: string) {
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    this.socket.onmessage = (ev) => {
      const binary = ev.data instanceof ArrayBuffer;
      const text = binary ? new TextDecoder().decode(ev.data as ArrayBuffer) : String(ev.data);
      this.frames.push({ binary, text });
      for (const w of this.#waiters.splice(0)) w();
    };
    this.closed = new Promise((resolve) => {
      this.socket.onclose = (ev) => {
        resolve(ev);
        for (const w of this.#waiters.splice(0)) w();
      };
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.onopen = () => resolve();
      this.socket.onerror = () => reject(new Error("websocket error"));
    });
  }

  send(value: unknown): void {
    this.socket.send(typeof value === "string" ? value : JSON.stringify(value));
  }

  /** Waits until at least `n` frames arrived (or the socket closed). */
  async waitFrames(n: number): Promise<void> {
    while (this.frames.length < n && this.socket.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Frame `i` parsed; `sequential_id` (above 2^53) exactly, as a string. */
  json(i: number): unknown {
    return parseJsonExactIds(this.frames[i]!.text);
  }

  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) {
      this.socket.close();
      await this.closed;
    }
  }
}

async function withSim(
  fn: (sim: Simulator, connect: () => Promise<Client>) => Promise<void>,
  options: SimulatorOptions = {},
): Promise<void> {
  const sim = await startSimulator({ rate: 0, seed: 2, ...options });
  const clients: Client[] = [];
  try {
    await fn(sim, async () => {
      const c = new Client(sim.wsUrl);
      clients.push(c);
      await c.opened();
      return c;
    });
  } finally {
    for (const c of clients) await c.close();
    await sim.close();
  }
}

const TRADE_FIELDS = [
  "type",
  "code",
  "timestamp",
  "trade_date",
  "trade_time",
  "trade_timestamp",
  "trade_price",
  "trade_volume",
  "ask_bid",
  "prev_closing_price",
  "change",
  "change_price",
  "sequential_id",
  "best_ask_price",
  "best_ask_size",
  "best_bid_price",
  "best_bid_size",
  "stream_type",
];

Deno.test("public WS: trade SNAPSHOT then REALTIME in binary frames with every §7.5 field", async () => {
  await withSim(async (sim, connect) => {
    const first = sim.injectTrade({
      market: "KRW-BTC",
      price: 140_000_000,
      volume: 0.1,
      side: "ASK",
    });
    const c = await connect();
    c.send([{ ticket: "t1" }, { type: "trade", codes: ["KRW-BTC"] }]);
    await c.waitFrames(1);
    const snap = c.json(0) as Msg;
    assert.deepEqual(Object.keys(snap).sort(), [...TRADE_FIELDS].sort());
    assert.equal(snap.stream_type, "SNAPSHOT");
    assert.equal(BigInt(snap.sequential_id as string), first.sequentialId);
    const live = sim.injectTrade({
      market: "KRW-BTC",
      price: 140_001_000,
      volume: 0.2,
      side: "BID",
    });
    sim.injectTrade({ market: "KRW-ETH", price: 5_000_000, volume: 1, side: "BID" }); // not subscribed
    await c.waitFrames(2);
    const rt = c.json(1) as Msg;
    assert.equal(rt.stream_type, "REALTIME");
    assert.equal(rt.type, "trade");
    assert.equal(rt.code, "KRW-BTC");
    assert.equal(rt.trade_price, 140_001_000);
    assert.equal(rt.trade_volume, 0.2);
    assert.equal(rt.ask_bid, "BID");
    assert.equal(BigInt(rt.sequential_id as string), live.sequentialId);
    assert.equal(rt.best_ask_price, 140_001_000, "a buy lifted the best ask");
    assert.equal(rt.best_bid_price, 140_000_000);
    assert.match(String(rt.trade_date), /^\d{4}-\d{2}-\d{2}$/);
    assert.match(String(rt.trade_time), /^\d{2}:\d{2}:\d{2}$/);
    assert.ok(c.frames.every((f) => f.binary), "server frames are binary (§7.3)");
  });
});

Deno.test("public WS: is_only_snapshot sends one message, is_only_realtime skips the snapshot", async () => {
  await withSim(async (sim, connect) => {
    sim.injectTrade({ market: "KRW-XRP", price: 3000, volume: 5, side: "BID" });
    const snapOnly = await connect();
    snapOnly.send([{ ticket: "a" }, {
      type: "ticker",
      codes: ["KRW-XRP"],
      is_only_snapshot: true,
    }]);
    const rtOnly = await connect();
    rtOnly.send([{ ticket: "b" }, { type: "ticker", codes: ["KRW-XRP"], is_only_realtime: true }]);
    await snapOnly.waitFrames(1);
    // Let the realtime-only subscription register before the next trade.
    rtOnly.send("PING");
    await rtOnly.waitFrames(1);
    sim.injectTrade({ market: "KRW-XRP", price: 3001, volume: 5, side: "BID" });
    await rtOnly.waitFrames(2);
    assert.equal((snapOnly.json(0) as Msg).stream_type, "SNAPSHOT");
    assert.deepEqual(rtOnly.json(0), { status: "UP" });
    const rt = rtOnly.json(1) as Msg;
    assert.equal(rt.stream_type, "REALTIME");
    assert.equal(rt.trade_price, 3001);
    // The snapshot-only client got nothing else (a PING round trip orders the check after delivery).
    snapOnly.send("PING");
    await snapOnly.waitFrames(2);
    assert.deepEqual(snapOnly.json(1), { status: "UP" });
  });
});

Deno.test("public WS: ticker carries every §7.4 field; SIMPLE abbreviates the keys", async () => {
  await withSim(async (sim, connect) => {
    sim.injectTrade({ market: "KRW-SOL", price: 250_000, volume: 1, side: "BID" });
    const c = await connect();
    c.send([{ ticket: "t" }, { type: "ticker", codes: ["KRW-SOL"] }]);
    const s = await connect();
    s.send([{ ticket: "s" }, { type: "ticker", codes: ["KRW-SOL"] }, { format: "SIMPLE" }]);
    await c.waitFrames(1);
    await s.waitFrames(1);
    const full = c.json(0) as Msg;
    const simple = s.json(0) as Msg;
    const pairs: [string, string][] = [
      ["type", "ty"],
      ["code", "cd"],
      ["opening_price", "op"],
      ["high_price", "hp"],
      ["low_price", "lp"],
      ["trade_price", "tp"],
      ["prev_closing_price", "pcp"],
      ["change", "c"],
      ["change_price", "cp"],
      ["signed_change_price", "scp"],
      ["change_rate", "cr"],
      ["signed_change_rate", "scr"],
      ["trade_volume", "tv"],
      ["acc_trade_volume", "atv"],
      ["acc_trade_volume_24h", "atv24h"],
      ["acc_trade_price", "atp"],
      ["acc_trade_price_24h", "atp24h"],
      ["trade_date", "tdt"],
      ["trade_time", "ttm"],
      ["trade_timestamp", "ttms"],
      ["ask_bid", "ab"],
      ["acc_ask_volume", "aav"],
      ["acc_bid_volume", "abv"],
      ["highest_52_week_price", "h52wp"],
      ["highest_52_week_date", "h52wdt"],
      ["lowest_52_week_price", "l52wp"],
      ["lowest_52_week_date", "l52wdt"],
      ["market_state", "ms"],
      ["is_trading_suspended", "its"],
      ["delisting_date", "dd"],
      ["market_warning", "mw"],
      ["timestamp", "tms"],
      ["stream_type", "st"],
    ];
    for (const [long, short] of pairs) {
      assert.ok(long in full, long);
      assert.ok(short in simple, short);
      // The 24 h sums move with the clock (the synthetic pre-start volume fades out).
      if (!["timestamp", "acc_trade_volume_24h", "acc_trade_price_24h"].includes(long)) {
        assert.deepEqual(simple[short], full[long], long);
      }
    }
    assert.equal(Object.keys(full).length, pairs.length);
    assert.match(String(full.trade_date), /^\d{8}$/);
    assert.match(String(full.trade_time), /^\d{6}$/);
    assert.equal(full.trade_price, 250_000);
  });
});

Deno.test("public WS: orderbook depth suffix, SIMPLE units, and a new book after each trade", async () => {
  await withSim(async (sim, connect) => {
    sim.injectTrade({ market: "KRW-ETH", price: 5_000_000, volume: 1, side: "ASK" });
    const c = await connect();
    c.send([{ ticket: "t" }, { type: "orderbook", codes: ["KRW-ETH.5"] }, { format: "SIMPLE" }]);
    await c.waitFrames(1);
    const snap = c.json(0) as Msg;
    assert.equal(snap.ty, "orderbook");
    assert.equal(snap.cd, "KRW-ETH");
    assert.equal(snap.st, "SNAPSHOT");
    assert.equal(snap.lv, 0);
    assert.equal(typeof snap.tas, "number");
    assert.equal(typeof snap.tbs, "number");
    assert.equal(typeof snap.tms, "number");
    const units = snap.obu as Msg[];
    assert.equal(units.length, 5);
    assert.deepEqual(Object.keys(units[0]!).sort(), ["ap", "as", "bp", "bs"]);
    assert.equal(units[0]!.bp, 5_000_000);
    assert.equal(units[0]!.ap, 5_001_000);
    sim.injectTrade({ market: "KRW-ETH", price: 5_010_000, volume: 1, side: "BID" });
    // The book of the first trade may still be pushed first (books are pushed on the next tick).
    const bestAsk = (i: number) => ((c.json(i) as Msg).obu as Msg[])[0]!.ap;
    let n = 2;
    await c.waitFrames(n);
    while (bestAsk(n - 1) !== 5_010_000 && n < 4) await c.waitFrames(++n);
    const rt = c.json(n - 1) as Msg;
    assert.equal(rt.st, "REALTIME");
    assert.equal((rt.obu as Msg[])[0]!.ap, 5_010_000);
  });
});

Deno.test("public WS: candle.1s snapshot and realtime carry every §7.7 field", async () => {
  await withSim(async (sim, connect) => {
    sim.injectTrade({ market: "KRW-DOGE", price: 400, volume: 100, side: "BID" });
    const c = await connect();
    c.send([{ ticket: "t" }, { type: "candle.1s", codes: ["KRW-DOGE"] }]);
    await c.waitFrames(1);
    const snap = c.json(0) as Msg;
    assert.deepEqual(
      Object.keys(snap).sort(),
      [
        "type",
        "code",
        "candle_date_time_utc",
        "candle_date_time_kst",
        "opening_price",
        "high_price",
        "low_price",
        "trade_price",
        "candle_acc_trade_volume",
        "candle_acc_trade_price",
        "timestamp",
        "stream_type",
      ].sort(),
    );
    assert.equal(snap.type, "candle.1s");
    assert.match(String(snap.candle_date_time_kst), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/);
    sim.injectTrade({ market: "KRW-DOGE", price: 401, volume: 50, side: "BID" });
    // A realtime push of the first trade may still come first (at most one per second per market).
    let n = 2;
    await c.waitFrames(n);
    while ((c.json(n - 1) as Msg).trade_price !== 401 && n < 4) await c.waitFrames(++n);
    const rt = c.json(n - 1) as Msg;
    assert.equal(rt.stream_type, "REALTIME");
    assert.equal(rt.trade_price, 401);
    assert.equal(rt.high_price, 401);
  });
});

Deno.test("public WS: JSON_LIST and SIMPLE_LIST frames are arrays; several types in one request", async () => {
  await withSim(async (sim, connect) => {
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.1, side: "BID" });
    const list = await connect();
    list.send([
      { ticket: "l" },
      { type: "trade", codes: ["KRW-BTC"] },
      { type: "ticker", codes: ["KRW-BTC"] },
      { format: "JSON_LIST" },
    ]);
    const simpleList = await connect();
    simpleList.send([{ ticket: "s" }, { type: "trade", codes: ["KRW-BTC"] }, {
      format: "SIMPLE_LIST",
    }]);
    await list.waitFrames(1);
    await simpleList.waitFrames(1);
    const first = list.json(0) as Msg[];
    assert.ok(Array.isArray(first));
    assert.deepEqual(first.map((m) => m.type).sort(), ["ticker", "trade"]);
    const simple = simpleList.json(0) as Msg[];
    assert.ok(Array.isArray(simple));
    assert.equal(simple[0]!.ty, "trade");
    assert.equal(simple[0]!.td !== undefined, true);
  });
});

Deno.test("public WS: a new request replaces the subscription set; LIST_SUBSCRIPTIONS shows it", async () => {
  await withSim(async (sim, connect) => {
    const c = await connect();
    c.send([{ ticket: "1" }, { type: "trade", codes: ["KRW-BTC"], is_only_realtime: true }]);
    c.send([{ ticket: "2" }, { type: "trade", codes: ["KRW-ETH"], is_only_realtime: true }]);
    c.send([{ ticket: "3" }, { method: "LIST_SUBSCRIPTIONS" }]);
    await c.waitFrames(1);
    assert.deepEqual(c.json(0), {
      method: "LIST_SUBSCRIPTIONS",
      result: [{ type: "trade", codes: ["KRW-ETH"] }],
      ticket: "3",
    });
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.1, side: "BID" });
    sim.injectTrade({ market: "KRW-ETH", price: 5_000_000, volume: 1, side: "BID" });
    await c.waitFrames(2);
    assert.equal((c.json(1) as Msg).code, "KRW-ETH");
  });
});

Deno.test('public WS: PING is answered with {"status":"UP"}', async () => {
  await withSim(async (_sim, connect) => {
    const c = await connect();
    c.send("PING");
    await c.waitFrames(1);
    assert.deepEqual(c.json(0), { status: "UP" });
  });
});

Deno.test("public WS: bad requests get the §7.9 error names and the socket stays open", async () => {
  await withSim(async (_sim, connect) => {
    const c = await connect();
    const cases: [unknown, string][] = [
      ["not json", "WRONG_FORMAT"],
      [{ ticket: "x" }, "WRONG_FORMAT"],
      [[{ type: "trade", codes: ["KRW-BTC"] }], "NO_TICKET"],
      [[{ ticket: "x" }], "NO_TYPE"],
      [[{ ticket: "x" }, { type: "trade" }], "NO_CODES"],
      [[{ ticket: "x" }, { type: "trade", codes: [] }], "NO_CODES"],
      [[{ ticket: "x" }, { type: "tradez", codes: ["KRW-BTC"] }], "INVALID_PARAM"],
      [[{ ticket: "x" }, { type: "trade", codes: ["krw-btc"] }], "INVALID_PARAM"],
      [[{ ticket: "x" }, { type: "orderbook", codes: ["KRW-BTC.7"] }], "INVALID_PARAM"],
      [
        [{ ticket: "x" }, { type: "trade", codes: ["KRW-BTC"] }, { format: "XML" }],
        "INVALID_PARAM",
      ],
    ];
    for (const [i, [request, name]] of cases.entries()) {
      c.send(request);
      await c.waitFrames(i + 1);
      const body = c.json(i) as { error: { name: string; message: string } };
      assert.equal(body.error.name, name, JSON.stringify(request));
      assert.equal(typeof body.error.message, "string");
    }
    assert.equal(c.socket.readyState, WebSocket.OPEN);
    // Ten requests in a burst exceed websocket-message (5/s): the factor lifts it to 20/s.
  }, { faults: { rate_limit_factor: 4 } });
});

Deno.test("public WS: an idle connection is closed after the idle timeout", async () => {
  await withSim(async (_sim, connect) => {
    const c = await connect();
    const ev = await c.closed;
    assert.equal(ev.code, 1000);
    assert.equal(ev.reason, "idle timeout");
  }, { wsIdleTimeoutMs: 200 });
});

Deno.test("public WS: dropWebSockets closes every connection (clients can reconnect)", async () => {
  await withSim(async (sim, connect) => {
    const a = await connect();
    const b = await connect();
    sim.dropWebSockets();
    assert.equal((await a.closed).code, 4000);
    assert.equal((await b.closed).code, 4000);
    const again = await connect();
    again.send("PING");
    await again.waitFrames(1);
    assert.deepEqual(again.json(0), { status: "UP" });
  });
});

Deno.test("public WS: generated trades stream with strictly increasing sequential ids", async () => {
  await withSim(async (_sim, connect) => {
    const c = await connect();
    c.send([{ ticket: "g" }, {
      type: "trade",
      codes: ["KRW-BTC", "KRW-XRP"],
      is_only_realtime: true,
    }]);
    await c.waitFrames(40);
    const ids = c.frames.slice(0, 40).map((f) =>
      BigInt((parseJsonExactIds(f.text) as Msg).sequential_id as string)
    );
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!);
  }, { rate: 2_000 });
});
