/**
 * The live money path against the simulator, one named test per scenario of issue #9: positions
 * are obligations (closed whatever happened), identifiers are unique forever and never adopted
 * blindly, halts are reduce-only, stale entries are never sent, the owner's coins are never sold.
 */
import assert from "node:assert/strict";
import {
  entryHaltReason,
  haltEntries,
  pendingFlatten,
  requestFlatten,
  resumeEntries,
} from "../lib/control/trading_state.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { Executor, identifierFor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { riskLimits } from "../lib/execution/risk_gate.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { type AttemptRow, insertAttempt, installationId } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { dbTest, openTestDatabase, type TestDatabase } from "./_db.ts";
import { executorConfig } from "./_live_orders.ts";

const BTC = "KRW-BTC";
const ETH = "KRW-ETH";

/** `shadow+keys`: shadow mode with Upbit keys set (the executor actor then gives it a client). */
type Mode = "shadow" | "shadow+keys" | "test" | "live";

/** A simulator, one Upbit client on it, and executors / pollers on one database. */
async function rig(
  db: TestDatabase,
  simOptions: SimulatorOptions = {},
  fetchVia: typeof fetch = fetch,
) {
  const sim = await startSimulator({ rate: 0, seed: 7, markets: [BTC, ETH], ...simOptions });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: 1500,
    fetch: fetchVia,
  });
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  let sql = db.sql;
  const r = {
    sim,
    rest,
    lines,
    /** Switches to another database (a reset), keeping the exchange. */
    useDatabase(other: TestDatabase) {
      sql = other.sql;
    },
    /**
     * A started executor in `mode` (settings from the environment `extra`), with `retryBackoff`
     * when given (else 20-100 ms).
     */
    async executor(
      mode: Mode,
      extra: Record<string, string> = {},
      supervisorHalt?: () => string | null,
      retryBackoff = { baseMs: 20, maxMs: 100 },
    ): Promise<Executor> {
      const config = executorConfig(sim, mode === "shadow+keys" ? "shadow" : mode, extra);
      const ex = new Executor({
        sql,
        rest: mode === "shadow" ? null : rest,
        decision: decideTradeMode(config),
        settings: {
          orderKrwAmount: config.ORDER_KRW_AMOUNT,
          maxOrdersPerMin: 600,
          maxRetries: config.EXECUTOR_MAX_RETRIES,
          shadowEnabled: config.SHADOW_ENABLED,
          maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
          // Only when the test sets MARKETS: the others trade ETH outside the default.
          ...(extra.MARKETS ? { markets: config.MARKETS } : {}),
        },
        risk: { limits: riskLimits(config) },
        log: createLogger("executor"),
        unknownSettleMs: 0,
        // No create here is processed after its answer (no create_delay_ms): a burnt identifier
        // may be replaced at once.
        rotationWaitMs: 0,
        retryBackoff,
        ...(supervisorHalt ? { supervisorHalt } : {}),
      });
      await ex.start();
      return ex;
    },
    poller(): OrderPoller {
      return new OrderPoller({ sql, rest, maxPolls: 50, log: createLogger("order_poller") });
    },
    /** Executor and poller passes (with short pauses) until `done()` or `rounds` run out. */
    async drive(ex: Executor, done: () => Promise<boolean>, rounds = 40): Promise<void> {
      const poller = r.poller();
      for (let i = 0; i < rounds; i++) {
        await ex.runOnce();
        await poller.pollOnce();
        if (await done()) return;
        await new Promise((res) => setTimeout(res, 30));
      }
      assert.fail(`not done after ${rounds} rounds:\n${lines.slice(-15).join("\n")}`);
    },
    /** Places a market buy of `krw` under `identifier` directly (another program, a lost order). */
    async buyUnder(identifier: string, market: string, krw: string): Promise<string> {
      const r = await rest.postOrder({
        market,
        side: "bid",
        ord_type: "price",
        price: krw,
        identifier,
      });
      assert.equal(r.kind, "accepted");
      return r.kind === "accepted" ? r.order.uuid : "";
    },
    async balance(currency: string): Promise<string> {
      const { data } = await rest.getAccounts();
      return formatDec(dec(data.find((a) => a.currency === currency)?.balance ?? "0"));
    },
    async close() {
      restore();
      rest.close();
      await sim.close();
    },
    [Symbol.asyncDispose]: () => r.close(),
  };
  return r;
}

type Rig = Awaited<ReturnType<typeof rig>>;

async function enter(db: TestDatabase, market = BTC, price = 140_500_000, ageMs = 0) {
  const ts = Date.now() - ageMs;
  return await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market,
    ts,
    price,
    qty: 0.0001,
    fee: 1,
    ev: 0.1,
  }, "default");
}

