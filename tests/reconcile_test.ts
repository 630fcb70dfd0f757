import assert from "node:assert/strict";
import { entryHaltReason } from "../lib/control/trading_state.ts";
import { fromUnits, toUnits } from "../lib/execution/risk_core.ts";
import {
  CLOSED_LOOKBACK_MS,
  installationOf,
  reconcile,
  reconciliationStatus,
} from "../lib/execution/reconcile.ts";
import {
  closeReconciliationGate,
  ConnectionGate,
  openReconciliationGate,
  OutageWatch,
  reconciliationGate,
} from "../lib/execution/system_gate.ts";
import type { Sql } from "../lib/db/connect.ts";
import { reconciliationProblems } from "../lib/http/health.ts";
import { createLogger } from "../lib/log.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { installationId, rotateIdentifier } from "../lib/store/order_attempts.ts";
import { openVolumes } from "../lib/execution/risk_gate.ts";
import { findingsOf, lastCompletedReconciliation } from "../lib/store/reconciliations.ts";
import { dbTest } from "./_db.ts";
import {
  pendingAttempt,
  placeLive,
  sendAndSettle,
  startSim,
  storeLastPrices,
} from "./_live_orders.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"];

/** Waits for the next whole second (order creation times have whole seconds). */
async function nextSecond(): Promise<void> {
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
}

function otherInstallation(own: string): string {
  return own === "abcdefgh" ? "hgfedcba" : "abcdefgh";
}

