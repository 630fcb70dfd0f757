/**
 * @module The skill gate seen through the backtest: on the simulator's edge-free market the
 * default profile now stays out (before the gate it made a round trip every few minutes, losing
 * fees and spread); on a synthetic market with an edge the gate opens and the profile trades.
 */
import assert from "node:assert/strict";
import { type MarketReplay, replayMarket } from "../lib/backtest/replay.ts";
import { buildReport, formatReport } from "../lib/backtest/report.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { resolveParams, type StrategyParams } from "../lib/strategy/policy.ts";
import { edgeMarket } from "./_backtest_bars.ts";
import { simBars } from "./_sim_bars.ts";

const HOURS = 3;

async function replayAll(bars: Map<string, Bar[]>, params: StrategyParams) {
  const out: MarketReplay[] = [];
  for (const [market, b] of bars) {
    out.push(await replayMarket([b], { market, params, krwAmount: 10_000, slippageBps: 0 }));
  }
  return out;
}

Deno.test("default profile on the simulator's edge-free market: the gate keeps it out", async () => {
  const markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP"];
  const bars = simBars(7, HOURS * 60, 30, markets);
  const marketHours = markets.length * HOURS;
  const before = await replayAll(bars, resolveParams("default", { skillGate: null }));
  const after = await replayAll(bars, resolveParams("default"));
  const trips = (rs: MarketReplay[]) => rs.reduce((n, r) => n + r.trades.length, 0);
  // Measured: 158 round trips before (17.6 per market-hour, −0.07 % each), none after.
  assert.ok(trips(before) / marketHours >= 5, `before: ${trips(before)} round trips`);
  assert.ok(trips(after) / marketHours <= 0.5, `after: ${trips(after)} round trips`);
  // Why: the model's running log loss is above the base rate's, and entries were refused.
  assert.ok(after.reduce((n, r) => n + r.gate.refused, 0) > 100);
  for (const r of after) {
    assert.ok(r.gate.modelLogLoss! > r.gate.baseLogLoss!, `${r.market}: ${JSON.stringify(r.gate)}`);
  }
  // The gate is the only difference: same predictions, same scores.
  assert.deepEqual(after.map((r) => r.quality), before.map((r) => r.quality));
});

Deno.test("default profile on a synthetic market with an edge: the gate opens and it trades", async () => {
  const bars = new Map([["KRW-EDGE", edgeMarket("KRW-EDGE", HOURS * 3600, 1)]]);
  const [r] = await replayAll(bars, resolveParams("default"));
  const gate = r!.gate;
  assert.ok(gate.baseLogLoss! - gate.modelLogLoss! > 0.2, JSON.stringify(gate));
  // It opens once the minimum of labels has been scored, and stays open.
  assert.ok(gate.openBars > 0.8 * (HOURS * 3600 - 1800), JSON.stringify(gate));
  assert.ok(r!.trades[0]!.enter.ts - bars.get("KRW-EDGE")![0]!.ts >= 1800 * 1000);
  assert.ok(r!.trades.length > 100, `${r!.trades.length} round trips`);
  const pnl = r!.trades.reduce((s, t) => s + t.exit.pnl, 0);
  assert.ok(pnl > 0, `pnl ${pnl}`);
  // The report shows the gate's settings and how often it was open.
  const report = buildReport({
    markets: ["KRW-EDGE"],
    from: "2026-12-01",
    to: "2026-12-02",
    source: "db",
    profile: "default",
    params: resolveParams("default"),
    krwAmount: 10_000,
    slippageBps: 0,
  }, [r!]);
  assert.equal(report.total.gateOpenBars, gate.openBars);
  assert.equal(report.total.gateRefused, gate.refused);
  const text = formatReport(report);
  assert.match(text, / skill_gate=1800\/3600\/0.02 /);
  const share = `${(100 * gate.openBars / r!.bars).toFixed(1)}%`;
  assert.match(text, new RegExp(`^KRW-EDGE .* ${share} +${gate.refused}$`, "m"));
});
