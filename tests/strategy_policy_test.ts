import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { fixed, formatPaperTrade, formatPrice } from "../lib/strategy/paper_log.ts";
import {
  expectedValuePct,
  overridesFromConfig,
  type PaperEvent,
  type PaperExit,
  PaperPolicy,
  PROFILES,
  quantityFor,
  resolveParams,
  ROUND_TRIP_FEE_PCT,
  type StrategyParams,
} from "../lib/strategy/policy.ts";

const T = 1_700_000_000_000;

function bar(sec: number, o: number, h: number, l: number, c: number): Bar {
  return {
    market: "KRW-BTC",
    ts: T + sec * 1000,
    open: o,
    high: h,
    low: l,
    close: c,
    volume: 1,
    quoteVolume: c,
    tradeCount: 1,
    buyVolume: 1,
    sellVolume: 0,
  };
}

function near(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
}

// tp 1 %, sl 1 %, horizon 60 s, enter above EV 0, exit below EV −0.5.
const PARAMS: StrategyParams = {
  tpPct: 1,
  slPct: 1,
  horizonSec: 60,
  entryEvMin: 0,
  exitEvMin: -0.5,
  cooldownSec: 0,
  skillGate: null,
};

/** A policy that entered at second 0 at 100 000 with 10 000 KRW (qty 0.1). */
function entered(params: StrategyParams = PARAMS): PaperPolicy {
  const policy = new PaperPolicy("KRW-BTC", params, { krwAmount: 10_000 });
  const events = policy.onBar(bar(0, 100_000, 100_000, 100_000, 100_000), 0.1);
  assert.equal(events.length, 1);
  assert.deepEqual(events[0], {
    action: "ENTER_LONG",
    market: "KRW-BTC",
    ts: T,
    price: 100_000,
    qty: 0.1,
    fee: 5,
    ev: 0.1,
  });
  return policy;
}

function onlyExit(events: PaperEvent[]): PaperExit {
  assert.equal(events.length, 1);
  const e = events[0]!;
  assert.equal(e.action, "EXIT_LONG");
  return e as PaperExit;
}

Deno.test("expectedValuePct is p_up·TP − p_down·SL − 0.1 % round-trip fee", () => {
  assert.equal(ROUND_TRIP_FEE_PCT, 0.1);
  near(
    expectedValuePct({ pUp: 0.5, pDown: 0.2, pFlat: 0.3 }, { tpPct: 0.5, slPct: 0.4 }),
    0.07,
    "ev",
  );
  near(
    expectedValuePct({ pUp: 1 / 3, pDown: 1 / 3, pFlat: 1 / 3 }, PROFILES.test),
    -0.1,
    "test prior",
  );
  near(expectedValuePct({ pUp: 0, pDown: 1, pFlat: 0 }, PROFILES.test), -0.25, "test minimum");
});

Deno.test("resolveParams applies overrides from the EVAL_* variables, in percent", () => {
  assert.deepEqual(resolveParams("test"), PROFILES.test);
  assert.deepEqual(resolveParams("default"), {
    tpPct: 0.5,
    slPct: 0.4,
    horizonSec: 300,
    entryEvMin: 0.05,
    exitEvMin: -0.05,
    cooldownSec: 30,
    skillGate: { minLabels: 1800, windowLabels: 3600, marginNats: 0.02 },
  });
  const config = parseConfig({
    EVAL_ENTRY_EV_MIN: "-1",
    EVAL_TP_PCT: "0.3",
    EVAL_HORIZON_SEC: "45",
  });
  assert.deepEqual(resolveParams("default", overridesFromConfig(config)), {
    ...PROFILES.default,
    tpPct: 0.3,
    horizonSec: 45,
    entryEvMin: -1,
  });
  const all = parseConfig({
    EVAL_TP_PCT: "1",
    EVAL_SL_PCT: "2",
    EVAL_HORIZON_SEC: "3",
    EVAL_ENTRY_EV_MIN: "4",
    EVAL_EXIT_EV_MIN: "-5",
  });
  assert.deepEqual(resolveParams("test", overridesFromConfig(all)), {
    tpPct: 1,
    slPct: 2,
    horizonSec: 3,
    entryEvMin: 4,
    exitEvMin: -5,
    cooldownSec: 0,
    skillGate: null,
  });
  assert.throws(
    () => resolveParams("test", { horizonSec: 0.5 }),
    new RangeError(
      "Cannot use profile 'test' as 'horizonSec' must be an integer >= 1: current value is 0.5",
    ),
  );
  assert.throws(() => resolveParams("test", { slPct: 0 }), RangeError);
});

