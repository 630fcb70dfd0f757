import assert from "node:assert/strict";
import { type Bar, BarAggregator, type Trade } from "../lib/strategy/bars.ts";
import { EvaluatorCore, type EvaluatorStep } from "../lib/strategy/evaluator_core.ts";
import { type PaperPosition, resolveParams } from "../lib/strategy/policy.ts";
import { mulberry32 } from "../lib/random.ts";

const T = 1_700_000_000_000;
const MARKET = "KRW-BTC";

/** A seeded random walk of trades (about 3 per second, some seconds empty), KRW-BTC-like prices. */
function trades(seed: number, seconds: number): Trade[] {
  const next = mulberry32(seed);
  const out: Trade[] = [];
  let price = 100_000_000;
  let id = 1;
  for (let s = 0; s < seconds; s++) {
    const n = next() < 0.2 ? 0 : 1 + Math.floor(next() * 5);
    for (let k = 0; k < n; k++) {
      price = Math.round(price * (1 + (next() - 0.5) * 0.0006) / 1000) * 1000;
      out.push({
        market: MARKET,
        price,
        volume: Math.round(next() * 1e6) / 1e8,
        side: next() < 0.5 ? "BID" : "ASK",
        timestampMs: T + s * 1000 + Math.floor(next() * 1000),
        sequentialId: BigInt(id++),
      });
    }
  }
  return out.sort((a, b) => a.timestampMs - b.timestampMs);
}

function bars(seed: number, seconds: number): Bar[] {
  const agg = new BarAggregator({ allowedLatenessMs: 2000 });
  const out = agg.ingest(trades(seed, seconds)).final;
  return [...out, ...agg.flushBefore(Infinity).final];
}

const OPTIONS = { market: MARKET, params: resolveParams("test"), krwAmount: 10_000 };

Deno.test("EvaluatorCore turns trades into labels, predictions and alternating paper trades", () => {
  const stream = bars(1, 900);
  assert.ok(stream.length > 600);
  const core = new EvaluatorCore(OPTIONS);
  const steps = stream.map((b) => core.onBar(b));
  const labels = steps.flatMap((s) => s.labels);
  const events = steps.flatMap((s) => s.paperEvents);

  // Every bar gets a prediction whose probabilities sum to 1, and EV follows the formula. (Since
  // migration 008 EV also subtracts the expected spread cost: these bars carry both trade sides.)
  for (const s of steps) {
    const p = s.prediction!;
    assert.ok(Math.abs(p.pUp + p.pDown + p.pFlat - 1) < 1e-12);
    assert.ok(Number.isFinite(p.spreadPct) && p.spreadPct >= 0, `${p.spreadPct}`);
    assert.ok(Math.abs(p.ev - (p.pUp * 0.15 - p.pDown * 0.15 - 0.1 - p.spreadPct)) < 1e-12);
  }
  assert.ok(steps.some((s) => s.prediction!.spreadPct > 0), "a spread was estimated");
  // Labels: each bar at most once, all but the last horizon's worth matured; the model learned.
  const labelled = new Set(labels.map((l) => l.ts));
  assert.equal(labelled.size, labels.length);
  assert.ok(labels.length >= stream.length - 31, `${labels.length} of ${stream.length}`);
  assert.equal(steps.at(-1)!.prediction!.trainedCount, labels.length);
  assert.ok(new Set(labels.map((l) => l.label)).size === 3);

  // The test profile trades: ENTER and EXIT alternate, exits carry a reason and a consistent pnl.
  assert.ok(events.length >= 10, `${events.length} events`);
  events.forEach((e, i) => assert.equal(e.action, i % 2 === 0 ? "ENTER_LONG" : "EXIT_LONG"));
  for (const e of events) {
    if (e.action !== "EXIT_LONG") continue;
    assert.ok(["TP", "SL", "TIMEOUT", "EV_BAD"].includes(e.reason));
    const entryFee = e.entryPrice * e.qty * 0.0005;
    assert.ok(Math.abs(e.pnl - ((e.price - e.entryPrice) * e.qty - entryFee - e.fee)) < 1e-6);
    assert.ok(e.holdSec >= (e.reason === "TIMEOUT" ? 30 : 1), `${e.reason} after ${e.holdSec}s`);
  }
  // With this seed every exit reason occurs (TP 3, SL 5, TIMEOUT 16, EV_BAD 12).
  for (const reason of ["TP", "SL", "TIMEOUT", "EV_BAD"]) {
    assert.ok(events.some((e) => e.action === "EXIT_LONG" && e.reason === reason), reason);
  }
});

