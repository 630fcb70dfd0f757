/**
 * A close stopped by self-match prevention, against the simulator under both readings of what
 * Upbit's REST answers say for such an order (`smp_rest_state`, uncertain in the reference): the
 * documented `cancel` with `prevented_volume` > 0, or `prevented`. Either way upbot stores the
 * attempt `prevented`, backs off (the sell is not sent again every pass) and raises
 * `close_prevented`; once the owner's order is gone the position is sold.
 */
import assert from "node:assert/strict";
import { requestFlatten } from "../lib/control/trading_state.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { Executor } from "../lib/execution/executor.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor } from "./_live_orders.ts";

const BTC = "KRW-BTC";

async function rows(db: TestDatabase): Promise<AttemptRow[]> {
  return await db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

async function openVolume(db: TestDatabase): Promise<string> {
  return (await ledgerPosition(db.sql, BTC))?.openVolume ?? "0";
}

for (const smpRestState of ["cancel", "prevented"] as const) {
  dbTest(
    `smp_rest_state ${smpRestState}: a close stopped by self-match prevention is stored prevented, backs off with close_prevented, and sells once the owner's order is gone`,
    async (db) => {
      const sim = await startSimulator({
        rate: 0,
        seed: 7,
        markets: [BTC],
        faults: { smp_rest_state: smpRestState },
      });
      const posts: string[] = [];
      const rest = new UpbitRest({
        baseUrl: sim.restUrl,
        accessKey: sim.accessKey,
        secretKey: sim.secretKey,
        timeoutMs: 1500,
        fetch: (input, init) => {
          const url = new URL(input instanceof Request ? input.url : String(input));
          if (url.pathname === "/v1/orders" && init?.method === "POST") {
            posts.push(JSON.parse(String(init.body)).identifier);
          }
          return fetch(input, init);
        },
      });
      const lines: string[] = [];
      const restore = setLogSink((line) => lines.push(line));
      try {
        const config = executorConfig(sim, "live");
        const executor = (backoffMs: number) =>
          liveExecutor(db.sql, rest, config, createLogger("executor"), {
            settings: { maxOrdersPerMin: 600 },
            unknownSettleMs: 0,
            rotationWaitMs: 0,
            retryBackoff: { baseMs: backoffMs, maxMs: backoffMs },
          });
        // Closes refused a moment ago wait a minute: the test's passes all fall inside it.
        const ex = executor(60_000);
        await ex.start();
        const poller = new OrderPoller({
          sql: db.sql,
          rest,
          maxPolls: 50,
          log: createLogger("order_poller"),
        });
        const drive = async (on: Executor, done: () => Promise<boolean>, rounds = 40) => {
          for (let i = 0; i < rounds; i++) {
            await on.runOnce();
            await poller.pollOnce();
            if (await done()) return;
            await new Promise((res) => setTimeout(res, 30));
          }
          assert.fail(`not done after ${rounds} rounds:\n${lines.slice(-15).join("\n")}`);
        };
        await insertPaperEvent(db.sql, {
          action: "ENTER_LONG",
          market: BTC,
          ts: Date.now(),
          price: 140_500_000,
          qty: 0.0001,
          fee: 1,
          ev: 0.1,
        }, "default");
        await drive(
          ex,
          async () => ["filled", "cancelled"].includes((await rows(db))[0]?.state ?? ""),
        );
        // The owner's own bid at the best bid: upbot's market sell (cancel_taker) meets it first,
        // and self-match prevention stops the sell before anything is sold.
        const { data: book } = await rest.getOrderbook({ markets: [BTC] } as never);
        const units = (book as { orderbook_units: { bid_price: number }[] }[])[0]!.orderbook_units;
        const own = await rest.postOrder({
          market: BTC,
          side: "bid",
          ord_type: "limit",
          price: String(units[0]!.bid_price),
          volume: "0.001",
          identifier: "owner-bid",
        });
        assert.equal(own.kind, "accepted");
        await requestFlatten(db.sql, { reason: "test", by: "test" });
        const closes = async () => (await rows(db)).filter((a) => a.action === "CLOSE");
        await drive(ex, async () => (await closes())[0]?.state === "prevented");
        const { data: answered } = await rest.getOrder({
          identifier: (await closes())[0]!.identifier,
        });
        assert.equal(answered.state, smpRestState, "the sim answered as set");
        assert.ok(Number(answered.prevented_volume) > 0);
        const sentBefore = posts.length;
        for (let i = 0; i < 5; i++) {
          await ex.runOnce();
          await poller.pollOnce();
        }
        assert.equal(posts.length, sentBefore, "no sell sent again while backing off");
        assert.deepEqual(
          (await closes()).map((a) => [a.state, Number(a.executed_volume ?? 0)]),
          [["prevented", 0]],
        );
        assert.ok((await activeAlarms(db.sql)).some((a) => a.code === "close_prevented"));
        assert.notEqual(await openVolume(db), "0", "still owed");
        // The owner cancels the bid; an executor whose backoff is over sells the position.
        await rest.deleteOrder({ identifier: "owner-bid" });
        const after = executor(10);
        await after.start();
        await drive(after, async () => dec(await openVolume(db)) === 0n);
        const sold = (await closes()).filter((a) => a.state === "filled");
        assert.equal(sold.length, 1);
        assert.equal(
          sim.orders().filter((o) => o.side === "ask" && o.state === "done").length,
          1,
          "sold once",
        );
        assert.equal(
          formatDec(dec(sold[0]!.executed_volume!)),
          formatDec(dec((await rows(db))[0]!.executed_volume!)),
        );
        await after.runOnce(); // the closer's next pass sees the position closed
        assert.ok(!(await activeAlarms(db.sql)).some((a) => a.code === "close_prevented"));
      } finally {
        restore();
        rest.close();
        await sim.close();
      }
    },
  );
}
