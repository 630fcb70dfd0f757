/**
 * @module A live sell judged a conflict (Upbit knows its identifier under an order the check says
 * is not the one asked for) holds its market's sells until a person has looked: the order may be
 * the sell itself (here: a database clock 11 minutes ahead of Upbit's makes the created-after
 * check fail), its coins gone while the ledger still holds them. The exit and the closer must not
 * sell that volume again, from the owner's coins. Found by a review (its scratch test, kept).
 */
import assert from "node:assert/strict";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { dbTest } from "./_db.ts";
import { balanceOf, liveRig, ownerBuysByHand, paperExit, startSim } from "./_live_orders.ts";

const BTC = "KRW-BTC";
const PRICE = 140_500_000;

dbTest(
  "a live sell judged a conflict holds its market: nothing sells its volume again",
  async (db) => {
    await using h = {
      ...(await startSim({ markets: [BTC], seed: 7 })),
      [Symbol.asyncDispose]() {
        return this.close();
      },
    };
    const { sim } = h;
    // A short timeout: the exit's answer is lost (held 30 s by the fault).
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
      timeoutMs: 1500,
    });
    try {
      const btc = () => balanceOf(rest, "BTC");
      const ownerBtc = await ownerBuysByHand(rest, BTC, "owner-by-hand-1");
      const rig = await liveRig(db, h, {
        rest,
        executor: { rotationWaitMs: 0, retryBackoff: { baseMs: 20, maxMs: 100 } },
      });
      const { rows } = rig;
      const ex = rig.executor;
      const pass = async () => {
        await rig.pass();
        await new Promise((r) => setTimeout(r, 30));
      };
      await rig.enter(BTC, PRICE);

      // The exit is created at Upbit, its answer lost.
      sim.setFaults({ lost_response_rate: 1 });
      await paperExit(db.sql, BTC, PRICE);
      await ex.runOnce();
      sim.setFaults({ lost_response_rate: 0 });
      assert.equal((await rows())[1]?.state, "unknown");
      assert.equal(await btc(), ownerBtc, "the exit sold upbot's coins");
      // The database's clock 11 minutes ahead of Upbit's: the sell looks created before it was
      // asked for, so the look-up judges it a conflict.
      await db.sql`update upbit_order_attempts set ts = ts + interval '11 minutes'
      where action = 'EXIT_LONG'`;
      for (let i = 0; i < 40 && (await rows())[1]?.state !== "conflict"; i++) await pass();
      assert.equal((await rows())[1]?.state, "conflict");

      // Passes of the executor (its exit, the live closer) and the poller: nothing sells again.
      for (let i = 0; i < 20; i++) await pass();
      const attempts = await rows();
      assert.deepEqual(attempts.map((a) => [a.action, a.state]), [
        ["ENTER_LONG", attempts[0]!.state],
        ["EXIT_LONG", "conflict"],
      ]);
      assert.equal(await btc(), ownerBtc, "the owner's coins are untouched");
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "identifier_conflict");
      assert.match(
        alarm?.message ?? "",
        /sells of KRW-BTC held until a person checks it at Upbit and says deno task conflict-order --identifier \S+ --ours or --not-ours$/,
      );
      // The ledger still holds the volume (a person decides), and says so.
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, attempts[0]!.executed_volume);
    } finally {
      rest.close();
    }
  },
);