dbTest(
  "reconcile: an order placed under this installation's prefix while upbot was down is recorded before any order goes out",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const inst = await installationId(db.sql);
      // upbot placed it, then crashed before writing the attempt (or the database was restored).
      const identifier = `paper-${inst}-41-ENTER_LONG`;
      const placed = await h.rest.postOrder({
        market: "KRW-BTC",
        side: "bid",
        ord_type: "price",
        price: "10000",
        identifier,
      });
      assert.equal(placed.kind, "accepted");
      await closeReconciliationGate(db.sql, "live start");
      assert.deepEqual(
        { ...(await reconciliationGate(db.sql)), since: null },
        { open: false, reason: "live start", since: null },
        "no live order before reconciliation",
      );
      const report = await reconcile(db.sql, h.rest, h.log);
      assert.deepEqual(report.unrecordedOwnOrders.map((o) => o.identifier), [identifier]);
      assert.equal(report.closedOrders, 1, "the market buy is closed");
      const findings = await findingsOf(db.sql, report.id);
      assert.deepEqual(findings.map((f) => [f.kind, f.identifier, f.market]), [
        ["own_order_unrecorded", identifier, "KRW-BTC"],
      ]);
      const alarms = await activeAlarms(db.sql);
      assert.deepEqual(alarms.map((a) => [a.code, a.market]), [
        ["reconciliation_unrecorded_order", "KRW-BTC"],
      ]);
      assert.match(alarms[0]!.message, new RegExp(identifier));
      assert.equal((await reconciliationGate(db.sql)).open, true);
      const status = await reconciliationStatus(db.sql);
      assert.equal(status.gate.open, true);
      assert.equal(status.lastCompleted?.id, report.id);
      assert.deepEqual(status.findings.map((f) => f.identifier), [identifier]);
      const stored = await lastCompletedReconciliation(db.sql);
      assert.equal(stored?.id, report.id);
      assert.equal(stored?.findings_count, 1);
      // Recorded as a finding only: never adopted into the attempts.
      const [row] = await db.sql`select count(*)::int as n from upbit_order_attempts`;
      assert.equal(row!.n, 0);
      // The ledger misses what that order did: no new entry until a person has checked it.
      assert.match(
        (await entryHaltReason(db.sql, "KRW-ETH")) ?? "",
        /halted globally by reconciliation .*missing from the database/,
      );
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: a second order under an identifier an attempt gave up is reported and halts its market, never adopted",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const attempt = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      // The create under the first identifier landed only after upbot had given it up and moved
      // to a fresh identifier (a create queued at the exchange longer than the landing wait).
      const late = await h.rest.postOrder(attempt.request_json as never);
      assert.equal(late.kind, "accepted");
      const fresh = `${attempt.identifier}-r1`;
      const rotated = await rotateIdentifier(db.sql, attempt, fresh, 1);
      const own = await sendAndSettle(db.sql, h.rest, rotated!);
      assert.ok(Number(own.executed_volume) > 0, "the attempt's own buy filled");
      const report = await reconcile(db.sql, h.rest, h.log);
      const lateUuid = late.kind === "accepted" ? late.order.uuid : "";
      assert.deepEqual(
        report.secondOrders.map((o) => [o.identifier, o.uuid, o.attempt, o.attemptUuid]),
        [[attempt.identifier, lateUuid, attempt.id, own.uuid]],
        "the late order is reported; the attempt's own order under the fresh identifier is not",
      );
      assert.equal(report.unrecordedOwnOrders.length, 0);
      assert.equal(report.renewedInstallation, null, "the identifier is recorded: no renewal");
      const findings = await findingsOf(db.sql, report.id);
      assert.deepEqual(findings.map((f) => [f.kind, f.identifier, f.uuid]), [
        ["identifier_second_order", attempt.identifier, lateUuid],
      ]);
      const alarm = (await activeAlarms(db.sql)).find((a) =>
        a.code === "reconciliation_second_order"
      );
      assert.equal(alarm?.market, "KRW-BTC");
      assert.match(alarm!.message, new RegExp(`${lateUuid}.*not adopted`));
      assert.match((await entryHaltReason(db.sql, "KRW-BTC")) ?? "", /second order/);
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null, "other markets trade on");
      // Never adopted: the attempt keeps its own order, the ledger counts only its fill.
      const [row] = await db.sql<{ uuid: string; executed_volume: string }[]>`
        select uuid, executed_volume from upbit_order_attempts where id = ${attempt.id}`;
      assert.deepEqual(row, { uuid: own.uuid, executed_volume: own.executed_volume });
      const ledger = await openVolumes(db.sql);
      assert.equal(ledger.get("KRW-BTC"), own.executed_volume);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: another installation's open position is reported with its net volume and left alone",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const other = otherInstallation(await installationId(db.sql));
      for (const [n, krw] of [[1, "10000"], [2, "20000"]] as const) {
        const r = await h.rest.postOrder({
          market: "KRW-ETH",
          side: "bid",
          ord_type: "price",
          price: krw,
          identifier: `paper-${other}-${n}-ENTER_LONG`,
        });
        assert.equal(r.kind, "accepted");
      }
      const before = await h.rest.getAccounts();
      const ordersBefore = h.sim.orders().length;
      const report = await reconcile(db.sql, h.rest, h.log);
      const eth = before.data.find((a) => a.currency === "ETH")!;
      assert.deepEqual(report.foreignNetVolume, [
        { installation: other, market: "KRW-ETH", netVolume: eth.balance },
      ]);
      assert.equal(report.foreignOrders.length, 2);
      assert.equal(report.unrecordedOwnOrders.length, 0);
      const kinds = (await findingsOf(db.sql, report.id)).map((f) => f.kind);
      assert.deepEqual(kinds, ["foreign_installation_order", "foreign_installation_order"]);
      const alarm = (await activeAlarms(db.sql)).find((a) =>
        a.code === "reconciliation_foreign_orders"
      );
      assert.match(alarm!.message, new RegExp(`another installation \\(${other}\\) on KRW-ETH`));
      // Left alone: no order sent, the coins still there, no halt.
      assert.equal(h.sim.orders().length, ordersBefore);
      const after = await h.rest.getAccounts();
      assert.equal(after.data.find((a) => a.currency === "ETH")!.balance, eth.balance);
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: a balance lower than the ledger halts entries on that market with an alarm",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await storeLastPrices(db.sql, h.rest, MARKETS);
      const btc = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 20_000 });
      await placeLive(db.sql, h.rest, { market: "KRW-ETH", side: "bid", krw: 10_000 });
      // Half the BTC sold by hand in the Upbit app.
      const half = (Number(btc.executed_volume) / 2).toFixed(8);
      const byHand = await h.rest.postOrder({
        market: "KRW-BTC",
        side: "ask",
        ord_type: "market",
        volume: half,
        identifier: "owner-app-1",
      });
      assert.equal(byHand.kind, "accepted");
      const report = await reconcile(db.sql, h.rest, h.log);
      assert.equal(report.balanceShortfalls.length, 1);
      const s = report.balanceShortfalls[0]!;
      assert.equal(s.market, "KRW-BTC");
      assert.equal(s.ledger, btc.executed_volume);
      assert.equal(s.exchange, fromUnits(toUnits(btc.executed_volume!) - toUnits(half)));
      assert.match(
        (await entryHaltReason(db.sql, "KRW-BTC")) ?? "",
        /halted by reconciliation .*less than the ledger/,
      );
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null, "other markets trade on");
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "balance_below_ledger");
      assert.equal(alarm?.market, "KRW-BTC");
      assert.equal(report.ownerOrders, 1, "the hand sale is the owner's, only counted");
      // A sell of upbot's not settled yet (here: written, not sent) defers the comparison.
      await pendingAttempt(db.sql, { market: "KRW-ETH", side: "ask", volume: "0.001" });
      const eth = (await h.rest.getAccounts()).data.find((a) => a.currency === "ETH")!;
      await h.rest.postOrder({
        market: "KRW-ETH",
        side: "ask",
        ord_type: "market",
        volume: eth.balance,
        identifier: "owner-app-2",
      });
      const again = await reconcile(db.sql, h.rest, h.log);
      assert.deepEqual(again.balanceDeferred, ["KRW-ETH"]);
      assert.deepEqual(again.balanceShortfalls.map((x) => x.market), ["KRW-BTC"]);
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
    } finally {
      await h.close();
    }
  },
);

