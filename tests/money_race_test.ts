/**
 * Races between a create Upbit processes late and the executor's look-ups (a double entry found
 * by the money property test with a short client timeout): the simulator's `create_delay_ms` takes
 * the identifier when the request arrives and makes the order only after the delay, so the client
 * gives up, looks the identifier up (nothing yet) and sends again while the first create is still
 * being processed.
 */
import assert from "node:assert/strict";
import { Executor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { type AttemptRow, identifiersOf } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitApiError } from "../lib/upbit/errors.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, pendingAttempt } from "./_live_orders.ts";

const BTC = "KRW-BTC";
/** Far longer than the client's timeout: the first create lands long after every look-up below. */
const CREATE_DELAY_MS = 3000;
const CLIENT_TIMEOUT_MS = 300;

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

async function rig(db: TestDatabase, rotationWaitMs?: number, maxRetries = 3) {
  const sim = await startSimulator({ rate: 0, seed: 5, markets: [BTC] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: CLIENT_TIMEOUT_MS,
  });
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const config = executorConfig(sim, "live");
  const executor = new Executor({
    sql: db.sql,
    rest,
    decision: decideTradeMode(config),
    settings: {
      orderKrwAmount: 10000,
      maxOrdersPerMin: 600,
      maxRetries,
      shadowEnabled: true,
      maxSignalAgeSec: 60,
    },
    log: createLogger("executor"),
    // Look-ups right away, as in the property test: the answer may be lost while the create is
    // still on its way.
    unknownSettleMs: 0,
    ...(rotationWaitMs === undefined ? {} : { rotationWaitMs }),
    retryBackoff: { baseMs: 10, maxMs: 20 },
  });
  await executor.start();
  const poller = new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log: createLogger("poller") });
  return {
    sim,
    rest,
    executor,
    poller,
    lines,
    async close() {
      restore();
      rest.close();
      await sim.close();
    },
  };
}

async function enter(db: TestDatabase): Promise<void> {
  await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market: BTC,
    ts: Date.now(),
    price: 140_500_000,
    qty: 0.0001,
    fee: 1,
    ev: 0.1,
  }, "default");
}

async function entryAttempt(db: TestDatabase): Promise<AttemptRow> {
  const [row] = await db.sql<AttemptRow[]>`
    select * from upbit_order_attempts where action = 'ENTER_LONG' order by id limit 1`;
  assert.ok(row, "an entry attempt");
  return row;
}

/** Waits (no timing asserted) until the simulator holds `n` orders. */
async function untilOrders(sim: Simulator, n: number): Promise<void> {
  for (let i = 0; i < 200 && sim.orders().length < n; i++) await sleep(50);
}

