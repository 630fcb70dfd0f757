/**
 * @module The feed actor: Upbit WebSocket trades -> 1-second bars in `market_1s`; final bars are
 * published to the evaluator (`bars.final`, batched per market per flush).
 */
import { runActor } from "../lib/actors/actor.ts";
import { TradeRecorder } from "../lib/backtest/trade_files.ts";
import { type Client, connect } from "../lib/db.ts";
import { FeedConfig } from "../lib/pipeline/actor_specs.ts";
import { Feed } from "../lib/pipeline/feed.ts";
import type { Bar } from "../lib/strategy/bars.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";

let sql: Client | undefined;
let feed: Feed | undefined;
let rest: UpbitRest | undefined;
let recorder: TradeRecorder | undefined;
let metricsTimer: ReturnType<typeof setInterval> | undefined;

runActor({
  config: FeedConfig,
  async start(ctx) {
    const c = ctx.config;
    sql = connect(c.db, { applicationName: "upbot-feed" });
    rest = new UpbitRest({ baseUrl: c.restUrl, logger: ctx.log });
    if (c.recordTradesDir !== null) {
      recorder = new TradeRecorder({
        dir: c.recordTradesDir,
        onError: (err) =>
          ctx.log.warn("Recording trades failed; will retry", { error: err.message }),
      });
    }
    feed = new Feed({
      sql,
      markets: c.markets,
      wsUrl: c.wsUrl,
      rest,
      log: ctx.log,
      onTrades: recorder && ((trades) => recorder!.record(trades)),
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
    await recorder?.close();
    rest?.close();
    await sql?.end({ timeout: 2 });
  },
});
