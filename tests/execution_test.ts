import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import { Executor, formatVolume, identifierFor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import {
  attemptByIdentifier,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";

const MARKET = "KRW-BTC";
const OTHER = "KRW-ETH";

interface Rig {
  sim: Simulator;
  rest: UpbitRest;
  executor: Executor;
  /** A fresh executor on the same database, as after a restart. */
  newExecutor(): Executor;
  poller: OrderPoller;
  lines: string[];
  close(): Promise<void>;
}

async function rig(
  db: TestDatabase,
  mode: "shadow" | "test" | "live",
  extra: Record<string, string> = {},
  fetchFn?: typeof fetch,
): Promise<Rig> {
  const sim = await startSimulator({ rate: 0, seed: 7, markets: [MARKET, OTHER] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: 1500,
    ...(fetchFn ? { fetch: fetchFn } : {}),
  });
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const env: Record<string, string> = {
    UPBIT_TRADE_MODE: mode,
    UPBIT_ACCESS_KEY: sim.accessKey,
    UPBIT_SECRET_KEY: sim.secretKey,
    ...(mode === "live"
      ? {
        LIVE_TRADING_ENABLED: "true",
        LIVE_GUARD_PHRASE: "I_CONFIRM_LIVE_TRADING",
        PAPER_POLICY_PROFILE: "default",
      }
      : {}),
    ...extra,
  };
  const config = parseConfig(env);
  const decision = decideTradeMode(config);
  const newExecutor = () =>
    new Executor({
      sql: db.sql,
      rest: mode === "shadow" ? null : rest,
      decision,
      settings: {
        orderKrwAmount: config.ORDER_KRW_AMOUNT,
        maxOrdersPerMin: config.MAX_ORDERS_PER_MIN,
        maxRetries: config.EXECUTOR_MAX_RETRIES,
        shadowEnabled: config.SHADOW_ENABLED,
        maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
      },
      log: createLogger("executor"),
      unknownSettleMs: 300,
      // Creates land at once on this simulator: no landing wait (tests/money_race_test.ts has it).
      rotationWaitMs: 0,
      retryBackoff: { baseMs: 50, maxMs: 200 },
    });
  const executor = newExecutor();
  const poller = new OrderPoller({
    sql: db.sql,
    rest,
    maxPolls: 3,
    log: createLogger("order_poller"),
  });
  return {
    sim,
    rest,
    executor,
    newExecutor,
    poller,
    lines,
    async close() {
      restore();
      rest.close();
      await sim.close();
    },
  };
}

async function paperRoundTrip(
  db: TestDatabase,
  price: number,
  exitPrice: number,
  options: { market?: string; exitAgeMs?: number } = {},
) {
  const market = options.market ?? MARKET;
  const now = Date.now() - (options.exitAgeMs ?? 0);
  const qty = Math.floor((10000 / price) * 1e8) / 1e8;
  const enterId = await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market,
    ts: now - 5000,
    price,
    qty,
    fee: price * qty * 0.0005,
    ev: 0.1,
  }, "default");
  const exitId = await insertPaperEvent(db.sql, {
    action: "EXIT_LONG",
    market,
    ts: now,
    price: exitPrice,
    qty,
    fee: exitPrice * qty * 0.0005,
    pnl: (exitPrice - price) * qty,
    holdSec: 5,
    reason: "EV_BAD",
    entryTs: now - 5000,
    entryPrice: price,
    ev: -0.3,
  }, "default");
  return { enterId, exitId, qty };
}

