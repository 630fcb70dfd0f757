/**
 * @module The feed actor: Upbit WebSocket trades -> 1-second bars in `market_1s`; final bars are
 * published to the evaluator (`bars.final`, batched per market per flush).
 */
import { runActor } from "../lib/actors/actor.ts";
import { type Client, connect } from "../lib/db.ts";
import { FeedConfig } from "../lib/pipeline/actor_specs.ts";
import { Feed } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";

let sql: Client | undefined;
let feed: Feed | undefined;
let rest: UpbitRest | undefined;
let metricsTimer: ReturnType<typeof setInterval> | undefined;

/** Lateness allowed before a second is final (the feed's default, stated so it can be reported). */
const ALLOWED_LATENESS_MS = 2000;
/** End (epoch ms) of the newest final bar of any market; null before the first. */
let lastFinalBarEndMs: number | null = null;
/** Whether the start-up backfill is in (the feed streams live trades only after it). */
let backfillDone = false;

runActor({
  config: FeedConfig,
  async start(ctx) {
    const c = ctx.config;
    sql = connect(c.db, { applicationName: "upbot-feed" });
    rest = new UpbitRest({ baseUrl: c.restUrl, logger: ctx.log });
    // Readiness (lib/http/health.ts) reads these: they are set as soon as they change, so the
    // heartbeat that carries them is never older than one heartbeat interval.
    const publishMetrics = () =>
      ctx.setMetrics({
        ...feed?.stats(),
        backfillDone,
        lastFinalBarEndMs,
        allowedLatenessMs: ALLOWED_LATENESS_MS,
      });
    feed = new Feed({
      sql,
      markets: c.markets,
      wsUrl: c.wsUrl,
      rest,
      log: ctx.log,
      allowedLatenessMs: ALLOWED_LATENESS_MS,
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
    await feed.start();
    backfillDone = true;
    publishMetrics();
    metricsTimer = setInterval(publishMetrics, 1000);
  },
  async stop() {
    clearInterval(metricsTimer);
    await feed?.stop();
    rest?.close();
    await sql?.end({ timeout: 2 });
  },
});
