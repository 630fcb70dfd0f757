/**
 * @module The evaluator actor's logic with the skill gate: each prediction row says whether the
 * gate allowed entries and why (scores in `predictions.features`), a log line marks each opening
 * and closing, and a restart from the stored snapshot resumes the gate exactly.
 */
import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { Evaluator } from "../lib/pipeline/evaluator.ts";
import { EvaluatorCore } from "../lib/strategy/evaluator_core.ts";
import { resolveParams } from "../lib/strategy/policy.ts";
import { upsertBars } from "../lib/store/market_1s.ts";
import { edgeMarket } from "./_backtest_bars.ts";
import { dbTest } from "./_db.ts";

const MARKET = "KRW-BTC";

dbTest(
  "evaluator: predictions carry the skill gate's scores; it logs the gate opening; a restart resumes it",
  async (db) => {
    const lines: string[] = [];
    const restoreLog = setLogSink((line) => lines.push(line));
    try {
      const params = resolveParams("default", {
        skillGate: { minLabels: 100, windowLabels: 200, marginNats: 0.02 },
      });
      const bars = edgeMarket(MARKET, 700, 3);
      const make = () =>
        new Evaluator({
          sql: db.sql,
          markets: [MARKET],
          profile: "default",
          params,
          krwAmount: 10_000,
          log: createLogger("evaluator"),
          batchBars: 128,
          warmupMs: 10_000_000,
        });
      await upsertBars(db.sql, bars.slice(0, 300), true);
      const first = make();
      await first.start();
      assert.equal((await first.runOnce()).bars, 300);
      await upsertBars(db.sql, bars.slice(300), true);
      const second = make(); // as after a crash: the gate comes back from the snapshot
      await second.start();
      assert.equal((await second.runOnce()).bars, 400);

      const core = new EvaluatorCore({ market: MARKET, params, krwAmount: 10_000 });
      const expected = bars.map((b) => core.onBar(b).prediction!.skill);
      const rows = await db.sql<{ gate: unknown }[]>`
        select features->'skill_gate' as gate from predictions order by ts`;
      assert.deepEqual(
        rows.map((r) => typeof r.gate === "string" ? JSON.parse(r.gate) : r.gate),
        expected.map((s) => ({
          open: s.open,
          scored: s.scored,
          model_log_loss: s.modelLogLoss,
          base_log_loss: s.baseLogLoss,
        })),
      );
      const opened = expected.findIndex((s) => s.open);
      assert.ok(opened > 100 && opened < 700, `opened at bar ${opened}`);
      const gateLines = lines.filter((l) => l.includes("skill gate"));
      assert.ok(gateLines.some((l) => l.includes(`Evaluator ${MARKET}: skill gate closed`)));
      assert.ok(gateLines.some((l) => l.includes(`Evaluator ${MARKET}: skill gate open`)));
      const trades = await db.sql`select count(*)::int as n, min(ts) as first from paper_trades`;
      assert.ok(trades[0]!.n > 0, "it traded once the gate opened");
      assert.ok(trades[0]!.first.getTime() >= bars[opened]!.ts);
    } finally {
      restoreLog();
    }
  },
);