/** The live ENTER_LONG attempt row of `enterId` as a crash would leave it, with its order body. */
async function leftoverEntryAttempt(
  db: TestDatabase,
  enterId: number,
  state: "pending" | "open",
) {
  const identifier = await idOf(db, enterId, "ENTER_LONG");
  const body = {
    market: MARKET,
    side: "bid" as const,
    ord_type: "price" as const,
    price: "10000",
    identifier,
  };
  const row = await insertAttempt(db.sql, {
    symbol: MARKET,
    action: "ENTER_LONG",
    mode: "live",
    side: "bid",
    ord_type: "price",
    price: "10000",
    volume: null,
    paper_trade_id: enterId,
    identifier,
    state: "pending",
    request_json: body,
  });
  if (state === "pending") return { identifier, body, row: row! };
  const open = await transitionAttempt(db.sql, row!.id, "pending", "open");
  return { identifier, body, row: open! };
}

/** The identifier of paper trade `id`'s order in this database's installation. */
async function idOf(db: TestDatabase, id: number, action: string): Promise<string> {
  return identifierFor(await installationId(db.sql), id, action);
}

async function attempts(db: TestDatabase) {
  return await db.sql`select * from upbit_order_attempts order by id`;
}

dbTest("executor shadow: logs both legs, calls nothing, and is idempotent", async (db) => {
  const r = await rig(db, "shadow");
  try {
    const { enterId, exitId, qty } = await paperRoundTrip(db, 99203155, 99000000);
    await r.executor.start();
    assert.equal((await r.executor.runOnce()).handled, 2);
    const rows = await attempts(db);
    assert.deepEqual(rows.map((a) => [a.identifier, a.mode, a.status, a.side, a.ord_type]), [
      [await idOf(db, enterId, "ENTER_LONG"), "shadow", "logged", "bid", "price"],
      [await idOf(db, exitId, "EXIT_LONG"), "shadow", "logged", "ask", "market"],
    ]);
    assert.equal(rows[1]!.volume, formatVolume(qty));
    assert.deepEqual(rows[1]!.request_json, {
      market: MARKET,
      side: "ask",
      ord_type: "market",
      volume: formatVolume(qty),
      identifier: await idOf(db, exitId, "EXIT_LONG"),
    });
    assert.deepEqual(r.sim.orders(), [], "shadow never calls the exchange");
    assert.ok(
      r.lines.some((l) =>
        l.includes(
          `Shadow [EXIT_LONG]: side=ask ord_type=market volume=${formatVolume(qty)} (no API call)`,
        )
      ),
    );
    assert.ok(
      r.lines.some((l) =>
        l.includes("Executor started (effective_mode=shadow live_enabled=false trade_mode=shadow)")
      ),
    );
    // A restarted executor resumes from its durable cursor: nothing is written twice.
    const again = r.newExecutor();
    await again.start();
    assert.equal(again.cursor, exitId);
    assert.equal((await again.runOnce()).handled, 0);
    assert.equal((await attempts(db)).length, 2);
  } finally {
    await r.close();
  }
});

