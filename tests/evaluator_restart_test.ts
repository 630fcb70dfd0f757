/**
 * The evaluator after a restart that lost its state:
 *
 * - a lost or unreadable snapshot replays bars it evaluated before (to rebuild the model): their
 *   paper trades are in the database already and must not be written (and so sent live) again,
 *   and the paper position stays the one in `paper_trades`;
 * - a model reset (lost snapshot, changed barriers) leaves an untrained model whose EV is below
 *   the default exit threshold whatever the price does: it must not close open positions
 *   (`EV_BAD`), in the evaluator and in the backtest; SL, TP and TIMEOUT still apply.
 */
import assert from "node:assert/strict";
import { replayMarket } from "../lib/backtest/replay.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { Evaluator } from "../lib/pipeline/evaluator.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { EvaluatorCore, type PaperHistory } from "../lib/strategy/evaluator_core.ts";
import { type PaperPosition, resolveParams, type StrategyParams } from "../lib/strategy/policy.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { openPosition } from "../lib/store/paper_trades.ts";
import { dbTest, type TestDatabase } from "./_db.ts";

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

/** Bars `from`..`to - 1` of a slow sine around 100,000,000: the test profile trades all along. */
function sine(from: number, to: number): Bar[] {
  const out: Bar[] = [];
  for (let i = from; i < to; i++) out.push(bar(i, 100_000_000 * (1 + 0.002 * Math.sin(i / 7))));
  return out;
}

interface Row {
  id: number;
  ts: number;
  action: string;
  entry_id: number | null;
  price: number;
}

async function paperRows(db: TestDatabase): Promise<Row[]> {
  const rows = await db.sql<
    {
      id: string;
      ts: Date;
      action: string;
      entry_id: string | null;
      entry_price: string;
      exit_price: string | null;
    }[]
  >`select id, ts, action, entry_id, entry_price, exit_price from paper_trades
    where symbol = ${MARKET} order by id`;
  return rows.map((r) => ({
    id: Number(r.id),
    ts: r.ts.getTime(),
    action: r.action,
    entry_id: r.entry_id === null ? null : Number(r.entry_id),
    price: Number(r.action === "ENTER_LONG" ? r.entry_price : r.exit_price),
  }));
}

/** ENTER and EXIT alternate, each EXIT closing the ENTER before it, in ts order. */
function assertConsistent(rows: readonly Row[]): void {
  rows.forEach((r, i) => {
    assert.equal(r.action, i % 2 === 0 ? "ENTER_LONG" : "EXIT_LONG", `row ${i}`);
    if (i > 0) assert.ok(r.ts > rows[i - 1]!.ts, `row ${i} is after the one before`);
    if (r.action === "EXIT_LONG") assert.equal(r.entry_id, rows[i - 1]!.id, `row ${i}`);
  });
}

function evaluator(db: TestDatabase): Evaluator {
  return new Evaluator({
    sql: db.sql,
    markets: [MARKET],
    profile: "test",
    params: resolveParams("test"),
    krwAmount: 10_000,
    log: createLogger("evaluator"),
  });
}

/** Bars `from`..`to - 1` at 98,000,000 with a 1 % spread: EV far below any threshold, no entry. */
function wide(from: number, to: number): Bar[] {
  const out: Bar[] = [];
  for (let i = from; i < to; i++) {
    out.push({ ...bar(i, 98_000_000, 0), askEst: 98_490_000, bidEst: 97_510_000 });
  }
  return out;
}

const SABOTAGE = {
  lost: (db: TestDatabase) => db.sql`delete from actor_state where name = 'evaluator.KRW-BTC'`,
  unreadable: (db: TestDatabase) =>
    db.sql`update actor_state set state = jsonb_set(state, '{lastTs}', '"x"')
           where name = 'evaluator.KRW-BTC'`,
};

