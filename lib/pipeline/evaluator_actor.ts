/**
 * @module The evaluator actor: final bars -> triple-barrier labels, predictions, EV -> paper
 * trades. `bars.final` messages only wake it: it reads the bars from `market_1s`.
 *
 * The worker entry is `actors/evaluator.ts`; this module holds the actor's definition.
 */
import { type Client, connect } from "../db/connect.ts";
import { EvaluatorConfig } from "./actor_specs.ts";
import { Evaluator } from "./evaluator.ts";
import { WorkLoop } from "./loop.ts";
import type { UpbotActorDefinition } from "./runtime.ts";

/** The evaluator actor's definition (its state lives in the closure: one per worker). */
export function evaluatorActor(): UpbotActorDefinition<typeof EvaluatorConfig> {
  let sql: Client | undefined;
  let loop: WorkLoop | undefined;

  return {
    config: EvaluatorConfig,
    async start(ctx) {
      const c = ctx.config;
      sql = connect(c.db, { applicationName: ctx.dbApplicationName });
      const evaluator = new Evaluator({
        sql,
        markets: c.markets,
        profile: c.profile,
        params: c.params,
        krwAmount: c.krwAmount,
        log: ctx.log,
        onPaperTrades: () => ctx.send("executor", { type: "wake", topic: "paper_trades" }),
      });
      await evaluator.start();
      let totals = { bars: 0, labels: 0, paperTrades: 0 };
      loop = new WorkLoop({
        intervalMs: 1000,
        signal: ctx.signal,
        log: ctx.log,
        onError: (err) => ctx.reportError(err),
        pass: async () => {
          const s = await evaluator.runOnce();
          totals = {
            bars: totals.bars + s.bars,
            labels: totals.labels + s.labels,
            paperTrades: totals.paperTrades + s.paperTrades,
          };
          ctx.setMetrics(totals);
        },
      });
      loop.start();
    },
    messages: {
      "bars.final"() {
        loop?.wake();
      },
    },
    async stop() {
      await loop?.stopped();
      await sql?.end({ timeout: 2 });
    },
  };
}
