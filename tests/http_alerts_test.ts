/**
 * @module Alerts out (`ALERT_WEBHOOK_URL`): a local receiver gets halts, resumes, alarms and live
 * fills from a live upbot on the simulator (the first delivery is refused, so it must be
 * retried), and a daily summary once the KST day ends; no payload carries a secret.
 */
import assert from "node:assert/strict";
import { raiseAlarm } from "../lib/store/alarms.ts";
import { type Alert, AlertWebhook, kstDay } from "../lib/http/alert_webhook.ts";
import { setLogSink } from "../lib/log.ts";
import { createLogger } from "../lib/log.ts";
import { DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY } from "../sim/mod.ts";
import { dbTest } from "./_db.ts";
import { LIVE_ENV, startUpbotRig, waitFor } from "./_upbot_rig.ts";

const TOKEN = "alerts-test-token-0c7e";
const HOOK_SECRET = "hook-path-secret-77f1";

/** A webhook receiver on port 0 that refuses the first `refuse` requests with a 503. */
function startReceiver(refuse = 0) {
  const bodies: string[] = [];
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    requests++;
    const text = await req.text();
    if (requests <= refuse) return new Response("busy", { status: 503 });
    bodies.push(text);
    return new Response(null, { status: 204 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hooks/${HOOK_SECRET}`,
    alerts: () => bodies.map((b) => JSON.parse(b) as Alert),
    bodies,
    requests: () => requests,
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
