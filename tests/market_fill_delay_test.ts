/**
 * Market orders that are not final when the create is answered (`market_fill_delay_ms`): the
 * simulator fills half at once and the rest later, the order `wait` with a partial
 * `executed_volume` meanwhile. upbot's executor and order poller track such an entry (`price`
 * buy) and exit (`market` sell) through `partially_filled` to their final states: the exit waits
 * for the entry's fill, the ledger counts what executed so far, and exactly what was bought is sold.
 */
import assert from "node:assert/strict";
import { dec, formatDec } from "../lib/decimal.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor } from "./_live_orders.ts";

const BTC = "KRW-BTC";
const DELAY_MS = 1500;

async function rows(db: TestDatabase): Promise<AttemptRow[]> {
  return await db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

async function openVolume(db: TestDatabase): Promise<string> {
  return (await ledgerPosition(db.sql, BTC))?.openVolume ?? "0";
}

dbTest(
  "market_fill_delay_ms: an entry and an exit partly filled at first are tracked through partially_filled; the exit waits for the entry; all that was bought is sold, once",
  async (db) => {
    const sim = await startSimulator({
      rate: 0,
      seed: 7,
      markets: [BTC],
      faults: { market_fill_delay_ms: DELAY_MS },
    });
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
      timeoutMs: 1500,
    });
    const lines: string[] = [];
    const restore = setLogSink((line) => lines.push(line));
    try {
      const config = executorConfig(sim, "live");
      const ex = liveExecutor(db.sql, rest, config, createLogger("executor"), {
        settings: { maxOrdersPerMin: 600 },
        unknownSettleMs: 0,
        rotationWaitMs: 0,
        retryBackoff: { baseMs: 20, maxMs: 100 },
      });
      await ex.start();
      const poller = new OrderPoller({
        sql: db.sql,
        rest,
        maxPolls: 500,
        log: createLogger("order_poller"),
      });
      /** Every (attempt, state, executed_volume) the passes left, in order, without repeats. */
      const seen: string[] = [];
      const drive = async (done: () => Promise<boolean>, rounds = 120) => {
        for (let i = 0; i < rounds; i++) {
          await ex.runOnce();
          await poller.pollOnce();
          for (const a of await rows(db)) {
            const line = `${a.action} ${a.state} ${formatDec(dec(a.executed_volume ?? "0"))}`;
            if (!seen.includes(line)) seen.push(line);
          }
          if (await done()) return;
          await new Promise((res) => setTimeout(res, 50));
        }
        assert.fail(`not done after ${rounds} rounds:\n${lines.slice(-15).join("\n")}`);
      };
      const paper = { market: BTC, price: 140_500_000, qty: 0.0001, fee: 1 };
      await insertPaperEvent(
        db.sql,
        { action: "ENTER_LONG", ts: Date.now(), ev: 0.1, ...paper },
        "default",
      );
      await drive(async () => (await rows(db))[0]?.state === "partially_filled");
      const partly = (await rows(db))[0]!;
      assert.ok(dec(partly.executed_volume!) > 0n);
      assert.equal(
        await openVolume(db),
        formatDec(dec(partly.executed_volume!)),
        "ledger counts it",
      );
      // The exit comes while the entry is still filling: it waits for the entry.
      await insertPaperEvent(db.sql, {
        action: "EXIT_LONG",
        ts: Date.now(),
        pnl: 0,
        holdSec: 5,
        reason: "EV_BAD",
        entryTs: Date.now() - 5000,
        entryPrice: paper.price,
        ev: -0.3,
        ...paper,
      }, "default");
      await ex.runOnce();
      if ((await rows(db))[0]!.state === "partially_filled") {
        assert.equal(sim.orders().filter((o) => o.side === "ask").length, 0, "no sell yet");
      }
      await drive(async () => (await rows(db))[1]?.state === "partially_filled");
      const entry = (await rows(db))[0]!;
      assert.ok(["filled", "cancelled"].includes(entry.state), entry.state);
      assert.ok(dec(entry.executed_volume!) > dec(partly.executed_volume!), "filled later");
      await drive(async () => (await rows(db))[1]?.state === "filled");
      const [bought, sold] = await rows(db);
      assert.equal(
        formatDec(dec(sold!.executed_volume!)),
        formatDec(dec(bought!.executed_volume!)),
        "all that was bought is sold",
      );
      assert.equal(await openVolume(db), "0");
      assert.equal(sim.orders().filter((o) => o.side === "ask").length, 1, "sold once");
      assert.equal(sim.orders().filter((o) => o.side === "bid").length, 1, "bought once");
      const { data: accounts } = await rest.getAccounts();
      assert.equal(accounts.find((a) => a.currency === "BTC")?.balance ?? "0", "0");
      // Both went through partially_filled with part of their volume.
      assert.ok(seen.some((l) => /^ENTER_LONG partially_filled /.test(l)), seen.join("; "));
      assert.ok(seen.some((l) => /^EXIT_LONG partially_filled /.test(l)), seen.join("; "));
    } finally {
      restore();
      rest.close();
      await sim.close();
    }
  },
);