dbTest(
  "executor test mode: POST /v1/orders/test -> test_ok with meta, no order exists",
  async (db) => {
    const r = await rig(db, "test");
    try {
      await paperRoundTrip(db, 99203155, 99000000);
      await r.executor.start();
      await r.executor.runOnce();
      const rows = await attempts(db);
      // orders/test validates like a real order, balance included: the account holds no BTC
      // (the test buy bought nothing), so the test sell is refused, as Upbit would.
      assert.deepEqual(rows.map((a) => [a.mode, a.state, a.status]), [
        ["test", "test_ok", "test_ok"],
        ["test", "rejected", "error"],
      ]);
      assert.equal(rows[1]!.reason, "insufficient_funds_ask");
      assert.match(rows[1]!.error_msg, /^insufficient_funds_ask: /);
      await r.executor.runOnce();
      assert.equal((await attempts(db))[1]!.state, "rejected", "a definite refusal is final");
      for (const a of rows) {
        assert.equal(a.http_status, a.status === "test_ok" ? 201 : 400);
        assert.ok(Number.isInteger(a.latency_ms) && a.latency_ms >= 0, `${a.latency_ms}`);
        assert.match(a.remaining_req, /^group=order-test; min=\d+; sec=\d+$/);
        assert.equal(a.uuid, null, "a test uuid is never stored where the poller looks");
      }
      assert.deepEqual(r.sim.orders(), [], "orders/test creates nothing");
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "executor live + order-poller: submitted -> final state equals the simulator's order",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId, exitId } = await paperRoundTrip(db, 99203155, 99000000);
      await r.executor.start();
      // The exit waits until the entry's fill is known (it sells what was really bought).
      assert.deepEqual(await r.executor.runOnce(), { handled: 1, more: true });
      const enter = await attemptByIdentifier(db.sql, await idOf(db, enterId, "ENTER_LONG"));
      assert.equal(enter?.status, "submitted");
      assert.ok(enter?.uuid);
      assert.equal((await r.poller.pollOnce()).finalised, 1);
      assert.deepEqual(await r.executor.runOnce(), { handled: 1, more: false });
      await r.poller.pollOnce();
      const rows = await attempts(db);
      assert.equal(rows.length, 2);
      for (const a of rows) {
        const [simOrder] = r.sim.orders().filter((o) => o.identifier === a.identifier);
        assert.ok(simOrder, `simulator has ${a.identifier}`);
        assert.equal(a.status, "done");
        assert.equal(a.final_state, simOrder.state);
        assert.equal(Number(a.executed_volume), Number(simOrder.executed_volume));
        const { data } = await r.rest.getOrder({ uuid: a.uuid });
        assert.equal(Number(a.paid_fee), Number(data.paid_fee));
      }
      // The exit sold exactly what the entry bought.
      assert.equal(Number(rows[1]!.volume), Number(rows[0]!.executed_volume));
      const snaps = await db.sql`select uuid, state from upbit_order_snapshots order by id`;
      assert.ok(snaps.length >= 2);
      assert.equal(r.sim.orders().length, 2, "exactly one exchange order per identifier");
      void exitId;
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "executor live: a lost create answer is resolved by identifier, one order only",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      r.sim.setFaults({ lost_response_rate: 1 });
      await r.executor.start();
      await r.executor.runOnce();
      r.sim.setFaults({ lost_response_rate: 0 });
      const id = await idOf(db, enterId, "ENTER_LONG");
      assert.equal((await attemptByIdentifier(db.sql, id))?.status, "unknown");
      // Not resolved before the settle time: the request could still be in flight.
      assert.equal((await r.executor.runOnce()).more, true);
      assert.equal((await attemptByIdentifier(db.sql, id))?.status, "unknown");
      await new Promise((res) => setTimeout(res, 350));
      await r.executor.runOnce();
      const a = await attemptByIdentifier(db.sql, id);
      assert.equal(a?.status, "submitted", a?.error_msg ?? "");
      assert.equal(r.sim.orders().filter((o) => o.identifier === id).length, 1);
      assert.equal(a?.uuid, r.sim.orders().find((o) => o.identifier === id)?.uuid);
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "executor live: restart between writing the attempt and sending it sends exactly once",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      // As left by a crash right after the attempt row was committed.
      const { identifier } = await leftoverEntryAttempt(db, enterId, "pending");
      await new Promise((res) => setTimeout(res, 350)); // the restart takes longer than the settle time
      const ex = r.newExecutor();
      await ex.start();
      await ex.runOnce();
      assert.equal((await attemptByIdentifier(db.sql, identifier))?.status, "submitted");
      assert.equal(r.sim.orders().filter((o) => o.identifier === identifier).length, 1);
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "executor live: restart between sending and recording finds the order, never resends",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      const { identifier, body } = await leftoverEntryAttempt(db, enterId, "pending");
      // The request went out and Upbit created the order; then the process died.
      const sent = await r.rest.postOrder(body);
      assert.equal(sent.kind, "accepted");
      await new Promise((res) => setTimeout(res, 350));
      const ex = r.newExecutor();
      await ex.start();
      await ex.runOnce();
      const a = await attemptByIdentifier(db.sql, identifier);
      assert.equal(a?.status, "submitted");
      assert.equal(a?.uuid, sent.kind === "accepted" ? sent.order.uuid : "");
      assert.equal(r.sim.orders().filter((o) => o.identifier === identifier).length, 1);
    } finally {
      await r.close();
    }
  },
);

