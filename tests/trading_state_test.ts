import assert from "node:assert/strict";
import {
  completeFlatten,
  entryHaltReason,
  haltEntries,
  pendingFlatten,
  requestFlatten,
  resumeEntries,
  tradingStateHistory,
  tradingStates,
} from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import { dbTest } from "./_db.ts";

dbTest("entryHaltReason() is null on a fresh database", async ({ sql }) => {
  assert.equal(await entryHaltReason(sql, "KRW-BTC"), null);
  assert.deepEqual(await tradingStates(sql), []);
});

dbTest("haltEntries() on a market halts that market only", async ({ sql }) => {
  await haltEntries(sql, { scope: "KRW-BTC", reason: "exchange notice", by: "cli" });
  const reason = await entryHaltReason(sql, "KRW-BTC");
  assert.ok(reason, "KRW-BTC is halted");
  assert.match(reason, /^entries on KRW-BTC halted by cli since .+: exchange notice$/);
  assert.equal(await entryHaltReason(sql, "KRW-ETH"), null);
  const [state] = await tradingStates(sql);
  assert.equal(state?.scope, "KRW-BTC");
  assert.equal(state?.halted, true);
  assert.equal(state?.reason, "exchange notice");
  assert.equal(state?.by, "cli");
  assert.ok(state?.since instanceof Date);
});

dbTest(
  "haltEntries() globally halts every market and is named before a market halt",
  async ({ sql }) => {
    await haltEntries(sql, { scope: "KRW-BTC", reason: "market reason", by: "cli" });
    await haltEntries(sql, { scope: "global", reason: "actor failed", by: "supervisor" });
    assert.match(
      (await entryHaltReason(sql, "KRW-BTC"))!,
      /^entries halted globally by supervisor since .+: actor failed$/,
    );
    assert.match((await entryHaltReason(sql, "KRW-ETH"))!, /halted globally/);
    assert.deepEqual((await tradingStates(sql)).map((s) => s.scope), ["global", "KRW-BTC"]);

    // Resuming global leaves the market's own halt in place.
    await resumeEntries(sql, { scope: "global", by: "cli" });
    assert.match((await entryHaltReason(sql, "KRW-BTC"))!, /^entries on KRW-BTC halted by cli/);
    assert.equal(await entryHaltReason(sql, "KRW-ETH"), null);

    // Resuming the market while global is halted again leaves global in force.
    await haltEntries(sql, { scope: "global", reason: "again", by: "cli" });
    await resumeEntries(sql, { scope: "KRW-BTC", by: "cli" });
    assert.match(
      (await entryHaltReason(sql, "KRW-BTC"))!,
      /halted globally by cli since .+: again$/,
    );
    await resumeEntries(sql, { scope: "global", by: "cli" });
    assert.equal(await entryHaltReason(sql, "KRW-BTC"), null);

    const states = await tradingStates(sql);
    assert.deepEqual(
      states.map((s) => [s.scope, s.halted, s.reason, s.by]),
      [["global", false, null, "cli"], ["KRW-BTC", false, null, "cli"]],
    );
  },
);

dbTest(
  "haltEntries() on a halted scope keeps since and takes the newest reason",
  async ({ sql }) => {
    await haltEntries(sql, { scope: "global", reason: "first", by: "cli" });
    const [first] = await tradingStates(sql);
    await haltEntries(sql, { scope: "global", reason: "second", by: "supervisor" });
    const [second] = await tradingStates(sql);
    assert.equal(second?.reason, "second");
    assert.equal(second?.by, "supervisor");
    assert.equal(second?.since.getTime(), first?.since.getTime());
  },
);

dbTest("every change is appended to trading_state_history", async ({ sql }) => {
  await haltEntries(sql, { scope: "KRW-BTC", reason: "r1", by: "cli" });
  await resumeEntries(sql, { scope: "KRW-BTC", by: "cli" });
  const id = await requestFlatten(sql, { reason: "r2", by: "cli" });
  await completeFlatten(sql, id);
  const history = (await tradingStateHistory(sql)).reverse();
  assert.deepEqual(
    history.map((h) => [h.scope, h.action, h.reason, h.by, h.flatten_id]),
    [
      ["KRW-BTC", "halt", "r1", "cli", null],
      ["KRW-BTC", "resume", null, "cli", null],
      ["global", "halt", "flatten: r2", "cli", null],
      ["global", "flatten_requested", "r2", "cli", id],
      ["global", "flatten_completed", "r2", "executor", id],
    ],
  );
  for (const h of history) assert.ok(h.at instanceof Date);
});

