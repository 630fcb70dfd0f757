/**
 * @module The feed actor: Upbit WebSocket trades -> 1-second bars in `market_1s`; final bars are
 * published to the evaluator (`bars.final`, batched per market per flush). It also keeps
 * `upbit_market_status` fresh (warnings, cautions, delisting: `lib/pipeline/market_status.ts`).
 *
 * The worker entry is `actors/feed.ts`; this module holds the actor's definition.
 */
import { TradeRecorder } from "../backtest/trade_files.ts";
import { type Client, connect } from "../db/connect.ts";
import { FeedConfig, quotationUpbitRest } from "./actor_specs.ts";
import { Feed } from "./feed.ts";
import { WorkLoop } from "./loop.ts";
import { MarketStatusPoller } from "./market_status.ts";
import type { Bar } from "../strategy/bars.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { RestCallStats } from "../upbit/rest_stats.ts";
import type { UpbotActorDefinition } from "./runtime.ts";
import { FEED_ALLOWED_LATENESS_MS } from "../strategy/bars.ts";

/** The feed actor's definition (its state lives in the closure: one per worker). */
export function feedActor(): UpbotActorDefinition<typeof FeedConfig> {
  let sql: Client | undefined;
  let feed: Feed | undefined;
  let rest: UpbitRest | undefined;
  let recorder: TradeRecorder | undefined;
  let metricsTimer: ReturnType<typeof setInterval> | undefined;
  let statusLoop: WorkLoop | undefined;
  let statusPasses = 0;

  /** End (epoch ms) of the newest final bar of any market; null before the first. */
  let lastFinalBarEndMs: number | null = null;
  /** Whether the start-up backfill is in (the feed streams live trades only after it). */
  let backfillDone = false;
  /** Sets the actor's metrics from the counters above (assigned in `start`). */
  let publishMetrics = (): void => {};

  return {
    config: FeedConfig,
    start(ctx) {
      const c = ctx.config;
      sql = connect(c.db, { applicationName: ctx.dbApplicationName });
      const restStats = new RestCallStats();
      rest = quotationUpbitRest(c.restUrl, ctx.log, restStats, c.restTimeoutMs);
      if (c.recordTradesDir !== null) {
        recorder = new TradeRecorder({
          dir: c.recordTradesDir,
          onError: (err) =>
            ctx.log.warn("Recording trades failed; will retry", { error: err.message }),
        });
      }
      // Readiness (lib/http/health.ts) reads these: they are set as soon as they change, so the
      // heartbeat that carries them is never older than one heartbeat interval.
      publishMetrics = () =>
        ctx.setMetrics({
          ...feed?.stats(),
          ...restStats.metrics(),
          market_status_passes: statusPasses,
          backfillDone,
          lastFinalBarEndMs,
          allowedLatenessMs: FEED_ALLOWED_LATENESS_MS,
        });
      feed = new Feed({
        sql,
        markets: c.markets,
        wsUrl: c.wsUrl,
        rest,
        log: ctx.log,
        onTrades: recorder && ((trades) => recorder!.record(trades)),
        allowedLatenessMs: FEED_ALLOWED_LATENESS_MS,
        onFinalBars: (bars) => {
          for (const b of bars) lastFinalBarEndMs = Math.max(lastFinalBarEndMs ?? 0, b.ts + 1000);
          publishMetrics();
          const byMarket = new Map<string, Bar[]>();
          for (const b of bars) byMarket.set(b.market, [...(byMarket.get(b.market) ?? []), b]);
          for (const [market, list] of byMarket) {
            ctx.send("evaluator", {
              type: "bars.final",
              market,
              bars: list.map(({ market: _m, ...bar }) => bar),
            });
          }
        },
      });
      ctx.log.info(`Feed started (markets=${c.markets.join(",")})`);
      metricsTimer = setInterval(publishMetrics, 1000);
    },
    // The start-up backfill (REST pages for every market, up to 10 minutes of trades, fetched
    // once the first WebSocket subscription is live) runs once the feed is ready, so the actors
    // after it (the executor's exits among them) need not wait for it and the start timeout does
    // not bound it; readiness waits for `backfillDone`.
    async afterStart(ctx) {
      const c = ctx.config;
      await feed!.start(ctx.signal);
      if (ctx.signal.aborted) return;
      backfillDone = true;
      publishMetrics();
      const statusPoller = new MarketStatusPoller({
        sql: sql!,
        rest: rest!,
        markets: c.markets,
        log: ctx.log,
      });
      statusLoop = new WorkLoop({
        intervalMs: c.marketStatusPollSec * 1000,
        signal: ctx.signal,
        log: ctx.log,
        onError: (err) => ctx.reportError(err),
        // The bars matter more than this: keep backing off instead of crashing the feed.
        maxFailures: Number.POSITIVE_INFINITY,
        pass: async () => {
          await statusPoller.pollOnce(ctx.signal);
          statusPasses++;
        },
      });
      statusLoop.start();
    },
    async stop() {
      clearInterval(metricsTimer);
      await statusLoop?.stopped();
      await feed?.stop();
      await recorder?.close();
      rest?.close();
      await sql?.end({ timeout: 2 });
    },
  };
}