dbTest("reconcile: the owner's resting order and coins are never touched", async (db) => {
  const h = await startSim({ markets: MARKETS, balances: { "KRW-XRP": "1000" } });
  try {
    await storeLastPrices(db.sql, h.rest, MARKETS);
    await placeLive(db.sql, h.rest, { market: "KRW-XRP", side: "bid", krw: 10_000 });
    const { data: ticker } = await h.rest.getTicker({ markets: ["KRW-BTC"] });
    // A resting bid far under the market: stays `wait`.
    const resting = await h.rest.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: String(Math.round(ticker[0]!.trade_price / 2 / 1000) * 1000),
      volume: "0.0001",
      identifier: "owner-resting-1",
    });
    assert.equal(resting.kind, "accepted");
    const before = await h.rest.getAccounts();
    const ordersBefore = h.sim.orders().length;
    const report = await reconcile(db.sql, h.rest, h.log);
    assert.equal(report.openOrders, 1);
    assert.equal(report.ownerOrders, 1);
    assert.equal(report.findings, 0, "more XRP than the ledger is the owner's: no finding");
    assert.equal(report.balanceShortfalls.length, 0);
    assert.equal(h.sim.orders().length, ordersBefore, "no order sent, none cancelled");
    const { data: still } = await h.rest.getOrder({ identifier: "owner-resting-1" });
    assert.equal(still.state, "wait");
    assert.deepEqual((await h.rest.getAccounts()).data, before.data);
    assert.equal(await entryHaltReason(db.sql, "KRW-XRP"), null);
  } finally {
    await h.close();
  }
});