dbTest("requestFlatten() halts globally and stays pending until completed", async ({ sql }) => {
  assert.equal(await pendingFlatten(sql), null);
  const id = await requestFlatten(sql, { reason: "leaving for a week", by: "cli" });
  assert.match((await entryHaltReason(sql, "KRW-BTC"))!, /globally by cli .+: flatten: leaving/);
  const pending = await pendingFlatten(sql);
  assert.equal(pending?.id, id);
  assert.equal(pending?.reason, "leaving for a week");
  assert.ok(pending?.requested_at instanceof Date);

  await completeFlatten(sql, id);
  assert.equal(await pendingFlatten(sql), null);
  // The halt stays until a person resumes.
  assert.notEqual(await entryHaltReason(sql, "KRW-BTC"), null);
  // Completing twice changes nothing more.
  await completeFlatten(sql, id);
  const completed = (await tradingStateHistory(sql)).filter((h) =>
    h.action === "flatten_completed"
  );
  assert.equal(completed.length, 1);
});

dbTest("completeFlatten() completes older requests but not newer ones", async ({ sql }) => {
  const a = await requestFlatten(sql, { reason: "a", by: "cli" });
  const b = await requestFlatten(sql, { reason: "b", by: "cli" });
  assert.equal((await pendingFlatten(sql))?.id, b);
  const c = await requestFlatten(sql, { reason: "c", by: "cli" });
  await completeFlatten(sql, b);
  assert.equal((await pendingFlatten(sql))?.id, c);
  const [rows] = [await sql`select id, completed_at from flatten_requests order by id`];
  assert.deepEqual(rows.map((r) => [r.id, r.completed_at !== null]), [[a, true], [b, true], [
    c,
    false,
  ]]);
  await assert.rejects(completeFlatten(sql, 999), {
    message: "flatten request 999 does not exist",
  });
});

dbTest("haltEntries() refuses a bad scope or an empty reason", async ({ sql }) => {
  await assert.rejects(haltEntries(sql, { scope: "btc", reason: "x", by: "cli" }), {
    message: 'trading scope "btc" is neither "global" nor a market code such as KRW-BTC',
  });
  await assert.rejects(haltEntries(sql, { scope: "global", reason: " ", by: "cli" }), {
    message: "a halt's reason must not be empty",
  });
  await assert.rejects(requestFlatten(sql, { reason: "", by: "cli" }), {
    message: "a flatten's reason must not be empty",
  });
  assert.deepEqual(await tradingStates(sql), []);
});

dbTest("the trading state functions work inside a caller's transaction", async ({ sql }) => {
  await sql.begin(async (tx) => {
    await haltEntries(tx, { scope: "global", reason: "in tx", by: "executor" });
    assert.notEqual(await entryHaltReason(tx, "KRW-BTC"), null);
  });
  await assert.rejects(
    sql.begin(async (tx) => {
      await haltEntries(tx, { scope: "KRW-ETH", reason: "rolled back", by: "executor" });
      throw new Error("abort");
    }),
    { message: "abort" },
  );
  assert.equal(await entryHaltReason(sql, "KRW-ETH") !== null, true, "global still halted");
  assert.deepEqual((await tradingStates(sql)).map((s) => s.scope), ["global"]);
});

/** A live order of upbot's in `state`, with what it executed (the ledger counts its fill). */
async function liveOrder(
  sql: Sql,
  o: { symbol: string; side: "bid" | "ask"; state: string; executedVolume: string | null },
): Promise<void> {
  await sql`
    insert into upbit_order_attempts (symbol, action, mode, side, ord_type, identifier, state,
      executed_volume, paid_fee, avg_price)
    values (${o.symbol}, ${o.side === "bid" ? "ENTER_LONG" : "EXIT_LONG"}, 'live', ${o.side},
      ${o.side === "bid" ? "price" : "market"}, ${`flatten-test-${crypto.randomUUID()}`},
      ${o.state}, ${o.executedVolume}, ${o.executedVolume === null ? null : "1"},
      ${o.executedVolume === null ? null : "100000000"})`;
}

