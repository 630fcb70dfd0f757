/**
 * @module The HTTP API of a running upbot on the simulator: /healthz, /readyz, the dashboard JSON,
 * the controls (same store as the CLI) and bad input.
 */
import assert from "node:assert/strict";
import {
  completeFlatten,
  entryHaltReason,
  requestFlatten,
  tradingStates,
} from "../lib/control/trading_state.ts";
import { parseConfig } from "../lib/config.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { actorsRoute } from "../lib/http/actors_route.ts";
import { alarmRoutes } from "../lib/http/alarm_routes.ts";
import { createApp } from "../lib/http/app.ts";
import { controlRoutes } from "../lib/http/control_routes.ts";
import { liveness, readiness } from "../lib/http/health.ts";
import { activeAlarms, raiseAlarm } from "../lib/store/alarms.ts";
import { ATTEMPT_FIELDS, dashboardRoutes } from "../lib/http/dashboard_routes.ts";
import { createLogger, registerSecret, setLogSink } from "../lib/log.ts";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";
import { dbTest, testBackends } from "./_db.ts";
import { startUpbotRig, waitFor } from "./_upbot_rig.ts";

const TOKEN = "test-api-token-6f1c";
const auth = { authorization: `Bearer ${TOKEN}` };

async function getJson(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.json() };
}