dbTest(
  "race: a create processed after a re-send was refused as used is adopted, never doubled by a fresh identifier",
  async (db) => {
    const r = await rig(db);
    try {
      await enter(db);
      // The entry's create takes its identifier and waits at the exchange; the client gives up.
      r.sim.setFaults({ create_delay_ms: CREATE_DELAY_MS });
      await r.executor.runOnce();
      const first = await entryAttempt(db);
      assert.deepEqual([first.state, first.reason], ["unknown", "lost_response"]);
      // Later requests are processed at once: the look-up finds nothing; the entry is held for
      // the landing wait (its create may still be processed), neither re-sent nor rotated.
      r.sim.setFaults({ create_delay_ms: 0 });
      await r.executor.runOnce();
      const held = await entryAttempt(db);
      assert.deepEqual([held.state, held.reason], ["pending", "not_created"]);
      // Still no order under it: a fresh identifier now would buy a second time.
      for (let i = 0; i < 3; i++) await r.executor.runOnce();
      assert.equal(r.sim.orders().length, 0, "no second entry order while the first may land");
      assert.deepEqual(await identifiersOf(db.sql, first.id), [first.identifier]);
      // The first create lands; the next look-up adopts it.
      await untilOrders(r.sim, 1);
      await r.executor.runOnce();
      await r.poller.pollOnce();
      const orders = r.sim.orders();
      assert.equal(orders.length, 1, `one entry order: ${JSON.stringify(orders)}`);
      assert.equal(orders[0]!.identifier, first.identifier);
      const adopted = await entryAttempt(db);
      assert.equal(adopted.uuid, orders[0]!.uuid, adopted.error_msg ?? "");
      assert.ok(["open", "filled", "cancelled"].includes(adopted.state), adopted.state);
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "race: an identifier refused as used with no order moves to a fresh one only after the rotation wait",
  async (db) => {
    const r = await rig(db, 400);
    try {
      await enter(db);
      // Every create answers 500 and only uses up its identifier.
      r.sim.setFaults({ server_error_burn_rate: 1 });
      await r.executor.runOnce(); // 500: outcome unknown
      r.sim.setFaults({ server_error_burn_rate: 0 });
      // A 5xx create may still land: looked up (nothing), the entry is held for the landing wait.
      await r.executor.runOnce();
      const held = await entryAttempt(db);
      assert.deepEqual([held.state, held.reason], ["pending", "not_created"]);
      await sleep(450);
      await r.executor.runOnce(); // still nothing; the re-send is refused as used
      const refused = await entryAttempt(db);
      assert.deepEqual([refused.state, refused.reason], ["unknown", "duplicated_identifier"]);
      assert.equal((await r.executor.runOnce()).more, true);
      assert.equal((await entryAttempt(db)).identifier, refused.identifier, "not rotated yet");
      await sleep(450);
      await r.executor.runOnce();
      const rotated = await entryAttempt(db);
      assert.equal(rotated.identifier, `${refused.identifier}-r1`);
      assert.equal(rotated.state, "open", rotated.error_msg ?? "");
      assert.deepEqual(r.sim.orders().map((o) => o.identifier), [rotated.identifier]);
    } finally {
      await r.close();
    }
  },
);

Deno.test("race: simulator create_delay_ms holds the identifier from arrival, the order appears after the delay", async () => {
  const sim = await startSimulator({ rate: 0, seed: 5, markets: [BTC] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: CLIENT_TIMEOUT_MS,
  });
  try {
    const body = {
      market: BTC,
      side: "bid" as const,
      ord_type: "price" as const,
      price: "10000",
      identifier: "race-1",
    };
    sim.setFaults({ create_delay_ms: CREATE_DELAY_MS });
    const late = await rest.postOrder(body);
    assert.equal(late.kind, "unknown", "the client gave up");
    sim.setFaults({ create_delay_ms: 0 });
    const lookup = await rest.resolveUnknownOrder("race-1");
    assert.equal(lookup.kind, "not_found", "no order before the create is processed");
    const again = await rest.postOrder(body);
    assert.equal(again.kind, "rejected");
    assert.equal((again.error as UpbitApiError).code, "duplicated_identifier");
    await untilOrders(sim, 1);
    assert.deepEqual(sim.orders().map((o) => o.identifier), ["race-1"]);
    assert.equal((await rest.resolveUnknownOrder("race-1")).kind, "found");
  } finally {
    rest.close();
    await sim.close();
  }
});

dbTest(
  "race: an entry whose create may still land is not given up (held, then adopted when it lands)",
  async (db) => {
    // No retries left after the first send: without the landing wait the entry would be given up
    // (retries_exhausted) while its create is still queued at the exchange, and the coins it
    // then buys would be managed by nothing.
    const r = await rig(db, 2 * CREATE_DELAY_MS, 0);
    try {
      await enter(db);
      r.sim.setFaults({ create_delay_ms: CREATE_DELAY_MS });
      await r.executor.runOnce();
      const first = await entryAttempt(db);
      assert.deepEqual([first.state, first.reason], ["unknown", "lost_response"]);
      r.sim.setFaults({ create_delay_ms: 0 });
      // The look-up finds nothing yet: the entry is held, neither given up nor sent again.
      await r.executor.runOnce();
      const held = await entryAttempt(db);
      assert.equal(held.state, "pending", `${held.state} ${held.reason}`);
      assert.equal(held.reason, "not_created");
      // The create lands; the next look-up adopts it, and the poller follows it to its end.
      await untilOrders(r.sim, 1);
      assert.equal(r.sim.orders().length, 1, "the queued create landed");
      await r.executor.runOnce();
      await r.poller.pollOnce();
      const adopted = await entryAttempt(db);
      assert.equal(adopted.uuid, r.sim.orders()[0]!.uuid, `${adopted.state} ${adopted.reason}`);
      assert.ok(["open", "filled", "cancelled"].includes(adopted.state), adopted.state);
      assert.equal(r.sim.orders().length, 1, "one entry order");
    } finally {
      await r.close();
    }
  },
);

dbTest(
  "race: a sell whose create may still land is held, not skipped or capped by the balance its late fill took",
  async (db) => {
    const r = await rig(db, 2 * CREATE_DELAY_MS);
    try {
      // A sell whose answer was lost and whose look-up found nothing a moment ago: its create may
      // still fill at Upbit. The account holds no BTC now (as after that late fill), so judged
      // again by the risk gate it would be skipped for lack of free balance, its late order never
      // recorded, and the closer would sell again.
      const sell = await pendingAttempt(db.sql, { market: BTC, side: "ask", volume: "0.0001" });
      await db.sql`update upbit_order_attempts set reason = 'not_created', updated_at = now()
        where id = ${sell.id}`;
      await r.executor.runOnce();
      const held = await db.sql<AttemptRow[]>`
        select * from upbit_order_attempts where id = ${sell.id}`;
      assert.deepEqual([held[0]!.state, held[0]!.reason], ["pending", "not_created"]);
      assert.equal(r.sim.orders().length, 0, "nothing sent while the first create may land");
    } finally {
      await r.close();
    }
  },
);
