/**
 * @module `RestCallStats` on a real `UpbitRest` against the simulator: calls by group and status,
 * 429 answers, the latest Remaining-Req per group, and calls that got no answer; and the account
 * actor's REST outcome report (`AccountSync` `onRestResult`), which the reconciliation gate reads.
 */
import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { AccountSync } from "../lib/pipeline/account.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { RestCallStats } from "../lib/upbit/rest_stats.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest } from "./_db.ts";

Deno.test("RestCallStats counts calls by group and status, 429s and Remaining-Req", async () => {
  const restoreLog = setLogSink(() => {});
  const sim = await startSimulator({ port: 0, seed: 3, rate: 0, markets: ["KRW-BTC"] });
  const stats = new RestCallStats();
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    fetch: stats.fetch,
    maxAttempts: 1,
  });
  try {
    await rest.getAccounts();
    await rest.getTicker({ markets: ["KRW-BTC"] });
    let m = stats.metrics();
    assert.equal(m["rest_calls:default:200"], 1);
    assert.equal(m["rest_calls:ticker:200"], 1);
    assert.equal(typeof m["rest_remaining_req:default"], "number");
    assert.equal(m["rest_rate_limited:429"], 0);
    assert.equal(m["rest_rate_limited:418"], 0);
    // The simulator allows one account call per second now: a burst draws 429s.
    sim.setFaults({ rate_limit_factor: 0.01 });
    const results = await Promise.allSettled([1, 2, 3].map(() => rest.getAccounts()));
    const refused = results.filter((r) => r.status === "rejected").length;
    assert.ok(refused >= 1, "at least one 429");
    m = stats.metrics();
    assert.equal(m["rest_calls:default:429"], refused);
    assert.equal(m["rest_rate_limited:429"], refused);
    assert.equal(m["rest_calls:default:200"], 1 + 3 - refused);
  } finally {
    rest.close();
    await sim.close();
    restoreLog();
  }
  // No answer at all (nothing listens): counted as `error`.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const offline = new UpbitRest({ baseUrl: `http://127.0.0.1:${port}`, fetch: stats.fetch });
  try {
    await assert.rejects(offline.getTicker({ markets: ["KRW-BTC"] }));
  } finally {
    offline.close();
  }
  assert.ok(stats.metrics()["rest_calls:ticker:error"]! >= 1);
});

dbTest("AccountSync reports whether GET /v1/accounts answered", async (db) => {
  const restoreLog = setLogSink(() => {});
  const sim = await startSimulator({ port: 0, seed: 3, rate: 0, markets: ["KRW-BTC"] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    maxAttempts: 1,
  });
  const results: boolean[] = [];
  const sync = new AccountSync({
    sql: db.sql,
    rest,
    markets: ["KRW-BTC"],
    log: createLogger("account"),
    onRestResult: (ok) => results.push(ok),
  });
  try {
    await sync.pollOnce();
    sim.setFaults({ error_rate: 1 });
    await assert.rejects(sync.pollOnce());
    sim.setFaults({ error_rate: 0 });
    await sync.pollOnce();
    assert.deepEqual(results, [true, false, true]);
  } finally {
    rest.close();
    await sim.close();
    restoreLog();
  }
});