dbTest(
  "reconcile: closed orders are listed since the last completed run, at most 7 days back, page by page",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const inst = await installationId(db.sql);
      const identifiers: string[] = [];
      const buy = async (n: number) => {
        const identifier = `paper-${inst}-${n}-ENTER_LONG`;
        identifiers.push(identifier);
        const r = await h.rest.postOrder({
          market: "KRW-BTC",
          side: "bid",
          ord_type: "price",
          price: "6000",
          identifier,
        });
        assert.equal(r.kind, "accepted");
      };
      // One order per creation second (Upbit's created_at has whole seconds), pages of two.
      for (let n = 1; n <= 3; n++) {
        await buy(n);
        await nextSecond();
      }
      const t0 = Date.now();
      const first = await reconcile(db.sql, h.rest, h.log, { now: () => t0, closedPageLimit: 2 });
      assert.equal(first.closedFrom.getTime(), t0 - CLOSED_LOOKBACK_MS);
      assert.equal(first.closedOrders, 3, "three orders through pages of two");
      assert.equal(first.findings, 3);
      assert.deepEqual(first.unrecordedOwnOrders.map((o) => o.identifier).sort(), identifiers);
      const t1 = t0 + 3_600_000;
      const second = await reconcile(db.sql, h.rest, h.log, { now: () => t1 });
      assert.equal(second.closedFrom.getTime(), t0 - 60_000, "from the last run, with an overlap");
      // Ten days later the window is clamped to Upbit's 7 days.
      const t2 = t0 + 10 * 86_400_000;
      const third = await reconcile(db.sql, h.rest, h.log, { now: () => t2 });
      assert.equal(third.closedFrom.getTime(), t2 - CLOSED_LOOKBACK_MS);
      assert.equal(third.closedOrders, 0);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: a full page within one creation second is reported as possibly truncated",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await nextSecond();
      for (let n = 1; n <= 3; n++) {
        const r = await h.rest.postOrder({
          market: "KRW-BTC",
          side: "bid",
          ord_type: "price",
          price: "6000",
          identifier: `owner-${n}`,
        });
        assert.equal(r.kind, "accepted");
      }
      const report = await reconcile(db.sql, h.rest, h.log, { closedPageLimit: 2 });
      const kinds = (await findingsOf(db.sql, report.id)).map((f) => f.kind);
      if (report.closedOrders === 2) {
        assert.deepEqual(kinds, ["closed_window_truncated"]);
      } else {
        // The three crossed a second boundary after all: then every one is seen.
        assert.equal(report.closedOrders, 3);
      }
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: a failed run is stored with its error and leaves the gate closed",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await closeReconciliationGate(db.sql, "private stream lost for 75 s");
      h.sim.setFaults({ error_rate: 1 });
      await assert.rejects(reconcile(db.sql, h.rest, h.log));
      const gate = await reconciliationGate(db.sql);
      assert.equal(gate.open, false);
      assert.equal(gate.reason, "private stream lost for 75 s");
      assert.equal(await lastCompletedReconciliation(db.sql), null);
      const [run] = await db.sql`select error_msg from reconciliations`;
      assert.ok(run?.error_msg, "the error is stored");
      h.sim.setFaults({ error_rate: 0 });
      assert.equal((await reconcile(db.sql, h.rest, h.log)).gateOpen, true);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "reconcile: an application clock behind the database's still opens the gate the run began after",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      await closeReconciliationGate(db.sql, "live start");
      // The gate's closing is stamped by the database; this process's clock is an hour behind.
      const behind = () => Date.now() - 3_600_000;
      assert.equal((await reconcile(db.sql, h.rest, h.log, { now: behind })).gateOpen, true);
      assert.equal((await reconciliationGate(db.sql)).open, true);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "system gate: a reconciliation that began before the gate closed again does not open it",
  async (db) => {
    assert.equal((await reconciliationGate(db.sql)).open, true, "never closed: open");
    await closeReconciliationGate(db.sql, "live start");
    const startedAt = new Date();
    await new Promise((r) => setTimeout(r, 5));
    await closeReconciliationGate(db.sql, "REST connection lost for 61 s");
    assert.equal(await openReconciliationGate(db.sql, startedAt), false);
    assert.equal((await reconciliationGate(db.sql)).reason, "REST connection lost for 61 s");
    assert.equal(await openReconciliationGate(db.sql, new Date()), true);
    assert.deepEqual({ ...(await reconciliationGate(db.sql)), since: null }, {
      open: true,
      reason: null,
      since: null,
    });
  },
);

