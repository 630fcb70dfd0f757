import assert from "node:assert/strict";
import {
  remainingReqHeader,
  SimRateLimits,
  WS_TOO_MANY_REQUESTS_FRAME,
  WsMessageBudget,
} from "../sim/rate_limit.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { bearer } from "./_sim_auth.ts";

type Json = Record<string, unknown>;

// ---- units ------------------------------------------------------------------------------------

Deno.test("WsMessageBudget: 5 request messages in any second; refused ones use nothing up", () => {
  let now = 1_000_000;
  const budget = new WsMessageBudget(() => now);
  const takes = (n: number) => Array.from({ length: n }, () => budget.take());
  assert.deepEqual(takes(7), [true, true, true, true, true, false, false]);
  // Sliding: 999 ms later the five still count; 1 s after them they do not.
  now += 999;
  assert.equal(budget.take(), false);
  now += 1;
  assert.deepEqual(takes(6), [true, true, true, true, true, false]);
});

Deno.test("WsMessageBudget: 100 request messages in any minute", () => {
  let now = 5_000_000;
  const budget = new WsMessageBudget(() => now);
  let accepted = 0;
  // 5 per second for 30 s: the minute limit stops it after 100.
  for (let s = 0; s < 30; s++, now += 1000) {
    for (let i = 0; i < 5; i++) if (budget.take()) accepted++;
  }
  assert.equal(accepted, 100);
  // The first second's five leave the sliding minute 60 s after they were taken.
  now = 5_000_000 + 59_999;
  assert.equal(budget.take(), false);
  now = 5_000_000 + 60_000;
  assert.deepEqual(Array.from({ length: 6 }, () => budget.take()), [
    true,
    true,
    true,
    true,
    true,
    false,
  ]);
});

Deno.test("WsMessageBudget scales with rate_limit_factor (floor, at least 1)", () => {
  const now = 0;
  const count = (factor: number, tries: number) => {
    const budget = new WsMessageBudget(() => now);
    let n = 0;
    for (let i = 0; i < tries; i++) if (budget.take(factor)) n++;
    return n;
  };
  assert.equal(count(2, 50), 10);
  assert.equal(count(0.5, 50), 2);
  assert.equal(count(0.01, 50), 1);
  let now2 = 0;
  const wide = new WsMessageBudget(() => now2);
  let accepted = 0;
  for (let s = 0; s < 30; s++, now2 += 1000) {
    for (let i = 0; i < 600; i++) if (wide.take(100)) accepted++;
  }
  assert.equal(accepted, 10_000, "500 per second, 10,000 per minute at factor 100");
});

Deno.test("SimRateLimits: websocket-connect 5/s, origin 1 per 10 s, and their Remaining-Req", () => {
  let now = 100_000;
  const limiter = new SimRateLimits(() => now);
  const kinds = (group: string, n: number, factor = 1) =>
    Array.from({ length: n }, () => limiter.check(group, "9.9.9.9", factor).kind);
  assert.deepEqual(kinds("websocket-connect", 6), [
    "allowed",
    "allowed",
    "allowed",
    "allowed",
    "allowed",
    "limited",
  ]);
  assert.deepEqual(kinds("origin", 2), ["allowed", "limited"]);
  now += 10_000; // both aged out (a refused request counts in the window too)
  assert.equal(limiter.check("origin", "9.9.9.9").kind, "allowed");
  assert.equal(
    remainingReqHeader({ kind: "allowed", group: "websocket-connect", limit: 5, remaining: 4 }),
    "group=websocket-connect; min=300; sec=4",
  );
  assert.equal(
    remainingReqHeader({ kind: "limited", group: "origin", limit: 1 }),
    "group=origin; min=6; sec=0",
  );
  assert.equal(
    remainingReqHeader({ kind: "allowed", group: "order-cancel-all", limit: 1, remaining: 0 }),
    "group=order-cancel-all; min=30; sec=0",
  );
});

