/**
 * @module A ledger below zero (upbot sold more than it bought: a race sold the owner's coins) is
 * said and repaired by the live closer's pass: recorded as oversold (the ledger back at zero), a
 * `ledger_oversold` alarm, the market's entries halted; the next buy is not netted against it.
 * Found by a review: the negative volume silently swallowed the next buy, never sold.
 */
import assert from "node:assert/strict";
import { tradingStates } from "../lib/control/trading_state.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { dbTest } from "./_db.ts";
import { checkOrder } from "../lib/execution/risk_core.ts";
import { riskContext, riskLimits } from "../lib/execution/risk_gate.ts";
import {
  executorConfig,
  liveExecutor,
  ownerBuysByHand,
  paperEnter,
  pendingAttempt,
  placeLive,
  sendAndSettle,
  startSim,
  storeLastPrices,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";

dbTest("a ledger below zero is recorded as oversold with an alarm and a halt", async (db) => {
  const h = await startSim({ markets: [BTC] });
  try {
    const { sim, rest, log } = h;
    // The owner's own coins, bought by hand.
    await ownerBuysByHand(rest, BTC, "owner-by-hand-2");
    await storeLastPrices(db.sql, rest, [BTC]);
    const buy = await sendAndSettle(
      db.sql,
      rest,
      await pendingAttempt(db.sql, { market: BTC, side: "bid", krw: 10_000 }),
    );
    const bought = buy.executed_volume!;
    // Its volume sold twice: the second sale is the owner's coins.
    for (let i = 0; i < 2; i++) {
      await sendAndSettle(
        db.sql,
        rest,
        await pendingAttempt(db.sql, { market: BTC, side: "ask", volume: bought }),
      );
    }
    assert.equal((await ledgerPosition(db.sql, BTC))!.openVolume, `-${bought}`);

    const ex = liveExecutor(db.sql, rest, executorConfig(sim, "live"), log);
    await ex.start();
    await ex.runOnce();
    const p = (await ledgerPosition(db.sql, BTC))!;
    assert.equal(p.openVolume, "0");
    assert.equal(p.oversold, bought);
    const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "ledger_oversold");
    assert.equal(alarm?.market, BTC);
    assert.match(alarm!.message, new RegExp(`upbot sold ${bought} more than it bought`));
    const halt = (await tradingStates(db.sql)).find((s) => s.scope === BTC);
    assert.deepEqual([halt?.halted, halt?.by], [true, "closer"]);
    // Said once: another pass records nothing more.
    await ex.runOnce();
    assert.equal((await ledgerPosition(db.sql, BTC))!.oversold, bought);
    assert.equal((await activeAlarms(db.sql)).find((a) => a.code === "ledger_oversold")?.count, 1);

    // The market's entries wait for a person.
    await paperEnter(db.sql, BTC, 140_000_000);
    await ex.runOnce();
    const [entry] = await db.sql<{ state: string; reason: string }[]>`
      select state, reason from upbit_order_attempts where paper_trade_id is not null`;
    assert.deepEqual({ ...entry }, { state: "skipped", reason: "entries_halted" });
  } finally {
    await h.close();
  }
});

dbTest(
  "an entry on a market whose ledger is below zero is refused before the closer records it",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const { rest } = h;
      await storeLastPrices(db.sql, rest, [BTC]);
      const buy = await placeLive(db.sql, rest, { market: BTC, side: "bid", krw: 10_000 });
      await placeLive(db.sql, rest, { market: BTC, side: "ask", volume: buy.executed_volume! });
      // The same volume sold again, its answer not final yet (the closer waits for it).
      const again = await pendingAttempt(db.sql, {
        market: BTC,
        side: "ask",
        volume: buy.executed_volume!,
      });
      await db.sql`update upbit_order_attempts set state = 'partially_filled',
      executed_volume = ${buy.executed_volume!} where id = ${again.id}`;
      assert.equal((await ledgerPosition(db.sql, BTC))!.openVolume, `-${buy.executed_volume}`);
      const decision = checkOrder(
        { side: "bid", market: BTC, krw: 10_000, signalTs: Date.now() },
        await riskContext(db.sql, BTC, { rest }),
        riskLimits(executorConfig(h.sim, "live")),
      );
      assert.equal(decision.ok, false);
      if (decision.ok) return;
      assert.equal(decision.code, "entries_halted");
      assert.match(decision.detail, /the ledger of KRW-BTC is -[0-9.]+, below zero/);
    } finally {
      await h.close();
    }
  },
);
