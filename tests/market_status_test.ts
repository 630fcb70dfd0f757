import assert from "node:assert/strict";
import { createLogger, setLogSink } from "../lib/log.ts";
import { MarketStatusPoller } from "../lib/pipeline/market_status.ts";
import {
  entryRefusalForMarket,
  readMarketStatus,
  upsertMarketStatus,
} from "../lib/store/market_status.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { dbTest } from "./_db.ts";

async function setMarkets(sim: Simulator, body: unknown): Promise<Response> {
  return await fetch(`${sim.restUrl}/_sim/markets`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function withSim(fn: (sim: Simulator, rest: UpbitRest) => Promise<void>): Promise<void> {
  const sim = await startSimulator({ port: 0, rate: 0, markets: ["KRW-BTC", "KRW-ETH"] });
  const rest = new UpbitRest({ baseUrl: sim.restUrl });
  try {
    await fn(sim, rest);
  } finally {
    rest.close();
    await sim.close();
  }
}

Deno.test("POST /_sim/markets sets warning and cautions (market/all) and listing state (ticker); validated", async () => {
  await withSim(async (sim, rest) => {
    const before = (await rest.getMarkets({ isDetails: true })).data;
    assert.equal(before.find((m) => m.market === "KRW-BTC")?.market_event?.warning, false);
    const res = await setMarkets(sim, [
      { market: "KRW-BTC", warning: true },
      {
        market: "KRW-ETH",
        caution: { TRADING_VOLUME_SOARING: true },
        delisting_date: "2026-12-31",
      },
    ]);
    assert.equal(res.status, 200);
    const state = await res.json();
    assert.equal(state["KRW-BTC"].warning, true);
    const details = (await rest.getMarkets({ isDetails: true })).data;
    const btc = details.find((m) => m.market === "KRW-BTC")!;
    const eth = details.find((m) => m.market === "KRW-ETH")!;
    assert.deepEqual(btc.market_event, {
      warning: true,
      caution: {
        PRICE_FLUCTUATIONS: false,
        TRADING_VOLUME_SOARING: false,
        DEPOSIT_AMOUNT_SOARING: false,
        GLOBAL_PRICE_DIFFERENCES: false,
        CONCENTRATION_OF_SMALL_ACCOUNTS: false,
      },
    });
    assert.equal(eth.market_event?.caution.TRADING_VOLUME_SOARING, true);
    assert.equal((await rest.getMarkets()).data[0]?.market_event, undefined, "only with details");
    const tickers = (await rest.getTicker({ markets: ["KRW-BTC", "KRW-ETH"] })).data;
    assert.deepEqual(tickers.map((t) => [t.market, t.market_state, t.delisting_date]), [
      ["KRW-BTC", "ACTIVE", null],
      ["KRW-ETH", "ACTIVE", "2026-12-31"],
    ]);

    for (
      const bad of [
        { market: "KRW-BTC", warning: "yes" },
        { market: "KRW-BTC", caution: { NOT_A_FLAG: true } },
        { market: "KRW-BTC", market_state: "GONE" },
        { market: "KRW-BTC", delisting_date: "31/12/2026" },
        { market: "KRW-BTC", extra: 1 },
        { market: "KRW-NOPE", warning: true },
      ]
    ) {
      const r = await setMarkets(sim, bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(typeof (await r.json()).error, "string");
    }
    // A refused update changed nothing.
    const again = (await rest.getMarkets({ isDetails: true })).data;
    assert.equal(again.find((m) => m.market === "KRW-BTC")?.market_event?.warning, true);
  });
});

Deno.test("the WebSocket ticker carries market_state, delisting_date and the deprecated market_warning", async () => {
  await withSim(async (sim) => {
    await setMarkets(sim, { market: "KRW-BTC", warning: true, delisting_date: "2027-01-15" });
    const ws = new WebSocket(sim.wsUrl);
    ws.binaryType = "arraybuffer";
    const first = new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.onmessage = (e) => resolve(JSON.parse(new TextDecoder().decode(e.data as ArrayBuffer)));
      ws.onerror = () => reject(new Error("ws error"));
    });
    await new Promise((r) => (ws.onopen = r));
    ws.send(JSON.stringify([{ ticket: "t" }, { type: "ticker", codes: ["KRW-BTC"] }]));
    const ticker = await first;
    const closed = new Promise((r) => (ws.onclose = r));
    ws.close();
    await closed;
    assert.equal(ticker.type, "ticker");
    assert.equal(ticker.market_state, "ACTIVE");
    assert.equal(ticker.delisting_date, "2027-01-15");
    assert.equal(ticker.market_warning, "CAUTION");
  });
});

dbTest(
  "the poller stores a warning set at run time; entryRefusalForMarket refuses, then allows once cleared",
  async ({ sql }) => {
    const restore = setLogSink(() => {});
    try {
      await withSim(async (sim, rest) => {
        const poller = new MarketStatusPoller({
          sql,
          rest,
          markets: ["KRW-BTC", "KRW-ETH"],
          log: createLogger("feed"),
        });
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), null, "never polled: allowed");
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), null);
        const stored = await readMarketStatus(sql, "KRW-BTC");
        assert.equal(stored?.marketState, "ACTIVE");

        await setMarkets(sim, { market: "KRW-BTC", warning: true });
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), null, "not polled yet");
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), "market_warning");
        assert.equal(await entryRefusalForMarket(sql, "KRW-ETH"), null, "per market");

        await setMarkets(sim, { market: "KRW-BTC", warning: false });
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), null);

        await setMarkets(sim, { market: "KRW-ETH", caution: { PRICE_FLUCTUATIONS: true } });
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-ETH"), "market_caution");
        const eth = await readMarketStatus(sql, "KRW-ETH");
        assert.equal(eth?.caution.PRICE_FLUCTUATIONS, true);

        await setMarkets(sim, { market: "KRW-ETH", warning: true, delisting_date: "2027-01-15" });
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-ETH"), "market_delisting", "gravest");

        await setMarkets(sim, {
          market: "KRW-ETH",
          warning: false,
          caution: { PRICE_FLUCTUATIONS: false },
          delisting_date: null,
        });
        await poller.pollOnce();
        assert.equal(await entryRefusalForMarket(sql, "KRW-ETH"), null);
      });
    } finally {
      restore();
    }
  },
);

