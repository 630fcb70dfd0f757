import assert from "node:assert/strict";
import { checkBackoffOptions, restartDelayMs } from "../lib/actors/backoff.ts";
import { secretsInConfig } from "../lib/actors/supervisor.ts";

Deno.test("restartDelayMs() doubles from the minimum up to the maximum", () => {
  const options = { minDelayMs: 500, maxDelayMs: 30_000, jitter: 0 };
  const delays = [0, 1, 2, 3, 4, 5, 6, 7, 100].map((n) => restartDelayMs(n, options));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

Deno.test("restartDelayMs() adds at most `jitter` of the delay and never passes the maximum", () => {
  const options = { minDelayMs: 100, maxDelayMs: 1000, jitter: 0.5 };
  assert.equal(restartDelayMs(0, options, () => 0), 100);
  assert.equal(restartDelayMs(0, options, () => 0.999999), 150);
  assert.equal(restartDelayMs(3, options, () => 0.999999), 1000);
  for (let attempt = 0; attempt < 12; attempt++) {
    for (const r of [0, 0.25, 0.5, 0.75, 0.999999]) {
      const d = restartDelayMs(attempt, options, () => r);
      assert.ok(d >= 100 && d <= 1000, `attempt ${attempt} r ${r}: ${d}`);
    }
  }
});

Deno.test("checkBackoffOptions() rejects unusable options in std's sentence shape", () => {
  assert.throws(
    () => checkBackoffOptions({ minDelayMs: -1, maxDelayMs: 10, jitter: 0 }),
    new RangeError(
      "Cannot back off as 'minDelayMs' must be a non-negative number: current value is -1",
    ),
  );
  assert.throws(
    () => checkBackoffOptions({ minDelayMs: 1, maxDelayMs: 10, jitter: 2 }),
    new RangeError("Cannot back off as 'jitter' must be from 0 to 1: current value is 2"),
  );
});

Deno.test("secretsInConfig() passes an actor only the secrets its own slice holds", () => {
  const secrets = ["access-key-AAAA", "secret-key-BBBB", "dbpassword"];
  assert.deepEqual(secretsInConfig({ markets: ["KRW-BTC"], restUrl: "https://x" }, secrets), []);
  assert.deepEqual(
    secretsInConfig({
      keys: { accessKey: "access-key-AAAA", secretKey: "secret-key-BBBB" },
      databaseUrl: "postgres://u:dbpassword@h/db",
    }, secrets),
    secrets,
  );
});
