/**
 * @module One market whose price cannot be read (a code Upbit no longer lists: its ticker answers
 * 404) holds no other market's exit: a sell is judged on its own market only, and the tickers of
 * several markets are read around an unknown code. Found by a review: the gate's failure ended
 * every executor pass, so no exit or close of any market went out, and nothing said so.
 */
import assert from "node:assert/strict";
import { readTickers } from "../lib/execution/risk_gate.ts";
import { transitionAttempt } from "../lib/store/order_attempts.ts";
import { dbTest } from "./_db.ts";
import {
  buySettled,
  liveRig,
  paperExit,
  pendingAttempt,
  startSim,
  storeLastPrices,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";
const GONE = "KRW-XYZ"; // not listed by the simulator

Deno.test("a delisted market in the simulator; readTickers reads around its code", async () => {
  const h = await startSim({ markets: [BTC, "KRW-ETH"], delisted: { [GONE]: "10" } });
  try {
    // The simulator: the coins stay on the account, the market is unknown to quotation and orders.
    const xyz = (await h.rest.getAccounts()).data.find((a) => a.currency === "XYZ");
    assert.equal(Number(xyz?.balance), 10);
    await assert.rejects(h.rest.getTicker({ markets: [GONE] }), /Code not found/);
    const sell = await h.rest.postOrder({
      market: GONE,
      side: "ask",
      ord_type: "market",
      volume: "1",
      identifier: "owner-by-hand-xyz",
    });
    assert.equal(sell.kind, "rejected");
    const got = await readTickers(h.rest, [BTC, GONE, "KRW-ETH"]);
    assert.deepEqual(got.map((t) => t.market).sort(), [BTC, "KRW-ETH"]);
    assert.deepEqual(await readTickers(h.rest, [GONE]), []);
  } finally {
    await h.close();
  }
});

dbTest("a held market Upbit no longer lists holds no other market's exit", async (db) => {
  // The account still holds the delisted market's coins (Upbit keeps them until withdrawn).
  const h = await startSim({ markets: [BTC], delisted: { [GONE]: "10" } });
  try {
    const { sim, rest } = h;
    const { rows, pass, enter } = await liveRig(db, h);
    await storeLastPrices(db.sql, rest, [BTC]);
    await enter(BTC, 140_000_000);
    // A market upbot bought earlier, since delisted (its code unknown to the ticker).
    const old = await pendingAttempt(db.sql, { market: GONE, side: "bid", krw: 10_000 });
    await transitionAttempt(db.sql, old.id, "pending", "sent");
    await transitionAttempt(db.sql, old.id, "sent", "open", { uuid: crypto.randomUUID() });
    await transitionAttempt(db.sql, old.id, "open", "filled", {
      executed_volume: "10",
      paid_fee: "0",
      avg_price: "1000",
      final_state: "done",
    });

    await paperExit(db.sql, BTC, 140_000_000);
    assert.ok((await rest.getAccounts()).data.some((a) => a.currency === "XYZ"));
    const exit = async () => (await rows()).find((a) => a.action === "EXIT_LONG");
    for (let i = 0; i < 10 && !buySettled(await exit()); i++) await pass();
    assert.equal((await exit())?.state, "filled", "the BTC exit went out");
    assert.equal(sim.orders().filter((o) => o.side === "ask").length, 1);
  } finally {
    await h.close();
  }
});
