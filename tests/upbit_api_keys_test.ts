import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { createLogger } from "../lib/log.ts";
import { KeyExpiryWatch } from "../lib/pipeline/account.ts";
import {
  daysToExpiry,
  expiresSoon,
  ExpiryWarnings,
  KEY_EXPIRY_WARN_DAYS,
  keyInUse,
} from "../lib/upbit/api_keys.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";

const DAY = 86_400_000;

Deno.test("daysToExpiry counts whole days left, 0 on the last day, negative once expired", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  assert.equal(daysToExpiry("2026-01-15T00:00:00Z", now), 13);
  assert.equal(daysToExpiry("2026-01-15T09:00:00+09:00", now), 13, "offsets are honoured");
  assert.equal(daysToExpiry("2026-01-01T23:59:59Z", now), 0);
  assert.equal(daysToExpiry("2026-01-01T11:59:59Z", now), -1);
  assert.throws(() => daysToExpiry("soon", now), {
    name: "RangeError",
    message: `Cannot compute days to expiry as 'expireAt' is not a time: current value is "soon"`,
  });
  assert.equal(KEY_EXPIRY_WARN_DAYS, 14);
  assert.equal(expiresSoon(14), true);
  assert.equal(expiresSoon(15), false);
  assert.equal(expiresSoon(-3), true);
  const keys = [{ access_key: "a", expire_at: "x" }, { access_key: "b", expire_at: "y" }];
  assert.equal(keyInUse(keys, "b")?.expire_at, "y");
  assert.equal(keyInUse(keys, "c"), undefined);
});

Deno.test("ExpiryWarnings: due at most once a day, only within 14 days", () => {
  const w = new ExpiryWarnings();
  const t = 1_000_000_000_000;
  assert.equal(w.due(30, t), false);
  assert.equal(w.due(14, t), true);
  assert.equal(w.due(14, t + DAY - 1), false);
  assert.equal(w.due(13, t + DAY), true);
});

Deno.test("GET /v1/api_keys lists the key with its expiry; the watch warns once a day within 14 days", async () => {
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const expireAtMs = Date.now() + 10.5 * DAY;
  const sim = await startSimulator({ port: 0, rate: 0, apiKeyExpireAtMs: expireAtMs });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  try {
    const { data, meta } = await rest.getApiKeys();
    assert.equal(data.length, 1);
    assert.equal(data[0]?.access_key, sim.accessKey);
    assert.match(data[0]!.expire_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00$/);
    assert.equal(Math.floor(Date.parse(data[0]!.expire_at) / 1000), Math.floor(expireAtMs / 1000));
    assert.match(meta.remaining_req ?? "", /^group=default; /);

    let now = Date.now();
    const watch = new KeyExpiryWatch({
      rest,
      accessKey: sim.accessKey,
      log: createLogger("account"),
      now: () => now,
    });
    assert.equal(await watch.check(), 10);
    assert.equal(await watch.check(), 10);
    now += DAY;
    assert.equal(await watch.check(), 9);
    const warnings = lines.filter((l) => l.includes("the Upbit key expires in"));
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0]!, /expires in 10 days/);
    assert.match(warnings[1]!, /expires in 9 days/);

    const other = new KeyExpiryWatch({ rest, accessKey: "not-listed", log: createLogger("x") });
    assert.equal(await other.check(), null);
  } finally {
    rest.close();
    await sim.close();
    restore();
  }
});

Deno.test("the watch stays quiet for a key that expires in more than 14 days", async () => {
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const sim = await startSimulator({ port: 0, rate: 0 });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  try {
    const watch = new KeyExpiryWatch({ rest, accessKey: sim.accessKey, log: createLogger("a") });
    const days = await watch.check();
    assert.ok(days !== null && days >= 364, String(days));
    // No warning at all (matching the text would pass if the message were reworded).
    const warnings = lines.filter((l) => JSON.parse(l).level !== "info");
    assert.deepEqual(warnings, []);
  } finally {
    rest.close();
    await sim.close();
    restore();
  }
});
