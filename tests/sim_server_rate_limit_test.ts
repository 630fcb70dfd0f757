import assert from "node:assert/strict";
import { remainingReqHeader, SimRateLimits } from "../sim/rate_limit.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { bearer, signedPost, signedQuery } from "./_sim_auth.ts";

Deno.test("SimRateLimits allows the group limit per 1-s window, then 429, then a growing 418 ban", () => {
  let now = 10_000;
  const limiter = new SimRateLimits(() => now);
  const kinds = () => {
    const out: string[] = [];
    for (let i = 0; i < 16; i++) out.push(limiter.check("ticker", "1.2.3.4").kind);
    return out;
  };
  const first = kinds();
  assert.deepEqual(first.slice(0, 10), Array(10).fill("allowed"));
  assert.deepEqual(first.slice(10, 15), Array(5).fill("limited"));
  assert.equal(first[15], "banned");
  // Banned for 1 s, whatever the window.
  now += 999;
  const during = limiter.check("ticker", "1.2.3.4");
  assert.equal(during.kind, "banned");
  assert.equal(during.kind === "banned" && during.banMs, 1);
  // Other clients are unaffected; the IP's other quotation groups are banned with it.
  assert.equal(limiter.check("ticker", "5.6.7.8").kind, "allowed");
  assert.equal(limiter.check("trade", "1.2.3.4").kind, "banned");
  now += 1;
  assert.equal(limiter.check("ticker", "1.2.3.4").kind, "allowed");
  // A repeat offence doubles the ban.
  now = 20_000;
  const second = kinds();
  const ban = limiter.check("ticker", "1.2.3.4");
  assert.equal(second[15], "banned");
  assert.equal(ban.kind === "banned" && ban.banMs, 2000);
  // A new window resets the count.
  now = 30_000;
  const decision = limiter.check("ticker", "1.2.3.4");
  assert.equal(decision.kind === "allowed" && decision.remaining, 9);
});

Deno.test("SimRateLimits counts a sliding window: a burst at the end of one second and one at the start of the next is refused", () => {
  let now = 10_990;
  const limiter = new SimRateLimits(() => now);
  const burst = () => {
    const out: string[] = [];
    for (let i = 0; i < 10; i++) out.push(limiter.check("ticker", "1.2.3.4").kind);
    return out;
  };
  assert.deepEqual(burst(), Array(10).fill("allowed"), "10 in the last 10 ms of a second");
  now = 11_010; // 20 ms later, past the second boundary: a fixed window would count from 0 again
  const second = limiter.check("ticker", "1.2.3.4");
  assert.equal(second.kind, "limited", "the window still holds the 10 of 20 ms ago");
  assert.equal(remainingReqHeader(second), "group=ticker; min=600; sec=0");
  // The window slides: the burst ages out a whole window after it was sent, not at the boundary.
  now = 11_989;
  assert.equal(limiter.check("ticker", "1.2.3.4").kind, "limited");
  now = 11_990;
  const later = limiter.check("ticker", "1.2.3.4");
  // The two refused requests of 11_010 and 11_989 still count.
  assert.equal(later.kind === "allowed" && later.remaining, 7, "sec= counts the sliding window");
  // Spread requests: each slot frees exactly one window after it was used.
  now = 20_000;
  for (let i = 0; i < 10; i++, now += 100) {
    assert.equal(limiter.check("ticker", "9.9.9.9").kind, "allowed");
  }
  assert.equal(now, 21_000);
  const slot = limiter.check("ticker", "9.9.9.9"); // the request of 20_000 has aged out
  assert.equal(slot.kind === "allowed" && slot.remaining, 0);
  assert.equal(limiter.check("ticker", "9.9.9.9").kind, "limited");
});

