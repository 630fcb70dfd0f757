/**
 * @module Alerts out (`ALERT_WEBHOOK_URL`): a local receiver gets halts, resumes, alarms and live
 * fills from a live upbot on the simulator (the first delivery is refused, so it must be
 * retried), and a daily summary once the KST day ends; no payload carries a secret.
 */
import assert from "node:assert/strict";
import { activeAlarms, raiseAlarm } from "../lib/store/alarms.ts";
import {
  type Alert,
  ALERT_WEBHOOK_FAILING,
  AlertWebhook,
  kstDay,
  PAGE_ROWS,
} from "../lib/http/alert_webhook.ts";
import { setLogSink } from "../lib/log.ts";
import { createLogger } from "../lib/log.ts";
import { DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY } from "../sim/mod.ts";
import { dbTest } from "./_db.ts";
import { LIVE_ENV, startUpbotRig, waitFor } from "./_upbot_rig.ts";

const TOKEN = "alerts-test-token-0c7e";
const HOOK_SECRET = "hook-path-secret-77f1";

/**
 * A webhook receiver on port 0 that refuses the first `refuse` requests with a 503, and every
 * request while `refusing(true)`.
 */
function startReceiver(refuse = 0) {
  const bodies: string[] = [];
  let requests = 0;
  let refuseAll = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    requests++;
    const text = await req.text();
    if (requests <= refuse || refuseAll) return new Response("busy", { status: 503 });
    bodies.push(text);
    return new Response(null, { status: 204 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hooks/${HOOK_SECRET}`,
    alerts: () => bodies.map((b) => JSON.parse(b) as Alert),
    bodies,
    requests: () => requests,
    refusing: (on: boolean) => {
      refuseAll = on;
    },
    close: () => server.shutdown(),
  };
}

Deno.test("alerts out: halt, resume, alarm and live fill reach the webhook, retried, no secret", async () => {
  const receiver = startReceiver(1);
  try {
    await using rig = await startUpbotRig("pglite", {
      API_TOKEN: TOKEN,
      ALERT_WEBHOOK_URL: receiver.url,
      ...LIVE_ENV,
    });
    const control = async (action: string, body: unknown) => {
      const res = await fetch(`${rig.url}/api/control/${action}`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    };
    await control("halt", { reason: "alerts test", market: "KRW-ETH" });
    await control("resume", { market: "KRW-ETH" });
    await raiseAlarm(rig.upbot.sql, {
      code: "exit_failing",
      market: "KRW-BTC",
      message: "sell refused twice",
    });
    const alerts = await waitFor("halt, resume, alarm and a live fill delivered", () => {
      const got = receiver.alerts();
      const types = new Set(got.map((a) => a.type));
      return ["halt", "resume", "alarm", "live_fill"].every((t) => types.has(t as Alert["type"]))
        ? got
        : undefined;
    }, 90_000);
    const halt = alerts.find((a) => a.type === "halt")!;
    assert.equal(halt.scope, "KRW-ETH");
    assert.equal(halt.by, "http");
    assert.equal(halt.text, "upbot: entries HALTED (KRW-ETH) by http: alerts test");
    assert.equal(typeof halt.ts, "number");
    const alarm = alerts.find((a) => a.type === "alarm")!;
    assert.equal(alarm.text, "upbot ALARM exit_failing KRW-BTC: sell refused twice");
    const fill = alerts.find((a) => a.type === "live_fill")!;
    assert.match(
      String(fill.identifier),
      /^paper-[a-z2-7]{8}-(\d+-(ENTER|EXIT)_LONG|close-\d+)(-r\d+)?$/,
    );
    assert.ok(Number(fill.executed_volume) > 0);
    // The first POST was refused and the same alert delivered again: nothing lost, in order.
    assert.ok(receiver.requests() > receiver.bodies.length);
    assert.equal(alerts[0]!.type, "halt");
    // Each fill once.
    const fillIds = alerts.filter((a) => a.type === "live_fill").map((a) => a.identifier);
    assert.equal(new Set(fillIds).size, fillIds.length);
    for (const body of receiver.bodies) {
      for (const secret of [TOKEN, DEFAULT_SECRET_KEY, DEFAULT_ACCESS_KEY, HOOK_SECRET]) {
        assert.ok(!body.includes(secret), `secret in ${body}`);
      }
    }
    assert.ok(!rig.lines.some((l) => l.includes(HOOK_SECRET)), "webhook URL logged");
  } finally {
    await receiver.close();
  }
});

dbTest("alerts out: a daily summary of the KST day that ended", async (db) => {
  const restore = setLogSink(() => {});
  const receiver = startReceiver();
  // 2026-03-04 in KST: 15:00 UTC on the 3rd up to 15:00 UTC on the 4th.
  const day = "2026-03-04";
  const inDay = Date.parse("2026-03-04T03:00:00Z");
  let now = Date.parse("2026-03-04T14:59:00Z");
  const hook = new AlertWebhook({
    sql: db.sql,
    url: receiver.url,
    log: createLogger("test"),
    pollMs: 3_600_000,
    now: () => now,
  });
  try {
    assert.equal(kstDay(inDay), day);
    assert.equal(kstDay(Date.parse("2026-03-04T15:00:00Z")), "2026-03-05");
    const [entry] = await db.sql<{ id: string }[]>`
      insert into paper_trades (ts, symbol, action, policy_profile, entry_ts, entry_price, qty, fee)
      values (${new Date(inDay)}, 'KRW-BTC', 'ENTER_LONG', 'test', ${new Date(inDay)}, 100, 1, 0.05)
      returning id`;
    await db.sql`
      insert into paper_trades (ts, symbol, action, policy_profile, entry_id, entry_ts, entry_price,
                                exit_ts, exit_price, qty, fee, pnl, hold_sec, exit_reason)
      values (${new Date(inDay + 5000)}, 'KRW-BTC', 'EXIT_LONG', 'test', ${entry!.id},
              ${new Date(inDay)}, 100, ${new Date(inDay + 5000)}, 103, 1, 0.05, 2.9, 5, 'TP')`;
    // Outside the day: not counted.
    await db.sql`
      insert into paper_trades (ts, symbol, action, policy_profile, entry_ts, entry_price, qty, fee)
      values (${new Date(inDay + 86_400_000)}, 'KRW-BTC', 'ENTER_LONG', 'test',
              ${new Date(inDay)}, 100, 1, 0.05)`;
    await hook.start();
    await hook.poll();
    assert.equal(receiver.alerts().length, 0, "no summary before midnight KST");
    now = Date.parse("2026-03-04T15:00:30Z");
    await hook.poll();
    const summary = await waitFor("daily summary", () => receiver.alerts()[0], 10_000);
    assert.equal(summary.type, "daily_summary");
    assert.equal(summary.day_kst, day);
    assert.equal(summary.paper_entries, 1);
    assert.equal(summary.paper_exits, 1);
    assert.equal(summary.paper_pnl, 2.9);
    assert.equal(summary.ts, Date.parse("2026-03-04T15:00:00Z"));
    assert.match(String(summary.text), /^upbot 2026-03-04 \(KST\): 1 paper entries, 1 exits/);
    await hook.poll();
    assert.equal(receiver.alerts().length, 1, "one summary per day");
  } finally {
    await hook.stop();
    await receiver.close();
    restore();
  }
});

dbTest(
  "alerts out: more history rows than a page within the reading window are all sent, and later ones too",
  async (db) => {
    const restore = setLogSink(() => {});
    const receiver = startReceiver();
    const hook = new AlertWebhook({
      sql: db.sql,
      url: receiver.url,
      log: createLogger("test"),
      pollMs: 3_600_000,
      queueLimit: 10_000,
    });
    try {
      await hook.start();
      // Halts sent in a loop: more than a page within seconds, here all in one transaction (one
      // time to the microsecond, so only the ids tell them apart).
      const n = PAGE_ROWS + 150;
      await db.sql`
      insert into trading_state_history (scope, action, reason, changed_by)
      select 'KRW-BTC', 'halt', 'loop ' || i, 'http' from generate_series(1, ${n}) i`;
      await hook.poll();
      await waitFor("every halt delivered", () => hook.delivered >= n || undefined, 30_000);
      // A resume a moment later is read and sent too (not hidden behind the page already seen).
      await db.sql`
      insert into trading_state_history (scope, action, changed_by)
      values ('KRW-BTC', 'resume', 'http')`;
      await hook.poll();
      const resume = await waitFor(
        "the resume delivered",
        () => receiver.alerts().find((a) => a.type === "resume"),
        10_000,
      );
      assert.equal(resume.text, "upbot: entries resumed (KRW-BTC) by http");
      const alerts = receiver.alerts();
      assert.equal(alerts.length, n + 1, "each once");
      assert.deepEqual(
        alerts.slice(0, n).map((a) => a.reason),
        Array.from({ length: n }, (_, i) => `loop ${i + 1}`),
        "in order",
      );
    } finally {
      await hook.stop();
      await receiver.close();
      restore();
    }
  },
);

dbTest(
  "alerts out: a daily summary whose read fails at midnight is sent at the next poll",
  async (db) => {
    const lines: string[] = [];
    const restore = setLogSink((line) => lines.push(line));
    const receiver = startReceiver();
    let now = Date.parse("2026-03-04T14:59:00Z");
    const hook = new AlertWebhook({
      sql: db.sql,
      url: receiver.url,
      log: createLogger("test"),
      pollMs: 3_600_000,
      now: () => now,
    });
    try {
      await hook.start();
      now = Date.parse("2026-03-04T15:00:30Z");
      // The summary's first read fails (its table is away); the other reads work, and what they
      // find is delivered all the same.
      await db.sql`alter table paper_trades rename to paper_trades_away`;
      await db.sql`
        insert into trading_state_history (scope, action, reason, changed_by)
        values ('global', 'halt', 'at midnight', 'cli')`;
      await hook.poll();
      assert.ok(
        lines.some((l) =>
          l.includes("Alert webhook: the daily summary's read failed, tried again")
        ),
        lines.join("\n"),
      );
      const halt = await waitFor("the halt delivered", () => receiver.alerts()[0], 10_000);
      assert.equal(halt.reason, "at midnight");
      assert.equal(receiver.alerts().length, 1, "no summary yet");
      await db.sql`alter table paper_trades_away rename to paper_trades`;
      await hook.poll();
      const summary = await waitFor("daily summary", () => receiver.alerts()[1], 10_000);
      assert.equal(summary.type, "daily_summary");
      assert.equal(summary.day_kst, "2026-03-04");
      await hook.poll();
      assert.equal(receiver.alerts().length, 2, "one summary per day");
    } finally {
      await hook.stop();
      await receiver.close();
      restore();
    }
  },
);

dbTest(
  "alerts out: a webhook that keeps failing raises alert_webhook_failing once, cleared when it takes an alert",
  async (db) => {
    const restore = setLogSink(() => {});
    const receiver = startReceiver();
    receiver.refusing(true);
    const hook = new AlertWebhook({
      sql: db.sql,
      url: receiver.url,
      log: createLogger("test"),
      pollMs: 3_600_000,
      maxAttempts: 2,
      retryBaseMs: 10,
    });
    const failing = async () =>
      (await activeAlarms(db.sql)).filter((a) => a.code === ALERT_WEBHOOK_FAILING);
    const halt = (reason: string) =>
      db.sql`
      insert into trading_state_history (scope, action, reason, changed_by)
      values ('global', 'halt', ${reason}, 'cli')`;
    try {
      await hook.start();
      await halt("first");
      await hook.poll();
      const [alarm] = await waitFor("the alarm raised", async () => {
        const found = await failing();
        return found.length > 0 ? found : undefined;
      }, 10_000);
      assert.equal(hook.dropped, 1);
      assert.equal(alarm!.market, null);
      assert.equal(
        alarm!.message,
        "The alert webhook did not take a halt alert in 2 attempts (HTTP 503); it was dropped, " +
          "and alerts are lost while the webhook fails. Cleared by the next alert it takes.",
      );
      // More alerts lost (the alarm's own alert among them): the alarm is not raised again.
      await halt("second");
      await hook.poll();
      await waitFor(
        "the alarm's alert and the second halt dropped",
        () => hook.dropped >= 3 || undefined,
      );
      assert.equal((await failing())[0]!.count, 1);
      assert.equal(receiver.bodies.length, 0);

      // The webhook answers again: the next alert is taken and the alarm cleared.
      receiver.refusing(false);
      await halt("third");
      await hook.poll();
      await waitFor("the alarm cleared", async () => (await failing()).length === 0 || undefined);
      assert.deepEqual(receiver.alerts().map((a) => a.reason), ["third"]);
      assert.equal(hook.delivered, 1);
    } finally {
      await hook.stop();
      await receiver.close();
      restore();
    }
  },
);
