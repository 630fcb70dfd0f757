/**
 * @module The order-poller actor: polls submitted live orders to `done` / `cancel` every
 * `LIVE_ORDER_POLL_INTERVAL_SEC` (see `lib/execution/order_poller.ts`). A `wake` (the account actor
 * forwards `myOrder` events of the one private WebSocket as wakes) triggers a poll at once;
 * polling stays the source of truth.
 * On start it picks up every submitted attempt that is not final. Without keys it idles.
 *
 * The worker entry is `actors/order_poller.ts`; this module holds the actor's definition.
 */
import { type Client, connect } from "../db/connect.ts";
import { OrderPoller } from "../execution/order_poller.ts";
import { keyedUpbitRest, OrderPollerConfig } from "./actor_specs.ts";
import { WorkLoop } from "./loop.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { RestCallStats } from "../upbit/rest_stats.ts";
import type { UpbotActorDefinition } from "./runtime.ts";

/** The order-poller actor's definition (its state lives in the closure: one per worker). */
export function orderPollerActor(): UpbotActorDefinition<typeof OrderPollerConfig> {
  let sql: Client | undefined;
  let rest: UpbitRest | undefined;
  let loop: WorkLoop | undefined;

  return {
    config: OrderPollerConfig,
    start(ctx) {
      const c = ctx.config;
      if (!c.accessKey || !c.secretKey) {
        ctx.log.info(
          "OrderPoller idle (UPBIT_ACCESS_KEY / UPBIT_SECRET_KEY not set: no live orders)",
        );
        return;
      }
      sql = connect(c.db, { applicationName: ctx.dbApplicationName });
      const restStats = new RestCallStats();
      rest = keyedUpbitRest("order_poller", c, ctx.log, restStats);
      const poller = new OrderPoller({ sql, rest, maxPolls: c.maxPolls, log: ctx.log });
      let finalised = 0;
      loop = new WorkLoop({
        intervalMs: c.pollIntervalSec * 1000,
        signal: ctx.signal,
        log: ctx.log,
        onError: (err) => ctx.reportError(err),
        pass: async () => {
          const s = await poller.pollOnce();
          finalised += s.finalised;
          ctx.setMetrics({ open: s.open, finalised, ...restStats.metrics() });
          // A finished entry may let the executor place its exit.
          if (s.finalised > 0) ctx.send("executor", { type: "wake", topic: "order_attempts" });
        },
      });
      ctx.log.info(
        `OrderPoller started (interval=${c.pollIntervalSec}s max_polls=${c.maxPolls})`,
      );
      loop.start();
    },
    messages: {
      wake() {
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