dbTest(
  "a configured market that market/all no longer lists is stored UNLISTED and refused",
  async ({ sql }) => {
    const restore = setLogSink(() => {});
    try {
      await withSim(async (_sim, rest) => {
        const poller = new MarketStatusPoller({
          sql,
          rest,
          markets: ["KRW-BTC", "KRW-GONE"],
          log: createLogger("feed"),
        });
        const rows = await poller.pollOnce();
        assert.deepEqual(rows.map((r) => [r.market, r.marketState]), [
          ["KRW-BTC", "ACTIVE"],
          ["KRW-GONE", "UNLISTED"],
        ]);
        assert.equal(await entryRefusalForMarket(sql, "KRW-GONE"), "market_unlisted");
        assert.equal(await entryRefusalForMarket(sql, "KRW-BTC"), null);
      });
    } finally {
      restore();
    }
  },
);

dbTest(
  "entryRefusalForMarket: listing states and the optional staleness check",
  async ({ sql }) => {
    const base = { warning: false, caution: {}, delistingDate: null };
    await upsertMarketStatus(sql, [
      { market: "KRW-A", ...base, marketState: "PREVIEW" },
      { market: "KRW-B", ...base, marketState: "DELISTED" },
      { market: "KRW-C", ...base, marketState: null },
    ]);
    assert.equal(await entryRefusalForMarket(sql, "KRW-A"), "market_inactive");
    assert.equal(await entryRefusalForMarket(sql, "KRW-B"), "market_delisting");
    assert.equal(await entryRefusalForMarket(sql, "KRW-C"), null, "state not told: allowed");
    assert.equal(await entryRefusalForMarket(sql, "KRW-C", { maxAgeSec: 60 }), null);
    const later = () => Date.now() + 61_000;
    assert.equal(
      await entryRefusalForMarket(sql, "KRW-C", { maxAgeSec: 60, now: later }),
      "market_status_stale",
    );
    assert.equal(
      await entryRefusalForMarket(sql, "KRW-NEVER", { maxAgeSec: 60 }),
      "market_status_stale",
    );
  },
);