Deno.test("SimRateLimits: refusals counted over the sliding window escalate to 418; the window stays used after the ban", () => {
  let now = 100_950;
  const limiter = new SimRateLimits(() => now);
  for (let i = 0; i < 10; i++) assert.equal(limiter.check("ticker", "c").kind, "allowed");
  for (let i = 0; i < 3; i++) assert.equal(limiter.check("ticker", "c").kind, "limited");
  now = 101_050; // across the boundary: the refusals of 100 ms ago still count
  assert.equal(limiter.check("ticker", "c").kind, "limited");
  assert.equal(limiter.check("ticker", "c").kind, "limited");
  assert.equal(limiter.check("ticker", "c").kind, "banned");
  // origin: 1 per 10 s; a 1-s ban does not refill the 10-s window.
  now = 200_000;
  assert.equal(limiter.check("origin", "o").kind, "allowed");
  let ban = limiter.check("origin", "o");
  while (ban.kind === "limited") ban = limiter.check("origin", "o");
  assert.equal(ban.kind === "banned" && ban.banMs, 1000);
  now = 201_000;
  assert.equal(limiter.check("origin", "o").kind, "limited", "the ban ended, the window did not");
  now = 210_000; // the refused request of 201_000 fills the window until 211_000
  assert.equal(limiter.check("origin", "o").kind, "limited");
  now = 220_000; // and this refusal until 220_000: each refused retry keeps the window full
  assert.equal(limiter.check("origin", "o").kind, "allowed");
});

Deno.test("SimRateLimits: a ban drawn in one exchange group blocks the pocket in every exchange group", () => {
  let now = 10_000;
  const limiter = new SimRateLimits(() => now);
  const kinds: string[] = [];
  for (let i = 0; i < 14; i++) kinds.push(limiter.check("order-test", "key:a").kind);
  assert.equal(kinds.at(-1), "banned", kinds.join());
  for (const group of ["default", "order", "order-test", "order-cancel-all"]) {
    const decision = limiter.check(group, "key:a");
    assert.equal(decision.kind, "banned", group);
    assert.equal(decision.group, group, "the refusal names the group asked for");
  }
  // A private WebSocket upgrade with the key counts per pocket: blocked too.
  assert.equal(limiter.check("websocket-connect", "key:a", 1, true).kind, "banned");
  // Another pocket, and groups counted per IP, are not.
  assert.equal(limiter.check("default", "key:b").kind, "allowed");
  assert.equal(limiter.check("websocket-connect", "key:a").kind, "allowed");
  assert.equal(limiter.check("ticker", "key:a").kind, "allowed");
  now += 1000;
  assert.equal(limiter.check("default", "key:a").kind, "allowed", "the ban ended");
  // The next ban of the pocket is longer, whichever group draws it.
  now = 20_000;
  let ban = limiter.check("default", "key:a");
  for (let i = 0; i < 40 && ban.kind !== "banned"; i++) ban = limiter.check("default", "key:a");
  assert.equal(ban.kind === "banned" && ban.banMs, 2000);
});

Deno.test("SimRateLimits counts refused requests in the window: a client sending steadily past the limit is banned", () => {
  let now = 50_000;
  const limiter = new SimRateLimits(() => now);
  // 11 a second, evenly: were only accepted requests counted, one a second would be refused and
  // the client would never be banned.
  const kinds: string[] = [];
  for (let i = 0; i < 40 && kinds.at(-1) !== "banned"; i++, now += 90) {
    kinds.push(limiter.check("ticker", "1.2.3.4").kind);
  }
  assert.deepEqual(kinds.slice(0, 10), Array(10).fill("allowed"));
  assert.deepEqual(kinds.slice(10), [...Array(5).fill("limited"), "banned"]);
  // Requests sent during the ban count too: 10 in its last 100 ms fill the window after it.
  const banEnd = now - 90 + 1000;
  now = banEnd - 100;
  for (let i = 0; i < 10; i++) assert.equal(limiter.check("ticker", "1.2.3.4").kind, "banned");
  now = banEnd;
  assert.equal(limiter.check("ticker", "1.2.3.4").kind, "limited", "the ban's requests count");
});

