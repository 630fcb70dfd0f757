/**
 * @module The skill gate: entries only while the online model beats the base rate on the labels
 * that matured; exits never blocked; its state survives a restart exactly.
 */
import assert from "node:assert/strict";
import { EvaluatorCore, type EvaluatorCoreOptions } from "../lib/strategy/evaluator_core.ts";
import { parseConfig } from "../lib/config.ts";
import { overridesFromConfig, resolveParams } from "../lib/strategy/policy.ts";
import { SkillGate } from "../lib/strategy/skill_gate.ts";
import { edgeMarket, walk } from "./_backtest_bars.ts";

const near = (a: number | null, b: number, what: string) =>
  assert.ok(a !== null && Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

Deno.test("SkillGate scores the model against the running label frequencies; opens past the minimum and the margin", () => {
  const gate = new SkillGate({ minLabels: 3, windowLabels: 100, marginNats: 0.1 });
  const right = { pUp: 0.8, pDown: 0.1, pFlat: 0.1 };
  assert.deepEqual(gate.scores(), {
    scored: 0,
    modelLogLoss: null,
    baseLogLoss: null,
    open: false,
  });
  gate.onPrediction(0, right);
  gate.onLabel(0, 1); // base rate before any label: 1/3 each
  near(gate.scores().modelLogLoss, -Math.log(0.8), "model after one");
  near(gate.scores().baseLogLoss, Math.log(3), "base after one");
  gate.onPrediction(1, right);
  gate.onLabel(1, 1); // base: counts (1, 0, 0) Laplace-smoothed → p_up = 2/4
  near(gate.scores().baseLogLoss, (Math.log(3) - Math.log(0.5)) / 2, "base after two");
  assert.equal(gate.scores().open, false, "two labels scored, three needed");
  gate.onLabel(7, -1); // no prediction recorded for ts 7: frequencies learn, nothing scored
  assert.equal(gate.scores().scored, 2);
  gate.onPrediction(2, right);
  gate.onLabel(2, 1);
  const s = gate.scores();
  assert.equal(s.scored, 3);
  near(s.modelLogLoss, -Math.log(0.8), "model after three");
  assert.ok(s.baseLogLoss! - s.modelLogLoss! >= 0.1);
  assert.equal(s.open, true);

  // A model no better than the frequencies never opens it, however many labels.
  const blind = new SkillGate({ minLabels: 3, windowLabels: 100, marginNats: 0.1 });
  for (let ts = 0; ts < 500; ts++) {
    blind.onPrediction(ts, { pUp: 0.5, pDown: 0.25, pFlat: 0.25 });
    blind.onLabel(ts, ts % 2 === 0 ? 1 : -1);
  }
  assert.equal(blind.scores().open, false);
  assert.ok(blind.scores().modelLogLoss! >= blind.scores().baseLogLoss! - 0.1);

  // The window forgets: a model that turns bad closes the gate again.
  const turns = new SkillGate({ minLabels: 10, windowLabels: 50, marginNats: 0.05 });
  for (let ts = 0; ts < 400; ts++) {
    const up = ts % 3 === 0;
    const good = ts < 200;
    const p = up === good
      ? { pUp: 0.9, pDown: 0.05, pFlat: 0.05 }
      : { pUp: 0.05, pDown: 0.9, pFlat: 0.05 };
    turns.onPrediction(ts, p);
    turns.onLabel(ts, up ? 1 : -1);
    if (ts === 199) assert.equal(turns.scores().open, true, "open while the model is right");
  }
  assert.equal(turns.scores().open, false, "closed once it is wrong");

  // Without a gate entries are always allowed; the scores are kept as evidence.
  const none = new SkillGate(null);
  none.onPrediction(0, { pUp: 0.01, pDown: 0.98, pFlat: 0.01 });
  none.onLabel(0, 1);
  assert.equal(none.scores().open, true);
  near(none.scores().modelLogLoss, -Math.log(0.01), "scored without a gate");
});

Deno.test("SkillGate state survives JSON; bad settings are refused with one sentence", () => {
  const params = { minLabels: 5, windowLabels: 20, marginNats: 0.01 };
  const a = new SkillGate(params);
  for (let ts = 0; ts < 30; ts++) {
    a.onPrediction(ts, { pUp: 0.6, pDown: 0.3, pFlat: 0.1 });
    if (ts >= 4) a.onLabel(ts - 4, ts % 3 === 0 ? -1 : 1);
  }
  const b = new SkillGate(params, JSON.parse(JSON.stringify(a.snapshot())));
  for (let ts = 30; ts < 60; ts++) {
    for (const g of [a, b]) {
      g.onPrediction(ts, { pUp: 0.7, pDown: 0.2, pFlat: 0.1 });
      g.onLabel(ts - 4, ts % 4 === 0 ? 0 : 1);
    }
    assert.deepEqual(b.scores(), a.scores());
  }
  assert.deepEqual(b.snapshot(), a.snapshot());
  assert.throws(
    () => resolveParams("default", { skillGate: { ...params, minLabels: 0 } }),
    new RangeError(
      "Cannot use profile 'default' as 'skillGate.minLabels' must be an integer >= 1: current value is 0",
    ),
  );
  assert.throws(
    () => new SkillGate({ ...params, windowLabels: 0.5 }),
    new RangeError(
      "Cannot use SkillGate as 'skillGate.windowLabels' must be >= 1: current value is 0.5",
    ),
  );
  assert.equal(resolveParams("test").skillGate, null, "the test profile trades freely");
  const gateOf = (profile: "test" | "default", value?: string) =>
    resolveParams(
      profile,
      overridesFromConfig(parseConfig(value === undefined ? {} : { EVAL_SKILL_GATE: value })),
    ).skillGate;
  assert.equal(gateOf("default", "off"), null);
  assert.deepEqual(gateOf("test", "on"), resolveParams("default").skillGate);
  assert.deepEqual(gateOf("default"), resolveParams("default").skillGate);
  assert.equal(gateOf("test", "profile"), null);
  assert.throws(() => parseConfig({ EVAL_SKILL_GATE: "maybe" }), /EVAL_SKILL_GATE/);
  assert.deepEqual(resolveParams("default").skillGate, {
    minLabels: 1800,
    windowLabels: 3600,
    marginNats: 0.02,
  });
});

const MARKET = "KRW-BTC";

function options(params = resolveParams("default", { entryEvMin: -1 })): EvaluatorCoreOptions {
  return { market: MARKET, params, krwAmount: 10_000 };
}

Deno.test("EvaluatorCore: a closed gate refuses entries the same core takes without it; exits go on", () => {
  const bars = walk(MARKET, 400, 11);
  // EV is always above −1: without the gate the default profile enters at once.
  const free = new EvaluatorCore(options(resolveParams("default", {
    entryEvMin: -1,
    skillGate: null,
  })));
  const freeSteps = bars.map((b) => free.onBar(b));
  assert.ok(freeSteps.some((s) => s.paperEvents.some((e) => e.action === "ENTER_LONG")));
  const gated = new EvaluatorCore(options()); // 1800 labels needed: closed for 400 bars
  const steps = bars.map((b) => gated.onBar(b));
  assert.equal(steps.flatMap((s) => s.paperEvents).length, 0);
  assert.ok(steps.every((s) => s.prediction!.skill.open === false));
  assert.ok(steps.at(-1)!.prediction!.skill.scored > 0, "labels were scored meanwhile");

  // A position taken over from the database is closed while the gate is shut: by its barriers or
  // the horizon, never on the EV of a model without skill (EV_BAD).
  const entry = bars[0]!;
  const { core } = EvaluatorCore.restore(options(), null, {
    market: MARKET,
    entryTs: entry.ts - 1000,
    entryPrice: entry.close,
    qty: 0.1,
    entryFee: entry.close * 0.1 * 0.0005,
  });
  const exits = bars.flatMap((b) => core.onBar(b).paperEvents);
  assert.equal(exits.length, 1);
  assert.equal(exits[0]!.action, "EXIT_LONG");
  assert.notEqual(exits[0]!.action === "EXIT_LONG" && exits[0]!.reason, "EV_BAD");
});

Deno.test("EvaluatorCore: the gate's state is in the snapshot; a restart reproduces exactly", () => {
  const bars = edgeMarket(MARKET, 2600, 5);
  const opts = options(resolveParams("default"));
  const whole = new EvaluatorCore(opts);
  const wholeSteps = bars.map((b) => whole.onBar(b));
  const opened = wholeSteps.findIndex((s) => s.prediction!.skill.open);
  assert.ok(opened >= 1800 && opened < 2600, `the gate opened at bar ${opened}`);
  assert.ok(wholeSteps.slice(opened).some((s) => s.paperEvents.length > 0), "and it traded");

  const first = new EvaluatorCore(opts);
  bars.slice(0, 2000).forEach((b) => first.onBar(b));
  const snapshot = JSON.parse(JSON.stringify(first.snapshot()));
  assert.ok(snapshot.skillGate.scored > 1000);
  const { core: resumed, notes } = EvaluatorCore.restore(opts, snapshot, first.position);
  assert.deepEqual(notes, []);
  const rest = bars.slice(2000).map((b) => resumed.onBar(b));
  assert.deepEqual(rest, wholeSteps.slice(2000));

  // Changed barriers drop the model, so its scores go too.
  const { core: other } = EvaluatorCore.restore(
    options(resolveParams("default", { tpPct: 0.6 })),
    snapshot,
    first.position,
  );
  assert.equal(other.onBar(bars[2000]!).prediction!.skill.scored, 0);
  // A snapshot from before the gate existed starts the gate afresh and keeps the model.
  const { skillGate: _, ...old } = snapshot;
  const { core: older } = EvaluatorCore.restore(opts, old, first.position);
  const step = older.onBar(bars[2000]!);
  assert.equal(step.prediction!.skill.scored, 0);
  assert.equal(step.prediction!.trainedCount, wholeSteps[2000]!.prediction!.trainedCount);
});
