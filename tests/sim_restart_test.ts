/**
 * @module Simulator restarts and stalls under a running upbot. Shadow: the simulator is stopped and
 * started again on the same port, then stalled (long REST latency) while the WebSocket drops: the
 * feed reconnects and backfills, so bars are missing only while the exchange was down (no trade
 * existed then) and none is duplicated. Live (the simulator's state file keeps the exchange): the
 * simulator dies while an order's answer is in flight; after its restart the executor resolves that
 * order by identifier, and every exchange order maps to exactly one attempt.
 */
import assert from "node:assert/strict";
import type { Simulator } from "../sim/mod.ts";
import { testBackends } from "./_db.ts";
import {
  assertBarsContiguous,
  assertOneAttemptPerPaperTrade,
  assertPaperTradesContiguous,
  startDisposableSimulator,
  startUpbotRig,
  trace,
  type UpbotRig,
} from "./_fault_rig.ts";
import { LIVE_ENV } from "./_upbot_rig.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH"];

/** A simulator that can be stopped and started again on the same port. */
class RestartableSim {
  #sim: Simulator;
  readonly #options: Parameters<typeof startDisposableSimulator>[0];
  readonly restUrl: string;
  readonly wsUrl: string;

  private constructor(sim: Simulator, options: Parameters<typeof startDisposableSimulator>[0]) {
    this.#sim = sim;
    this.#options = options;
    this.restUrl = sim.restUrl;
    this.wsUrl = sim.wsUrl;
  }

  static async start(options: Parameters<typeof startDisposableSimulator>[0]) {
    const sim = await startDisposableSimulator(options);
    const port = Number(new URL(sim.restUrl).port);
    return new RestartableSim(sim, { ...options, port });
  }

  get sim(): Simulator {
    return this.#sim;
  }

  async stop(): Promise<void> {
    await this.#sim.close();
  }

  async startAgain(): Promise<void> {
    this.#sim = await startDisposableSimulator(this.#options);
  }

  async [Symbol.asyncDispose]() {
    await this.#sim.close().catch(() => {});
  }
}

/** The newest final bar time (epoch ms) common to all markets, or 0 when a market has none. */
async function newestFinalBarMs(rig: UpbotRig, markets: string[]): Promise<number> {
  const rows = await rig.sql`
    select symbol, (extract(epoch from max(ts)) * 1000)::float8 as ms
    from market_1s where is_final group by symbol`;
  if (rows.length < markets.length) return 0;
  return Math.min(...rows.map((r) => r.ms as number));
}

/**
 * Shadow drill: optionally a restart of the simulator on the same port, optionally a stall (4 s
 * REST latency) while the WebSocket drops; then bars are missing only during the restart's outage.
 */
async function shadowDrill(
  backend: string,
  markets: string[],
  drill: { restart: boolean; stall: boolean },
): Promise<void> {
  await using sims = await RestartableSim.start({ seed: 31, markets, rate: 200 });
  await using rig = await startUpbotRig({
    backend,
    sim: sims,
    markets,
    env: { PAPER_POLICY_PROFILE: "test" },
  });
  const newest = () => newestFinalBarMs(rig, markets);
  /** `GET /v1/trades/ticks` pages the feed got answered (its REST metrics, every second). */
  const tradePages = () => {
    const feed = rig.upbot.supervisor.status().find((a) => a.name === "feed");
    return Number(feed?.metrics["rest_calls:trade:200"] ?? 0);
  };
  await rig.until("final bars", async () => (await newest()) > 0);
  const firstBarMs = await newest();
  await rig.until("five seconds of bars", async () => (await newest()) > firstBarMs + 5_000);
  const outages: [number, number][] = [];
  /** When the last fault of the drill ended. */
  let endAt = Date.now();
  if (drill.restart) {
    // The exchange goes away for three seconds and comes back on the same port.
    const downAt = Date.now();
    await sims.stop();
    await new Promise((r) => setTimeout(r, 3_000));
    await sims.startAgain();
    const upAt = Date.now();
    outages.push([downAt, upAt]);
    trace(`down ${new Date(downAt).toISOString()} up ${new Date(upAt).toISOString()}`);
    endAt = upAt;
  }
  let dropAt = 0;
  if (drill.stall) {
    // Every REST answer takes 4 s while the WebSocket drops: the gap is backfilled slowly.
    const pagesBefore = tradePages();
    sims.sim.setFaults({ latency_ms: 4_000 });
    dropAt = Date.now();
    trace(`drop ${new Date(dropAt).toISOString()}`);
    sims.sim.dropWebSockets();
    await rig.until("bars after the drop", async () => (await newest()) > dropAt + 3_000);
    // Let the slow backfill (300 ms, then 4 s per page and market) land before the stall ends:
    // a page per market answered since the drop.
    await rig.until(
      "the gap's pages in",
      () => tradePages() >= pagesBefore + markets.length,
      4_000 * markets.length + 30_000,
    );
    sims.sim.setFaults({ latency_ms: 0 });
    endAt = Date.now();
  }
  // Bars for three seconds after the last fault ended (the restart, or the stall).
  await rig.until("bars after the drill", async () => (await newest()) > endAt + 3_000);
  await rig.upbot.supervisor.stop("checking");

  // Only the outage (no exchange, so no trade) may lack bars; the stall's drop may not.
  const bars = await assertBarsContiguous(rig.sql, markets, outages);
  assert.ok(bars > 20, `${bars} final bars`);
  if (drill.stall) {
    const [around] = await rig.sql<{ n: number }[]>`
      select count(*)::int as n from market_1s
      where is_final and ts between to_timestamp(${dropAt / 1000}) and
                                    to_timestamp(${(dropAt + 3000) / 1000})`;
    assert.ok(around!.n >= 3 * markets.length, "the seconds after the drop have bars");
  }
  await assertPaperTradesContiguous(rig.sql);
  await assertOneAttemptPerPaperTrade(rig.sql);
}