dbTest(
  "system gate: a connection lost for more than a minute closes the gate; reconciliation opens it",
  async (db) => {
    let now = 1_000_000;
    const gate = new ConnectionGate(db.sql, createLogger("test"), { now: () => now });
    gate.lost("rest");
    now += 60_000;
    assert.equal(await gate.check(), 0);
    assert.equal((await reconciliationGate(db.sql)).open, true);
    now += 1;
    assert.equal(await gate.check(), 1);
    const closed = await reconciliationGate(db.sql);
    assert.equal(closed.open, false);
    assert.match(closed.reason ?? "", /^REST connection lost for 60 s/);
    assert.equal(await gate.check(), 0, "once per outage");
    const h = await startSim({ markets: MARKETS });
    try {
      assert.equal((await reconcile(db.sql, h.rest, h.log)).gateOpen, true);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "system gate: an outage whose gate could not be stored closes it at the next check",
  async (db) => {
    let now = 1_000_000;
    let down = true;
    // The database refuses the first write (a connection blip), then answers again.
    const flaky = ((...args: Parameters<Sql>) => {
      if (down) throw new Error("database unreachable");
      return db.sql(...args);
    }) as unknown as Sql;
    const gate = new ConnectionGate(flaky, createLogger("test"), {
      limitMs: 2000,
      now: () => now,
    });
    gate.lost("private_stream");
    assert.equal(gate.isLost("private_stream"), true);
    now += 2001;
    await assert.rejects(gate.check(), /database unreachable/);
    down = false;
    assert.equal(await gate.check(), 1, "reported again: the gate was never stored");
    const closed = await reconciliationGate(db.sql);
    assert.equal(closed.open, false);
    assert.match(closed.reason ?? "", /^private stream lost for 2 s since /);
    gate.restored("private_stream");
    assert.equal(gate.isLost("private_stream"), false);
  },
);

dbTest(
  "readiness: in live mode a closed gate or no completed reconciliation is a problem",
  async (db) => {
    assert.deepEqual(await reconciliationProblems(db.sql, "shadow"), []);
    assert.deepEqual(await reconciliationProblems(db.sql, "live"), [
      "no reconciliation has completed yet",
    ]);
    await closeReconciliationGate(db.sql, "live start: reconcile before any order");
    assert.deepEqual(await reconciliationProblems(db.sql, "live"), [
      "reconciliation gate closed (live start: reconcile before any order)",
    ]);
    assert.deepEqual(await reconciliationProblems(db.sql, "test"), [], "only live orders wait");
    const h = await startSim({ markets: MARKETS });
    try {
      assert.equal((await reconcile(db.sql, h.rest, h.log)).gateOpen, true);
    } finally {
      await h.close();
    }
    assert.deepEqual(await reconciliationProblems(db.sql, "live"), []);
  },
);

Deno.test("OutageWatch reports a connection lost for more than a minute, once per outage", () => {
  const w = new OutageWatch();
  w.lost("private_stream", 1_000);
  w.lost("private_stream", 30_000); // the first loss counts
  assert.deepEqual(w.overdue(61_000), []);
  const due = w.overdue(61_001);
  assert.equal(due.length, 1);
  assert.equal(due[0]!.connection, "private_stream");
  assert.match(due[0]!.reason, /^private stream lost for 60 s since/);
  assert.deepEqual(w.overdue(120_000), [], "reported once");
  w.restored("private_stream");
  w.lost("rest", 200_000);
  w.restored("rest");
  assert.deepEqual(w.overdue(400_000), [], "a short outage closes nothing");
  w.lost("rest", 500_000);
  assert.equal(w.overdue(600_000)[0]?.connection, "rest");
});

Deno.test("installationOf() reads the installation of a paper- identifier", () => {
  assert.equal(installationOf("paper-abcd2345-12-ENTER_LONG"), "abcd2345");
  assert.equal(installationOf("paper-12-ENTER_LONG"), "legacy");
});

dbTest(
  "reconciliation gate: a run started in the same millisecond as the closing before it opens the gate",
  async (db) => {
    await closeReconciliationGate(db.sql, "live start");
    const [row] = await db.sql<{ ms: number }[]>`
      select (extract(epoch from changed_at) * 1000)::float8 as ms from system_gates
      where name = 'reconciliation'`;
    // The closing has microseconds; a run's start is a JS Date (milliseconds) taken after it.
    const sameMillisecond = new Date(Math.floor(row!.ms));
    assert.equal(await openReconciliationGate(db.sql, sameMillisecond), true);
    // A run that started a millisecond before the closing does not open it.
    await closeReconciliationGate(db.sql, "private stream lost");
    const [again] = await db.sql<{ ms: number }[]>`
      select (extract(epoch from changed_at) * 1000)::float8 as ms from system_gates
      where name = 'reconciliation'`;
    assert.equal(await openReconciliationGate(db.sql, new Date(Math.floor(again!.ms) - 1)), false);
  },
);
