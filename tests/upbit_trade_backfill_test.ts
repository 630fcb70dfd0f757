import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { tradesSince } from "../lib/upbit/trade_backfill.ts";
import { type SimTrade, type Simulator, startSimulator } from "../sim/mod.ts";

const MIDNIGHT = Date.UTC(2026, 2, 4);
const DAY_MS = 86_400_000;

async function withSim(
  fn: (sim: Simulator, put: (ms: number) => SimTrade) => Promise<void>,
): Promise<void> {
  const restore = setLogSink(() => {});
  let clock = MIDNIGHT;
  const sim = await startSimulator({
    rate: 0,
    seed: 9,
    markets: ["KRW-BTC"],
    now: () => clock,
    faults: { rate_limit_factor: 100 },
  });
  try {
    await fn(sim, (ms) => {
      clock = ms;
      return sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 0.01, side: "BID" });
    });
  } finally {
    await sim.close();
    restore();
  }
}

const ids = (trades: { sequential_id: bigint }[]) =>
  trades.map((t) => t.sequential_id).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

Deno.test("tradesSince pages the newest date, then earlier dates with days_ago", async () => {
  await withSim(async (sim, put) => {
    const before = put(MIDNIGHT - 2 * DAY_MS - 5_000); // older than the window
    const sent: SimTrade[] = [];
    for (let i = 0; i < 3; i++) sent.push(put(MIDNIGHT - 2 * DAY_MS + 1_000 + i));
    // The date in between has no trade at all: it is passed over.
    for (let i = 0; i < 1_200; i++) sent.push(put(MIDNIGHT + 1_000 + i * 10));
    const rest = new UpbitRest({ baseUrl: sim.restUrl });
    try {
      const all = await tradesSince(rest, "KRW-BTC", MIDNIGHT - 2 * DAY_MS);
      assert.equal(all.complete, true);
      assert.equal(all.error, undefined);
      assert.deepEqual(ids(all.trades), sent.map((t) => t.sequentialId));
      assert.ok(!all.trades.some((t) => t.sequential_id === before.sequentialId));

      const limited = await tradesSince(rest, "KRW-BTC", MIDNIGHT - 2 * DAY_MS, { maxPages: 2 });
      assert.equal(limited.complete, false, "the page budget ran out");
      assert.equal(limited.trades.length, 1_000);
    } finally {
      rest.close();
    }
  });
});

Deno.test("tradesSince keeps what it fetched when a later request fails", async () => {
  await withSim(async (sim, put) => {
    for (let i = 0; i < 700; i++) put(MIDNIGHT + 1_000 + i);
    let requests = 0;
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      maxAttempts: 1,
      fetch: (input, init) => {
        // Every request after the first is answered 500 by the simulator.
        if (++requests === 2) sim.setFaults({ error_rate: 1 });
        return fetch(input, init);
      },
    });
    try {
      const result = await tradesSince(rest, "KRW-BTC", MIDNIGHT);
      assert.equal(result.complete, false);
      assert.ok(result.error instanceof Error, String(result.error));
      assert.equal(result.trades.length, 500, "the first page");
    } finally {
      rest.close();
    }
  });
});

Deno.test("tradesSince gives up past seven dates before the newest", async () => {
  await withSim(async (sim, put) => {
    put(MIDNIGHT - 9 * DAY_MS);
    put(MIDNIGHT + 1_000);
    const rest = new UpbitRest({ baseUrl: sim.restUrl });
    try {
      const result = await tradesSince(rest, "KRW-BTC", MIDNIGHT - 9 * DAY_MS);
      assert.equal(result.complete, false, "Upbit serves days_ago 1-7 only");
      assert.equal(result.trades.length, 1);
    } finally {
      rest.close();
    }
  });
});
