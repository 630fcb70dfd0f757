import assert from "node:assert/strict";
import { backoffDelayMs } from "../lib/upbit/backoff.ts";
import { UpbitBanActiveError } from "../lib/upbit/errors.ts";
import { parseBanMs } from "../lib/upbit/rest.ts";
import {
  BAN_COUNT_RESET_MS,
  type Clock,
  parseRemainingReq,
  rateLimitGroupOf,
  UpbitRequestBudget,
} from "../lib/upbit/rate_limiter.ts";

/** A manual clock: timers fire only when the test advances time. */
class ManualClock implements Clock {
  t = 1_000_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now = () => this.t;
  setTimer = (fn: () => void, ms: number) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimer = (id: unknown) => {
    this.#timers.delete(id as number);
  };
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, v]) =>
        v.at <= end
      ).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
      await Promise.resolve();
    }
    this.t = end;
    await Promise.resolve();
  }
}

function track(p: Promise<void>): { done: boolean; error?: unknown } {
  const s: { done: boolean; error?: unknown } = { done: false };
  p.then(() => (s.done = true), (e) => {
    s.done = true;
    s.error = e;
  });
  return s;
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

Deno.test("UpbitRequestBudget grants at most the group budget per window, then the rest a window later", async () => {
  const clock = new ManualClock();
  const limiter = new UpbitRequestBudget({ clock, marginMs: 50 });
  const calls = Array.from({ length: 25 }, () => track(limiter.acquire("trade")));
  await flush();
  assert.equal(calls.filter((c) => c.done).length, 10);
  await clock.advance(1049);
  assert.equal(calls.filter((c) => c.done).length, 10);
  await clock.advance(1);
  assert.equal(calls.filter((c) => c.done).length, 20);
  await clock.advance(1050);
  assert.equal(calls.filter((c) => c.done).length, 25);
  limiter.close();
});

Deno.test("UpbitRequestBudget pauses a group a whole window after Remaining-Req sec=0 (the window may slide)", async () => {
  const clock = new ManualClock();
  clock.t = 5_000_400;
  const limiter = new UpbitRequestBudget({ clock, marginMs: 50 });
  limiter.observe("default", parseRemainingReq("group=default; min=1800; sec=0"));
  const call = track(limiter.acquire("default"));
  await flush();
  assert.equal(call.done, false);
  await clock.advance(650); // 5_001_050: the next second, where a fixed window would refill
  assert.equal(call.done, false, "a sliding window still counts the requests of 5_000_4xx");
  await clock.advance(399); // 5_001_449
  assert.equal(call.done, false);
  await clock.advance(1); // 5_001_450: a window (1000) and the margin after the answer
  assert.equal(call.done, true);
  limiter.close();
});

Deno.test("UpbitRequestBudget after a 429 pauses the group a window and lowers its budget by one", async () => {
  const clock = new ManualClock();
  const limiter = new UpbitRequestBudget({ clock, marginMs: 0, recoverAfterMs: 10_000 });
  assert.equal(limiter.onRateLimited("order"), 1000);
  assert.equal(limiter.limitOf("order"), 11);
  const calls = Array.from({ length: 12 }, () => track(limiter.acquire("order")));
  await flush();
  assert.equal(calls.filter((c) => c.done).length, 0);
  await clock.advance(1000);
  assert.equal(calls.filter((c) => c.done).length, 11);
  await clock.advance(10_000);
  assert.equal(calls.filter((c) => c.done).length, 12);
  assert.equal(limiter.limitOf("order"), 12, "budget grows back after a quiet period");
  assert.equal(limiter.stats().rateLimited, 1);
  limiter.close();
});

Deno.test("UpbitRequestBudget refuses every call during a 418 ban, longer on each repeat", async () => {
  const clock = new ManualClock();
  const limiter = new UpbitRequestBudget({ clock, banBaseMs: 1000 });
  const waiting = Array.from({ length: 12 }, () => track(limiter.acquire("trade")));
  await flush();
  assert.equal(limiter.onBanned(), 1000);
  await flush();
  assert.equal(waiting.filter((c) => c.error instanceof UpbitBanActiveError).length, 2);
  await assert.rejects(limiter.acquire("default"), UpbitBanActiveError);
  await clock.advance(1000);
  await limiter.acquire("default");
  assert.equal(limiter.onBanned(), 2000, "a repeat doubles our own ban length");
  assert.equal(limiter.onBanned(), 2000, "a 418 of the same burst is the same ban");
  assert.equal(limiter.onBanned(5000), 5000, "the server's value wins when it states one");
  await assert.rejects(limiter.acquire("trade"), UpbitBanActiveError);
  assert.equal(limiter.stats().bans, 2);
  // A quiet hour after the last ban: the default length starts over.
  await clock.advance(5000 + BAN_COUNT_RESET_MS + 1);
  assert.equal(limiter.onBanned(), 1000);
  limiter.close();
});

Deno.test("UpbitRequestBudget rejects a bad budget with a std-style message", () => {
  assert.throws(
    () => new UpbitRequestBudget({ budgets: { order: { limit: 0, windowMs: 1000 } } }),
    {
      name: "RangeError",
      message:
        `Cannot create UpbitRequestBudget as budget 'order' must have an integer limit > 0 and windowMs > 0: current value is {"limit":0,"windowMs":1000}`,
    },
  );
});

Deno.test("parseRemainingReq() reads group and sec and ignores min", () => {
  assert.deepEqual(parseRemainingReq("group=order-test; min=480; sec=7"), {
    group: "order-test",
    sec: 7,
  });
  assert.equal(parseRemainingReq(null), null);
  assert.equal(parseRemainingReq("garbage"), null);
});

Deno.test("rateLimitGroupOf() maps endpoints to the §3.1 groups", () => {
  assert.equal(rateLimitGroupOf("GET", "/v1/market/all"), "market");
  assert.equal(rateLimitGroupOf("GET", "/v1/candles/seconds"), "candle");
  assert.equal(rateLimitGroupOf("GET", "/v1/trades/ticks"), "trade");
  assert.equal(rateLimitGroupOf("GET", "/v1/ticker"), "ticker");
  assert.equal(rateLimitGroupOf("GET", "/v1/orderbook"), "orderbook");
  assert.equal(rateLimitGroupOf("GET", "/v1/accounts"), "default");
  assert.equal(rateLimitGroupOf("DELETE", "/v1/order"), "default");
  assert.equal(rateLimitGroupOf("POST", "/v1/orders"), "order");
  assert.equal(rateLimitGroupOf("POST", "/v1/orders/cancel_and_new"), "order");
  assert.equal(rateLimitGroupOf("POST", "/v1/orders/test"), "order-test");
  assert.equal(rateLimitGroupOf("DELETE", "/v1/orders/open"), "order-cancel-all");
  assert.equal(rateLimitGroupOf("GET", "/v1/orders/open"), "default");
});

Deno.test("backoffDelayMs() doubles per attempt, caps, and adds bounded jitter", () => {
  const opts = { baseMs: 100, maxMs: 1000, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, opts)), [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  assert.equal(backoffDelayMs(2, { baseMs: 100, jitter: 0.5, random: () => 0.999999 }), 600);
  assert.equal(backoffDelayMs(2, { baseMs: 100, jitter: 0.5, random: () => 0 }), 400);
  assert.throws(() => backoffDelayMs(-1), {
    name: "RangeError",
    message: "Cannot compute backoff as 'attempt' must be an integer >= 0: current value is -1",
  });
});

Deno.test("UpbitRequestBudget: the order group budget is Upbit's 12/s (since 2026-08-21)", async () => {
  const clock = new ManualClock();
  const limiter = new UpbitRequestBudget({ clock });
  const calls = Array.from({ length: 13 }, () => track(limiter.acquire("order")));
  await flush();
  assert.equal(calls.filter((c) => c.done).length, 12);
  limiter.close();
});

Deno.test("UpbitRequestBudget announces a ban it draws once, and applies a ban from elsewhere without announcing", async () => {
  const clock = new ManualClock();
  const announced: number[] = [];
  const drawer = new UpbitRequestBudget({ clock, onBan: (until) => announced.push(until) });
  assert.equal(drawer.onBanned(5000), 5000);
  // A second 418 of the same burst tells the same ban: not announced again.
  await clock.advance(10);
  drawer.onBanned(5000);
  assert.deepEqual(announced, [clock.t - 10 + 5000]);

  const other = new UpbitRequestBudget({
    clock,
    onBan: () => assert.fail("applied bans are not news"),
  });
  const waiting = track(other.acquire("default"));
  await flush();
  assert.equal(waiting.done, true, "granted before the ban");
  assert.equal(other.applyBan(clock.t - 1), false, "a ban in the past is ignored");
  assert.equal(other.applyBan(announced[0]!), true);
  await assert.rejects(other.acquire("trade"), UpbitBanActiveError);
  assert.equal(other.stats().bannedUntilMs, announced[0]);
  assert.equal(other.applyBan(announced[0]! - 1000), true, "a shorter ban keeps the longer one");
  assert.equal(other.bannedUntil(), announced[0]);
  await clock.advance(5000);
  const after = track(other.acquire("trade"));
  await flush();
  assert.equal(after.done, true);
  assert.equal(after.error, undefined);
  drawer.close();
  other.close();
});

Deno.test("parseBanMs adds up every amount of a 418's text, in English or Korean", () => {
  const res = new Response(null, { status: 418 });
  assert.equal(parseBanMs(res, "요청 수 제한을 초과하여 30초 동안 차단되었습니다."), 30_000);
  assert.equal(parseBanMs(res, "1분 30초 동안 차단"), 90_000);
  assert.equal(parseBanMs(res, "blocked for 1 min 30 s."), 90_000);
  assert.equal(parseBanMs(res, "blocked"), undefined);
  const told = new Response(null, { status: 418, headers: { "retry-after": "12" } });
  assert.equal(parseBanMs(told, "1분"), 12_000, "Retry-After wins");
});
