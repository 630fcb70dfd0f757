import assert from "node:assert/strict";
import type { Bar } from "../lib/strategy/bars.ts";
import { FEATURE_NAMES, FeatureExtractor, featureVector } from "../lib/strategy/features.ts";

const T = 1_700_000_000_000;

function bar(sec: number, fields: Partial<Bar> & { close: number }): Bar {
  return {
    market: "KRW-BTC",
    ts: T + sec * 1000,
    open: fields.close,
    high: fields.close,
    low: fields.close,
    volume: 1,
    quoteVolume: fields.close,
    tradeCount: 1,
    buyVolume: 1,
    sellVolume: 0,
    ...fields,
  };
}

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
}

Deno.test("FeatureExtractor treats missing seconds as no trades at the previous close", () => {
  const fx = new FeatureExtractor();
  fx.onBar(
    bar(0, {
      open: 99,
      high: 100.5,
      low: 98.5,
      close: 100,
      tradeCount: 3,
      buyVolume: 2,
      sellVolume: 1,
    }),
  );
  const f = fx.onBar(
    bar(10, { high: 101.5, low: 100.5, close: 101, tradeCount: 4, buyVolume: 1, sellVolume: 3 }),
  );
  const jump = 100 * Math.log(101 / 100);
  near(f.ret_1s, jump, "ret_1s (second 9 carried 100)");
  near(f.ret_5s, jump, "ret_5s");
  near(f.ret_15s, 100 * Math.log(101 / 99), "ret_15s (before the first bar: its open, 99)");
  near(f.ret_60s, 100 * Math.log(101 / 99), "ret_60s");
  const firstMove = 100 * Math.log(100 / 99);
  near(f.vol_15s, Math.sqrt(jump * jump + firstMove * firstMove), "vol_15s (two non-zero returns)");
  near(f.imbalance_5s, (1 - 3) / 4, "imbalance_5s (only second 10)");
  near(f.imbalance_60s, (3 - 4) / 7, "imbalance_60s");
  near(f.intensity_5s, Math.log1p(4), "intensity_5s");
  near(f.intensity_60s, Math.log1p(7), "intensity_60s");
  // 60 s range: low 98.5 (second 0), high 101.5 (second 10); close 101.
  near(f.range_pos_60s, (101 - 98.5) / (101.5 - 98.5) - 0.5, "range_pos_60s");
});

Deno.test("FeatureExtractor carries the last close across a gap longer than the window", () => {
  const fx = new FeatureExtractor();
  fx.onBar(bar(0, { close: 100 }));
  fx.onBar(bar(1, { close: 102 }));
  const f = fx.onBar(bar(200, { close: 103, buyVolume: 0, sellVolume: 0 }));
  near(f.ret_60s, 100 * Math.log(103 / 102), "ret_60s from the carried close");
  near(f.ret_1s, 100 * Math.log(103 / 102), "ret_1s");
  near(f.intensity_60s, Math.log1p(1), "intensity_60s (old bars are out of the window)");
  near(f.imbalance_60s, 0, "imbalance without volume");
  // Resuming from a snapshot gives the same features.
  const resumed = new FeatureExtractor(JSON.parse(JSON.stringify(fx.snapshot())));
  assert.deepEqual(resumed.onBar(bar(201, { close: 104 })), fx.onBar(bar(201, { close: 104 })));
});

Deno.test("FeatureExtractor gives finite features from the first bar, in FEATURE_NAMES order", () => {
  const f = new FeatureExtractor().onBar(bar(0, { close: 100 }));
  const v = featureVector(f);
  assert.equal(v.length, FEATURE_NAMES.length);
  assert.ok(v.every(Number.isFinite));
  assert.equal(f.ret_60s, 0);
  assert.equal(v[FEATURE_NAMES.indexOf("intensity_5s")], Math.log1p(1));
});

Deno.test("FeatureExtractor refuses bars out of order", () => {
  const fx = new FeatureExtractor();
  fx.onBar(bar(5, { close: 100 }));
  assert.throws(() => fx.onBar(bar(5, { close: 100 })), RangeError);
});
