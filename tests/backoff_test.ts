import assert from "node:assert/strict";
import { backoffDelayMs, sleep } from "../lib/backoff.ts";
import { restartDelayMs } from "../lib/actors/backoff.ts";

Deno.test("backoffDelayMs() grows by the multiplier up to the cap", () => {
  const opts = { baseMs: 100, maxMs: 1000, jitter: 0 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, opts)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.deepEqual(
    [0, 1, 2, 3].map((a) => backoffDelayMs(a, { ...opts, multiplier: 3 })),
    [100, 300, 900, 1000],
  );
});

Deno.test("backoffDelayMs() gives the cap for huge attempts, and 0 for a zero base", () => {
  assert.equal(backoffDelayMs(5000, { baseMs: 100, maxMs: 1000, jitter: 0 }), 1000);
  assert.equal(backoffDelayMs(5000, { baseMs: 0, maxMs: 1000, jitter: 0 }), 0);
});

Deno.test("backoffDelayMs() adds up to `jitter` of the capped delay on top", () => {
  const opts = { baseMs: 100, maxMs: 1000, jitter: 0.5 };
  assert.equal(backoffDelayMs(2, { ...opts, random: () => 0 }), 400);
  assert.equal(backoffDelayMs(2, { ...opts, random: () => 0.999999 }), 600);
  // At the cap the delays still spread, so clients do not retry in lockstep.
  assert.equal(backoffDelayMs(9, { ...opts, random: () => 0.5 }), 1250);
});

Deno.test("backoffDelayMs() refuses a negative or fractional attempt", () => {
  for (const attempt of [-1, 1.5]) {
    assert.throws(() => backoffDelayMs(attempt), {
      name: "RangeError",
      message:
        `Cannot compute backoff as 'attempt' must be an integer >= 0: current value is ${attempt}`,
    });
  }
});

Deno.test("restartDelayMs() is the same curve, clamped so jitter never passes the maximum", () => {
  const options = { minDelayMs: 100, maxDelayMs: 1000, jitter: 0.5 };
  for (let attempt = 0; attempt < 8; attempt++) {
    for (const r of [0, 0.5, 0.999999]) {
      const shared = backoffDelayMs(attempt, {
        baseMs: 100,
        maxMs: 1000,
        jitter: 0.5,
        random: () => r,
      });
      assert.equal(restartDelayMs(attempt, options, () => r), Math.min(1000, shared));
    }
  }
});

Deno.test("sleep() rejects with the signal's reason when aborted", async () => {
  const controller = new AbortController();
  const slept = sleep(60_000, controller.signal);
  controller.abort(new Error("stop"));
  await assert.rejects(slept, { message: "stop" });
});
