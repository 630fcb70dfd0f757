/**
 * @module Routine reconciliation (`RECONCILE_INTERVAL_MIN`): in live mode, with the gate open, the
 * executor reconciles again every interval without closing the gate, so an order of upbot's the
 * database does not record (a create that landed long after it was given up) is found while
 * upbot runs, not only at the next start. 0 turns it off.
 */
import assert from "node:assert/strict";
import { installationId } from "../lib/store/order_attempts.ts";
import { activeAlarms, raiseAlarm } from "../lib/store/alarms.ts";
import { RECONCILE_FAILURES_ALARM } from "../lib/execution/executor.ts";
import { closeReconciliationGate, reconciliationGate } from "../lib/execution/system_gate.ts";
import type { OrderRequest } from "../lib/upbit/rest.ts";
import { dbTest } from "./_db.ts";
import { executorConfig, liveExecutor, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";

for (const intervalMin of [0.002, 0]) {
  dbTest(
    `routine reconciliation every ${intervalMin} min finds ${
      intervalMin > 0 ? "an unrecorded own order" : "nothing: turned off"
    }`,
    async (db) => {
      const h = await startSim({ markets: [BTC] });
      try {
        const { sim, rest, log } = h;
        const ex = liveExecutor(db.sql, rest, executorConfig(sim, "live"), log, {
          settings: { reconcileIntervalMin: intervalMin },
        });
        await ex.start();
        await ex.runOnce(); // the live start's reconciliation
        const runs = () =>
          db.sql<{ n: number }[]>`
            select count(*)::int as n from reconciliations where completed_at is not null`;
        assert.equal((await runs())[0]!.n, 1);
        // An order carrying this installation's prefix that the database does not record.
        const inst = await installationId(db.sql);
        const placed = await rest.postOrder({
          market: BTC,
          side: "bid",
          ord_type: "price",
          price: "6000",
          identifier: `paper-${inst}-999999-ENTER_LONG`,
        } as OrderRequest);
        assert.equal(placed.kind, "accepted");
        await new Promise((r) => setTimeout(r, 200));
        await ex.runOnce();
        await ex.runOnce();
        const unrecorded = (await activeAlarms(db.sql)).filter((a) =>
          a.code === "reconciliation_unrecorded_order"
        );
        if (intervalMin > 0) {
          assert.equal((await runs())[0]!.n, 2, "one routine run, not one per pass");
          assert.equal(unrecorded.length, 1);
          assert.notEqual(await installationId(db.sql), inst, "the installation renewed");
        } else {
          assert.equal((await runs())[0]!.n, 1);
          assert.equal(unrecorded.length, 0);
        }
        assert.equal((await reconciliationGate(db.sql)).open, true, "orders go on");
      } finally {
        await h.close();
      }
    },
  );
}

dbTest(
  "reconciliation failing 3 times in a row raises reconciliation_failing; a completed run clears it",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const { sim, rest, log } = h;
      const ex = liveExecutor(db.sql, rest, executorConfig(sim, "live"), log, {
        settings: { reconcileRetrySec: 0.001 },
      });
      await ex.start();
      const failing = async () =>
        (await activeAlarms(db.sql)).find((a) => a.code === "reconciliation_failing");
      // One an earlier process raised: the first completed run clears it.
      await raiseAlarm(db.sql, { code: "reconciliation_failing", message: "an earlier process's" });
      await ex.runOnce();
      assert.equal(await failing(), undefined, "a stale alarm cleared");
      await closeReconciliationGate(db.sql, "test: an outage");
      sim.setFaults({ error_rate: 1 });
      for (let i = 1; i <= RECONCILE_FAILURES_ALARM; i++) {
        assert.equal(await failing(), undefined, `not after ${i - 1}`);
        await new Promise((r) => setTimeout(r, 5));
        await ex.runOnce();
      }
      assert.match((await failing())?.message ?? "", /failed 3 times in a row .*gate is closed/);
      sim.setFaults({ error_rate: 0 });
      await new Promise((r) => setTimeout(r, 5));
      await ex.runOnce();
      assert.equal((await reconciliationGate(db.sql)).open, true);
      assert.equal(await failing(), undefined, "cleared");
    } finally {
      await h.close();
    }
  },
);