Deno.test("quantityFor truncates to 8 decimals exactly", () => {
  assert.equal(quantityFor(200_000, 99_569_000), 0.00200865);
  // 5800 / 20000 = 0.29, and 0.29·1e8 is 28999999.999999996 in floats.
  assert.equal(quantityFor(5800, 20_000), 0.29);
  assert.equal(quantityFor(10_000, 0.0123), 813008.1300813); // 813008.130081300813…
  assert.equal(quantityFor(1, 1e9), 0);
});

Deno.test("PaperPolicy enters only when EV is above the entry threshold", () => {
  const policy = new PaperPolicy("KRW-BTC", PARAMS, { krwAmount: 10_000 });
  assert.deepEqual(policy.onBar(bar(0, 100, 100, 100, 100), 0), []); // not above 0
  assert.deepEqual(policy.onBar(bar(1, 100, 100, 100, 100), null), []);
  assert.equal(policy.position, null);
  entered();
});

Deno.test("PaperPolicy exits TP at the take-profit price", () => {
  const policy = entered();
  assert.deepEqual(policy.onBar(bar(1, 100_000, 100_900, 99_100, 100_500), 0), []);
  const exit = onlyExit(policy.onBar(bar(7, 100_500, 101_200, 100_400, 101_100), 0));
  assert.equal(exit.reason, "TP");
  assert.equal(exit.price, 101_000);
  near(exit.fee, 101_000 * 0.1 * 0.0005, "fee");
  near(exit.pnl, (101_000 - 100_000) * 0.1 - 5 - exit.fee, "pnl");
  assert.equal(exit.holdSec, 7);
  assert.equal(policy.position, null);
});

Deno.test("PaperPolicy exits SL at the stop price, or at the open after a gap through it", () => {
  const policy = entered();
  const exit = onlyExit(policy.onBar(bar(3, 99_500, 99_600, 98_900, 99_000), 1));
  assert.equal(exit.reason, "SL");
  assert.equal(exit.price, 99_000);
  near(exit.pnl, -1000 * 0.1 - 5 - 99_000 * 0.1 * 0.0005, "pnl");

  const gapped = entered();
  const gap = onlyExit(gapped.onBar(bar(20, 98_000, 98_500, 97_000, 98_200), 1));
  assert.equal(gap.reason, "SL");
  assert.equal(gap.price, 98_000);
});

Deno.test("PaperPolicy takes SL when one bar reaches both barriers", () => {
  const exit = onlyExit(entered().onBar(bar(2, 100_000, 101_500, 98_500, 100_000), 1));
  assert.equal(exit.reason, "SL");
});

Deno.test("PaperPolicy exits TIMEOUT at the close once the horizon is held", () => {
  const policy = entered();
  assert.deepEqual(policy.onBar(bar(59, 100_000, 100_100, 99_900, 100_050), 0), []);
  const exit = onlyExit(policy.onBar(bar(60, 100_050, 100_100, 99_900, 100_020), 0));
  assert.equal(exit.reason, "TIMEOUT");
  assert.equal(exit.price, 100_020);
  assert.equal(exit.holdSec, 60);
});