Deno.test("SimRateLimits: a ban shorter than the window does not refill it (origin)", () => {
  let now = 200_000;
  const limiter = new SimRateLimits(() => now);
  const kinds = Array.from({ length: 7 }, () => limiter.check("origin", "ip").kind);
  assert.deepEqual(kinds, ["allowed", ...Array(5).fill("limited"), "banned"]);
  now += 1_000; // the 1 s ban is over, the 10 s window is not
  assert.equal(limiter.check("origin", "ip").kind, "limited");
  now = 211_000; // a window after the last request (refused ones count)
  assert.equal(limiter.check("origin", "ip").kind, "allowed");
});

// ---- over the wire ----------------------------------------------------------------------------

async function withSim(
  fn: (sim: Simulator) => Promise<void>,
  options: SimulatorOptions = {},
): Promise<void> {
  const sim = await startSimulator({ rate: 0, seed: 3, ...options });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

interface Handshake {
  status: number;
  headers: Headers;
  body: string;
}

/**
 * One WebSocket opening handshake over raw TCP, to see the HTTP status and headers a WebSocket
 * client hides. The connection is closed right after the answer.
 */
async function handshake(
  wsUrl: string,
  extraHeaders: Record<string, string> = {},
): Promise<Handshake> {
  const url = new URL(wsUrl);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  try {
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const lines = [
      `GET ${url.pathname} HTTP/1.1`,
      `Host: ${url.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`),
    ];
    await conn.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
    let text = "";
    const buf = new Uint8Array(4096);
    const decoder = new TextDecoder();
    let end = -1;
    while ((end = text.indexOf("\r\n\r\n")) < 0) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`connection closed after ${JSON.stringify(text)}`);
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    const [statusLine = "", ...headerLines] = text.slice(0, end).split("\r\n");
    const headers = new Headers();
    for (const line of headerLines) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const status = Number(statusLine.split(" ")[1]);
    let body = text.slice(end + 4);
    const length = Number(headers.get("content-length") ?? 0);
    while (status !== 101 && new TextEncoder().encode(body).length < length) {
      const n = await conn.read(buf);
      if (n === null) break;
      body += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return { status, headers, body };
  } finally {
    conn.close();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attempt` until it runs inside one fixed rate-limit window of `windowMs` (a boundary inside
 * the burst would refill the budget and make the outcome depend on timing); then checks it.
 */
async function inOneWindow<T>(
  windowMs: number,
  attempt: () => Promise<T>,
  check: (result: T) => void,
): Promise<void> {
  const untilNextWindow = () => windowMs - (Date.now() % windowMs) + 5;
  // Start with enough of the window left; after a miss, in a fresh window (the miss counted).
  if (untilNextWindow() < Math.min(windowMs / 4, 300)) await sleep(untilNextWindow());
  for (let i = 0; i < 5; i++) {
    const window = Math.floor(Date.now() / windowMs);
    const result = await attempt();
    if (Math.floor(Date.now() / windowMs) !== window) {
      await sleep(untilNextWindow());
      continue;
    }
    check(result);
    return;
  }
  assert.fail("no burst fitted in one rate-limit window in 5 attempts");
}

Deno.test("websocket-connect: the 6th public upgrade in a second is refused with 429 (per IP)", async () => {
  await withSim(async (sim) => {
    await inOneWindow(1000, async () => {
      const out: Handshake[] = [];
      for (let i = 0; i < 6; i++) out.push(await handshake(sim.wsUrl));
      return out;
    }, (results) => {
      assert.deepEqual(results.map((r) => r.status), [101, 101, 101, 101, 101, 429]);
      const refused = results[5]!;
      assert.equal(
        refused.headers.get("remaining-req"),
        "group=websocket-connect; min=300; sec=0",
      );
      // The simulator's default refusal format is plain text (rate_refusal_format).
      assert.equal(refused.body, "Too many API requests.");
    });
  });
});

Deno.test("websocket-connect: private upgrades count per access key, apart from the IP", async () => {
  await withSim(async (sim) => {
    const privateUrl = `${sim.wsUrl}/private`;
    await inOneWindow(1000, async () => {
      // The keys need not be valid: the limit is applied before authentication, like REST.
      const tag = crypto.randomUUID();
      const a = async () => ({ authorization: await bearer(`a-${tag}`, "s") });
      const out: number[] = [];
      for (let i = 0; i < 6; i++) out.push((await handshake(privateUrl, await a())).status);
      out.push(
        (await handshake(privateUrl, { authorization: await bearer(`b-${tag}`, "s") })).status,
      );
      // The IP bucket (connections without auth) is untouched by the keyed ones.
      out.push((await handshake(sim.wsUrl)).status);
      return out;
    }, (statuses) => {
      // Bad keys are refused at the upgrade (401), but only after the count: the 6th is a 429.
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 401, 101]);
    });
  });
});

Deno.test("a quotation REST ban refuses public WebSocket upgrades with 418", async () => {
  await withSim(async (sim) => {
    let status = 0;
    for (let i = 0; i < 100 && status !== 418; i++) {
      const res = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
      status = res.status;
      await res.body?.cancel();
    }
    assert.equal(status, 418, "banned within 100 requests");
    const refused = await handshake(sim.wsUrl);
    assert.equal(refused.status, 418);
    assert.match(refused.headers.get("remaining-req") ?? "", /^group=websocket-connect; /);
  });
});

Deno.test("a ban drawn by public WebSocket upgrades refuses the IP's quotation REST with 418", async () => {
  await withSim(async (sim) => {
    let status = 0;
    for (let i = 0; i < 100 && status !== 418; i++) status = (await handshake(sim.wsUrl)).status;
    assert.equal(status, 418, "banned within 100 upgrades");
    const res = await fetch(`${sim.restUrl}/v1/candles/seconds?market=KRW-BTC`);
    await res.body?.cancel();
    assert.equal(res.status, 418);
  });
});

Deno.test("websocket-connect is scaled by rate_limit_factor", async () => {
  await withSim(async (sim) => {
    await inOneWindow(1000, async () => {
      const out: number[] = [];
      for (let i = 0; i < 3; i++) out.push((await handshake(sim.wsUrl)).status);
      return out;
    }, (statuses) => assert.deepEqual(statuses, [101, 101, 429]));
  }, { faults: { rate_limit_factor: 0.4 } });
});

/** A WebSocket client that keeps every frame as JSON. */
class Client {
  readonly ws: WebSocket;
  readonly frames: Json[] = [];
  readonly closed: Promise<CloseEvent>;
  #wake: (() => void)[] = [];

  constructor(url: string, authorization?: string) {
    this.ws = authorization === undefined
      ? new WebSocket(url)
      // Deno's WebSocket takes request headers in its second argument.
      : new WebSocket(url, { headers: { authorization } } as unknown as string[]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (ev) => {
      const text = typeof ev.data === "string"
        ? ev.data
        : new TextDecoder().decode(ev.data as ArrayBuffer);
      this.frames.push(JSON.parse(text));
      for (const w of this.#wake.splice(0)) w();
    };
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (ev) => {
        resolve(ev);
        for (const w of this.#wake.splice(0)) w();
      };
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("websocket error"));
    });
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  async waitFrames(n: number): Promise<void> {
    while (this.frames.length < n && this.ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => this.#wake.push(resolve));
    }
  }

  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.close();
      await this.closed;
    }
  }
}

async function open(url: string, authorization?: string): Promise<Client> {
  const c = new Client(url, authorization);
  await c.opened();
  return c;
}

const UP = { status: "UP" };
/**
 * Deno 2 no longer checks ops by default; these tests turn it on, so a status or idle timer that
 * outlives the test (e.g. not cleared on close) fails them.
 */
const TIMERS_CHECKED = { sanitizeOps: true, sanitizeResources: true };
const TOO_MANY = JSON.parse(WS_TOO_MANY_REQUESTS_FRAME);
const LIST = [{ ticket: "l" }, { method: "LIST_SUBSCRIPTIONS" }];

/**
 * Sends `messages` in one burst on a fresh connection and collects `expect` frames. A burst is
 * judged only when it fitted in one second (the websocket-message window slides, so a burst that
 * took longer could legitimately pass more requests).
 */
async function burst(
  url: string,
  messages: unknown[],
  expect: number,
  authorization?: () => Promise<string>,
): Promise<{ client: Client; frames: Json[] }> {
  for (let i = 0; i < 5; i++) {
    const client = await open(url, await authorization?.());
    const start = Date.now();
    for (const m of messages) client.send(m);
    await client.waitFrames(expect);
    if (Date.now() - start < 1000) return { client, frames: client.frames.slice(0, expect) };
    await client.close();
  }
  throw new Error("no burst fitted in one second in 5 attempts");
}

Deno.test("websocket-message: the 6th request in a second gets TOO_MANY_REQUESTS and is ignored; PINGs are free", async () => {
  await withSim(async (sim) => {
    const subscribe = (code: string) => [{ ticket: code }, {
      type: "trade",
      codes: [code],
      is_only_realtime: true,
    }];
    const messages = [
      ...Array(10).fill("PING"),
      subscribe("KRW-BTC"),
      "PING",
      LIST,
      LIST,
      LIST,
      LIST,
      "PING",
      subscribe("KRW-ETH"), // the 6th request: refused, so the KRW-BTC subscription stays
      "PING",
    ];
    const { client, frames } = await burst(sim.wsUrl, messages, 18);
    assert.deepEqual(frames.slice(0, 11), Array(11).fill(UP));
    for (const f of frames.slice(11, 15)) {
      assert.deepEqual(f, {
        method: "LIST_SUBSCRIPTIONS",
        result: [{ type: "trade", codes: ["KRW-BTC"] }],
        ticket: "l",
      });
    }
    assert.deepEqual(frames.slice(15), [UP, TOO_MANY, UP]);
    assert.equal(TOO_MANY.error.name, "TOO_MANY_REQUESTS");
    // Still open and still on KRW-BTC only: the ETH trade printed first is not delivered.
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    sim.injectTrade({ market: "KRW-ETH", price: 5_000_000, volume: 1, side: "BID" });
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "BID" });
    await client.waitFrames(19);
    assert.equal(client.frames[18]!.code, "KRW-BTC");
    await client.close();
  });
});

Deno.test("websocket-message applies to the private WebSocket too", async () => {
  await withSim(async (sim) => {
    const token = () => bearer(sim.accessKey, sim.secretKey);
    // NO_TYPE answers make each accepted request visible.
    const noType = [{ ticket: "p" }];
    const messages = ["PING", ...Array(6).fill(noType), "PING"];
    const { client, frames } = await burst(`${sim.wsUrl}/private`, messages, 8, token);
    assert.deepEqual(frames[0], UP);
    for (const f of frames.slice(1, 6)) assert.equal((f.error as Json).name, "NO_TYPE");
    assert.deepEqual(frames.slice(6), [TOO_MANY, UP]);
    assert.equal(client.ws.readyState, WebSocket.OPEN);
    await client.close();
  });
});

Deno.test(
  "after a PING the server keeps sending {status:UP}; that traffic keeps the connection from idling",
  TIMERS_CHECKED,
  async () => {
    await withSim(async (sim) => {
      const quiet = await open(sim.wsUrl);
      const pinged = await open(sim.wsUrl);
      pinged.send("PING");
      await pinged.waitFrames(4);
      assert.deepEqual(pinged.frames.slice(0, 4), [UP, UP, UP, UP]);
      assert.equal(quiet.frames.length, 0, "no PING, no status frames");
      // The quiet connection idles out; the pinged one is kept busy by the status frames.
      assert.equal((await quiet.closed).reason, "idle timeout");
      assert.equal(pinged.ws.readyState, WebSocket.OPEN);
      // Closing while the status timer runs: the op sanitizer checks it is cleared.
      await pinged.close();
    }, { wsStatusIntervalMs: 40, wsIdleTimeoutMs: 600 });
  },
);

Deno.test(
  "private WebSocket: periodic {status:UP} after PING, and the idle timeout",
  TIMERS_CHECKED,
  async () => {
    await withSim(async (sim) => {
      const privateUrl = `${sim.wsUrl}/private`;
      const pinged = await open(privateUrl, await bearer(sim.accessKey, sim.secretKey));
      pinged.send("PING");
      await pinged.waitFrames(3);
      assert.deepEqual(pinged.frames.slice(0, 3), [UP, UP, UP]);
      await pinged.close();
      const idle = await open(privateUrl, await bearer(sim.accessKey, sim.secretKey));
      const ev = await idle.closed;
      assert.equal(ev.code, 1000);
      assert.equal(ev.reason, "idle timeout");
      assert.equal(idle.frames.length, 0);
    }, { wsStatusIntervalMs: 40, wsIdleTimeoutMs: 300 });
  },
);

Deno.test(
  "closing the simulator stops status timers of open connections",
  TIMERS_CHECKED,
  async () => {
    // The op sanitizer fails this test if a status or idle timer outlives sim.close().
    const sim = await startSimulator({ rate: 0, seed: 3, wsStatusIntervalMs: 20 });
    const pub = await open(sim.wsUrl);
    const priv = await open(`${sim.wsUrl}/private`, await bearer(sim.accessKey, sim.secretKey));
    pub.send("PING");
    priv.send("PING");
    await pub.waitFrames(2);
    await priv.waitFrames(2);
    await sim.close();
    await pub.closed;
    await priv.closed;
  },
);

Deno.test("Origin: quotation REST and public upgrades carrying Origin share 1 per 10 s per IP", async () => {
  await withSim(async (sim) => {
    const origin = { origin: "https://example.com" };
    await inOneWindow(10_000, async () => {
      const first = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`, { headers: origin });
      await first.body?.cancel();
      const second = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`, { headers: origin });
      const secondBody = await second.text();
      const upgrade = await handshake(sim.wsUrl, origin);
      // Without Origin, the usual groups answer.
      const plain = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
      await plain.body?.cancel();
      const plainUpgrade = await handshake(sim.wsUrl);
      // Not quotation: the exchange and the private WebSocket ignore Origin.
      const exchange = await fetch(`${sim.restUrl}/v1/accounts`, { headers: origin });
      await exchange.body?.cancel();
      const privateUpgrade = await handshake(`${sim.wsUrl}/private`, {
        ...origin,
        authorization: await bearer(sim.accessKey, sim.secretKey),
      });
      return { first, second, secondBody, upgrade, plain, plainUpgrade, exchange, privateUpgrade };
    }, (r) => {
      assert.equal(r.first.status, 200);
      assert.equal(r.first.headers.get("remaining-req"), "group=origin; min=6; sec=0");
      assert.equal(r.second.status, 429);
      assert.equal(r.second.headers.get("remaining-req"), "group=origin; min=6; sec=0");
      assert.equal(r.secondBody, "Too many API requests.");
      assert.equal(r.upgrade.status, 429);
      assert.equal(r.upgrade.headers.get("remaining-req"), "group=origin; min=6; sec=0");
      assert.equal(r.plain.status, 200);
      assert.match(r.plain.headers.get("remaining-req") ?? "", /^group=ticker;/);
      assert.equal(r.plainUpgrade.status, 101);
      assert.match(r.exchange.headers.get("remaining-req") ?? "", /^group=default;/);
      assert.equal(r.privateUpgrade.status, 101);
    });
  });
});

Deno.test("Origin: a public upgrade with Origin opens when the origin budget is unused", async () => {
  await withSim(async (sim) => {
    await inOneWindow(10_000, async () => {
      const origin = { origin: "https://example.com" };
      return [
        (await handshake(sim.wsUrl, origin)).status,
        (await handshake(sim.wsUrl, origin)).status,
      ];
    }, (statuses) => assert.deepEqual(statuses, [101, 429]));
  });
});