dbTest("executor: stale paper trades are skipped in live mode, not sent", async (db) => {
  const r = await rig(db, "live", { EXECUTOR_MAX_SIGNAL_AGE_SEC: "1" });
  try {
    await paperRoundTrip(db, 99203155, 99000000);
    await r.executor.start();
    await r.executor.runOnce();
    const rows = await attempts(db);
    assert.equal(rows[0]!.status, "skipped");
    assert.equal(rows[0]!.reason, "stale_signal");
    assert.match(rows[0]!.error_msg, /^signal is \d+s old \(limit 1s\)$/);
    assert.deepEqual(r.sim.orders(), []);
  } finally {
    await r.close();
  }
});

dbTest("order-poller cancels an order still open at the poll limit and records it", async (db) => {
  const r = await rig(db, "live");
  try {
    const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
    const identifier = await idOf(db, enterId, "ENTER_LONG");
    // A limit bid far below the market rests forever.
    const body = {
      market: MARKET,
      side: "bid" as const,
      ord_type: "limit" as const,
      price: "50000000",
      volume: "0.0002",
      identifier,
    };
    const sent = await r.rest.postOrder(body);
    assert.equal(sent.kind, "accepted");
    const { row: a } = await leftoverEntryAttempt(db, enterId, "open");
    await db.sql`update upbit_order_attempts set uuid = ${
      sent.kind === "accepted" ? sent.order.uuid : ""
    } where id = ${a!.id}`;
    for (let i = 0; i < 3; i++) await r.poller.pollOnce();
    assert.match(
      (await attemptByIdentifier(db.sql, identifier))!.error_msg!,
      /^cancel requested after 3 polls$/,
    );
    await new Promise((res) => setTimeout(res, 50));
    await r.poller.pollOnce();
    const done = await attemptByIdentifier(db.sql, identifier);
    assert.equal(done?.final_state, "cancel");
    assert.equal(done?.status, "done");
    const snaps = await db.sql`select state from upbit_order_snapshots where uuid = ${
      done!.uuid
    } order by ts`;
    assert.deepEqual(snaps.map((s) => s.state), ["wait", "wait", "wait", "cancel"]);
  } finally {
    await r.close();
  }
});

dbTest("executor: MAX_ORDERS_PER_MIN caps exchange orders; the rest wait", async (db) => {
  const r = await rig(db, "test", { MAX_ORDERS_PER_MIN: "1" });
  try {
    await paperRoundTrip(db, 99203155, 99000000);
    await r.executor.start();
    assert.deepEqual(await r.executor.runOnce(), { handled: 1, more: true });
    const rows = await attempts(db);
    assert.deepEqual(rows.map((a) => [a.action, a.status]), [["ENTER_LONG", "test_ok"]]);
    assert.deepEqual(await r.executor.runOnce(), { handled: 0, more: true }, "still capped");
    assert.equal((await attempts(db)).length, 1);
    // A minute later the budget is back, even though the poller touched the old attempt now.
    await db.sql`update upbit_order_attempts
      set ts = now() - interval '61 seconds', poll_count = 1, updated_at = now()`;
    assert.deepEqual(await r.executor.runOnce(), { handled: 1, more: false });
    assert.equal((await attempts(db)).length, 2);
    assert.ok(r.lines.some((l) => l.includes("Order rate cap reached (1 in the last minute)")));
  } finally {
    await r.close();
  }
});