Deno.test("SimRateLimits: a 418 drawn in one IP-counted group bans the IP in all of them, not pockets", () => {
  let now = 10_000;
  const limiter = new SimRateLimits(() => now);
  let ban = limiter.check("ticker", "1.2.3.4");
  for (let i = 0; i < 20 && ban.kind !== "banned"; i++) ban = limiter.check("ticker", "1.2.3.4");
  assert.equal(ban.kind, "banned");
  for (const group of ["market", "candle", "trade", "orderbook", "origin", "websocket-connect"]) {
    const decision = limiter.check(group, "1.2.3.4");
    assert.equal(decision.kind, "banned", group);
    assert.equal(decision.group, group, "the refusal names the group asked for");
  }
  // Another IP, and a pocket's groups, are not banned.
  assert.equal(limiter.check("candle", "5.6.7.8").kind, "allowed");
  assert.equal(limiter.check("order", "key:a").kind, "allowed");
  assert.equal(limiter.check("websocket-connect", "key:a", 1, true).kind, "allowed");
  now += 1000;
  assert.equal(limiter.check("candle", "1.2.3.4").kind, "allowed", "the ban ended");
  // A ban drawn by WebSocket upgrades bans the IP's REST calls too, and is the IP's second: longer.
  now = 20_000;
  ban = limiter.check("websocket-connect", "1.2.3.4");
  for (let i = 0; i < 20 && ban.kind !== "banned"; i++) {
    ban = limiter.check("websocket-connect", "1.2.3.4");
  }
  assert.equal(ban.kind === "banned" && ban.banMs, 2000);
  assert.equal(limiter.check("ticker", "1.2.3.4").kind, "banned");
});

Deno.test("SimRateLimits scales limits by rate_limit_factor (floor, at least 1) and knows every group", () => {
  const now = 5_000;
  const limiter = new SimRateLimits(() => now);
  const allowed = (group: string, factor: number) => {
    let n = 0;
    while (limiter.check(group, `c-${group}-${factor}`, factor).kind === "allowed") n++;
    return n;
  };
  assert.equal(allowed("default", 1), 30);
  assert.equal(allowed("order", 1), 12);
  assert.equal(allowed("order-test", 1), 8);
  assert.equal(allowed("order-cancel-all", 1), 1);
  assert.equal(allowed("market", 1), 10);
  assert.equal(allowed("candle", 0.5), 5);
  assert.equal(allowed("orderbook", 0.01), 1);
  assert.equal(allowed("default", 2), 60);
});

Deno.test("Remaining-Req header format of §3.2", () => {
  assert.equal(
    remainingReqHeader({ kind: "allowed", group: "default", limit: 30, remaining: 29 }),
    "group=default; min=1800; sec=29",
  );
  assert.equal(
    remainingReqHeader({ kind: "limited", group: "ticker", limit: 10 }),
    "group=ticker; min=600; sec=0",
  );
});

