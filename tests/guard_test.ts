import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import { decideTradeMode, LIVE_GUARD_PHRASE } from "../lib/execution/guard.ts";

Deno.test("decideTradeMode() is shadow by default with every condition reported", () => {
  const d = decideTradeMode(parseConfig({}));
  assert.equal(d.requested, "shadow");
  assert.equal(d.effective, "shadow");
  assert.deepEqual(d.conditions.map((c) => [c.name, c.ok, c.value]), [
    ["LIVE_TRADING_ENABLED", false, "false"],
    ["UPBIT_TRADE_MODE", false, "shadow"],
    ["LIVE_GUARD_PHRASE", false, "empty"],
    ["PAPER_POLICY_PROFILE", false, "test"],
    ["UPBIT_KEYS", false, "not set"],
  ]);
  assert.deepEqual(d.downgradeReasons, []);
});

Deno.test("decideTradeMode() allows live in exactly one of the 32 combinations", () => {
  let liveCount = 0;
  for (let bits = 0; bits < 32; bits++) {
    const on = (i: number) => (bits & (1 << i)) !== 0;
    const env: Record<string, string> = {
      LIVE_TRADING_ENABLED: on(0) ? "true" : "false",
      UPBIT_TRADE_MODE: on(1) ? "live" : "shadow",
      LIVE_GUARD_PHRASE: on(2) ? LIVE_GUARD_PHRASE : "i confirm",
      PAPER_POLICY_PROFILE: on(3) ? "default" : "test",
    };
    if (on(4)) {
      env.UPBIT_ACCESS_KEY = "ak-test";
      env.UPBIT_SECRET_KEY = "sk-test";
    }
    const d = decideTradeMode(parseConfig(env));
    const expected = bits === 31 ? "live" : "shadow";
    assert.equal(d.effective, expected, `combination ${bits.toString(2).padStart(5, "0")}`);
    if (d.effective === "live") liveCount++;
    // Every failed condition is named when live was asked for and refused.
    const failed = d.conditions.filter((c) => !c.ok).map((c) => c.name);
    assert.equal(failed.length, 5 - [0, 1, 2, 3, 4].filter(on).length);
    if (on(1) && bits !== 31) {
      assert.deepEqual(d.downgradeReasons.map((r) => r.split("=")[0]), failed);
    }
    assert.ok(!JSON.stringify(d).includes("sk-test") && !JSON.stringify(d).includes("ak-test"));
  }
  assert.equal(liveCount, 1);
});

Deno.test("decideTradeMode() needs only keys for test mode, and one key is not enough", () => {
  assert.equal(decideTradeMode(parseConfig({ UPBIT_TRADE_MODE: "test" })).effective, "shadow");
  const half = decideTradeMode(parseConfig({ UPBIT_TRADE_MODE: "test", UPBIT_ACCESS_KEY: "ak" }));
  assert.equal(half.effective, "shadow");
  assert.deepEqual(half.downgradeReasons, ["UPBIT_KEYS=UPBIT_SECRET_KEY not set"]);
  const both = decideTradeMode(
    parseConfig({ UPBIT_TRADE_MODE: "test", UPBIT_ACCESS_KEY: "ak", UPBIT_SECRET_KEY: "sk" }),
  );
  assert.equal(both.effective, "test");
});
