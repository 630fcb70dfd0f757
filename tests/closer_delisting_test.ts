/**
 * @module A live position on a market Upbit ends trading on is closed at once, whatever the paper
 * book: after the delisting date the coins can no longer be sold, and the paper exit may come
 * too late (or never, the market's trades drying up). Said once (`position_delisting`), cleared
 * when the position is closed. Found by a review.
 */
import assert from "node:assert/strict";
import { dec } from "../lib/decimal.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { upsertMarketStatus } from "../lib/store/market_status.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { dbTest } from "./_db.ts";
import {
  executorConfig,
  liveExecutor,
  paperEnter,
  startSim,
  storeLastPrices,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";

dbTest(
  "a live position on a market being delisted is closed at once, paper book open",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const { sim, rest, log } = h;
      const ex = liveExecutor(db.sql, rest, executorConfig(sim, "live"), log, {
        settings: { maxOrdersPerMin: 600 },
        unknownSettleMs: 0,
      });
      await ex.start();
      const poller = new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log });
      const rows = () => db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
      const pass = async () => {
        await ex.runOnce();
        await poller.pollOnce();
      };
      await storeLastPrices(db.sql, rest, [BTC]);
      await paperEnter(db.sql, BTC, 140_000_000);
      const settled = (a?: AttemptRow) => a?.state === "filled" || a?.state === "cancelled";
      for (let i = 0; i < 40 && !settled((await rows())[0]); i++) await pass();
      const bought = (await rows())[0]!.executed_volume!;
      assert.ok(dec(bought) > 0n, "bought");
      // The paper book still holds it: nothing closes it.
      for (let i = 0; i < 3; i++) await pass();
      assert.equal((await rows()).length, 1);

      const status = { market: BTC, warning: false, caution: {}, marketState: "ACTIVE" };
      await upsertMarketStatus(db.sql, [{ ...status, delistingDate: "2026-12-31" }]);
      const close = async () => (await rows()).find((a) => a.action === "CLOSE");
      for (let i = 0; i < 20 && !settled(await close()); i++) await pass();
      assert.equal((await close())?.request_json?.volume, bought);
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0");
      await pass();
      const said = (await activeAlarms(db.sql)).filter((a) => a.code === "position_delisting");
      assert.equal(said.length, 0, "cleared once closed");
      const all = await db.sql<{ message: string }[]>`
      select message from alarms where code = 'position_delisting'`;
      assert.match(all[0]?.message ?? "", /Upbit ends trading of KRW-BTC on 2026-12-31/);
    } finally {
      await h.close();
    }
  },
);
