/**
 * @module The executor actor: paper trades -> Upbit orders in shadow, test or live mode (see
 * `lib/execution/executor.ts`). `wake` messages only hurry it: it follows `paper_trades` with a
 * durable cursor, so a restart resumes exactly where it stopped. A halt (the supervisor's, or one
 * stored in the database by `deno task halt`) stops new entries only: exits, retries of exits,
 * resolution of unknown orders and closes go on (reduce-only). So does a switch to shadow or test
 * mode with keys: what upbot bought live is still sold (the executor's live closer).
 *
 * The worker entry is `actors/executor.ts`; this module holds the actor's definition.
 */
import { entryRefusalForMarket } from "../store/market_status.ts";
import { type Client, connect } from "../db/connect.ts";
import { Executor } from "../execution/executor.ts";
import { decideTradeMode } from "../execution/guard.ts";
import { ExecutorConfig, keyedUpbitRest } from "./actor_specs.ts";
import { WorkLoop } from "./loop.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { RestCallStats } from "../upbit/rest_stats.ts";
import type { UpbotActorDefinition } from "./runtime.ts";

/** The executor actor's definition (its state lives in the closure: one per worker). */
export function executorActor(): UpbotActorDefinition<typeof ExecutorConfig> {
  let sql: Client | undefined;
  let rest: UpbitRest | undefined;
  let loop: WorkLoop | undefined;

  return {
    config: ExecutorConfig,
    async start(ctx) {
      const c = ctx.config;
      // One connection: the executor's reads that go out together are pipelined on it (postgres.js
      // sends them without waiting), so it saves the round trips without holding more sessions.
      sql = connect(c.db, { applicationName: ctx.dbApplicationName, max: 1 });
      const decision = decideTradeMode({
        ...c.guard,
        UPBIT_ACCESS_KEY: c.accessKey,
        UPBIT_SECRET_KEY: c.secretKey,
      });
      const restStats = new RestCallStats();
      // Shadow mode with keys has a client too: live positions bought before a switch to shadow
      // are still closed (the executor's live closer); nothing else is sent in shadow mode.
      if (decision.effective !== "shadow" || (c.accessKey && c.secretKey)) {
        rest = keyedUpbitRest("executor", c, ctx.log, restStats);
      }
      const executor = new Executor({
        sql,
        rest: rest ?? null,
        decision,
        settings: c.settings,
        // Entries on a market under warning, caution or delisting are refused; exits never are.
        risk: { limits: c.risk, marketRefusal: entryRefusalForMarket },
        log: ctx.log,
        onSubmitted: () => ctx.send("order_poller", { type: "wake", topic: "order_attempts" }),
        supervisorHalt: () =>
          ctx.tradingHalted ? "entries halted by the supervisor (a critical actor failed)" : null,
      });
      await executor.start();
      let handled = 0;
      loop = new WorkLoop({
        intervalMs: 1000,
        signal: ctx.signal,
        log: ctx.log,
        onError: (err) => ctx.reportError(err),
        pass: async () => {
          const s = await executor.runOnce();
          handled += s.handled;
          ctx.setMetrics({
            mode: executor.mode,
            handled,
            cursor: executor.cursor,
            supervisor_halt: ctx.tradingHalted,
            ...restStats.metrics(),
          });
          return false; // `more` work waits for the next tick: rate cap and fills need time
        },
      });
      loop.start();
    },
    messages: {
      wake() {
        loop?.wake();
      },
      "trading.halt"(msg, _from, ctx) {
        ctx.log.warn(`Executor: new entries halted (${msg.reason}); exits and closes go on`);
      },
      "trading.resume"(_msg, _from, ctx) {
        ctx.log.info("Executor: the supervisor's halt is lifted");
        loop?.wake();
      },
    },
    async stop() {
      await loop?.stopped();
      rest?.close();
      await sql?.end({ timeout: 2 });
    },
  };
}
