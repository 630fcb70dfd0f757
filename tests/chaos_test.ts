/**
 * The crash suite, short version (5 SIGKILLs of the upbot process under simulator faults), on
 * PGlite and on PostgreSQL when TEST_DATABASE_URL is set (the two runs at once); and the suite's
 * checks fed broken histories, each of which they must catch.
 */
import assert from "node:assert/strict";
import { checkCrashFacts, type CrashFacts, formatCheckTable } from "../lib/chaos/checks.ts";
import { runCrashSuite } from "../lib/chaos/crash_suite.ts";
import type { LedgerPosition } from "../lib/execution/position_ledger.ts";
import { openTestDatabase, testBackends } from "./_db.ts";

/** One crash-suite run on `backend`, asserted; its logs are kept when it fails. */
async function crashSuiteHolds(backend: string): Promise<void> {
  const db = backend === "pglite" ? null : await openTestDatabase(backend);
  const workDir = await Deno.makeTempDir({ prefix: "upbot_chaos_test_" });
  try {
    const report = await runCrashSuite({
      kills: 5,
      seed: 11,
      upMs: [2_000, 9_000],
      databaseUrl: db?.connection.kind === "url" ? db.connection.url : undefined,
      workDir,
    });
    const table = formatCheckTable(report.results);
    assert.ok(report.ok, `[${backend}] ${table}\nlogs in ${workDir}`);
    assert.equal(report.kills, 5, `[${backend}]`);
    assert.ok(report.exchangeOrders > 0, `[${backend}] ${table}`);
    await Deno.remove(workDir, { recursive: true });
  } finally {
    await db?.close();
  }
}

// The runs of the backends are independent (each its own simulator process, ports, upbot
// process, database and work dir) and mostly wait (the kill moments, the settling): they run at
// once, and each is asserted on its own.
Deno.test(`crash suite: 5 kills, every check holds [${testBackends().join(", ")}]`, async () => {
  const backends = testBackends();
  const runs = await Promise.allSettled(backends.map((backend) => crashSuiteHolds(backend)));
  const failures = runs.flatMap((r) => r.status === "rejected" ? [r.reason] : []);
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, failures.map(String).join("\n"));
});

const inst = "abcdefgh";

function position(symbol: string, bought: string, sold: string, dust = "0"): LedgerPosition {
  const open = String(Number(bought) - Number(sold) - Number(dust));
  return {
    symbol,
    bought,
    sold,
    gone: "0",
    dust,
    oversold: "0",
    openVolume: open,
    cost: "0",
    proceeds: "0",
    fees: "0",
    avgEntryPrice: null,
    realisedPnl: "0",
    lastTs: new Date(),
  };
}

/** A consistent history: one entry and its sale on KRW-BTC; the owner holds 0.5 BTC. */
function healthy(): CrashFacts {
  return {
    installationId: inst,
    exchangeOrders: [
      {
        uuid: "u1",
        identifier: `paper-${inst}-1-ENTER_LONG`,
        market: "KRW-BTC",
        side: "bid",
        state: "cancel",
        executed_volume: "0.0001",
      },
      {
        uuid: "u2",
        identifier: `paper-${inst}-2-EXIT_LONG-r1`,
        market: "KRW-BTC",
        side: "ask",
        state: "done",
        executed_volume: "0.0001",
      },
    ],
    attempts: [
      {
        id: 1,
        symbol: "KRW-BTC",
        action: "ENTER_LONG",
        mode: "live",
        side: "bid",
        paper_trade_id: 1,
        state: "cancelled",
        uuid: "u1",
        executed_volume: "0.0001",
      },
      {
        id: 2,
        symbol: "KRW-BTC",
        action: "EXIT_LONG",
        mode: "live",
        side: "ask",
        paper_trade_id: 2,
        state: "filled",
        uuid: "u2",
        executed_volume: "0.0001",
      },
    ],
    paperTradeIds: [1, 2],
    identifiers: [
      { identifier: `paper-${inst}-1-ENTER_LONG`, attempt_id: 1 },
      { identifier: `paper-${inst}-2-EXIT_LONG`, attempt_id: 2 },
      { identifier: `paper-${inst}-2-EXIT_LONG-r1`, attempt_id: 2 },
    ],
    ledger: [position("KRW-BTC", "0.0001", "0.0001")],
    exchangeHoldings: { KRW: "1000", BTC: "0.5" },
    ownerStart: { "KRW-BTC": "0.5" },
    markets: ["KRW-BTC"],
  };
}