dbTest(
  "resumeEntries() is refused while a flatten is pending and a live position is left to close",
  async ({ sql }) => {
    await liveOrder(sql, {
      symbol: "KRW-BTC",
      side: "bid",
      state: "filled",
      executedVolume: "0.001",
    });
    await liveOrder(sql, { symbol: "KRW-ETH", side: "bid", state: "sent", executedVolume: null });
    await haltEntries(sql, { scope: "KRW-XRP", reason: "notice", by: "cli" });
    const id = await requestFlatten(sql, { reason: "leaving", by: "cli" });
    const refused = new RegExp(
      `^resume refused: flatten #${id} \\(requested by cli at \\S+: leaving\\) is still pending, closing KRW-BTC, KRW-ETH; it completes once every live position is closed, then entries can be resumed$`,
    );
    for (const scope of ["global", "KRW-XRP"]) {
      await assert.rejects(resumeEntries(sql, { scope, by: "http" }), (err: Error) => {
        assert.equal(err.name, "TradingStateRefusedError");
        assert.match(err.message, refused);
        return true;
      });
    }
    // Nothing changed.
    assert.match((await entryHaltReason(sql, "KRW-BTC"))!, /globally by cli .+: flatten: leaving/);
    assert.match((await entryHaltReason(sql, "KRW-SOL"))!, /globally/);
    assert.equal((await pendingFlatten(sql))?.id, id);
    assert.ok((await tradingStateHistory(sql)).every((h) => h.action !== "resume"));

    // Once everything is closed (the closer completes the flatten), a resume goes through.
    await liveOrder(sql, {
      symbol: "KRW-BTC",
      side: "ask",
      state: "filled",
      executedVolume: "0.001",
    });
    await sql`update upbit_order_attempts set state = 'cancelled' where symbol = 'KRW-ETH'`;
    await completeFlatten(sql, id);
    await resumeEntries(sql, { scope: "global", by: "cli" });
    assert.equal(await entryHaltReason(sql, "KRW-SOL"), null);
  },
);

dbTest(
  "resumeEntries() completes a pending flatten that has nothing left to close (shadow mode)",
  async ({ sql }) => {
    // Shadow and test mode run no closer: the flatten is only the global halt there.
    await liveOrder(sql, {
      symbol: "KRW-BTC",
      side: "bid",
      state: "filled",
      executedVolume: "0.5",
    });
    await liveOrder(sql, {
      symbol: "KRW-BTC",
      side: "ask",
      state: "filled",
      executedVolume: "0.5",
    });
    const id = await requestFlatten(sql, { reason: "rehearsal", by: "cli" });
    await resumeEntries(sql, { scope: "global", by: "http" });
    assert.equal(await pendingFlatten(sql), null);
    assert.equal(await entryHaltReason(sql, "KRW-BTC"), null);
    assert.deepEqual(
      (await tradingStateHistory(sql)).reverse().map((h) => [h.action, h.by, h.flatten_id]),
      [
        ["halt", "cli", null],
        ["flatten_requested", "cli", id],
        ["flatten_completed", "http", id],
        ["resume", "http", null],
      ],
    );
  },
);

dbTest(
  "completeFlatten() leaves a flatten pending while a position is open or a live buy may fill",
  async ({ sql }) => {
    const id = await requestFlatten(sql, { reason: "leaving", by: "cli" });
    await liveOrder(sql, { symbol: "KRW-ETH", side: "bid", state: "open", executedVolume: null });
    assert.deepEqual(await completeFlatten(sql, id), ["KRW-ETH"]);
    await sql`update upbit_order_attempts set state = 'filled', executed_volume = '0.1',
      paid_fee = '1', avg_price = '1000000' where symbol = 'KRW-ETH'`;
    assert.deepEqual(await completeFlatten(sql, id), ["KRW-ETH"], "bought: now a position");
    assert.equal((await pendingFlatten(sql))?.id, id);
    await liveOrder(sql, {
      symbol: "KRW-ETH",
      side: "ask",
      state: "filled",
      executedVolume: "0.1",
    });
    assert.deepEqual(await completeFlatten(sql, id), []);
    assert.equal(await pendingFlatten(sql), null);
    assert.deepEqual(
      (await tradingStateHistory(sql)).map((h) => [h.action, h.by, h.flatten_id]).slice(0, 1),
      [["flatten_completed", "executor", id]],
    );
  },
);
