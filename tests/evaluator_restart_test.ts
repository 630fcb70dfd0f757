/**
 * The evaluator after a restart that lost its state: a model reset (lost snapshot, changed
 * barriers) leaves an untrained model whose EV is below the default exit threshold whatever the
 * price does: it must not close open positions (`EV_BAD`), in the evaluator and in the backtest;
 * SL, TP and TIMEOUT still apply.
 */
import assert from "node:assert/strict";
import { replayMarket } from "../lib/backtest/replay.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { EvaluatorCore } from "../lib/strategy/evaluator_core.ts";
import { type PaperPosition, resolveParams, type StrategyParams } from "../lib/strategy/policy.ts";

const MARKET = "KRW-BTC";
/** 2026-12-01T00:00:00Z. */
const T0 = Date.UTC(2026, 11, 1);

/** A bar at `T0 + i` seconds closing at `close`, ranging `wiggle` (fraction) either side. */
function bar(i: number, close: number, wiggle = 0.0005): Bar {
  return {
    market: MARKET,
    ts: T0 + i * 1000,
    open: close,
    high: close * (1 + wiggle),
    low: close * (1 - wiggle),
    close,
    volume: 1,
    quoteVolume: close,
    tradeCount: 3,
    buyVolume: 0.5,
    sellVolume: 0.5,
    askEst: close,
    bidEst: close,
  };
}

const ENTRY: PaperPosition = {
  market: MARKET,
  entryTs: T0,
  entryPrice: 100_000_000,
  qty: 0.0001,
  entryFee: 5,
};

/** A core restarted without a snapshot (fresh model), holding `position` from the database. */
function restoreFresh(
  params: StrategyParams,
  position: PaperPosition | null,
): EvaluatorCore {
  const options = { market: MARKET, params, krwAmount: 10_000 };
  return EvaluatorCore.restore(options, null, position).core;
}

Deno.test("EvaluatorCore: after a model reset an open position is not closed EV_BAD while the gate is closed", () => {
  const params = resolveParams("default");
  const core = restoreFresh(params, ENTRY);
  // The price drifts up a little, far from SL and TP, for the whole horizon.
  const steps = [];
  for (let i = 1; i < 300; i++) {
    steps.push(core.onBar(bar(i, 100_010_000, 0.0001)));
  }
  // The premise: the untrained EV is below the exit threshold on every bar, and the gate shut.
  assert.ok(
    steps.every((s) => s.prediction!.ev < params.exitEvMin),
    "EV below exitEvMin",
  );
  assert.ok(steps.every((s) => !s.prediction!.skill.open));
  assert.deepEqual(
    steps.flatMap((s) => s.paperEvents),
    [],
    "no exit on EV alone",
  );
  assert.deepEqual(core.position, ENTRY);
  // The horizon still closes it.
  const timeout = core.onBar(bar(300, 100_010_000, 0.0001)).paperEvents;
  assert.equal(timeout.length, 1);
  assert.equal(
    timeout[0]!.action === "EXIT_LONG" && timeout[0]!.reason,
    "TIMEOUT",
  );

  // And the stop still closes a position at once.
  const stopped = restoreFresh(params, ENTRY);
  const sl = stopped.onBar(bar(1, 99_500_000)).paperEvents;
  assert.equal(sl.length, 1);
  assert.equal(sl[0]!.action === "EXIT_LONG" && sl[0]!.reason, "SL");
});

Deno.test("EvaluatorCore: without a gate, a model that learned nothing yet does not close on EV", () => {
  // EVAL_SKILL_GATE=off and the default barriers: the gate is always open, but until a label
  // has matured (the horizon, 300 s) the model is the untrained prior.
  const params = resolveParams("default", { skillGate: null });
  const core = restoreFresh(params, ENTRY);
  const steps = [];
  for (let i = 1; i < 300; i++) {
    steps.push(core.onBar(bar(i, 100_010_000, 0.0001)));
  }
  assert.ok(
    steps.every((s) => s.prediction!.skill.open && s.prediction!.trainedCount === 0),
  );
  assert.ok(
    steps.every((s) => s.prediction!.ev < params.exitEvMin),
    "EV below exitEvMin",
  );
  assert.deepEqual(steps.flatMap((s) => s.paperEvents), []);
  assert.deepEqual(core.position, ENTRY);
});

Deno.test("backtest: an entry on an untrained model is not closed EV_BAD on the next bar", async () => {
  // Without a gate and with any EV accepted, the default barriers enter on the first bar; the
  // untrained EV (about -0.07 %) is below the exit threshold (-0.05 %) from then on.
  const params = resolveParams("default", { skillGate: null, entryEvMin: -1 });
  const bars: Bar[] = [];
  for (let i = 0; i < 200; i++) bars.push(bar(i, 100_000_000, 0.0001));
  const r = await replayMarket([bars], {
    market: MARKET,
    params,
    krwAmount: 10_000,
    slippageBps: 0,
  });
  assert.deepEqual(r.events.map((e) => [e.action, (e.ts - T0) / 1000]), [[
    "ENTER_LONG",
    0,
  ]]);
  assert.equal(r.openAtEnd?.ts, T0);
});