dbTest(
  "executor live: a 5xx create is resolved as not created, then retried once, one order",
  async (db) => {
    // Order creations answer 500 without reaching the exchange while `failCreates` holds (the
    // risk gate's balance read must pass: an order is never sent on a guess).
    let failCreates = false;
    const fetchFn: typeof fetch = (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (failCreates && init?.method === "POST" && url.endsWith("/v1/orders")) {
        return Promise.resolve(new Response("Internal Server Error", { status: 500 }));
      }
      return fetch(input, init);
    };
    const r = await rig(db, "live", {}, fetchFn);
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      const id = await idOf(db, enterId, "ENTER_LONG");
      failCreates = true;
      await r.executor.start();
      await r.executor.runOnce();
      assert.equal((await attemptByIdentifier(db.sql, id))?.status, "unknown");
      failCreates = false;
      await new Promise((res) => setTimeout(res, 350));
      // One pass: resolved as not created (error, retriable), then retried with the same id.
      await r.executor.runOnce();
      assert.ok(r.lines.some((l) => l.includes(`Resolved ${id}: no order exists`)));
      assert.ok(r.lines.some((l) => l.includes(`Retry ${id} (1/3)`)));
      const a = await attemptByIdentifier(db.sql, id);
      assert.equal(a?.status, "submitted");
      assert.equal(a?.retry_count, 1);
      assert.equal(r.sim.orders().filter((o) => o.identifier === id).length, 1);
    } finally {
      await r.close();
    }
  },
);

dbTest("executor live: an exit is sent however late (only entries go stale)", async (db) => {
  const r = await rig(db, "live");
  try {
    const { enterId, exitId } = await paperRoundTrip(db, 99203155, 99000000);
    await r.executor.start();
    await r.executor.runOnce(); // entry submitted, exit waits for the fill
    await r.poller.pollOnce();
    // The exit's signal is now older than the limit (e.g. the executor was down for minutes).
    await db.sql`update paper_trades set ts = now() - interval '10 minutes' where id = ${exitId}`;
    await r.executor.runOnce();
    const exit = await attemptByIdentifier(db.sql, await idOf(db, exitId, "EXIT_LONG"));
    assert.equal(exit?.status, "submitted", exit?.error_msg ?? "");
    const enter = await attemptByIdentifier(db.sql, await idOf(db, enterId, "ENTER_LONG"));
    assert.equal(exit?.volume, enter?.executed_volume);
  } finally {
    await r.close();
  }
});

dbTest("executor live: an exit waits while its entry may still be retried", async (db) => {
  // The exchange refuses the first order with 429 (nothing processed, retriable).
  let refused = false;
  const refuseFirstOrder: typeof fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!refused && init?.method === "POST" && url.endsWith("/v1/orders")) {
      refused = true;
      return Promise.resolve(
        new Response("Too many API requests.", {
          status: 429,
          headers: { "Remaining-Req": "group=order; min=720; sec=0" },
        }),
      );
    }
    return fetch(input, init);
  };
  const r = await rig(db, "live", {}, refuseFirstOrder);
  try {
    const { enterId, exitId } = await paperRoundTrip(db, 99203155, 99000000);
    await r.executor.start();
    await r.executor.runOnce();
    const enterId_ = await idOf(db, enterId, "ENTER_LONG");
    const refused = await attemptByIdentifier(db.sql, enterId_);
    assert.deepEqual([refused?.state, refused?.reason], ["pending", "http_429"]);
    assert.equal(await attemptByIdentifier(db.sql, await idOf(db, exitId, "EXIT_LONG")), null);
    await new Promise((res) => setTimeout(res, 1100)); // next rate-limit second
    await r.executor.runOnce(); // the retry buys
    await r.poller.pollOnce();
    await r.executor.runOnce(); // now the exit sells what was bought
    await r.poller.pollOnce();
    const exit = await attemptByIdentifier(db.sql, await idOf(db, exitId, "EXIT_LONG"));
    assert.equal(exit?.status, "done", exit?.error_msg ?? "");
    assert.equal(r.sim.orders().length, 2);
  } finally {
    await r.close();
  }
});

