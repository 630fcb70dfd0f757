/**
 * @module The feed actor: Upbit WebSocket trades -> 1-second bars in `market_1s`; final bars are
 * published to the evaluator (`bars.final`, batched per market per flush).
 */
import { runActor } from "../lib/actors/actor.ts";
import { type Client, connect } from "../lib/db.ts";
import { FeedConfig, quotationUpbitRest } from "../lib/pipeline/actor_specs.ts";
import { Feed } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import type { UpbitRest } from "../lib/upbit/rest.ts";

let sql: Client | undefined;
let feed: Feed | undefined;
let rest: UpbitRest | undefined;
let metricsTimer: ReturnType<typeof setInterval> | undefined;

runActor({
  config: FeedConfig,
  async start(ctx) {
    const c = ctx.config;
    sql = connect(c.db, { applicationName: "upbot-feed" });
    rest = quotationUpbitRest(c.restUrl, ctx.log);
    feed = new Feed({
      sql,
      markets: c.markets,
      wsUrl: c.wsUrl,
      rest,
      log: ctx.log,
      onFinalBars: (bars) => {
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
    metricsTimer = setInterval(() => {
      const s = feed!.stats();
      ctx.setMetrics({ ...s });
    }, 1000);
  },
  async stop() {
    clearInterval(metricsTimer);
    await feed?.stop();
    rest?.close();
    await sql?.end({ timeout: 2 });
  },
});
