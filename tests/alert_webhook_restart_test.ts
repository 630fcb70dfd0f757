/**
 * @module Alerts out across restarts: where delivery stands is stored, so an alert the last run
 * had not delivered, a fact stored while upbot was down and a daily summary due meanwhile are
 * sent by the next start, and what the last run delivered is not sent again.
 */
import assert from "node:assert/strict";
import { haltEntries } from "../lib/control/trading_state.ts";
import {
  type Alert,
  ALERT_WEBHOOK_STATE,
  AlertWebhook,
  CATCH_UP_MS,
  kstDay,
} from "../lib/http/alert_webhook.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { loadActorState, saveActorState } from "../lib/store/actor_state.ts";
import { raiseAlarm } from "../lib/store/alarms.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { waitFor } from "./_upbot_rig.ts";

/** A webhook receiver on port 0; refuses every request (503) while `refusing(true)`. */
function startReceiver() {
  const alerts: Alert[] = [];
  let requests = 0;
  let refuse = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    requests++;
    const alert = await req.json() as Alert;
    if (refuse) return new Response("busy", { status: 503 });
    alerts.push(alert);
    return new Response(null, { status: 204 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    alerts,
    requests: () => requests,
    refusing: (on: boolean) => {
      refuse = on;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A webhook whose timer never fires in a test (polls are explicit), retrying quickly. */
function hook(db: TestDatabase, url: string, now: () => number = Date.now): AlertWebhook {
  return new AlertWebhook({
    sql: db.sql,
    url,
    log: createLogger("alerts"),
    pollMs: 3_600_000,
    maxAttempts: 10_000,
    retryBaseMs: 20,
    now,
  });
}

/** The same stored position for every store. */
const positions = (ms: number) => ({ history: ms, alarms: ms, fills: ms });

/** A finished live fill of upbot's, stamped `at` (as the poller stamps it: whole milliseconds). */
async function liveFill(db: TestDatabase, identifier: string, at: Date): Promise<void> {
  await db.sql`
    insert into upbit_order_attempts (symbol, action, mode, side, ord_type, identifier, state,
      final_state, executed_volume, paid_fee, avg_price, updated_at)
    values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'price', ${identifier}, 'filled', 'done',
      '0.001', '5', '100000000', ${at})`;
}

/** The database's clock now (Unix ms). */
async function dbNowMs(db: TestDatabase): Promise<number> {
  const [t] = await db.sql<{ now: Date }[]>`select now() as now`;
  return t!.now.getTime();
}

/** The first live fill the receiver got, waited for. */
const deliveredFill = (receiver: { alerts: Alert[] }) =>
  waitFor("the fill delivered", () => receiver.alerts.find((a) => a.type === "live_fill"));

const alarmCodes = (alerts: Alert[]) =>
  alerts.filter((a) => a.type === "alarm").map((a) => String(a.code));

dbTest(
  "alerts out: a restart sends what the last run had not delivered and what was stored meanwhile, not what it delivered",
  async (db) => {
    using _quiet = { [Symbol.dispose]: setLogSink(() => {}) };
    await using receiver = startReceiver();
    await raiseAlarm(db.sql, { code: "before_first_start", message: "stored before" });
    const first = hook(db, receiver.url);
    await first.start();
    await raiseAlarm(db.sql, { code: "delivered", message: "one" });
    await first.poll();
    await waitFor("the first alarm delivered", () => alarmCodes(receiver.alerts).length === 1);
    // The webhook fails: the next alarm is being retried when upbot stops.
    receiver.refusing(true);
    await raiseAlarm(db.sql, { code: "undelivered", message: "two" });
    const asked = receiver.requests();
    await first.poll();
    await waitFor("the second alarm tried", () => receiver.requests() > asked + 1);
    await first.stop();
    // Stored while upbot is down.
    await raiseAlarm(db.sql, { code: "while_down", message: "three" });
    await haltEntries(db.sql, { scope: "KRW-BTC", reason: "notice while down", by: "cli" });
    receiver.refusing(false);

    const second = hook(db, receiver.url);
    await second.start();
    await waitFor("the missed alerts delivered", () => receiver.alerts.length === 4);
    await second.stop();
    assert.deepEqual(alarmCodes(receiver.alerts), ["delivered", "undelivered", "while_down"]);
    const halt = receiver.alerts.find((a) => a.type === "halt");
    assert.equal(halt?.text, "upbot: entries HALTED (KRW-BTC) by cli: notice while down");

    // Everything delivered: a third start sends nothing again.
    const third = hook(db, receiver.url);
    await third.start();
    await third.poll();
    await new Promise((r) => setTimeout(r, 200));
    await third.stop();
    assert.equal(receiver.alerts.length, 4, JSON.stringify(receiver.alerts.map((a) => a.text)));
  },
);

dbTest(
  "alerts out: a daily summary due while upbot was down is sent by the next start",
  async (db) => {
    using _quiet = { [Symbol.dispose]: setLogSink(() => {}) };
    await using receiver = startReceiver();
    // Stopped during 2026-03-04 (KST), started again on the 6th: the 4th's summary was never sent.
    let now = Date.parse("2026-03-04T10:00:00Z");
    const first = hook(db, receiver.url, () => now);
    await first.start();
    await first.stop();
    now = Date.parse("2026-03-06T01:00:00Z");
    const second = hook(db, receiver.url, () => now);
    await second.start();
    const summary = await waitFor(
      "the missed summary",
      () => receiver.alerts.find((a) => a.type === "daily_summary"),
    );
    assert.equal(summary.day_kst, "2026-03-04");
    await second.stop();
    assert.equal(
      (await loadActorState<{ summaryDay: string }>(db.sql, ALERT_WEBHOOK_STATE))?.summaryDay,
      "2026-03-06",
      "the day in progress is the next one summed up",
    );
  },
);

dbTest(
  "alerts out: a start goes back no further than CATCH_UP_MS, and an unreadable position starts from now",
  async (db) => {
    const lines: string[] = [];
    using _sink = { [Symbol.dispose]: setLogSink((l) => lines.push(l)) };
    await using receiver = startReceiver();
    const dbNow = await dbNowMs(db);
    await raiseAlarm(db.sql, { code: "too_old", message: "old" });
    await db.sql`update alarms set first_at = ${new Date(dbNow - CATCH_UP_MS - 120_000)},
      last_at = ${new Date(dbNow - CATCH_UP_MS - 60_000)} where code = 'too_old'`;
    await raiseAlarm(db.sql, { code: "recent", message: "new" });
    await db.sql`update alarms set first_at = ${new Date(dbNow - 3_600_000)},
      last_at = ${new Date(dbNow - 3_600_000)} where code = 'recent'`;
    await saveActorState(db.sql, ALERT_WEBHOOK_STATE, {
      through: positions(dbNow - 3 * CATCH_UP_MS),
      summaryDay: "2026-03-04",
      seen: [],
    });
    const first = hook(db, receiver.url, () => Date.parse("2026-03-04T10:00:00Z"));
    await first.start();
    await waitFor("the recent alarm", () => alarmCodes(receiver.alerts).length > 0);
    await first.stop();
    assert.deepEqual(alarmCodes(receiver.alerts), ["recent"]);

    await saveActorState(db.sql, ALERT_WEBHOOK_STATE, { deliveredThrough: "yesterday" });
    await raiseAlarm(db.sql, { code: "before_start", message: "stored before the start" });
    const second = hook(db, receiver.url);
    await second.start();
    await second.poll();
    await second.stop();
    assert.deepEqual(alarmCodes(receiver.alerts), ["recent"]);
    assert.ok(
      lines.some((l) => l.includes("stored delivery position is not valid")),
      lines.join("\n"),
    );
  },
);

dbTest(
  "alerts out: a fill stamped in whole milliseconds and waiting over a minute survives a restart",
  async (db) => {
    using _quiet = { [Symbol.dispose]: setLogSink(() => {}) };
    await using receiver = startReceiver();
    const dbNow = await dbNowMs(db);
    await saveActorState(db.sql, ALERT_WEBHOOK_STATE, {
      through: positions(dbNow - 600_000),
      summaryDay: kstDay(Date.now()),
      seen: [],
    });
    await liveFill(db, "fill-ms-1", new Date(Date.now() - 300_000));
    receiver.refusing(true);
    const first = hook(db, receiver.url);
    await first.start();
    await waitFor("the fill tried", () => receiver.requests() > 1);
    await first.stop();
    const stored = await loadActorState<{ through: { fills: number } }>(
      db.sql,
      ALERT_WEBHOOK_STATE,
    );
    assert.ok(stored!.through.fills < Date.now() - 300_000, JSON.stringify(stored));
    receiver.refusing(false);
    const second = hook(db, receiver.url);
    await second.start();
    const fill = await deliveredFill(receiver);
    await second.stop();
    assert.equal(fill.identifier, "fill-ms-1");
  },
);

dbTest(
  "alerts out: fills are read by this process's clock (it stamps them), whatever the database's says",
  async (db) => {
    using _quiet = { [Symbol.dispose]: setLogSink(() => {}) };
    await using receiver = startReceiver();
    // This process's clock 65 s behind the database's: its fills are stamped that far back.
    const skewMs = -65_000;
    const now = () => Date.now() + skewMs;
    const hooked = hook(db, receiver.url, now);
    await hooked.start();
    await liveFill(db, "fill-skew-1", new Date(now()));
    await hooked.poll();
    const fill = await deliveredFill(receiver);
    await hooked.stop();
    assert.equal(fill.identifier, "fill-skew-1");
  },
);

dbTest(
  "alerts out: a catch-up is sent in time order across the stores, each once",
  async (db) => {
    using _quiet = { [Symbol.dispose]: setLogSink(() => {}) };
    await using receiver = startReceiver();
    const dbNow = await dbNowMs(db);
    await saveActorState(db.sql, ALERT_WEBHOOK_STATE, {
      through: positions(dbNow - 3_600_000),
      summaryDay: kstDay(Date.now()),
      seen: [],
    });
    await raiseAlarm(db.sql, { code: "old_alarm", message: "fifty minutes ago" });
    await db.sql`update alarms set first_at = ${new Date(dbNow - 3_000_000)},
      last_at = ${new Date(dbNow - 3_000_000)} where code = 'old_alarm'`;
    await haltEntries(db.sql, { scope: "KRW-ETH", reason: "ten minutes ago", by: "cli" });
    await db.sql`update trading_state_history set at = ${new Date(dbNow - 600_000)}`;
    await liveFill(db, "fill-order-1", new Date(Date.now() - 1_200_000));
    const first = hook(db, receiver.url);
    await first.start();
    await waitFor("three alerts", () => receiver.alerts.length === 3);
    await first.stop();
    assert.deepEqual(receiver.alerts.map((a) => a.type), ["alarm", "live_fill", "halt"]);
    const second = hook(db, receiver.url);
    await second.start();
    await second.poll();
    await new Promise((r) => setTimeout(r, 200));
    await second.stop();
    assert.equal(receiver.alerts.length, 3, JSON.stringify(receiver.alerts.map((a) => a.text)));
  },
);