for (const backend of testBackends()) {
  Deno.test(`HTTP API on a running upbot: health, readiness, dashboard JSON, controls, bad input [${backend}]`, async () => {
    await using rig = await startUpbotRig(backend, { API_TOKEN: TOKEN });
    const { url } = rig;

    const health = await getJson(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.ok, true);
    assert.equal(health.body.db, "ok");
    assert.equal(health.body.role, "leader");

    // Ready once every actor runs and the feed has caught up with the simulator's trades.
    await waitFor("/readyz 200", async () => (await getJson(`${url}/readyz`)).status === 200);
    assert.deepEqual((await getJson(`${url}/readyz`)).body, {
      ready: true,
      problems: [],
      role: "leader",
    });

    // Shadow attempts follow paper trades (test profile).
    const attempts = await waitFor("two shadow attempts", async () => {
      const r = await getJson(`${url}/api/attempts`);
      return r.body.length >= 2 ? r.body as Record<string, unknown>[] : undefined;
    });
    for (const a of attempts) {
      assert.deepEqual(Object.keys(a).sort(), ATTEMPT_FIELDS.map((f) => f.field).sort());
      assert.equal(typeof a.ts, "number");
      assert.ok(Math.abs((a.ts as number) - Date.now()) < 600_000);
      assert.equal(a.mode, "shadow");
      assert.match(
        String(a.identifier),
        /^paper-[a-z2-7]{8}-(\d+-(ENTER|EXIT)_LONG|close-\d+)(-r\d+)?$/,
      );
    }
    const ids = attempts.map((a) => a.id as number);
    assert.deepEqual(ids, [...ids].sort((x, y) => y - x), "newest first");
    const older = await getJson(`${url}/api/attempts?before=${ids[0]}&limit=1`);
    assert.equal(older.status, 200);
    assert.deepEqual(older.body.map((a: { id: number }) => a.id), [ids[1]]);
    const btcOnly = await getJson(`${url}/api/attempts?market=KRW-BTC&mode=shadow`);
    assert.ok(btcOnly.body.every((a: { market: string }) => a.market === "KRW-BTC"));

    const paper = await getJson(`${url}/api/paper-trades?limit=5`);
    assert.equal(paper.status, 200);
    assert.ok(paper.body.length >= 1 && paper.body.length <= 5);
    assert.equal(typeof paper.body[0].ts, "number");
    assert.equal(typeof paper.body[0].entry_price, "number");

    const now = Date.now();
    const bars = await getJson(`${url}/api/bars?market=KRW-BTC&from=${now - 120_000}&to=${now}`);
    assert.equal(bars.status, 200);
    assert.ok(bars.body.length >= 2, JSON.stringify(bars.body));
    const ts = bars.body.map((b: { ts: number }) => b.ts);
    assert.deepEqual(ts, [...ts].sort((x, y) => x - y), "oldest first");
    assert.ok(ts.every((t: number) => t >= now - 120_000 && t <= now && t % 1000 === 0));
    assert.equal(typeof bars.body[0].close, "number");

    const snapshots = await getJson(`${url}/api/snapshots`);
    assert.equal(snapshots.status, 200);
    assert.ok(Array.isArray(snapshots.body));
    const account = await getJson(`${url}/api/account`);
    assert.equal(account.status, 200);
    assert.ok(Array.isArray(account.body.balances) && Array.isArray(account.body.positions));

    const status = await getJson(`${url}/api/status`);
    assert.equal(status.status, 200);
    assert.equal(status.body.mode.effective, "shadow");
    assert.deepEqual(status.body.guard.map((g: { name: string }) => g.name), [
      "LIVE_TRADING_ENABLED",
      "UPBIT_TRADE_MODE",
      "LIVE_GUARD_PHRASE",
      "PAPER_POLICY_PROFILE",
      "UPBIT_KEYS",
    ]);
    assert.deepEqual(status.body.trading, [
      { scope: "global", state: "active", by: null, reason: null, since: null },
    ]);
    assert.deepEqual(status.body.alarms, []);
    // Without keys the account actor has nothing to do and stops (it is transient).
    assert.deepEqual(
      status.body.actors.map((a: { name: string; state: string }) => `${a.name}=${a.state}`),
      [
        "feed=running",
        "evaluator=running",
        "executor=running",
        "order_poller=running",
        "account=stopped",
      ],
    );
    assert.equal(typeof status.body.uptime_sec, "number");
    assert.equal(status.body.role, "leader");

    // Controls: token required; the halt lands in the same store the CLI writes.
    const noToken = await fetch(`${url}/api/control/halt`, {
      method: "POST",
      body: JSON.stringify({ reason: "x" }),
    });
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
    const noReason = await getJson(`${url}/api/control/halt`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ market: "KRW-BTC" }),
    });
    assert.equal(noReason.status, 400);
    assert.equal(noReason.body.field, "reason");
    const badMarket = await getJson(`${url}/api/control/halt`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ reason: "x", market: "btc" }),
    });
    assert.equal(badMarket.status, 400);
    assert.equal(badMarket.body.field, "market");
    const halted = await getJson(`${url}/api/control/halt`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ reason: "exchange notice", market: "KRW-ETH" }),
    });
    assert.equal(halted.status, 200);
    const stored = await tradingStates(rig.upbot.sql);
    assert.deepEqual(stored.map((s) => [s.scope, s.halted, s.reason, s.by]), [
      ["KRW-ETH", true, "exchange notice", "http"],
    ]);
    const afterHalt = await getJson(`${url}/api/status`);
    const eth = afterHalt.body.trading.find((t: { scope: string }) => t.scope === "KRW-ETH");
    assert.equal(eth.state, "halted");
    assert.equal(eth.by, "http");
    assert.equal(eth.reason, "exchange notice");
    assert.ok(Math.abs(eth.since - Date.now()) < 60_000);
    const resumed = await getJson(`${url}/api/control/resume`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ market: "KRW-ETH" }),
    });
    assert.equal(resumed.status, 200);
    assert.equal(
      resumed.body.trading.find((t: { scope: string }) => t.scope === "KRW-ETH").state,
      "active",
    );

    // Bad input: 400 naming the field, 404, 413.
    const cases: [string, string][] = [
      ["/api/attempts?limit=0", "limit"],
      ["/api/attempts?limit=abc", "limit"],
      ["/api/attempts?before=-1", "before"],
      ["/api/attempts?mode=yolo", "mode"],
      ["/api/attempts?colour=red", "colour"],
      ["/api/paper-trades?from=yesterday", "from"],
      ["/api/bars", "market"],
      ["/api/bars?market=KRW-BTC;drop", "market"],
      ["/api/status?x=1", "x"],
    ];
    for (const [path, field] of cases) {
      const r = await getJson(url + path);
      assert.equal(r.status, 400, path);
      assert.equal(r.body.field, field, path);
      assert.equal(typeof r.body.message, "string");
    }
    const notFound = await getJson(`${url}/api/nothing`);
    assert.deepEqual([notFound.status, notFound.body], [404, { error: "not found" }]);
    const tooBig = await getJson(`${url}/api/control/halt`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ reason: "x".repeat(100_000) }),
    });
    assert.equal(tooBig.status, 413);

    // No response carries the token.
    for (const path of ["/api/status", "/api/actors", "/healthz"]) {
      assert.ok(!(await (await fetch(url + path)).text()).includes(TOKEN), path);
    }

    // The exchange goes away: no longer ready, still alive.
    await rig.sim.close();
    const notReady = await waitFor("/readyz 503", async () => {
      const r = await getJson(`${url}/readyz`);
      return r.status === 503 ? r.body : undefined;
    });
    assert.equal(notReady.ready, false);
    assert.ok(
      notReady.problems.some((p: string) =>
        p === "feed is not connected to the Upbit WebSocket" || p.startsWith("feed is behind")
      ),
      JSON.stringify(notReady),
    );
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
  });
}