Deno.test("EvaluatorCore resumes from a JSON snapshot exactly where it stopped", () => {
  const stream = bars(2, 400);
  const cut = 250;
  const original = new EvaluatorCore(OPTIONS);
  stream.slice(0, cut).forEach((b) => original.onBar(b));
  const saved = JSON.parse(JSON.stringify(original.snapshot()));
  const { core: resumed, notes } = EvaluatorCore.restore(OPTIONS, saved, original.position);
  assert.deepEqual(notes, []);
  const rest = stream.slice(cut);
  const a: EvaluatorStep[] = rest.map((b) => original.onBar(b));
  const b: EvaluatorStep[] = rest.map((b) => resumed.onBar(b));
  assert.deepEqual(b, a);
  // Replaying bars already processed changes nothing.
  assert.deepEqual(resumed.onBar(rest[0]!), { labels: [], prediction: null, paperEvents: [] });
});

Deno.test("EvaluatorCore.restore takes the paper position from the database", () => {
  const stream = bars(3, 120);
  const original = new EvaluatorCore(OPTIONS);
  stream.slice(0, 60).forEach((b) => original.onBar(b));
  const last = stream[59]!;
  const fromDb: PaperPosition = {
    market: MARKET,
    entryTs: last.ts,
    entryPrice: last.close,
    qty: 0.0001,
    entryFee: last.close * 0.0001 * 0.0005,
  };
  const snap = original.snapshot();
  const { core, notes } = EvaluatorCore.restore(OPTIONS, {
    ...snap,
    policy: { position: null, noEntryBeforeTs: null },
  }, fromDb);
  assert.deepEqual(core.position, fromDb);
  assert.deepEqual(notes, [
    "paper position from the database (LONG) replaces the snapshot's (FLAT)",
  ]);
  // It is managed like any position: the first exit closes exactly that quantity.
  const exit = stream.slice(60).map((b) => core.onBar(b)).flatMap((s) => s.paperEvents)[0];
  assert.equal(exit?.action, "EXIT_LONG");
  assert.equal(exit?.qty, 0.0001);
  assert.throws(
    () => EvaluatorCore.restore(OPTIONS, snap, { ...fromDb, market: "KRW-ETH" }),
    RangeError,
  );
});

Deno.test("EvaluatorCore.restore starts fresh on a bad snapshot and resets the model when barriers change", () => {
  const fresh = EvaluatorCore.restore(OPTIONS, { version: 1, market: MARKET }, null);
  assert.equal(fresh.notes.length, 1);
  assert.match(fresh.notes[0]!, /^snapshot unreadable, starting fresh/);
  assert.equal(fresh.core.lastTs, null);
  assert.deepEqual(EvaluatorCore.restore(OPTIONS, null, null).notes, [
    "no snapshot: starting fresh",
  ]);

  const trained = new EvaluatorCore(OPTIONS);
  const stream = bars(4, 200);
  stream.forEach((b) => trained.onBar(b));
  const wider = { ...OPTIONS, params: resolveParams("test", { tpPct: 0.3 }) };
  const { core, notes } = EvaluatorCore.restore(wider, trained.snapshot(), trained.position);
  assert.deepEqual(notes, [
    "barriers or horizon changed since the snapshot: labels in flight and model reset",
  ]);
  const next = { ...stream.at(-1)!, ts: stream.at(-1)!.ts + 1000 };
  assert.equal(core.onBar(next).prediction?.trainedCount, 0);
  // A threshold change keeps the model.
  const looser = { ...OPTIONS, params: resolveParams("test", { entryEvMin: -1 }) };
  const kept = EvaluatorCore.restore(looser, trained.snapshot(), trained.position);
  assert.deepEqual(kept.notes, []);
  assert.ok(kept.core.onBar(next).prediction!.trainedCount > 0);
});

Deno.test("EvaluatorCore refuses a bar of another market", () => {
  const core = new EvaluatorCore(OPTIONS);
  assert.throws(() => core.onBar({ ...bars(5, 5)[0]!, market: "KRW-ETH" }), RangeError);
});
