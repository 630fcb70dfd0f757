import assert from "node:assert/strict";
import { activeAlarms, clearAlarm, raiseAlarm } from "../lib/store/alarms.ts";
import { dbTest } from "./_db.ts";

dbTest("raiseAlarm() stores a new active alarm", async ({ sql }) => {
  const a = await raiseAlarm(sql, {
    code: "exit_failing",
    market: "KRW-BTC",
    message: "sell refused: market_offline",
    details: { attempt: 3, volume: "0.001" },
  });
  assert.equal(typeof a.id, "number");
  assert.equal(a.code, "exit_failing");
  assert.equal(a.market, "KRW-BTC");
  assert.equal(a.count, 1);
  assert.deepEqual(a.details, { attempt: 3, volume: "0.001" });
  assert.ok(a.first_at instanceof Date);
  assert.equal(a.cleared_at, null);
  assert.deepEqual((await activeAlarms(sql)).map((r) => r.id), [a.id]);
});

dbTest("raiseAlarm() again counts the active alarm up and updates its message", async ({ sql }) => {
  const first = await raiseAlarm(sql, { code: "exit_failing", market: "KRW-BTC", message: "m1" });
  const second = await raiseAlarm(sql, {
    code: "exit_failing",
    market: "KRW-BTC",
    message: "m2",
    details: { n: 2 },
  });
  assert.equal(second.id, first.id);
  assert.equal(second.count, 2);
  assert.equal(second.message, "m2");
  assert.deepEqual(second.details, { n: 2 });
  assert.equal(second.first_at.getTime(), first.first_at.getTime());
  assert.ok(second.last_at.getTime() >= first.last_at.getTime());
  // Another market, or no market, is another alarm.
  const other = await raiseAlarm(sql, { code: "exit_failing", market: "KRW-ETH", message: "e" });
  const global = await raiseAlarm(sql, { code: "exit_failing", message: "g" });
  const globalAgain = await raiseAlarm(sql, { code: "exit_failing", market: null, message: "g2" });
  assert.equal(globalAgain.id, global.id);
  assert.equal(globalAgain.count, 2);
  assert.equal(global.market, null);
  assert.deepEqual(
    (await activeAlarms(sql)).map((r) => [r.id, r.count]),
    [[first.id, 2], [other.id, 1], [global.id, 2]],
  );
});

dbTest("clearAlarm() clears one alarm; raising it later starts a new one", async ({ sql }) => {
  const btc = await raiseAlarm(sql, { code: "c", market: "KRW-BTC", message: "x" });
  const none = await raiseAlarm(sql, { code: "c", message: "y" });
  await clearAlarm(sql, "c", "KRW-BTC");
  assert.deepEqual((await activeAlarms(sql)).map((r) => r.id), [none.id]);
  await clearAlarm(sql, "c");
  assert.deepEqual(await activeAlarms(sql), []);
  // Clearing what is not active does nothing.
  await clearAlarm(sql, "c", "KRW-BTC");
  const again = await raiseAlarm(sql, { code: "c", market: "KRW-BTC", message: "z" });
  assert.notEqual(again.id, btc.id);
  assert.equal(again.count, 1);
  const rows = await sql`select id, cleared_at from alarms order by id`;
  assert.deepEqual(rows.map((r) => [r.id, r.cleared_at !== null]), [
    [btc.id, true],
    [none.id, true],
    [again.id, false],
  ]);
});