dbTest("POST /api/control/resume is refused (409) while a flatten is pending", async (db) => {
  await db.sql`
    insert into upbit_order_attempts (symbol, action, mode, side, ord_type, identifier, state,
      executed_volume, paid_fee, avg_price)
    values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'price', 'http-test-1', 'filled', '0.001',
      '50', '100000000')`;
  const id = await requestFlatten(db.sql, { reason: "away", by: "cli" });
  const lines: string[] = [];
  const restoreSink = setLogSink((line) => lines.push(line));
  using _restore = { [Symbol.dispose]: restoreSink };
  let changed = 0;
  const routes = controlRoutes({
    sql: db.sql,
    log: createLogger("http"),
    onChanged: () => changed++,
  });
  const res = await routes.request("/api/control/resume", { method: "POST", body: "{}" });
  assert.equal(res.status, 409);
  const body = await res.json();
  assert.equal(body.ok, false);
  assert.match(
    body.error,
    new RegExp(
      `^resume refused: flatten #${id} \\(requested by cli at \\S+: away\\) is still pending, closing KRW-BTC; it completes once every live position is closed, then entries can be resumed$`,
    ),
  );
  assert.equal(changed, 0);
  assert.ok(lines.some((l) => l.includes("Resume over HTTP refused")), lines.join("\n"));
  assert.match((await entryHaltReason(db.sql, "KRW-ETH"))!, /globally by cli .+flatten: away/);
  // Once the position is sold and the flatten completed, the resume goes through.
  await db.sql`
    insert into upbit_order_attempts (symbol, action, mode, side, ord_type, identifier, state,
      executed_volume, paid_fee, avg_price)
    values ('KRW-BTC', 'CLOSE', 'live', 'ask', 'market', 'http-test-2', 'filled', '0.001',
      '50', '100000000')`;
  assert.deepEqual(await completeFlatten(db.sql, id), []);
  const ok = await routes.request("/api/control/resume", { method: "POST", body: "{}" });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
});

