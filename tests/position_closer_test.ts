import assert from "node:assert/strict";
import {
  type CloseDecision,
  type CloserInput,
  type CloserMarket,
  decideCloses,
} from "../lib/execution/position_closer.ts";

const BTC = "KRW-BTC";

/** A live market, paper flat, nothing unsettled, at 100,000,000 KRW. */
function market(over: Partial<CloserMarket> = {}): CloserMarket {
  return {
    market: BTC,
    openVolume: "0.001",
    paperFlat: true,
    sellUnsettled: false,
    buyUnsettled: false,
    freeBalance: "0.001",
    lockedBalance: "0",
    lastPrice: "100000000",
    ...over,
  };
}

function input(markets: CloserMarket[], over: Partial<CloserInput> = {}): CloserInput {
  return { mode: "live", flatten: false, minOrderKrw: "5000", markets, ...over };
}

const CASES: { name: string; input: CloserInput; expected: CloseDecision[] }[] = [
  {
    name: "a flat ledger gets no decision",
    input: input([market({ openVolume: "0", freeBalance: "0.5" })]),
    expected: [],
  },
  {
    name: "a ledger below zero (history sold more than it bought) gets no decision",
    input: input([market({ openVolume: "-0.001" })]),
    expected: [],
  },
  {
    name: "live, paper flat, coins there: sell the open volume",
    input: input([market()]),
    expected: [{ kind: "sell", market: BTC, volume: "0.001" }],
  },
  {
    name: "the owner's pre-existing coins are never sold: only the ledger's volume",
    input: input([market({ openVolume: "0.00012345", freeBalance: "2.5" })]),
    expected: [{ kind: "sell", market: BTC, volume: "0.00012345" }],
  },
  {
    name: "owner's coins with a flat ledger: nothing",
    input: input([market({ openVolume: "0", freeBalance: "2.5" })]),
    expected: [],
  },
  {
    name: "shadow mode sends nothing and holds the position",
    input: input([market()], { mode: "shadow" }),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "not_live" }],
  },
  {
    name: "test mode sends nothing, even with flatten",
    input: input([market()], { mode: "test", flatten: true }),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "not_live" }],
  },
  {
    name: "paper book still open: hold (its exit closes it)",
    input: input([market({ paperFlat: false })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "paper_open" }],
  },
  {
    name: "flatten sells even when the paper book is open",
    input: input([market({ paperFlat: false })], { flatten: true }),
    expected: [{ kind: "sell", market: BTC, volume: "0.001" }],
  },
  {
    name: "a sell of the market open or unresolved: never a second sell",
    input: input([market({ sellUnsettled: true })], { flatten: true }),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "sell_unsettled" }],
  },
  {
    name: "coins locked in our own open sell are not gone",
    input: input([market({ sellUnsettled: true, freeBalance: "0" })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "sell_unsettled" }],
  },
  {
    name: "balance unknown: hold",
    input: input([market({ freeBalance: null })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "no_balance" }],
  },
  {
    name: "price unknown: hold (the minimum total cannot be checked)",
    input: input([market({ lastPrice: null })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "no_price" }],
  },
  {
    name: "partial sell remainder worth the minimum: sell the rest",
    input: input([market({ openVolume: "0.00006", freeBalance: "0.00006" })]),
    expected: [{ kind: "sell", market: BTC, volume: "0.00006" }],
  },
  {
    name: "exactly the minimum total is sold",
    input: input([market({ openVolume: "0.00005", freeBalance: "0.00005" })]),
    expected: [{ kind: "sell", market: BTC, volume: "0.00005" }],
  },
  {
    name: "remainder below the minimum total: dust with its value",
    input: input([market({ openVolume: "0.00004999", freeBalance: "1" })]),
    expected: [{ kind: "dust", market: BTC, volume: "0.00004999", valueKrw: "4999" }],
  },
  {
    name: "everything gone (sold by hand, no sell of ours open)",
    input: input([market({ freeBalance: "0" })]),
    expected: [{ kind: "gone", market: BTC, volume: "0.001", freeBalance: "0" }],
  },
  {
    name: "part gone: the rest is sold, capped at the free balance",
    input: input([market({ freeBalance: "0.0004" })]),
    expected: [
      { kind: "gone", market: BTC, volume: "0.0006", freeBalance: "0.0004" },
      { kind: "sell", market: BTC, volume: "0.0004" },
    ],
  },
  {
    name: "part gone and the rest below the minimum: gone and dust",
    input: input([market({ freeBalance: "0.00001" })]),
    expected: [
      { kind: "gone", market: BTC, volume: "0.00099", freeBalance: "0.00001" },
      { kind: "dust", market: BTC, volume: "0.00001", valueKrw: "1000" },
    ],
  },
  {
    name: "coins locked in the owner's orders are held, never written off as gone",
    input: input([market({ freeBalance: "0", lockedBalance: "0.001" })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "owner_locked" }],
  },
  {
    name: "part locked: the free part is sold, the locked rest held",
    input: input([market({ openVolume: "0.002", freeBalance: "0.001", lockedBalance: "0.5" })]),
    expected: [
      { kind: "sell", market: BTC, volume: "0.001" },
      { kind: "hold", market: BTC, volume: "0.001", reason: "owner_locked" },
    ],
  },
  {
    name: "part locked and the free part below the minimum: all held, no dust",
    input: input([market({ freeBalance: "0.00001", lockedBalance: "0.00099" })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "owner_locked" }],
  },
  {
    name: "what free and locked together lack is gone; the locked rest is held",
    input: input([market({ freeBalance: "0", lockedBalance: "0.0004" })]),
    expected: [
      { kind: "gone", market: BTC, volume: "0.0006", freeBalance: "0", lockedBalance: "0.0004" },
      { kind: "hold", market: BTC, volume: "0.0004", reason: "owner_locked" },
    ],
  },
  {
    name: "short balance while a buy is unsettled proves nothing: hold",
    input: input([market({ freeBalance: "0.0004", buyUnsettled: true })]),
    expected: [{ kind: "hold", market: BTC, volume: "0.001", reason: "buy_unsettled" }],
  },
  {
    name: "a buy unsettled does not stop selling what the ledger owns",
    input: input([market({ buyUnsettled: true, freeBalance: "0.003" })]),
    expected: [{ kind: "sell", market: BTC, volume: "0.001" }],
  },
  {
    name: "a volume beyond 8 decimals is truncated, never rounded up",
    input: input([market({ openVolume: "0.123456789", freeBalance: "1" })]),
    expected: [{ kind: "sell", market: BTC, volume: "0.12345678" }],
  },
  {
    name: "a free balance beyond 8 decimals caps the sell, truncated",
    input: input([market({ openVolume: "1", freeBalance: "0.999999999" })]),
    expected: [
      { kind: "gone", market: BTC, volume: "0.000000001", freeBalance: "0.999999999" },
      { kind: "sell", market: BTC, volume: "0.99999999" },
    ],
  },
  {
    name: "gone is decided even without a price; the rest then waits for one",
    input: input([market({ freeBalance: "0.0004", lastPrice: null })]),
    expected: [
      { kind: "gone", market: BTC, volume: "0.0006", freeBalance: "0.0004" },
      { kind: "hold", market: BTC, volume: "0.0004", reason: "no_price" },
    ],
  },
  {
    name: "markets are decided independently",
    input: input([
      market({ market: "KRW-ETH", openVolume: "0.5", freeBalance: "0.5", lastPrice: "4000000" }),
      market({ market: "KRW-XRP", openVolume: "1", freeBalance: "1", lastPrice: "3000" }),
      market({ paperFlat: false }),
    ]),
    expected: [
      { kind: "sell", market: "KRW-ETH", volume: "0.5" },
      { kind: "dust", market: "KRW-XRP", volume: "1", valueKrw: "3000" },
      { kind: "hold", market: BTC, volume: "0.001", reason: "paper_open" },
    ],
  },
];

for (const c of CASES) {
  Deno.test(`decideCloses() ${c.name}`, () => {
    assert.deepEqual(decideCloses(c.input), c.expected);
  });
}

Deno.test("decideCloses() never sells more than the ledger's open volume nor the free balance", () => {
  const volumes = ["0", "0.00000001", "0.00004999", "0.00005", "0.001", "0.12345678", "3"];
  for (const open of volumes) {
    for (const free of volumes) {
      for (const flatten of [false, true]) {
        const decisions = decideCloses(
          input([market({ openVolume: open, freeBalance: free })], { flatten }),
        );
        let closed = 0n;
        for (const d of decisions) {
          if (d.kind === "hold") continue;
          const v = BigInt(Math.round(Number(d.volume) * 1e8));
          if (d.kind === "sell") assert.ok(v <= BigInt(Math.round(Number(free) * 1e8)));
          closed += v;
        }
        assert.ok(closed <= BigInt(Math.round(Number(open) * 1e8)), `open ${open} free ${free}`);
      }
    }
  }
});