async function withSim(fn: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = await startSimulator({ rate: 0, seed: 1 });
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

const HEADER = /^group=([a-z-]+); min=(\d+); sec=(\d+)$/;

Deno.test("every /v1 response carries Remaining-Req with its group", async () => {
  await withSim(async (sim) => {
    const check = async (res: Response, group: string, min: number) => {
      await res.body?.cancel();
      const m = HEADER.exec(res.headers.get("remaining-req") ?? "");
      assert.ok(m, `header on ${res.url}`);
      assert.equal(m[1], group);
      assert.equal(Number(m[2]), min);
      return Number(m[3]);
    };
    assert.equal(await check(await fetch(`${sim.restUrl}/v1/market/all`), "market", 600), 9);
    await check(await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`), "ticker", 600);
    await check(await fetch(`${sim.restUrl}/v1/trades/ticks?market=KRW-BTC`), "trade", 600);
    await check(await fetch(`${sim.restUrl}/v1/orderbook?markets=KRW-BTC`), "orderbook", 600);
    await check(await fetch(`${sim.restUrl}/v1/candles/seconds?market=KRW-BTC`), "candle", 600);
    // Errors carry it too.
    await check(await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-NOPE`), "ticker", 600);
    const keys = { accessKey: sim.accessKey, secretKey: sim.secretKey };
    await check(await signedQuery(sim.restUrl, "GET", "/v1/accounts", keys), "default", 1800);
    const order = {
      market: "KRW-BTC",
      side: "bid",
      volume: "0.0001",
      price: "100000000",
      ord_type: "limit",
    };
    await check(await signedPost(sim.restUrl, "/v1/orders/test", keys, order), "order-test", 480);
    await check(await signedPost(sim.restUrl, "/v1/orders", keys, order), "order", 720);
    await check(
      await signedQuery(sim.restUrl, "DELETE", "/v1/orders/open", keys),
      "order-cancel-all",
      30,
    );
    // Unauthenticated exchange calls are limited too (bucket by IP).
    await check(await fetch(`${sim.restUrl}/v1/accounts`), "default", 1800);
  });
});

Deno.test("rate_refusal_format json: a client that keeps sending past 429 gets a 418 that states the ban", async () => {
  await withSim(async (sim) => {
    sim.setFaults({ rate_refusal_format: "json" });
    const statuses: number[] = [];
    let banBody: { error: { name: string; message: string; ban_ms: number } } | undefined;
    for (let i = 0; i < 300 && !banBody; i++) {
      const res = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
      statuses.push(res.status);
      if (res.status === 418) banBody = await res.json();
      else if (res.status === 429) {
        assert.match(res.headers.get("remaining-req") ?? "", /sec=0$/);
        assert.deepEqual(await res.json(), {
          error: { name: "too_many_requests", message: "Too many API requests." },
        });
      } else await res.body?.cancel();
    }
    assert.ok(banBody, "banned within 300 requests");
    const first429 = statuses.indexOf(429);
    assert.ok(first429 >= 10, "at least the limit passed first");
    assert.ok(statuses.indexOf(418) > first429, "429 comes before 418");
    assert.match(banBody.error.message, /blocked for \d+ s/);
    assert.ok(banBody.error.ban_ms > 0);
    // The ban is of the IP: its other quotation groups are refused too.
    const other = await fetch(`${sim.restUrl}/v1/market/all`);
    await other.body?.cancel();
    assert.equal(other.status, 418);
  });
});

Deno.test("a 418 drawn on /v1/orders/test blocks the key's other exchange calls and private WebSocket", async () => {
  await withSim(async (sim) => {
    const keys = { accessKey: sim.accessKey, secretKey: sim.secretKey };
    const order = {
      market: "KRW-BTC",
      side: "bid",
      volume: "0.0001",
      price: "100000000",
      ord_type: "limit",
    };
    let status = 0;
    for (let i = 0; i < 100 && status !== 418; i++) {
      const res = await signedPost(sim.restUrl, "/v1/orders/test", keys, order);
      status = res.status;
      await res.body?.cancel();
    }
    assert.equal(status, 418, "banned within 100 requests");
    const accounts = await signedQuery(sim.restUrl, "GET", "/v1/accounts", keys);
    assert.equal(accounts.status, 418);
    assert.match(accounts.headers.get("remaining-req") ?? "", /^group=default; /);
    await accounts.body?.cancel();
    const upgrade = await fetch(`${sim.restUrl}/websocket/v1/private`, {
      headers: {
        authorization: await bearer(sim.accessKey, sim.secretKey),
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      },
    });
    assert.equal(upgrade.status, 418);
    await upgrade.body?.cancel();
    // Quotation (counted per IP) still answers.
    const ticker = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
    assert.equal(ticker.status, 200);
    await ticker.body?.cancel();
  });
});