dbTest(
  "POST /api/control/alarms/clear clears one active alarm, names a missing one, needs the token",
  async (db) => {
    await raiseAlarm(db.sql, { code: "order_lost", market: "KRW-BTC", message: "lost order x" });
    await raiseAlarm(db.sql, { code: "order_lost", market: "KRW-ETH", message: "lost order y" });
    const restoreSink = setLogSink(() => {});
    using _restore = { [Symbol.dispose]: restoreSink };
    const app = createApp({
      liveness: () => ({ ok: true, db: "ok", uptime_sec: 0 }),
      readiness: () => ({ ready: true, problems: [] }),
      auth: { token: TOKEN, everywhere: false },
      routes: [alarmRoutes({ sql: db.sql, log: createLogger("http") })],
    });
    const clear = (body: unknown, headers: Record<string, string> = auth) =>
      app.request("/api/control/alarms/clear", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const noToken = await clear({ code: "order_lost", market: "KRW-BTC" }, {});
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
    const bad = await clear({ code: "", market: "btc" });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    const ok = await clear({ code: "order_lost", market: "KRW-BTC" });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true, cleared: 1 });
    assert.deepEqual((await activeAlarms(db.sql)).map((a) => [a.code, a.market]), [
      ["order_lost", "KRW-ETH"],
    ]);
    const again = await clear({ code: "order_lost", market: "KRW-BTC" });
    assert.equal(again.status, 404);
    assert.deepEqual(await again.json(), {
      ok: false,
      error: "no active alarm order_lost on KRW-BTC",
    });
  },
);

dbTest(
  "a secret in an actor's error is masked where the supervisor records it: not in /healthz, /readyz, /api/status or /api/actors",
  async (db) => {
    const secret = `db-pass-${crypto.randomUUID()}`;
    registerSecret(secret);
    const restoreSink = setLogSink(() => {});
    using _restore = { [Symbol.dispose]: restoreSink };
    const echo = new URL("./fixtures/actors/echo.ts", import.meta.url);
    const supervisor = new UpbotSupervisor({
      actors: [
        { name: "feed", module: echo },
        { name: "helper", module: echo, restart: "temporary" },
      ],
      log: { level: "error", format: "json" },
      statusLogIntervalMs: 0,
      // The crashed feed waits to restart for the whole test.
      restartMinDelayMs: 60_000,
      restartMaxDelayMs: 60_000,
    });
    try {
      await supervisor.start();
      const error = (who: string) =>
        `PostgresError: password authentication failed for ${who} (postgres://bob:${secret}@db/x)`;
      // A crash (the feed restarts later) and a failure (a temporary actor is not restarted).
      assert.equal(supervisor.kill("feed", error("feed")), true);
      assert.equal(supervisor.kill("helper", error("helper")), true);
      const masked = (who: string) =>
        `PostgresError: password authentication failed for ${who} (postgres://bob:***@db/x)`;
      assert.deepEqual(
        supervisor.status().map((a) => [a.name, a.state, a.lastError]),
        [["feed", "restarting", masked("feed")], ["helper", "failed", masked("helper")]],
      );
      const config = parseConfig({});
      const startedAt = Date.now();
      const app = createApp({
        liveness: () => liveness(() => db.sql`select 1`, startedAt),
        readiness: () => readiness(supervisor.status()),
        routes: [
          actorsRoute(supervisor),
          dashboardRoutes({
            sql: db.sql,
            guard: decideTradeMode(config),
            markets: config.MARKETS,
            actors: () => supervisor.status(),
            supervisorHalt: () => supervisor.haltReason,
            startedAt,
          }),
        ],
      });
      const bodies: Record<string, string> = {};
      for (const path of ["/healthz", "/readyz", "/api/status", "/api/actors"]) {
        const res = await app.request(path);
        bodies[path] = await res.text();
        assert.ok(!bodies[path].includes(secret), `${path}: ${bodies[path]}`);
      }
      const status = JSON.parse(bodies["/api/status"]!);
      assert.deepEqual(
        status.actors.map((a: { name: string; last_error: string }) => [a.name, a.last_error]),
        [["feed", masked("feed")], ["helper", masked("helper")]],
      );
      const actors = JSON.parse(bodies["/api/actors"]!);
      assert.deepEqual(
        actors.map((a: { name: string; lastError: string }) => [a.name, a.lastError]),
        [["feed", masked("feed")], ["helper", masked("helper")]],
      );
    } finally {
      await supervisor.stop();
    }
  },
);