Deno.test("PaperPolicy exits EV_BAD at the close when EV falls below the exit threshold", () => {
  const policy = entered();
  assert.deepEqual(policy.onBar(bar(1, 100_000, 100_000, 100_000, 100_000), -0.5), []); // not below
  const exit = onlyExit(policy.onBar(bar(2, 100_000, 100_100, 99_950, 99_980), -0.51));
  assert.equal(exit.reason, "EV_BAD");
  assert.equal(exit.price, 99_980);
  assert.equal(exit.ev, -0.51);
});

Deno.test("PaperPolicy does not re-enter on the exit bar, and honours the cooldown", () => {
  const policy = entered();
  onlyExit(policy.onBar(bar(1, 100_000, 100_000, 100_000, 100_000), -1));
  assert.equal(policy.onBar(bar(2, 100_000, 100_000, 100_000, 100_000), 1).length, 1);

  const slow = entered({ ...PARAMS, cooldownSec: 10 });
  onlyExit(slow.onBar(bar(1, 100_000, 100_000, 100_000, 100_000), -1));
  assert.deepEqual(slow.onBar(bar(10, 100_000, 100_000, 100_000, 100_000), 1), []);
  assert.equal(slow.onBar(bar(11, 100_000, 100_000, 100_000, 100_000), 1).length, 1);
  // The state round-trips through JSON.
  const copy = new PaperPolicy(
    "KRW-BTC",
    PARAMS,
    { krwAmount: 10_000 },
    JSON.parse(JSON.stringify(slow.snapshot())),
  );
  assert.deepEqual(copy.position, slow.position);
});

Deno.test("formatPaperTrade prints the seed's line from the seed's numbers", () => {
  // The seed's exit: 0.002008657857101298 BTC (its request_json volume) sold at 99203155.
  const price = 99203155;
  const qty = 0.002008657857101298;
  const line = formatPaperTrade({
    action: "EXIT_LONG",
    market: "KRW-BTC",
    ts: T,
    price,
    qty,
    fee: price * qty * 0.0005,
    pnl: -431.79,
    holdSec: 81,
    reason: "EV_BAD",
    entryTs: T - 81_000,
    entryPrice: 99_400_000,
    ev: -0.3,
  });
  assert.equal(
    line,
    "PaperTrade EXIT(EV_BAD): price=99203155 qty=0.00200866 fee=99.63 pnl=-431.79 hold=81s",
  );
});

Deno.test("formatPaperTrade prints a policy's entry and exit", () => {
  const params = { ...PARAMS, tpPct: 5, slPct: 5, horizonSec: 300 };
  const policy = new PaperPolicy("KRW-BTC", params, { krwAmount: 200_000 });
  const [enter] = policy.onBar(bar(0, 99_417_000, 99_417_000, 99_417_000, 99_417_000), 1);
  assert.equal(
    formatPaperTrade(enter!),
    "PaperTrade ENTER: price=99417000 qty=0.00201172 fee=100.00",
  );
  const [exit] = policy.onBar(bar(81, 99_203_155, 99_203_155, 99_203_155, 99_203_155), -1);
  // Decimal arithmetic: exit fee 99.7844854883, pnl −629.9803325083.
  assert.equal(
    formatPaperTrade(exit!),
    "PaperTrade EXIT(EV_BAD): price=99203155 qty=0.00201172 fee=99.78 pnl=-629.98 hold=81s",
  );
});

Deno.test("fixed and formatPrice print decimals without float artefacts", () => {
  assert.equal(fixed(1.005, 2), "1.01");
  assert.equal(fixed(-0.001, 2), "0.00");
  assert.equal(fixed(-431.785, 2), "-431.79");
  assert.equal(fixed(0.1, 8), "0.10000000");
  assert.equal(fixed(1e-7, 8), "0.00000010");
  assert.equal(formatPrice(99203155), "99203155");
  assert.equal(formatPrice(0.00012345), "0.00012345");
  assert.equal(formatPrice(1e-7), "0.0000001");
  assert.equal(formatPrice(1234.5), "1234.5");
});