for (
  const [how, ends] of [["lost", "FLAT"], ["unreadable", "FLAT"], ["unreadable", "LONG"]] as const
) {
  dbTest(
    `evaluator: with its snapshot ${how} (${ends}), a restart replays the bars evaluated before without writing their paper trades again`,
    async (db) => {
      const restoreLog = setLogSink(() => {});
      try {
        // Five minutes of trading; for FLAT, then 40 s of a wide spread: it exits and stays out.
        // (With these bars the test profile holds a position at bar 337.)
        const cut = ends === "FLAT" ? 340 : 338;
        const firstBars = ends === "FLAT" ? [...sine(0, 300), ...wide(300, cut)] : sine(0, cut);
        await upsertBars(db.sql, firstBars, true);
        const first = evaluator(db);
        await first.start();
        assert.equal((await first.runOnce()).bars, cut);
        const before = await paperRows(db);
        assert.ok(before.length >= 10, `${before.length} paper trades in 5 minutes`);
        assertConsistent(before);
        const open = await openPosition(db.sql, MARKET);
        assert.equal(open ? "LONG" : "FLAT", ends);
        const [state] = await db.sql`select count(*)::int as n from actor_state
          where name = 'evaluator.KRW-BTC'`;
        assert.equal(state!.n, 1);

        await SABOTAGE[how](db);
        await upsertBars(db.sql, sine(cut, 460), true); // arrived while it was down
        const second = evaluator(db);
        await second.start();
        const run = await second.runOnce();
        assert.equal(run.bars, 460, "the last 10 minutes were replayed (the model is rebuilt)");

        const after = await paperRows(db);
        // What was written stays as it was, nothing of it is written again.
        assert.deepEqual(after.slice(0, before.length), before);
        const added = after.slice(before.length);
        assert.equal(run.paperTrades, added.length);
        for (const r of added) {
          const at = (r.ts - T0) / 1000;
          assert.ok(at >= cut, `${r.action} at bar ${at} was evaluated before: replayed`);
        }
        assert.ok(added.length >= 1, "it trades on the new bars");
        // The position the database held is the one the evaluator went on with: when LONG, its
        // first new event closes that entry.
        assert.equal(added[0]!.action, ends === "LONG" ? "EXIT_LONG" : "ENTER_LONG");
        if (ends === "LONG") assert.equal(added[0]!.entry_id, before.at(-1)!.id);
        assertConsistent(after);
        // A third start (the snapshot is fine again) has nothing left to do.
        const third = evaluator(db);
        await third.start();
        assert.deepEqual(await third.runOnce(), { bars: 0, labels: 0, paperTrades: 0 });
      } finally {
        restoreLog();
      }
    },
  );
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
  history?: PaperHistory,
): EvaluatorCore {
  const options = { market: MARKET, params, krwAmount: 10_000, history };
  return EvaluatorCore.restore(options, null, position).core;
}

Deno.test("EvaluatorCore: bars evaluated before do not step the paper position taken from the database", () => {
  const params = resolveParams("test");
  const core = restoreFresh(params, ENTRY, { evaluatedThroughTs: T0 + 10_000, lastExitTs: null });
  // Bars 1..10 were evaluated before: bar 5 falls through the stop, but the database says the
  // position was still open after bar 10 (its exit would be there), so it stays open.
  const replayed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) =>
    core.onBar(bar(i, i === 5 ? 99_000_000 : 100_000_000))
  );
  assert.ok(replayed.every((s) => s.prediction !== null && s.paperEvents.length === 0));
  assert.deepEqual(core.position, ENTRY);
  // From bar 11 on the policy steps again, from that position.
  const exit = core.onBar(bar(11, 99_000_000)).paperEvents;
  assert.equal(exit.length, 1);
  assert.equal(exit[0]!.action, "EXIT_LONG");
  assert.equal(exit[0]!.action === "EXIT_LONG" && exit[0]!.reason, "SL");
  assert.equal(exit[0]!.action === "EXIT_LONG" && exit[0]!.entryTs, ENTRY.entryTs);
});

Deno.test("EvaluatorCore: without a snapshot the cooldown after the last exit in the database holds", () => {
  // The test profile enters on any bar with the untrained model; a 20 s cooldown here.
  const params = resolveParams("test", { cooldownSec: 20 });
  const core = restoreFresh(params, null, {
    evaluatedThroughTs: T0 + 5_000,
    lastExitTs: T0 + 5_000,
  });
  const events = [6, 10, 20, 24, 25].map((i) => core.onBar(bar(i, 100_000_000)).paperEvents);
  assert.deepEqual(events.slice(0, 4).map((e) => e.length), [0, 0, 0, 0]);
  assert.equal(events[4]![0]?.action, "ENTER_LONG", "enters once the cooldown has passed");
});

Deno.test("EvaluatorCore: after a model reset an open position is not closed EV_BAD while the gate is closed", () => {
  const params = resolveParams("default");
  const core = restoreFresh(params, ENTRY);
  // The price drifts up a little, far from SL and TP, for the whole horizon.
  const steps = [];
  for (let i = 1; i < 300; i++) steps.push(core.onBar(bar(i, 100_010_000, 0.0001)));
  // The premise: the untrained EV is below the exit threshold on every bar, and the gate shut.
  assert.ok(steps.every((s) => s.prediction!.ev < params.exitEvMin), "EV below exitEvMin");
  assert.ok(steps.every((s) => !s.prediction!.skill.open));
  assert.deepEqual(steps.flatMap((s) => s.paperEvents), [], "no exit on EV alone");
  assert.deepEqual(core.position, ENTRY);
  // The horizon still closes it.
  const timeout = core.onBar(bar(300, 100_010_000, 0.0001)).paperEvents;
  assert.equal(timeout.length, 1);
  assert.equal(timeout[0]!.action === "EXIT_LONG" && timeout[0]!.reason, "TIMEOUT");

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
  for (let i = 1; i < 300; i++) steps.push(core.onBar(bar(i, 100_010_000, 0.0001)));
  assert.ok(steps.every((s) => s.prediction!.skill.open && s.prediction!.trainedCount === 0));
  assert.ok(steps.every((s) => s.prediction!.ev < params.exitEvMin), "EV below exitEvMin");
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
  assert.deepEqual(r.events.map((e) => [e.action, (e.ts - T0) / 1000]), [["ENTER_LONG", 0]]);
  assert.equal(r.openAtEnd?.ts, T0);
});
