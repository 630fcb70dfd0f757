import assert from "node:assert/strict";
import type { Bar } from "../lib/strategy/bars.ts";
import { type MaturedLabel, TripleBarrierLabeler } from "../lib/strategy/labels.ts";

const T = 1_700_000_000_000;

function bar(sec: number, high: number, low: number, close: number): Bar {
  return {
    market: "KRW-BTC",
    ts: T + sec * 1000,
    open: close,
    high,
    low,
    close,
    volume: 1,
    quoteVolume: close,
    tradeCount: 1,
    buyVolume: 1,
    sellVolume: 0,
  };
}

// tp 1 %, sl 1 %, horizon 5 s; every case labels the bar at second 0 (close 100).
const PARAMS = { tpPct: 1, slPct: 1, horizonSec: 5 };

function labelOfFirst(bars: Bar[]): { label: MaturedLabel | undefined; atBar: number } {
  const labeler = new TripleBarrierLabeler("KRW-BTC", PARAMS);
  for (let i = 0; i < bars.length; i++) {
    const found = labeler.onBar(bars[i]!).find((l) => l.ts === T);
    if (found) return { label: found, atBar: i };
  }
  return { label: undefined, atBar: -1 };
}

Deno.test("TripleBarrierLabeler labels +1 when the take-profit is reached first", () => {
  const { label, atBar } = labelOfFirst([
    bar(0, 100, 100, 100),
    bar(1, 100.5, 99.5, 100),
    bar(2, 101, 100, 100.8), // high reaches 101 = 100·1.01
    bar(3, 100, 98, 98),
  ]);
  assert.equal(atBar, 2);
  assert.deepEqual(label, {
    market: "KRW-BTC",
    ts: T,
    label: 1,
    barrierHitTs: T + 2000,
    ret: 0.01,
  });
});

Deno.test("TripleBarrierLabeler labels -1 when the stop-loss is reached first", () => {
  const { label, atBar } = labelOfFirst([
    bar(0, 100, 100, 100),
    bar(1, 100.2, 98.9, 99), // low 98.9 <= 99
    bar(2, 102, 100, 101),
  ]);
  assert.equal(atBar, 1);
  assert.deepEqual(label, {
    market: "KRW-BTC",
    ts: T,
    label: -1,
    barrierHitTs: T + 1000,
    ret: -0.01,
  });
});

Deno.test("TripleBarrierLabeler labels -1 when one bar reaches both barriers", () => {
  const { label } = labelOfFirst([bar(0, 100, 100, 100), bar(1, 101.5, 98.5, 100)]);
  assert.equal(label?.label, -1);
  assert.equal(label?.barrierHitTs, T + 1000);
});

Deno.test("TripleBarrierLabeler labels 0 at the horizon, maturing with the bar at t+H", () => {
  const { label, atBar } = labelOfFirst([
    bar(0, 100, 100, 100),
    bar(1, 100.5, 99.5, 100.2),
    bar(3, 100.9, 99.2, 100.4),
    bar(5, 100.6, 100.1, 100.5), // the horizon bar: no barrier, matures now
    bar(6, 200, 200, 200),
  ]);
  assert.equal(atBar, 3);
  assert.equal(label?.label, 0);
  assert.equal(label?.barrierHitTs, T + 5000);
  assert.ok(Math.abs(label!.ret - 0.005) < 1e-12);
});

Deno.test("TripleBarrierLabeler matures a horizon label after a gap with the last close inside it", () => {
  const { label, atBar } = labelOfFirst([
    bar(0, 100, 100, 100),
    bar(2, 100.3, 99.9, 100.3),
    bar(9, 150, 50, 120), // beyond the horizon: its barriers do not count
  ]);
  assert.equal(atBar, 2);
  assert.equal(label?.label, 0);
  assert.equal(label?.barrierHitTs, T + 5000);
  assert.ok(Math.abs(label!.ret - 0.003) < 1e-12);
});

Deno.test("TripleBarrierLabeler emits each label once, in ts order, and survives a snapshot", () => {
  const labeler = new TripleBarrierLabeler("KRW-BTC", PARAMS);
  labeler.onBar(bar(0, 100, 100, 100));
  labeler.onBar(bar(1, 100, 100, 100));
  const resumed = new TripleBarrierLabeler(
    "KRW-BTC",
    PARAMS,
    JSON.parse(JSON.stringify(labeler.snapshot())),
  );
  assert.deepEqual(resumed.onBar(bar(1, 100, 100, 100)), []); // repeated bar ignored
  const out = resumed.onBar(bar(2, 102, 101, 101.5)); // TP for both pending bars
  assert.deepEqual(out.map((l) => [l.ts, l.label]), [[T, 1], [T + 1000, 1]]);
  assert.equal(resumed.pendingCount, 1);
});

Deno.test("TripleBarrierLabeler refuses non-positive barriers and fractional horizons", () => {
  assert.throws(() => new TripleBarrierLabeler("KRW-BTC", { ...PARAMS, slPct: 0 }), RangeError);
  assert.throws(
    () => new TripleBarrierLabeler("KRW-BTC", { ...PARAMS, horizonSec: 2.5 }),
    RangeError,
  );
});