Deno.test("exchange calls are counted per access key from the JWT, not per IP", async () => {
  await withSim(async (sim) => {
    const remaining = async (who: string) => {
      // Unknown keys are refused by the exchange (401) but still counted in their own bucket.
      const res = await fetch(`${sim.restUrl}/v1/accounts`, {
        headers: { authorization: await bearer(`key-${who}`, "whatever") },
      });
      await res.body?.cancel();
      return Number(/sec=(\d+)/.exec(res.headers.get("remaining-req") ?? "")?.[1] ?? -1);
    };
    // Retry when a 1-s window boundary falls inside the measurement.
    for (let attempt = 0; attempt < 5; attempt++) {
      const second = Math.floor(Date.now() / 1000);
      let a = 0;
      for (let i = 0; i < 5; i++) a = await remaining(`a${attempt}`);
      const b = await remaining(`b${attempt}`);
      if (Math.floor(Date.now() / 1000) !== second) continue;
      assert.equal(a, 25);
      assert.equal(b, 29, "another key has its own bucket");
      return;
    }
    assert.fail("no quiet 1-s window in 5 attempts");
  });
});

Deno.test("rate_limit_factor below 1 squeezes every group", async () => {
  const sim = await startSimulator({ rate: 0, faults: { rate_limit_factor: 0.5 } });
  try {
    const res = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
    await res.body?.cancel();
    assert.match(res.headers.get("remaining-req") ?? "", /^group=ticker; min=300; sec=4$/);
  } finally {
    await sim.close();
  }
});

/**
 * Uses up the `order` group of the sim's key: with `rate_limit_factor` 0.01 every group allows one
 * request per second, and one create refused as below the minimum total (no identifier) takes it
 * (or is refused itself when the group is already used up).
 */
async function exhaustOrderGroup(sim: Simulator): Promise<void> {
  const filler = await signedPost(sim.restUrl, "/v1/orders", sim, {
    market: "KRW-BTC",
    side: "bid",
    ord_type: "price",
    price: "1000",
  });
  assert.ok([400, 429].includes(filler.status), `filler answered ${filler.status}`);
  await filler.body?.cancel();
}

Deno.test("a create refused with 429 uses up its identifier (§4.3): the retry is refused as used, nothing was created", async () => {
  const sim = await startSimulator({ rate: 0, faults: { rate_limit_factor: 0.01 } });
  try {
    const body = { market: "KRW-BTC", side: "bid", ord_type: "price", price: "10000" };
    await exhaustOrderGroup(sim);
    const refused = await signedPost(sim.restUrl, "/v1/orders", sim, {
      ...body,
      identifier: "burnt-by-429",
    });
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    // An unauthenticated create refused with 429 cannot be tied to the account: nothing is burnt.
    const stranger = await signedPost(
      sim.restUrl,
      "/v1/orders",
      { accessKey: sim.accessKey, secretKey: "not-the-secret" },
      { ...body, identifier: "refused-unauthenticated" },
    );
    assert.equal(stranger.status, 429);
    await stranger.body?.cancel();
    sim.setFaults({ rate_limit_factor: 1 });
    const lookUp = await signedQuery(
      sim.restUrl,
      "GET",
      "/v1/order",
      sim,
      "identifier=burnt-by-429",
    );
    assert.equal(lookUp.status, 404);
    await lookUp.body?.cancel();
    const retry = await signedPost(sim.restUrl, "/v1/orders", sim, {
      ...body,
      identifier: "burnt-by-429",
    });
    assert.equal(retry.status, 400);
    assert.equal((await retry.json()).error.name, "duplicated_identifier");
    const fresh = await signedPost(sim.restUrl, "/v1/orders", sim, {
      ...body,
      identifier: "refused-unauthenticated",
    });
    assert.equal(fresh.status, 201, "a 401'd request burnt nothing");
    await fresh.body?.cancel();
    assert.equal(sim.orders().length, 1);
  } finally {
    await sim.close();
  }
});

