/**
 * @module A live position on a market Upbit ends trading on is closed at once, whatever the paper
 * book: after the delisting date the coins can no longer be sold, and the paper exit may come
 * too late (or never, the market's trades drying up). Said once (`position_delisting`), cleared
 * when the position is closed; only on an announced date (not on one `market/all` answer lacking
 * the market). Found by a review.
 */
import assert from "node:assert/strict";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { upsertMarketStatus } from "../lib/store/market_status.ts";
import { dbTest } from "./_db.ts";
import { buySettled, liveRig, startSim, storeLastPrices } from "./_live_orders.ts";

const BTC = "KRW-BTC";

dbTest(
  "a live position on a market being delisted is closed at once, paper book open",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const { rows, pass, enter } = await liveRig(db, h);
      await storeLastPrices(db.sql, h.rest, [BTC]);
      const bought = await enter(BTC, 140_000_000);
      // The paper book still holds it: nothing closes it.
      for (let i = 0; i < 3; i++) await pass();
      assert.equal((await rows()).length, 1);

      const status = { market: BTC, warning: false, caution: {}, marketState: "ACTIVE" };
      // One market/all answer without the market (UNLISTED): no date, perhaps a glitch; Upbit
      // refuses orders on a market really gone anyway. Nothing closes.
      await upsertMarketStatus(db.sql, [
        { ...status, marketState: "UNLISTED", delistingDate: null },
      ]);
      for (let i = 0; i < 3; i++) await pass();
      assert.equal((await rows()).length, 1, "not closed on UNLISTED alone");
      await upsertMarketStatus(db.sql, [{ ...status, delistingDate: "2026-12-31" }]);
      const close = async () => (await rows()).find((a) => a.action === "CLOSE");
      for (let i = 0; i < 20 && !buySettled(await close()); i++) await pass();
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