function failed(f: CrashFacts): string[] {
  return checkCrashFacts(f).filter((r) => !r.ok).map((r) => r.name);
}

Deno.test("crash checks: a consistent history passes every check", () => {
  assert.deepEqual(failed(healthy()), []);
});

Deno.test("crash checks: a second exchange order of one attempt is caught", () => {
  const f = healthy();
  f.exchangeOrders.push({
    ...f.exchangeOrders[1]!,
    uuid: "u3",
    identifier: `paper-${inst}-2-EXIT_LONG`,
  });
  assert.ok(failed(f).includes("every exchange order maps to exactly one attempt"));
});

Deno.test("crash checks: an exchange order without an attempt is caught", () => {
  const f = healthy();
  f.identifiers = f.identifiers.filter((r) => r.attempt_id !== 1);
  assert.ok(failed(f).includes("every exchange order maps to exactly one attempt"));
});

Deno.test("crash checks: two entry attempts of one paper trade are caught", () => {
  const f = healthy();
  f.attempts.push({ ...f.attempts[0]!, id: 3, state: "failed", uuid: null, executed_volume: null });
  assert.deepEqual(failed(f), ["every paper trade has at most one entry order"]);
});

Deno.test("crash checks: selling more than was bought is caught", () => {
  const f = healthy();
  f.exchangeOrders[1]!.executed_volume = "0.0002";
  assert.ok(failed(f).includes("never more sold than bought per market"));
});

Deno.test("crash checks: an attempt whose state differs from the exchange's is caught", () => {
  const f = healthy();
  f.attempts[0]!.state = "filled";
  assert.ok(failed(f).includes("every attempt's state equals the exchange's"));
  const g = healthy();
  g.attempts.push({ ...g.attempts[0]!, id: 4, paper_trade_id: 9, uuid: "u9", state: "filled" });
  assert.ok(failed(g).includes("every attempt's state equals the exchange's"));
});

Deno.test("crash checks: an attempt left unknown is caught", () => {
  const f = healthy();
  f.attempts.push({ ...f.attempts[1]!, id: 5, paper_trade_id: 7, state: "unknown", uuid: null });
  assert.deepEqual(failed(f), ["no attempt left non-final"]);
});

Deno.test("crash checks: a ledger that disagrees with the exchange's holdings is caught", () => {
  const f = healthy();
  f.exchangeHoldings.BTC = "0.5001";
  assert.deepEqual(failed(f), [
    "ledger = exchange holdings - owner's coins",
    "flat book: nothing held beyond recorded dust",
  ]);
});

Deno.test("crash checks: coins held beyond recorded dust are caught; recorded dust passes", () => {
  const f = healthy();
  f.exchangeOrders[1]!.executed_volume = "0.00009";
  f.attempts[1]!.executed_volume = "0.00009";
  f.ledger = [position("KRW-BTC", "0.0001", "0.00009")];
  f.exchangeHoldings.BTC = "0.50001";
  assert.deepEqual(failed(f), ["flat book: nothing held beyond recorded dust"]);
  f.ledger = [position("KRW-BTC", "0.0001", "0.00009", "0.00001")];
  assert.deepEqual(failed(f), []);
});

Deno.test("crash checks: a paper trade skipped by the executor is caught", () => {
  const f = healthy();
  f.paperTradeIds = [1, 2, 3];
  assert.deepEqual(failed(f), []); // 3 is newer than any handled: not read yet
  f.paperTradeIds = [1, 2, 3];
  f.attempts[1]!.paper_trade_id = 3;
  assert.ok(failed(f).includes("no paper trade lost by the executor"));
});