dbTest("executor live: a waiting exit holds back its own market only", async (db) => {
  const r = await rig(db, "live");
  try {
    const a = await paperRoundTrip(db, 99203155, 99000000);
    const b = await paperRoundTrip(db, 5000000, 5010000, { market: OTHER });
    await r.executor.start();
    const first = await r.executor.runOnce();
    assert.deepEqual(first, { handled: 2, more: true });
    // Both entries went out although KRW-BTC's exit waits for its fill...
    for (
      const id of [await idOf(db, a.enterId, "ENTER_LONG"), await idOf(db, b.enterId, "ENTER_LONG")]
    ) {
      assert.equal((await attemptByIdentifier(db.sql, id))?.status, "submitted", id);
    }
    // ...and the durable cursor stays before the first trade that waits.
    assert.equal(r.executor.cursor, a.enterId);
    await r.poller.pollOnce();
    assert.deepEqual(await r.executor.runOnce(), { handled: 2, more: false });
    assert.equal(r.executor.cursor, b.exitId);
    assert.equal(r.sim.orders().length, 4, "one order per identifier");
  } finally {
    await r.close();
  }
});

dbTest(
  "order-poller: one missed answer after many good polls is not an unknown order; the limit counts misses in a row",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      const { identifier, row } = await leftoverEntryAttempt(db, enterId, "open");
      // A resting bid far under the market: Upbit holds it open through every pass.
      const { data: [ticker] } = await r.rest.getTicker({ markets: [MARKET] });
      const resting = await r.rest.postOrder({
        market: MARKET,
        side: "bid",
        ord_type: "limit",
        price: String(Math.round(ticker!.trade_price / 2 / 1000) * 1000),
        volume: "0.0001",
        identifier: `${identifier}-resting`,
      });
      assert.equal(resting.kind, "accepted");
      const uuid = resting.kind === "accepted" ? resting.order.uuid : "";
      const setUuid = (u: string) =>
        db.sql`update upbit_order_attempts set uuid = ${u} where id = ${row.id}`;
      await setUuid(uuid);
      for (let i = 0; i < 2; i++) await r.poller.pollOnce(); // returned: open
      // One answer without it (Upbit left it out once), after as many passes as the limit (3).
      await setUuid(crypto.randomUUID());
      await r.poller.pollOnce();
      let a = await attemptByIdentifier(db.sql, identifier);
      assert.equal(a?.state, "open", "one miss after good polls is not an unknown order");
      await setUuid(uuid);
      await r.poller.pollOnce();
      a = await attemptByIdentifier(db.sql, identifier);
      assert.equal(a?.poll_count, 4);
      assert.notEqual(a?.state, "unknown");
      // Misses in a row up to the limit: unknown, for the look-up by identifier.
      await setUuid(crypto.randomUUID());
      for (let i = 0; i < 2; i++) await r.poller.pollOnce();
      assert.notEqual((await attemptByIdentifier(db.sql, identifier))?.state, "unknown");
      await r.poller.pollOnce();
      a = await attemptByIdentifier(db.sql, identifier);
      assert.deepEqual([a?.state, a?.reason], ["unknown", "order_not_found"]);
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "order-poller stops tracking an order Upbit does not know after the poll limit",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
      const { identifier, row } = await leftoverEntryAttempt(db, enterId, "open");
      await db
        .sql`update upbit_order_attempts set uuid = ${crypto.randomUUID()} where id = ${row.id}`;
      for (let i = 0; i < 2; i++) await r.poller.pollOnce(); // a single order: GET answers 404
      assert.equal((await attemptByIdentifier(db.sql, identifier))?.status, "submitted");
      await r.poller.pollOnce();
      const a = await attemptByIdentifier(db.sql, identifier);
      assert.deepEqual([a?.state, a?.reason], ["unknown", "order_not_found"]);
      assert.match(a!.error_msg!, /not found at Upbit in 3 polls in a row$/);
      assert.deepEqual(await r.poller.pollOnce(), { open: 0, finalised: 0 });
      // The executor asks by identifier; nothing there either: failed, never re-sent (it was
      // created once), and an alarm says to check it.
      await new Promise((res) => setTimeout(res, 350));
      await r.executor.start();
      await r.executor.runOnce();
      const lost = await attemptByIdentifier(db.sql, identifier);
      assert.deepEqual([lost?.state, lost?.reason], ["failed", "order_lost"]);
      assert.equal(r.sim.orders().filter((o) => o.identifier === identifier).length, 0);
      const alarms = await db.sql<{ code: string; message: string }[]>`
        select code, message from alarms where cleared_at is null order by id`;
      assert.deepEqual(alarms.map((x) => x.code), ["order_not_found", "order_lost"]);
      // It says what a person can do.
      assert.ok(
        alarms[1]!.message.endsWith(
          `deno task lost-order --identifier ${identifier} --uuid <uuid>`,
        ),
        alarms[1]!.message,
      );
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "executor: a downgrade to shadow warns about live positions left without an exit",
  async (db) => {
    const live = await rig(db, "live");
    const { enterId } = await paperRoundTrip(db, 99203155, 99000000);
    try {
      await live.executor.start();
      await live.executor.runOnce();
      await live.poller.pollOnce(); // the entry filled; its exit is not sent yet
    } finally {
      await live.close();
    }
    const shadow = await rig(db, "shadow");
    try {
      await shadow.executor.start();
      const line = shadow.lines.find((l) => l.includes("have no live exit"));
      assert.ok(line, shadow.lines.join("\n"));
      assert.equal(JSON.parse(line).level, "error");
      assert.match(
        line,
        /1 live position\(s\) bought by upbot have no live exit \(KRW-BTC 0\.\d+\); in shadow mode/,
      );
      const [alarm] = await db.sql`select code from alarms where cleared_at is null`;
      assert.equal(alarm?.code, "live_positions_unmanaged");
      assert.ok(line.includes(await idOf(db, enterId, "ENTER_LONG")));
    } finally {
      await shadow.close();
    }
  },
);