async function exit(db: TestDatabase, market = BTC, price = 140_500_000) {
  return await insertPaperEvent(db.sql, {
    action: "EXIT_LONG",
    market,
    ts: Date.now(),
    price,
    qty: 0.0001,
    fee: 1,
    pnl: 0,
    holdSec: 5,
    reason: "EV_BAD",
    entryTs: Date.now() - 5000,
    entryPrice: price,
    ev: -0.3,
  }, "default");
}

async function rows(db: TestDatabase): Promise<AttemptRow[]> {
  return await db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

async function openVolume(db: TestDatabase, market = BTC): Promise<string> {
  return (await ledgerPosition(db.sql, market))?.openVolume ?? "0";
}

/** Settled: nothing unsent, unresolved or open, for the poller or the executor. */
async function settled(db: TestDatabase): Promise<boolean> {
  const [row] = await db.sql`select count(*)::int as n from upbit_order_attempts
    where state in ('pending', 'sent', 'unknown', 'open', 'partially_filled')`;
  return row!.n === 0;
}

/**
 * The first attempt (the entry) is final with its fill known. A `price` market buy ends `cancel`
 * at Upbit (the unspent rest of the funds is cancelled), so both final states count.
 */
async function entryFilled(db: TestDatabase): Promise<boolean> {
  const state = (await rows(db))[0]?.state;
  return state === "filled" || state === "cancelled";
}

async function flatAndSettled(db: TestDatabase, market = BTC): Promise<boolean> {
  return await settled(db) && dec(await openVolume(db, market)) === 0n;
}

/** Writes a BTC entry and drives `ex` until it filled: a live position for the test's exit. */
async function openPosition(r: Rig, db: TestDatabase, ex: Executor): Promise<void> {
  await enter(db);
  await r.drive(ex, () => entryFilled(db));
}

/** Like {@linkcode openPosition} when attempts exist already: until the newest entry filled. */
async function openPosition2(r: Rig, db: TestDatabase, ex: Executor): Promise<void> {
  const entry = await enter(db);
  await r.drive(ex, async () => {
    const [a] = await db.sql<AttemptRow[]>`
      select * from upbit_order_attempts where paper_trade_id = ${entry}`;
    return a?.state === "filled" || a?.state === "cancelled";
  });
}

/** The CLOSE the closer sent for `market`, which must have filled. */
async function filledClose(db: TestDatabase, market = BTC): Promise<AttemptRow> {
  const close = (await rows(db)).find((a) => a.action === "CLOSE" && a.symbol === market);
  assert.equal(close?.state, "filled", `the close of ${market}`);
  return close!;
}

/** `passes` executor passes 30 ms apart, without the poller. */
async function runPasses(ex: Executor, passes: number): Promise<void> {
  for (let i = 0; i < passes; i++) {
    await ex.runOnce();
    await new Promise((res) => setTimeout(res, 30));
  }
}

dbTest(
  "money: a fresh database never adopts the old installation's orders, never sells what it did not buy",
  async (db) => {
    await using r = await rig(db);
    // The exchange holds orders of an earlier installation under the seed's identifiers: an ETH
    // buy as `paper-1-ENTER_LONG` (the first paper trade of any fresh seed database).
    await r.buyUnder("paper-1-ENTER_LONG", ETH, "10000");
    const ethBefore = await r.balance("ETH");
    const ex = await r.executor("live");
    const enterId = await enter(db);
    assert.equal(enterId, 1, "the new database's first paper trade is 1 again");
    await r.drive(ex, () => entryFilled(db));
    await exit(db);
    await r.drive(ex, () => flatAndSettled(db));
    const attempts = await rows(db);
    const inst = await installationId(db.sql);
    assert.deepEqual(attempts.map((a) => [a.identifier, a.state]), [
      [identifierFor(inst, 1, "ENTER_LONG"), "cancelled"],
      [identifierFor(inst, 2, "EXIT_LONG"), "filled"],
    ]);
    const orders = r.sim.orders();
    for (const a of attempts) {
      const own = orders.filter((o) => o.identifier === a.identifier);
      assert.equal(own.length, 1);
      assert.equal(a.uuid, own[0]!.uuid, "each attempt holds the order it created");
    }
    assert.equal(attempts[1]!.volume, attempts[0]!.executed_volume, "sold what it bought");
    assert.equal(await r.balance("BTC"), "0");
    assert.equal(await r.balance("ETH"), ethBefore, "the old installation's ETH is untouched");
  },
);

dbTest(
  "money: an identifier collision with a different order is a conflict: alarm, entries halted, nothing adopted",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await ex.runOnce(); // the live start's reconciliation: nothing found
    // Then an ETH buy appears under the identifier the next BTC entry will use (made by a copy of
    // this database elsewhere, say, after this installation's reconciliation looked).
    const inst = await installationId(db.sql);
    const identifier = identifierFor(inst, 1, "ENTER_LONG");
    await r.buyUnder(identifier, ETH, "10000");
    await enter(db);
    await r.drive(ex, async () => (await rows(db))[0]?.state === "conflict");
    const [a] = await rows(db);
    assert.equal(a!.reason, "identifier_conflict");
    assert.equal(a!.uuid, null, "never adopted");
    assert.equal(a!.executed_volume, null, "its fills never enter the ledger");
    assert.ok(r.lines.some((l) => JSON.parse(l).level === "error" && l.includes("not adopted")));
    assert.deepEqual((await activeAlarms(db.sql)).map((x) => x.code), ["identifier_conflict"]);
    const [state] = await db.sql`select halted, reason from trading_state where scope = 'global'`;
    assert.equal(state?.halted, true);
    // Entries are halted: the next one is skipped, not sent.
    await exit(db);
    const next = await enter(db);
    await ex.runOnce();
    const skipped = (await rows(db)).find((x) => Number(x.paper_trade_id) === next);
    assert.deepEqual([skipped?.state, skipped?.reason], ["skipped", "entries_halted"]);
    assert.equal(r.sim.orders().filter((o) => o.market === BTC).length, 0);
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "money: own orders the database lacks (a restored backup): a new installation id, so the next entry cannot reuse their identifiers",
  async (db) => {
    await using r = await rig(db);
    // The exchange holds the order a lost copy of this database made for its paper trade 1: the
    // same entry the restored database's paper trade 1 will ask for, under the same identifier.
    const inst = await installationId(db.sql);
    const amount = String(executorConfig(r.sim, "live").ORDER_KRW_AMOUNT);
    const lost = await r.buyUnder(identifierFor(inst, 1, "ENTER_LONG"), BTC, amount);
    const btcBefore = await r.balance("BTC");
    const ex = await r.executor("live");
    await ex.runOnce(); // the live start's reconciliation
    assert.match(
      (await entryHaltReason(db.sql, BTC)) ?? "",
      /halted globally by reconciliation .*missing from the database/,
      "no new position on a ledger nobody has checked",
    );
    await resumeEntries(db.sql, { scope: "global", by: "test" }); // a person checked it
    await enter(db);
    await r.drive(ex, () => entryFilled(db));
    const renewed = await installationId(db.sql);
    assert.notEqual(renewed, inst, "the live start's reconciliation renewed the installation id");
    const [entry] = await rows(db);
    assert.equal(entry!.identifier, identifierFor(renewed, 1, "ENTER_LONG"));
    assert.notEqual(entry!.uuid, lost, "not adopted");
    assert.deepEqual((await activeAlarms(db.sql)).map((x) => x.code), [
      "reconciliation_unrecorded_order",
    ]);
    assert.ok(r.lines.some((l) => l.includes(`new identifiers use paper-${renewed}-`)));
    // What upbot bought is sold; the lost order's coins stay (the owner decides).
    await exit(db);
    await r.drive(ex, () => flatAndSettled(db));
    assert.equal(await r.balance("BTC"), btcBefore);
  },
);

dbTest(
  "money: a row left sent that finds another order under its identifier is a conflict; exits go on",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    // A crash left an ETH entry's attempt `sent`; under its identifier Upbit holds an order that
    // is not the one it asked for (another amount).
    const inst = await installationId(db.sql);
    const paperId = await enter(db, ETH);
    const identifier = identifierFor(inst, paperId, "ENTER_LONG");
    const request = { market: ETH, side: "bid", ord_type: "price", price: "10000", identifier };
    await insertAttempt(db.sql, {
      symbol: ETH,
      action: "ENTER_LONG",
      mode: "live",
      side: "bid",
      ord_type: "price",
      price: "10000",
      volume: null,
      paper_trade_id: paperId,
      identifier,
      state: "sent",
      request_json: request,
    });
    await r.buyUnder(identifier, ETH, "20000");
    // The BTC exit comes after it and goes out: the sent row does not stop the passes.
    await exit(db);
    await r.drive(ex, () => flatAndSettled(db));
    const eth = (await rows(db)).find((x) => x.identifier === identifier)!;
    assert.deepEqual([eth.state, eth.reason, eth.uuid], ["conflict", "identifier_conflict", null]);
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "money: an exit handled while shadow mode writes nothing (SHADOW_ENABLED=false) does not hold the live position",
  async (db) => {
    await using r = await rig(db);
    await openPosition(r, db, await r.executor("live"));
    const quiet = await r.executor("shadow", { SHADOW_ENABLED: "false" });
    await exit(db);
    await quiet.runOnce();
    assert.equal((await rows(db)).length, 1, "no attempt for the exit");
    const again = await r.executor("live");
    await r.drive(again, () => flatAndSettled(db));
    await filledClose(db);
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest("money: a flatten is not complete while a buy may still fill", async (db) => {
  await using r = await rig(db);
  const ex = await r.executor("live");
  await enter(db);
  await ex.runOnce(); // sent and open at Upbit; the poller has not seen its fill yet
  assert.equal((await rows(db))[0]?.state, "open");
  await requestFlatten(db.sql, { reason: "test", by: "test" });
  await ex.runOnce();
  assert.notEqual(await pendingFlatten(db.sql), null, "still pending: the buy may fill");
  await r.drive(ex, async () => await flatAndSettled(db) && !(await pendingFlatten(db.sql)));
  await filledClose(db);
  assert.equal(await r.balance("BTC"), "0");
});

dbTest(
  "money: a live buy that fills after a switch to test mode is still sold, by the live closer, once its paper exit comes",
  async (db) => {
    await using r = await rig(db);
    const live = await r.executor("live");
    await enter(db);
    await live.runOnce(); // sent and open at Upbit; its fill is not in the ledger yet
    assert.equal((await rows(db))[0]?.state, "open");
    const test = await r.executor("test");
    assert.ok(r.lines.some((l) => l.includes("Live closer started beside the test executor")));
    await r.poller().pollOnce();
    const bought = await openVolume(db);
    assert.notEqual(bought, "0", "the fill came in after the switch");
    await runPasses(test, 2);
    assert.equal(await openVolume(db), bought, "held while the paper position is open");
    await exit(db);
    await r.drive(test, () => flatAndSettled(db));
    const close = await filledClose(db);
    assert.equal(close.mode, "live", "a real sell, not a test order");
    assert.equal(Number(close.executed_volume), Number(bought));
    assert.equal(await r.balance("BTC"), "0");
    const paperExit = (await rows(db)).find((a) => a.action === "EXIT_LONG");
    assert.equal(paperExit?.mode, "test", "the paper exit itself was a test order");
    assert.ok(
      !(await activeAlarms(db.sql)).some((a) => a.code === "live_positions_unmanaged"),
      "managed: no alarm",
    );
  },
);

dbTest(
  "money: live -> shadow with keys: the position is sold after its paper exit, a live entry left pending is never sent, a flatten completes",
  async (db) => {
    await using r = await rig(db);
    const live = await r.executor("live");
    await openPosition(r, db, live);
    const bought = (await rows(db))[0]!.executed_volume!;
    // A live entry on ETH written and not sent when the mode changed (a crash, a ban).
    const inst = await installationId(db.sql);
    const ethPaper = await enter(db, ETH, 5_000_000);
    const ethId = identifierFor(inst, ethPaper, "ENTER_LONG");
    await insertAttempt(db.sql, {
      symbol: ETH,
      action: "ENTER_LONG",
      mode: "live",
      side: "bid",
      ord_type: "price",
      price: "10000",
      volume: null,
      paper_trade_id: ethPaper,
      identifier: ethId,
      state: "pending",
      request_json: {
        market: ETH,
        side: "bid",
        ord_type: "price",
        price: "10000",
        identifier: ethId,
      },
    });
    const shadow = await r.executor("shadow+keys");
    await runPasses(shadow, 3);
    const eth = (await rows(db)).find((a) => a.identifier === ethId)!;
    assert.deepEqual([eth.state, eth.reason], ["skipped", "entries_halted"]);
    assert.match(eth.error_msg ?? "", /no entry is sent in shadow mode/);
    assert.equal(r.sim.orders().filter((o) => o.market === ETH).length, 0, "never sent");
    assert.equal(await r.balance("BTC"), formatDec(dec(bought)), "held: paper position open");
    await exit(db);
    await r.drive(shadow, () => flatAndSettled(db));
    const close = await filledClose(db);
    assert.equal(Number(close.executed_volume), Number(bought));
    assert.equal(await r.balance("BTC"), "0");
    // A flatten in shadow mode (keys set) closes a position whose paper side is still open.
    const again = await r.executor("live");
    await openPosition2(r, db, again);
    const flat = await r.executor("shadow+keys");
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    await r.drive(flat, async () => await flatAndSettled(db) && !(await pendingFlatten(db.sql)));
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "money: live -> shadow -> live sells the coins bought before once live returns",
  async (db) => {
    await using r = await rig(db);
    const live = await r.executor("live");
    await openPosition(r, db, live);
    const bought = (await rows(db))[0]!.executed_volume!;
    // Downgraded to shadow: the exit is only logged; the coins stay; an error names them.
    const shadow = await r.executor("shadow");
    assert.ok(r.lines.some((l) => l.includes("have no live exit") && l.includes(BTC)));
    await exit(db);
    await shadow.runOnce();
    assert.equal((await rows(db))[1]!.state, "logged");
    assert.equal(await r.balance("BTC"), formatDec(dec(bought)));
    // Live again: the closer sells the ledger's position.
    const again = await r.executor("live");
    await r.drive(again, () => flatAndSettled(db));
    const close = await filledClose(db);
    assert.equal(Number(close?.executed_volume), Number(bought));
    assert.match(close!.identifier, /^paper-[a-z2-7]{8}-close-\d+$/);
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "money: maintenance during an exit: the sell is retried and goes through when the market is back",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    r.sim.setFaults({ offline_markets: [BTC] });
    await exit(db);
    await runPasses(ex, 5);
    const waiting = (await rows(db))[1]!;
    assert.deepEqual([waiting.state, waiting.reason], ["pending", "market_offline"]);
    assert.ok(waiting.retry_count >= 2, "sent again while offline");
    assert.ok((await activeAlarms(db.sql)).some((a) => a.code === "exit_failing"));
    r.sim.setFaults({ offline_markets: [] });
    await r.drive(ex, () => flatAndSettled(db));
    assert.equal((await rows(db))[1]!.state, "filled");
    assert.equal(await r.balance("BTC"), "0");
    assert.ok(!(await activeAlarms(db.sql)).some((a) => a.code === "exit_failing"), "cleared");
  },
);

dbTest(
  "money: an exit that used up EXECUTOR_MAX_RETRIES is still sent until the position is closed",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live", { EXECUTOR_MAX_RETRIES: "0" });
    await openPosition(r, db, ex);
    // Every create answers 500 and burns the identifier, creating nothing.
    r.sim.setFaults({ server_error_burn_rate: 1 });
    await exit(db);
    await runPasses(ex, 8);
    const failing = (await rows(db))[1]!;
    assert.ok(failing.retry_count > 1, `retried past the limit (${failing.retry_count})`);
    r.sim.setFaults({ server_error_burn_rate: 0 });
    await r.drive(ex, () => flatAndSettled(db));
    const sold = (await rows(db))[1]!;
    assert.equal(sold.state, "filled");
    // Burnt identifiers are never sent again: the sale went out under a fresh `-r{n}` one, and
    // every identifier it used is on record.
    assert.match(sold.identifier, /-EXIT_LONG-r\d+$/);
    const used = await db.sql`select identifier from upbit_order_identifiers
    where attempt_id = ${sold.id}`;
    assert.ok(used.length >= 2);
    assert.equal(r.sim.orders().filter((o) => o.side === "ask").length, 1, "one sell only");
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest("money: the unsold rest of a partly filled sell is sold", async (db) => {
  await using r = await rig(db);
  // A big entry (about 0.035 BTC) and the owner's own resting bid just below the top of the
  // book: the exit sells the top level, then meets the owner's bid, and self-trade prevention
  // (`cancel_taker`) ends it `prevented` with only part of it sold.
  const ex = await r.executor("live", {
    ORDER_KRW_AMOUNT: "5000000",
    RISK_MAX_ORDER_KRW: "5000000",
    RISK_MAX_EXPOSURE_KRW: "10000000",
  });
  await enter(db);
  await r.drive(ex, () => entryFilled(db));
  const { data: book } = await r.rest.getOrderbook({ markets: [BTC] } as never);
  const units = (book as { orderbook_units: { bid_price: number; bid_size: number }[] }[])[0]!
    .orderbook_units;
  const own = await r.rest.postOrder({
    market: BTC,
    side: "bid",
    ord_type: "limit",
    price: String(units[1]!.bid_price),
    volume: "0.001",
    identifier: "owner-bid-1",
  });
  assert.equal(own.kind, "accepted");
  await exit(db);
  await r.drive(ex, async () => (await rows(db))[1]?.state === "prevented");
  const partial = (await rows(db))[1]!;
  assert.ok(Number(partial.executed_volume) > 0);
  assert.ok(Number(partial.executed_volume) < Number(partial.volume), "only part was sold");
  // The owner's bid is gone (cancelled by hand): the closer sells the rest.
  await r.rest.deleteOrder({ uuid: own.kind === "accepted" ? own.order.uuid : "" });
  await r.drive(ex, () => flatAndSettled(db));
  const close = await filledClose(db);
  assert.equal(
    formatDec(dec(partial.executed_volume!) + dec(close!.executed_volume!)),
    formatDec(dec((await rows(db))[0]!.executed_volume!)),
  );
  assert.equal(await r.balance("BTC"), "0");
});

dbTest(
  "money: a close stopped by self-match prevention waits out its backoff (not sent again every pass, no balance asked for meanwhile), with an alarm",
  async (db) => {
    let accountReads = 0;
    await using r = await rig(db, {}, (input, init) => {
      if (
        new URL(input instanceof Request ? input.url : String(input)).pathname === "/v1/accounts"
      ) {
        accountReads++;
      }
      return fetch(input, init);
    });
    // Closes refused a moment ago wait a minute: the test's passes all fall inside it.
    const ex = await r.executor("live", {}, undefined, { baseMs: 60_000, maxMs: 60_000 });
    await openPosition(r, db, ex);
    // The owner's own bid at the best bid: a market sell meets it first, and self-match
    // prevention stops the sell before anything is sold.
    const { data: book } = await r.rest.getOrderbook({ markets: [BTC] } as never);
    const units = (book as { orderbook_units: { bid_price: number }[] }[])[0]!.orderbook_units;
    const own = await r.rest.postOrder({
      market: BTC,
      side: "bid",
      ord_type: "limit",
      price: String(units[0]!.bid_price),
      volume: "0.001",
      identifier: "owner-bid-2",
    });
    assert.equal(own.kind, "accepted");
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    const closes = async () => (await rows(db)).filter((a) => a.action === "CLOSE");
    await r.drive(ex, async () => (await closes())[0]?.state === "prevented");
    const poller = r.poller();
    const readsBefore = accountReads;
    for (let i = 0; i < 5; i++) {
      await ex.runOnce();
      await poller.pollOnce();
    }
    // Held whatever the balance while it backs off: each balance request would spend the
    // `default` group's share the risk gate needs.
    assert.equal(accountReads - readsBefore, 0, "no GET /v1/accounts while backing off");
    const sent = await closes();
    assert.deepEqual(sent.map((a) => [a.state, Number(a.executed_volume ?? 0)]), [
      ["prevented", 0],
    ]);
    assert.ok((await activeAlarms(db.sql)).some((a) => a.code === "close_prevented"));
    assert.notEqual(await openVolume(db), "0", "still owed");
  },
);

dbTest("money: a pending entry whose signal went stale is skipped, never sent", async (db) => {
  await using r = await rig(db);
  const enterId = await enter(db, BTC, 140_500_000, 5_000);
  const inst = await installationId(db.sql);
  const identifier = identifierFor(inst, enterId, "ENTER_LONG");
  // As a crash (or a ban) left it: written, not sent.
  await insertAttempt(db.sql, {
    symbol: BTC,
    action: "ENTER_LONG",
    mode: "live",
    side: "bid",
    ord_type: "price",
    price: "10000",
    volume: null,
    paper_trade_id: enterId,
    identifier,
    state: "pending",
    request_json: { market: BTC, side: "bid", ord_type: "price", price: "10000", identifier },
  });
  const ex = await r.executor("live", { EXECUTOR_MAX_SIGNAL_AGE_SEC: "1" });
  await ex.runOnce();
  const [a] = await rows(db);
  assert.deepEqual([a!.state, a!.reason], ["skipped", "stale_signal"]);
  assert.deepEqual(r.sim.orders(), []);
});

dbTest(
  "money: an entry refused for good stays refused when EXECUTOR_MAX_RETRIES is raised",
  async (db) => {
    await using r = await rig(db, { krw: 8000 });
    const ex = await r.executor("live", { ORDER_KRW_AMOUNT: "10000" });
    await enter(db);
    await ex.runOnce();
    // The risk gate refuses it before the wire (8,000 KRW free, 10,005 needed).
    const [a] = await rows(db);
    assert.deepEqual([a!.state, a!.reason], ["skipped", "insufficient_krw"]);
    const raised = await r.executor("live", {
      ORDER_KRW_AMOUNT: "10000",
      EXECUTOR_MAX_RETRIES: "20",
    });
    await raised.runOnce();
    assert.equal((await rows(db))[0]!.state, "skipped");
    assert.deepEqual(r.sim.orders(), [], "never sent again");
  },
);

dbTest(
  "money: the owner's own coins are never sold (exit after a flatten, closes capped by the ledger)",
  async (db) => {
    await using r = await rig(db, { balances: { [BTC]: "0.5" } });
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    // Flatten while the paper book still holds the position: the closer sells it now.
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    await r.drive(ex, async () => await flatAndSettled(db) && !(await pendingFlatten(db.sql)));
    assert.equal(await r.balance("BTC"), "0.5");
    // The paper exit arrives later: nothing of upbot's is left, so nothing is sold.
    await exit(db);
    await r.drive(ex, () => flatAndSettled(db));
    const last = (await rows(db)).at(-1)!;
    assert.deepEqual([last.action, last.state, last.reason], [
      "EXIT_LONG",
      "skipped",
      "position_closed",
    ]);
    assert.equal(await r.balance("BTC"), "0.5");
  },
);

dbTest(
  "money: coins sold by hand: the rest is sold, the missing part recorded as gone with an alarm, no loop",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live", { ORDER_KRW_AMOUNT: "20000" });
    await openPosition(r, db, ex);
    const bought = dec((await rows(db))[0]!.executed_volume!);
    const byHand = formatDec(bought / 2n / 10n ** 12n * 10n ** 12n); // half, 8 decimals
    const sold = await r.rest.postOrder({
      market: BTC,
      side: "ask",
      ord_type: "market",
      volume: byHand,
      identifier: "by-hand-1",
    });
    assert.equal(sold.kind, "accepted");
    await exit(db);
    await r.drive(ex, () => flatAndSettled(db));
    const attempts = await rows(db);
    // The risk gate caps the exit at the free balance: the rest is sold by the exit itself.
    assert.deepEqual(attempts.map((a) => [a.action, a.state, a.reason]), [
      ["ENTER_LONG", "cancelled", null],
      ["EXIT_LONG", "filled", null],
    ]);
    const [gone] = await db
      .sql`select volume::text from position_adjustments where kind = 'gone'`;
    assert.equal(formatDec(dec(gone!.volume)), byHand);
    assert.ok((await activeAlarms(db.sql)).some((a) => a.code === "position_gone"));
    assert.equal(await r.balance("BTC"), "0");
    // Nothing more happens: the ledger is flat.
    for (let i = 0; i < 3; i++) await ex.runOnce();
    assert.equal((await rows(db)).length, 2);
  },
);

dbTest(
  "money: a live position of a market taken out of MARKETS is sold (no paper exit will come for it)",
  async (db) => {
    await using r = await rig(db);
    const both = await r.executor("live", { MARKETS: `${BTC},${ETH}` });
    await enter(db, ETH, 4_000_000);
    await r.drive(both, () => entryFilled(db));
    assert.notEqual(await r.balance("ETH"), "0");
    // ETH leaves MARKETS while the paper book still holds it: the evaluator writes no exit now.
    const btcOnly = await r.executor("live", { MARKETS: BTC });
    await r.drive(btcOnly, () => flatAndSettled(db, ETH));
    await filledClose(db, ETH);
    assert.equal(await r.balance("ETH"), "0");
    const why = r.lines.filter((l) => l.includes(`Close ${ETH}: not in MARKETS`));
    assert.equal(why.length, 1, "said once");
  },
);

dbTest(
  "money: an old 1-second bar does not price the close: a sellable position is sold, not written off as dust",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    // The newest bar is 10 days old, at a third of today's price: at that price the position
    // (10,000 KRW) would be below the minimum order total.
    const { data: [ticker] } = await r.rest.getTicker({ markets: [BTC] });
    const stale = String(Math.round(ticker!.trade_price / 3));
    await db.sql`insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume,
        trade_count, buy_volume, sell_volume, is_final)
      values (${BTC}, ${new Date(Date.now() - 10 * 86_400_000)}, ${stale}, ${stale}, ${stale},
        ${stale}, 1, ${stale}, 1, 1, 0, true)`;
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    await r.drive(ex, async () => await flatAndSettled(db) && !(await pendingFlatten(db.sql)));
    await filledClose(db);
    const dust = await db.sql`select 1 from position_adjustments where kind = 'dust'`;
    assert.equal(dust.length, 0, "nothing written off");
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "money: coins locked in the owner's sell are held, not written off as gone; freed, they are sold",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    // The owner's limit sell of the whole coin balance rests far above the market: every coin
    // upbot bought is locked in it.
    const { data: [ticker] } = await r.rest.getTicker({ markets: [BTC] });
    const own = await r.rest.postOrder({
      market: BTC,
      side: "ask",
      ord_type: "limit",
      price: String(Math.round(ticker!.trade_price * 2 / 1000) * 1000),
      volume: await r.balance("BTC"),
      identifier: "owner-ask-1",
    });
    assert.equal(own.kind, "accepted");
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    await runPasses(ex, 3);
    const gone = await db.sql`select 1 from position_adjustments where kind = 'gone'`;
    assert.equal(gone.length, 0, "nothing written off");
    assert.notEqual(await openVolume(db), "0", "still owed");
    assert.ok((await activeAlarms(db.sql)).some((a) => a.code === "position_locked"));
    assert.equal((await rows(db)).filter((a) => a.action === "CLOSE").length, 0);
    // The owner cancels: the coins are free again and upbot sells what it bought.
    await r.rest.deleteOrder({ uuid: own.kind === "accepted" ? own.order.uuid : "" });
    await r.drive(ex, async () => await flatAndSettled(db) && !(await pendingFlatten(db.sql)));
    await filledClose(db);
    assert.equal(await r.balance("BTC"), "0");
    assert.ok(!(await activeAlarms(db.sql)).some((a) => a.code === "position_locked"), "cleared");
  },
);

dbTest(
  "money: a halt stops entries only; exits go on; after resume entries are sent again",
  async (db) => {
    await using r = await rig(db);
    const ex = await r.executor("live");
    await openPosition(r, db, ex);
    await haltEntries(db.sql, { scope: BTC, reason: "test", by: "test" });
    await exit(db);
    const halted = await enter(db);
    await r.drive(ex, () => flatAndSettled(db));
    let attempts = await rows(db);
    assert.equal(attempts[1]!.state, "filled", "the exit was sent");
    const skipped = attempts.find((a) => Number(a.paper_trade_id) === halted);
    assert.deepEqual([skipped?.state, skipped?.reason], ["skipped", "entries_halted"]);
    assert.equal(r.sim.orders().length, 2);
    await resumeEntries(db.sql, { scope: BTC, by: "test" });
    await exit(db);
    const resumed = await enter(db);
    await r.drive(ex, async () => (await rows(db)).length === 5 && await settled(db));
    attempts = await rows(db);
    const sent = attempts.find((a) => Number(a.paper_trade_id) === resumed);
    assert.equal(sent?.status, "done", "sent again after the resume");
    assert.equal(r.sim.orders().length, 3);
  },
);

dbTest("money: the supervisor's halt stops entries only; the exit still goes out", async (db) => {
  await using r = await rig(db);
  let halted = false;
  const ex = await r.executor(
    "live",
    {},
    () => halted ? "entries halted by the supervisor (test)" : null,
  );
  await enter(db);
  await r.drive(ex, () => entryFilled(db));
  halted = true;
  await exit(db);
  const next = await enter(db);
  await r.drive(ex, () => flatAndSettled(db));
  const attempts = await rows(db);
  assert.equal(attempts[1]!.state, "filled");
  const skipped = attempts.find((a) => Number(a.paper_trade_id) === next);
  assert.deepEqual([skipped?.state, skipped?.reason], ["skipped", "entries_halted"]);
  assert.equal(skipped?.error_msg, "entries halted by the supervisor (test)");
});

dbTest(
  "money: a supervisor halt that comes while the risk gate runs stops the entry",
  async (db) => {
    // The halt comes the moment the risk gate asks Upbit for the balances: the second balance
    // read (the first is the reconciliation before the executor's first attempt), after the
    // executor's earlier looks at the halts.
    let halted = false;
    let balanceReads = 0;
    await using r = await rig(db, {}, (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.includes("/v1/accounts") && ++balanceReads === 2) halted = true;
      return fetch(input, init);
    });
    const ex = await r.executor("live", {}, () => halted ? "critical actor failed (test)" : null);
    const paper = await enter(db);
    await ex.runOnce();
    assert.equal(halted, true, "the gate read the balances");
    const attempt = (await rows(db)).find((a) => Number(a.paper_trade_id) === paper);
    assert.deepEqual([attempt?.state, attempt?.reason], ["skipped", "entries_halted"]);
    assert.equal(attempt?.error_msg, "critical actor failed (test)");
    assert.equal(r.sim.orders().length, 0, "nothing reached Upbit");
  },
);

dbTest("money: a halt stored while the risk gate runs stops the entry", async (db) => {
  // As `deno task halt` would, the moment the risk gate asks Upbit for the balances (the second
  // balance read; the first is the reconciliation before the executor's first attempt).
  let balanceReads = 0;
  await using r = await rig(db, {}, async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.includes("/v1/accounts") && ++balanceReads === 2) {
      await haltEntries(db.sql, { scope: "global", reason: "operator (test)", by: "cli" });
    }
    return await fetch(input, init);
  });
  const ex = await r.executor("live");
  const paper = await enter(db);
  await ex.runOnce();
  assert.equal(balanceReads >= 2, true, "the gate read the balances");
  const attempt = (await rows(db)).find((a) => Number(a.paper_trade_id) === paper);
  assert.deepEqual([attempt?.state, attempt?.reason], ["skipped", "entries_halted"]);
  assert.match(attempt?.error_msg ?? "", /operator \(test\)/);
  assert.equal(r.sim.orders().length, 0, "nothing reached Upbit");
});

Deno.test("money: a database reset while flat keeps identifiers unique at the exchange", async () => {
  const first = await openTestDatabase("pglite", { migrated: true });
  const second = await openTestDatabase("pglite", { migrated: true });
  const r = await rig(first);
  try {
    for (const db of [first, second]) {
      r.useDatabase(db);
      const ex = await r.executor("live");
      await enter(db);
      await exit(db);
      await r.drive(ex, () => flatAndSettled(db));
    }
    const identifiers = r.sim.orders().map((o) => o.identifier);
    assert.equal(identifiers.length, 4);
    assert.equal(new Set(identifiers).size, 4, "no identifier reused across the reset");
    assert.equal(await r.balance("BTC"), "0");
  } finally {
    await r.close();
    await first.close();
    await second.close();
  }
});