Deno.test("cancel_and_new refused with 429 uses up its new_identifier", async () => {
  const sim = await startSimulator({ rate: 0 });
  try {
    const placed = await signedPost(sim.restUrl, "/v1/orders", sim, {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: "1000000",
      volume: "0.01",
      identifier: "resting-1",
    });
    assert.equal(placed.status, 201);
    await placed.body?.cancel();
    sim.setFaults({ rate_limit_factor: 0.01 });
    await exhaustOrderGroup(sim);
    const replace = {
      prev_order_identifier: "resting-1",
      new_ord_type: "limit",
      new_price: "1001000",
      new_volume: "remain_only",
      new_identifier: "replacement-1",
    };
    const refused = await signedPost(sim.restUrl, "/v1/orders/cancel_and_new", sim, replace);
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    sim.setFaults({ rate_limit_factor: 1 });
    const retry = await signedPost(sim.restUrl, "/v1/orders/cancel_and_new", sim, replace);
    assert.equal(retry.status, 400);
    assert.equal((await retry.json()).error.name, "duplicated_identifier");
    assert.deepEqual(sim.orders().map((o) => o.state), ["wait"], "the old order stays");
  } finally {
    await sim.close();
  }
});

Deno.test(
  "rate_refusal_format text: 429 and 418 in plain text, the ban only in Korean, no Retry-After; upbot's client stops for the length stated",
  async () => {
    await withSim(async (sim) => {
      sim.setFaults({ rate_refusal_format: "text" });
      const bodies = new Map<number, string>();
      let retryAfter: string | null = "unread";
      for (let i = 0; i < 300 && !bodies.has(418); i++) {
        const res = await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC`);
        if (res.status === 429 || res.status === 418) {
          assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
          bodies.set(res.status, await res.text());
          if (res.status === 418) retryAfter = res.headers.get("retry-after");
        } else await res.body?.cancel();
      }
      assert.equal(bodies.get(429), "Too many API requests.");
      assert.match(bodies.get(418) ?? "", /^요청 수 제한을 초과하여 \d+초 동안 차단되었습니다\.$/);
      assert.equal(retryAfter, null, "no Retry-After");

      // upbot's client: the plain 429 is a rate-limit refusal, and a 418 stating its length only
      // in Korean bans every call of the client for that length.
      const { UpbitRest } = await import("../lib/upbit/rest.ts");
      const { UpbitBanActiveError, UpbitBanResponseError, UpbitRateLimitError } = await import(
        "../lib/upbit/errors.ts"
      );
      const { setLogSink } = await import("../lib/log.ts");
      const restore = setLogSink(() => {});
      sim.setFaults({ rate_limit_factor: 0.034 });
      const rest = new UpbitRest({
        baseUrl: sim.restUrl,
        accessKey: sim.accessKey,
        secretKey: sim.secretKey,
        maxAttempts: 1,
      });
      try {
        // Bursts past the squeezed limit draw 429s, then a 418.
        const errors: unknown[] = [];
        for (let i = 0; i < 20 && !errors.some((e) => e instanceof UpbitBanResponseError); i++) {
          const burst = Array.from(
            { length: 30 },
            () => rest.getAccounts().then(() => null, (e) => e),
          );
          for (const err of await Promise.all(burst)) if (err) errors.push(err);
        }
        assert.ok(errors.some((e) => e instanceof UpbitRateLimitError), "429s came");
        const ban = errors.find((e) => e instanceof UpbitBanResponseError);
        assert.ok(ban instanceof UpbitBanResponseError, "a 418 came");
        // The length stated in Korean ("N초") is read: the server's own value.
        const stated = /(\d+)초/.exec(ban.message)?.[1];
        assert.equal(
          ban.banMs,
          Number(stated) * 1000,
          `banned for ${ban.banMs} ms: ${ban.message}`,
        );
        const next = await rest.getAccounts().then(() => null, (e) => e);
        assert.ok(next instanceof UpbitBanActiveError, "refused locally during the ban");
      } finally {
        rest.close();
        restore();
      }
    });
  },
);
