/**
 * @module The fill model trades when live could, not earlier: a paper action of bar `s` is
 * filled at the open of the first bar at >= `s` + 1 s + the feed's lateness (2 s) + the extra
 * latency, since live bar `s` is final only once a trade that late arrives; an entry whose fill
 * bar comes after `EXECUTOR_MAX_SIGNAL_AGE_SEC` (a gap without bars) is skipped as the executor
 * skips a stale entry, and reported; exits are filled however late.
 */
import assert from "node:assert/strict";
import { replayMarket, type RoundTrip } from "../lib/backtest/replay.ts";
import { formatReport } from "../lib/backtest/report.ts";
import { runBacktest } from "../lib/backtest/run.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { testRun, walk } from "./_backtest_bars.ts";

const MARKET = "KRW-BTC";
const RUN = testRun({ markets: [MARKET], slippageBps: 0 });
const BARS = walk(MARKET, 1200, 1);

async function replay(bars: Bar[], extra: { latencyMs?: number; maxSignalAgeSec?: number } = {}) {
  return await replayMarket([bars], {
    market: MARKET,
    params: RUN.params,
    krwAmount: 10_000,
    slippageBps: 0,
    ...extra,
  });
}

/** The first round trip of the unmodified walk whose exit is at least 10 s after its entry. */
async function firstTrip(): Promise<RoundTrip> {
  const r = await replay(BARS);
  const trip = r.trades.find((t) => t.exit.ts - t.enter.ts >= 10_000 && t.filled);
  assert.ok(trip, `${r.trades.length} trips, none held 10 s`);
  return trip;
}

/** `bars` with every price of the bars at or after `fromTs` multiplied by `factor`. */
function jumpFrom(bars: Bar[], fromTs: number, factor: number): Bar[] {
  return bars.map((b) =>
    b.ts < fromTs ? b : {
      ...b,
      open: b.open * factor,
      high: b.high * factor,
      low: b.low * factor,
      close: b.close * factor,
    }
  );
}

Deno.test("an entry fills at the first bar at >= signal + 1 s + lateness: after a price jump in between", async () => {
  const trip = await firstTrip();
  const s = trip.enter.ts;
  // The price jumps 1 % at s + 3000 (the bars at s + 1000 and s + 2000 are untouched): live
  // could not have bought before that jump, since bar s became final only with a trade at >= s + 3000.
  const bars = jumpFrom(BARS, s + 3000, 1.01);
  const r = await replay(bars);
  const same = r.trades.find((t) => t.enter.ts === s);
  assert.ok(same, "the bars up to the signal are unchanged, so is the entry");
  const fillBar = bars.find((b) => b.ts === s + 3000)!;
  const before = bars.find((b) => b.ts === s + 1000)!;
  assert.notEqual(fillBar.open, before.open);
  assert.equal(same.filled?.entry.ts, s + 3000);
  assert.equal(same.filled?.entry.price, fillBar.open, "the price after the jump");

  // With 1500 ms of extra latency the first bar live could trade at is s + 5000 (s + 4500 rounded
  // up to a bar).
  const late = (await replay(bars, { latencyMs: 1500 })).trades.find((t) => t.enter.ts === s)!;
  assert.equal(late.filled?.entry.ts, s + 5000);
  assert.equal(late.filled?.entry.price, bars.find((b) => b.ts === s + 5000)!.open);
});

Deno.test("an entry whose fill bar is past EXECUTOR_MAX_SIGNAL_AGE_SEC is skipped and reported; its exit is not filled", async () => {
  const trip = await firstTrip();
  const s = trip.enter.ts;
  // No bar from s + 1000 to s + 61000: the next bar is 62 s after the signal.
  const gapped = BARS.filter((b) => b.ts <= s || b.ts >= s + 62_000);
  const r = await replay(gapped);
  const skipped = r.trades.find((t) => t.enter.ts === s);
  assert.ok(skipped, "the entry is in the paper stream (paper is untouched)");
  assert.equal(skipped.staleEntry, true);
  assert.equal(skipped.filled, null);
  // Other round trips still fill.
  assert.ok(r.trades.some((t) => t.filled !== null));

  // With a longer limit the same entry is not stale: it fills at the first bar after the gap,
  // and so does its exit.
  const patient = (await replay(gapped, { maxSignalAgeSec: 120 })).trades.find((t) =>
    t.enter.ts === s
  )!;
  assert.equal(patient.staleEntry, false);
  assert.equal(patient.filled?.entry.ts, s + 62_000);
  assert.ok(patient.filled!.exit.ts >= patient.exit.ts + 3000);

  // The report counts it, apart from the unfilled, in every section and in the text.
  const report = await runBacktest({ ...RUN, maxSignalAgeSec: 60 }, () => [gapped]);
  assert.equal(report.markets[0]!.staleEntries, 1);
  assert.equal(report.total.staleEntries, 1);
  const row = report.trades.find((t) => t.entryTs === new Date(s).toISOString())!;
  assert.equal(row.staleEntry, true);
  assert.equal(row.fillPnl, null);
  const m = report.markets[0]!;
  assert.equal(m.paper.trades, m.filled.trades + m.unfilled + m.staleEntries);
  const text = formatReport(report);
  assert.match(text, /unfilled +stale/);
  assert.match(text, /latency=0ms max_signal_age=60s/);
});

Deno.test("an exit is filled however late its fill bar comes", async () => {
  const trip = await firstTrip();
  const e = trip.exit.ts;
  // No bar for ten minutes after the exit.
  const gapped = BARS.filter((b) => b.ts <= e || b.ts >= e + 600_000);
  assert.ok(gapped.some((b) => b.ts >= e + 600_000), "bars after the gap");
  const r = await replay(gapped);
  const same = r.trades.find((t) => t.exit.ts === e)!;
  assert.equal(same.staleEntry, false);
  assert.equal(same.filled?.entry.ts, trip.filled!.entry.ts);
  assert.equal(same.filled?.exit.ts, gapped.find((b) => b.ts >= e + 600_000)!.ts);
});
