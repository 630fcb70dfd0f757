import assert from "node:assert/strict";
import {
  attemptById,
  attemptByIdentifier,
  exchangeAttemptsInLastMinute,
  insertAttempt,
  sentOrderBody,
} from "../lib/store/order_attempts.ts";
import { dbTest } from "./_db.ts";

const BODY = {
  market: "KRW-BTC",
  side: "bid",
  ord_type: "price",
  price: "10000",
  identifier: "paper-rows-1-ENTER_LONG",
} as const;

async function attemptWith(sql: Parameters<typeof attemptById>[0]) {
  return (await insertAttempt(sql, {
    symbol: "KRW-BTC",
    action: "CLOSE",
    mode: "live",
    side: "bid",
    ord_type: "price",
    price: "10000",
    volume: null,
    paper_trade_id: null,
    identifier: BODY.identifier,
    state: "pending",
    request_json: { ...BODY },
  }))!;
}

dbTest("sentOrderBody() reads back the order body exactly as written", async ({ sql }) => {
  const row = (await attemptByIdentifier(sql, (await attemptWith(sql)).identifier))!;
  assert.deepEqual(sentOrderBody(row), BODY);
});

dbTest("a request_json that is not an object of strings is refused on read", async ({ sql }) => {
  const row = await attemptWith(sql);
  await sql`update upbit_order_attempts
    set request_json = '{"market": "KRW-BTC", "price": 10000}'::jsonb where id = ${row.id}`;
  await assert.rejects(() => attemptById(sql, row.id), {
    message:
      `Attempt ${row.id} (${row.identifier}) has a request_json that is not an object of strings`,
  });
});

dbTest(
  "an order body without identifier or with an unknown side is never sent",
  async ({ sql }) => {
    const row = await attemptWith(sql);
    await sql`update upbit_order_attempts
    set request_json = '{"market": "KRW-BTC", "side": "buy", "ord_type": "price"}'::jsonb
    where id = ${row.id}`;
    const read = (await attemptById(sql, row.id))!;
    assert.throws(() => sentOrderBody(read), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(`^Attempt ${row.id} \\(${row.identifier}\\) has no valid`),
      );
      assert.match(err.message, /side: /);
      assert.match(err.message, /identifier: /);
      return true;
    });
  },
);

dbTest(
  "the order rate cap counts test and live orders created in the database's last minute",
  async ({ sql }) => {
    const attempt = (identifier: string, mode: "live" | "test" | "shadow", state = "pending") =>
      insertAttempt(sql, {
        symbol: "KRW-BTC",
        action: "ENTER_LONG",
        mode,
        side: "bid",
        ord_type: "price",
        price: "10000",
        volume: null,
        paper_trade_id: null,
        identifier,
        state: state as "pending",
        request_json: { ...BODY, identifier },
      });
    await attempt("cap-live", "live");
    await attempt("cap-test", "test");
    await attempt("cap-shadow", "shadow", "logged");
    const old = await attempt("cap-old", "live");
    assert.equal(await exchangeAttemptsInLastMinute(sql), 3);
    // Created 61 s ago by the database's clock: outside the window, whatever the process's says.
    await sql`update upbit_order_attempts set ts = now() - interval '61 seconds'
      where id = ${old!.id}`;
    assert.equal(await exchangeAttemptsInLastMinute(sql), 2);
  },
);
