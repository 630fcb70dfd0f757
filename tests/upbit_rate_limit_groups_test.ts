import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";

Deno.test("a Remaining-Req pause applies to the request's group whatever name the header carries", async () => {
  const restore = setLogSink(() => {});
  // trade squeezed to 5/s while the client budgets 10/s: only the server's sec=0 keeps it from
  // 429s, and the header names the trade group "market".
  const sim = await startSimulator({
    port: 0,
    rate: 0,
    faults: { remaining_req_group_names: "alternative", rate_limit_factor: 0.5 },
  });
  const rest = new UpbitRest({ baseUrl: sim.restUrl, maxAttempts: 1 });
  try {
    sim.injectTrade({ market: "KRW-BTC", price: 100_000_000, volume: 0.01, side: "BID" });
    const headers = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const { meta } = await rest.getTradesTicks({ market: "KRW-BTC" });
      headers.add(/group=([^;]+)/.exec(meta.remaining_req ?? "")?.[1] ?? "");
    }
    assert.deepEqual([...headers], ["market"]);
    assert.equal(rest.rateLimiter.stats().rateLimited, 0);
    assert.equal(rest.rateLimiter.stats().granted.trade, 16);
    // A candle call names its group "candles": still counted and paused as `candle`.
    const { meta } = await rest.getCandlesSeconds({ market: "KRW-BTC" });
    assert.match(meta.remaining_req ?? "", /^group=candles; /);
  } finally {
    rest.close();
    await sim.close();
    restore();
  }
});
