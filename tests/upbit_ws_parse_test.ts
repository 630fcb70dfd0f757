/**
 * The trade frame's fast paths give the answers of the general ones: `parseJsonExactIds` the
 * answer of rewriting the ids to strings before `JSON.parse`, and `isTradeFrame` never accepts a
 * record the zod `TradeFrame` refuses.
 */
import assert from "node:assert/strict";
import { parseJsonExactIds } from "../lib/upbit/schemas.ts";
import { isTradeFrame, TradeFrame } from "../lib/upbit/ws_public.ts";

/** The general path of `parseJsonExactIds` (the only one before the fast path). */
function rewriteThenParse(text: string): unknown {
  return JSON.parse(text.replace(/"(sequential_id|sid)":\s*(\d+)/g, '"$1":"$2"'));
}

function outcome(parse: (text: string) => unknown, text: string): unknown {
  try {
    return { value: parse(text) };
  } catch (err) {
    return { error: (err as Error).name };
  }
}

const FRAME =
  '{"type":"trade","code":"KRW-BTC","timestamp":1796150000003,"trade_timestamp":1796150000000,' +
  '"trade_price":143250000,"trade_volume":0.00123456,"ask_bid":"BID","sequential_id":SEQ,' +
  '"stream_type":"REALTIME"}';

Deno.test("parseJsonExactIds: the fast path answers as rewriting the ids first does", () => {
  const ids = [
    "17303368620470001",
    "9007199254740993",
    "0",
    "7",
    "007",
    "12.5",
    "12e3",
    "12E3",
    "-5",
    " 17303368620470001",
    "\t17303368620470001",
    "1.7e16",
    '"17303368620470001"',
    "null",
    "17303368620470001x",
    "",
  ];
  const texts = [
    ...ids.map((id) => FRAME.replace("SEQ", id)),
    ...ids.map((id) => `[${FRAME.replace("SEQ", id)}]`),
    `{"a":{"sequential_id":17303368620470001}}`,
    `{"sequential_id":17303368620470001,"a":{"sequential_id":17303368620470002}}`,
    `{"sequential_id":17303368620470001,"sequential_id":17303368620470002}`,
    `{"sequential_id":17303368620470001,"sid":17303368620470002}`,
    `{"s":"\\"sequential_id\\":1","sequential_id":17303368620470001}`,
    `{"sequential\\u005fid":5,"x":{"sequential_id":5}}`,
    `{"sequential_id" :17303368620470001}`,
    `{"sequential_id":17303368620470001`,
    `{"sid":17303368620470001}`,
    `[1,2]`,
    `"id\\""`,
  ];
  let fast = 0;
  for (const text of texts) {
    const got = outcome(parseJsonExactIds, text);
    assert.deepEqual(got, outcome(rewriteThenParse, text), text);
    const v = (got as { value?: { sequential_id?: unknown } }).value;
    if (typeof v?.sequential_id === "string" && !Array.isArray(v)) fast++;
  }
  assert.ok(fast >= 4, "the fast path's own case is among the texts");
  assert.deepEqual(parseJsonExactIds(FRAME.replace("SEQ", "17303368620470001")), {
    ...JSON.parse(FRAME.replace("SEQ", "0")),
    sequential_id: "17303368620470001",
  });
});

Deno.test("isTradeFrame accepts only what the TradeFrame schema accepts, with the same fields", () => {
  const base: Record<string, unknown> = {
    type: "trade",
    code: "KRW-BTC",
    trade_price: 143250000,
    trade_volume: 0.00123456,
    ask_bid: "BID",
    trade_timestamp: 1796150000000,
    sequential_id: "17303368620470001",
    stream_type: "REALTIME",
    extra: { ignored: true },
  };
  const values: unknown[] = [
    undefined,
    null,
    0,
    -1,
    1.5,
    2 ** 53,
    Number.MAX_SAFE_INTEGER,
    NaN,
    Infinity,
    -Infinity,
    "",
    "12",
    "-12",
    "1.5",
    "12a",
    " 12",
    "trade",
    "ticker",
    "ASK",
    "BID",
    "bid",
    "SNAPSHOT",
    "REALTIME",
    "BACKFILL",
    true,
    [],
    {},
    12n,
  ];
  let accepted = 0;
  let checked = 0;
  for (const key of Object.keys(base)) {
    for (const value of values) {
      const rec = { ...base };
      if (value === undefined) delete rec[key];
      else rec[key] = value;
      const zod = TradeFrame.safeParse(rec);
      checked++;
      if (!isTradeFrame(rec)) continue;
      accepted++;
      assert.ok(zod.success, `isTradeFrame accepted what zod refuses: ${key} = ${String(value)}`);
      for (const [k, v] of Object.entries(zod.data)) assert.deepEqual(rec[k], v, k);
    }
  }
  assert.ok(isTradeFrame(base));
  assert.ok(accepted > 20 && accepted < checked, `${accepted} of ${checked} accepted`);
});