for (const backend of testBackends()) {
  Deno.test(
    `sim restart (shadow, two markets): the feed reconnects and backfills; no bar lost or doubled [${backend}]`,
    () => shadowDrill(backend, ["KRW-BTC", "KRW-ETH"], { restart: true, stall: false }),
  );

  Deno.test(
    `sim stall (shadow, two markets): WebSocket drop under 4 s REST latency is backfilled [${backend}]`,
    // The two markets' backfills finish seconds apart (4 s per REST page); every live trade is
    // held until both are in, or the feed's shared watermark would drop one market's gap as late.
    // (A one-market stall, a drill of its own before, is this one's simpler case: same checks,
    // half a minute of CI each.)
    () => shadowDrill(backend, ["KRW-BTC", "KRW-ETH"], { restart: false, stall: true }),
  );

  Deno.test(
    `sim restart (live, state file): an order in flight when the exchange died is resolved by identifier [${backend}]`,
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "upbot_sim_state_" });
      try {
        await using sims = await RestartableSim.start({
          seed: 32,
          markets: MARKETS,
          rate: 200,
          stateFile: `${dir}/sim.json`,
        });
        await using rig = await startUpbotRig({
          backend,
          sim: sims,
          markets: MARKETS,
          env: {
            ...LIVE_ENV,
            EXECUTOR_MAX_RETRIES: "2",
          },
        });
        // Every order's answer is lost: the order exists, upbot waits for the answer.
        await rig.until("a paper trade", async () => await rig.count("paper_trades") > 0);
        sims.sim.setFaults({ lost_response_rate: 1 });
        let inFlight = "";
        await rig.until("an order in flight", async () => {
          const [row] = await rig.sql`
            select identifier from upbit_order_attempts
            where mode = 'live' and status = 'pending' order by id limit 1`;
          if (!row) return false;
          if (!sims.sim.orders().some((o) => o.identifier === row.identifier)) return false;
          inFlight = row.identifier;
          return true;
        }, 30_000);
        // The exchange dies with the answer in flight, and comes back from its state file.
        await sims.stop();
        await new Promise((r) => setTimeout(r, 2_000));
        await sims.startAgain();
        assert.ok(
          sims.sim.orders().some((o) => o.identifier === inFlight),
          "the state file kept the order",
        );
        const [newest] = await rig.sql<
          { max: number }[]
        >`select max(id)::int as max from paper_trades`;
        await rig.until(
          "every paper trade so far has a resolved attempt",
          async () =>
            await rig.count(
              "upbit_order_attempts",
              `paper_trade_id <= ${newest!.max} and (status in ('done', 'skipped') or
               (status = 'error' and retry_count >= 2))`,
            ) >= await rig.count("paper_trades", `id <= ${newest!.max}`),
          60_000,
        );
        const attempts = await rig.sql`select identifier, status, uuid from upbit_order_attempts`;
        const orders = sims.sim.orders();
        const byIdentifier = Map.groupBy(orders, (o) => o.identifier ?? "(none)");
        for (const [identifier, list] of byIdentifier) {
          assert.equal(list.length, 1, `one exchange order for ${identifier}`);
          assert.ok(
            attempts.some((a) => a.identifier === identifier),
            `order ${identifier} has its attempt`,
          );
        }
        const resolved = attempts.find((a) => a.identifier === inFlight);
        assert.equal(resolved?.status, "done", `${inFlight}: ${JSON.stringify(resolved)}`);
        assert.equal(resolved?.uuid, byIdentifier.get(inFlight)![0]!.uuid);
        await assertOneAttemptPerPaperTrade(rig.sql);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}
