/**
 * upbot's balances under the documented `myAsset` first-subscription lag (§7.8: "the very first
 * subscription may lag by several minutes"; the simulator's `my_asset_first_lag_ms` sends no
 * `myAsset` frame to a connection for that long after its first subscription). The account actor
 * reads balances with `GET /v1/accounts` on its interval and uses `myAsset` only to poll sooner, so
 * a silent stream delays its snapshot by at most the interval, never by the lag. (The money path,
 * the closer and the risk gate, reads `GET /v1/accounts` itself when it decides.)
 */
import assert from "node:assert/strict";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { testBackends } from "./_db.ts";
import { startDisposableSimulator, startUpbotRig } from "./_fault_rig.ts";

const BTC = "KRW-BTC";
const POLL_SEC = 2;

for (const backend of testBackends()) {
  Deno.test(`account: balances follow GET /v1/accounts while myAsset lags for minutes [${backend}]`, async () => {
    await using sim = await startDisposableSimulator({
      rate: 20,
      seed: 5,
      markets: [BTC],
      faults: { my_asset_first_lag_ms: 600_000 },
    });
    await using rig = await startUpbotRig({
      backend,
      sim,
      markets: [BTC],
      env: {
        UPBIT_ACCESS_KEY: sim.accessKey,
        UPBIT_SECRET_KEY: sim.secretKey,
        UPBIT_TRADE_MODE: "shadow",
        ACCOUNT_POLL_INTERVAL_SEC: String(POLL_SEC),
      },
    });
    const rest = new UpbitRest({
      baseUrl: sim.restUrl,
      accessKey: sim.accessKey,
      secretKey: sim.secretKey,
    });
    try {
      const snapshotOf = async (currency: string) => {
        const [row] = await rig.sql<{ balance: string }[]>`
          select balance::text as balance from upbit_account_snapshots
          where currency = ${currency} order by ts desc, id desc limit 1`;
        return row?.balance;
      };
      // The first poll is stored (the stream connected and subscribed: its lag runs from now).
      await rig.until("a first KRW snapshot", async () => (await snapshotOf("KRW")) !== undefined);
      // The owner buys BTC by hand: a balance change myAsset would report, but does not now.
      const bought = await rest.postOrder({
        market: BTC,
        side: "bid",
        ord_type: "price",
        price: "20000",
        identifier: "owner-buy-1",
      });
      assert.equal(bought.kind, "accepted");
      const { data } = await rest.getAccounts();
      const btc = data.find((a) => a.currency === "BTC")!.balance;
      const krw = data.find((a) => a.currency === "KRW")!.balance;
      // Within a poll interval (and some slack), not the lag's ten minutes.
      await rig.until(
        "the BTC balance in upbot's snapshots",
        async () => Number(await snapshotOf("BTC")) === Number(btc),
        (POLL_SEC + 8) * 1000,
      );
      assert.equal(Number(await snapshotOf("KRW")), Number(krw));
      const [position] = await rig.sql<
        { base_balance: string; krw_balance: string; position_status: string }[]
      >`select base_balance::text, krw_balance::text, position_status from live_positions
        where symbol = ${BTC}`;
      assert.equal(Number(position!.base_balance), Number(btc));
      assert.equal(Number(position!.krw_balance), Number(krw));
      assert.equal(position!.position_status, "FLAT", "the owner's coins are not upbot's position");
    } finally {
      rest.close();
    }
  });
}