dbTest(
  "executor live: an exit with nothing free is refused before the wire; the position is recorded gone",
  async (db) => {
    const r = await rig(db, "live");
    try {
      const { exitId } = await paperRoundTrip(db, 99203155, 99000000);
      await r.executor.start();
      await r.executor.runOnce();
      await r.poller.pollOnce();
      // Someone sold the coins on the exchange meanwhile: the exit is refused for lack of funds.
      const { data: accounts } = await r.rest.getAccounts();
      const btc = accounts.find((a) => a.currency === "BTC")!;
      const sold = await r.rest.postOrder({
        market: MARKET,
        side: "ask",
        ord_type: "market",
        volume: btc.balance,
        identifier: "by-hand-1",
      });
      assert.equal(sold.kind, "accepted");
      await r.executor.runOnce();
      // The risk gate caps a sell at the free balance: nothing free, refused before the wire.
      const exit = await attemptByIdentifier(db.sql, await idOf(db, exitId, "EXIT_LONG"));
      assert.deepEqual([exit?.state, exit?.reason], ["skipped", "no_free_balance"]);
      assert.equal(r.sim.orders().filter((o) => o.identifier?.includes("EXIT_LONG")).length, 0);
      // The position stays in the ledger, where the closer finds it gone and says so loudly.
      const line = r.lines.find((l) => l.includes("KRW-BTC") && l.includes("recorded as gone"));
      assert.ok(line, r.lines.join("\n"));
      assert.equal(JSON.parse(line).level, "error");
    } finally {
      await r.close();
    }
  },
);
